"""Dev mode: the captured messages as JSON and as the dev inbox page."""

from __future__ import annotations

from typing import Any

from otpgate import apikeys
from otpgate.capture.base import CapturedMessage
from tests.integration.conftest import (
    PHONE,
    START,
    Client,
    assert_problem,
    code_in,
    request_code,
    runtime_of,
    wait_for_messages,
    without_token,
)


async def test_the_full_flow_request_read_the_sms_verify(client: Client) -> None:
    otp = await request_code(client, purpose="login")
    [message] = await wait_for_messages(client, PHONE)
    assert set(message) == {"id", "otp_id", "to", "channel", "body", "sent_at"}
    assert (message["otp_id"], message["to"], message["channel"]) == (otp["id"], PHONE, "sms")
    assert message["sent_at"].endswith("Z")
    verdict = await client.post(f"/v1/otp/{otp['id']}/verify",
                                json={"code": code_in(message["body"])})
    assert without_token(verdict.json()) == {"id": otp["id"], "valid": True, "status": "approved"}


async def test_messages_are_listed_newest_first_and_filtered_by_recipient(
    client: Client,
) -> None:
    await request_code(client, PHONE)
    await wait_for_messages(client, PHONE)
    other = await request_code(client, "+14155550199")
    await wait_for_messages(client, "+14155550199")
    everything = (await client.get("/v1/dev/messages")).json()
    assert next(m["otp_id"] for m in everything) == other["id"]
    assert len(everything) == 2
    mine = (await client.get("/v1/dev/messages", params={"to": PHONE})).json()
    assert [m["to"] for m in mine] == [PHONE]


async def test_a_malformed_recipient_filter_is_422(client: Client) -> None:
    response = await client.get("/v1/dev/messages", params={"to": "+1415\u200b5550123"})
    assert_problem(response, 422, "invalid-recipient", field="to")


async def test_the_inbox_page_lists_messages_escaped_with_a_filter_and_refresh(
    client: Client,
) -> None:
    await runtime_of(client).backend.capture.add(CapturedMessage(
        id="m1", otp_id="otp_<b>x</b>", to=PHONE, channel="sms",
        body='<script>alert("code")</script> 123456', sent_at=START), "k1")
    page = await client.get("/dev/inbox")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    assert '<meta http-equiv="refresh"' in text
    assert '<form method="get" action="/dev/inbox">' in text
    assert "&lt;script&gt;alert(&quot;code&quot;)&lt;/script&gt; 123456" in text
    assert "<script>" not in text
    assert "otp_&lt;b&gt;x&lt;/b&gt;" in text


async def test_the_inbox_escapes_the_filter_and_says_when_it_is_malformed(
    client: Client,
) -> None:
    page = await client.get("/dev/inbox", params={"to": '"><script>x</script>'})
    assert page.status_code == 422
    assert "<script>" not in page.text
    assert 'value="&quot;&gt;&lt;script&gt;x&lt;/script&gt;"' in page.text


async def test_captures_allowed_outside_dev_mode_need_an_admin_key_and_have_no_inbox_page(
    make_client: Any,
) -> None:
    async with make_client(dev=False, allow_capture=True) as c:
        assert_problem(await c.get("/v1/dev/messages"), 401, "unauthorized")
        _, key = await apikeys.create(runtime_of(c).backend.store, "dev", START, admin=True)
        listed = await c.get("/v1/dev/messages", headers={"authorization": f"Bearer {key}"})
        assert (listed.status_code, listed.json()) == (200, [])
        assert_problem(await c.get("/dev/inbox"), 404, "not-found")


async def test_an_unencoded_plus_in_the_recipient_filter_is_read_as_a_plus(
    client: Client,
) -> None:
    await request_code(client, PHONE)
    await wait_for_messages(client, PHONE)
    # curl 'localhost:8080/v1/dev/messages?to=+14155550123' sends the plus unencoded.
    found = (await client.get(f"/v1/dev/messages?to={PHONE}")).json()
    assert [m["to"] for m in found] == [PHONE]


async def test_messages_are_read_a_page_at_a_time_by_limit_and_before(client: Client) -> None:
    sink = runtime_of(client).backend.capture
    for n in range(5):
        await sink.add(CapturedMessage(id=f"m{n}", otp_id="otp_x", to=PHONE, channel="sms",
                                       body=f"code {n}", sent_at=START + n), f"k{n}")
    first = (await client.get("/v1/dev/messages", params={"limit": 2})).json()
    second = (await client.get("/v1/dev/messages",
                               params={"limit": 2, "before": first[-1]["id"]})).json()
    last = (await client.get("/v1/dev/messages", params={"before": second[-1]["id"]})).json()
    assert [[m["id"] for m in page] for page in (first, second, last)] == [
        ["m4", "m3"], ["m2", "m1"], ["m0"]]


async def test_a_limit_outside_1_to_1000_or_a_malformed_before_is_422(client: Client) -> None:
    for bad in ("0", "1001", "ten", "-1", "2.5"):
        assert_problem(await client.get("/v1/dev/messages", params={"limit": bad}), 422,
                       "invalid-request", field="limit")
    assert_problem(await client.get("/v1/dev/messages", params={"before": "x" * 201}), 422,
                   "invalid-request", field="before")
    assert (await client.get("/v1/dev/messages", params={"limit": "1000"})).status_code == 200
