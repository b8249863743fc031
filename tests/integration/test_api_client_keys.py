"""Client keys (request and verify only), scopes, browser origins with CORS, and secret
rotation, through the HTTP API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from otpgate import apikeys
from otpgate.api.auth import CACHE_TTL
from otpgate.clock import FrozenClock
from tests.integration.conftest import (
    CONSOLE,
    PHONE,
    START,
    Client,
    assert_problem,
    runtime_of,
    wait_for_messages,
)

APP = "https://app.example"
OTP_ID = "otp_AAAAAAAAAAAAAAAAAAAAAA"


@pytest.fixture
async def keyed(make_client: Callable[..., Any]) -> AsyncIterator[Client]:
    async with make_client(dev=False, drivers=CONSOLE, allow_capture=True) as c:
        yield c


async def make_key(client: Client, **options: Any) -> str:
    _, plaintext = await apikeys.create(runtime_of(client).backend.store, "app", START,
                                        **options)
    return plaintext


def bearer(key: str, **more: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", **more}


async def test_a_client_key_requests_and_verifies(keyed: Client) -> None:
    key = await make_key(keyed, kind="client")
    created = await keyed.post("/v1/otp", json={"to": PHONE}, headers=bearer(key))
    assert created.status_code == 202, created.text
    otp_id = created.json()["id"]
    by_id = await keyed.post(f"/v1/otp/{otp_id}/verify", json={"code": "000000"},
                             headers=bearer(key))
    assert by_id.status_code == 200 and by_id.json()["valid"] is False
    by_to = await keyed.post("/v1/verify", json={"to": PHONE, "code": "000000"},
                             headers=bearer(key))
    assert by_to.status_code == 200


async def test_a_client_key_is_403_on_every_other_route(keyed: Client) -> None:
    server = await make_key(keyed)
    client = await make_key(keyed, kind="client")
    otp_id = (await keyed.post("/v1/otp", json={"to": PHONE},
                               headers=bearer(server))).json()["id"]
    refused = [
        await keyed.get(f"/v1/otp/{otp_id}", headers=bearer(client)),
        await keyed.delete(f"/v1/otp/{otp_id}", headers=bearer(client)),
        await keyed.get("/v1/dev/messages", params={"to": PHONE}, headers=bearer(client)),
        await keyed.post("/v1/admin/unlock", json={"to": PHONE}, headers=bearer(client)),
        await keyed.get("/metrics", headers=bearer(client)),
        await keyed.post("/hooks/kratos/courier", headers=bearer(client), json={
            "recipient": PHONE, "template_type": "login_code_valid", "to": PHONE,
            "body": "Your code: 123456", "login_code": "123456"}),
    ]
    for response in refused:
        assert_problem(response, 403, "forbidden")
    twilio = await keyed.post("/v2/Services/VA" + "0" * 32 + "/Verifications",
                              data={"To": PHONE, "Channel": "sms"}, headers=bearer(client))
    assert twilio.status_code == 403 and twilio.json()["code"] == 20403
    # the server key still reads what it made
    assert (await keyed.get(f"/v1/otp/{otp_id}", headers=bearer(server))).status_code == 200


async def test_a_client_key_is_403_on_dev_messages_in_dev_mode_too(client: Client) -> None:
    key = await make_key(client, kind="client")
    assert (await client.post("/v1/otp", json={"to": PHONE},
                              headers=bearer(key))).status_code == 202
    response = await client.get("/v1/dev/messages", params={"to": PHONE},
                                headers=bearer(key))
    assert_problem(response, 403, "forbidden")
    # without a key, dev mode acts as a server key with every scope
    assert len(await wait_for_messages(client, PHONE)) == 1
    assert (await client.get(f"/v1/otp/{OTP_ID}")).status_code == 404


async def test_a_presented_key_is_checked_in_dev_mode(client: Client) -> None:
    response = await client.post("/v1/otp", json={"to": PHONE},
                                 headers=bearer("og_deadbeef_" + "A" * 43))
    assert_problem(response, 401, "unauthorized")


async def test_scopes_narrow_a_server_key(keyed: Client) -> None:
    reader = await make_key(keyed, scopes=["otp:read"])
    sender = await make_key(keyed, scopes=["otp:send"])
    otp_id = (await keyed.post("/v1/otp", json={"to": PHONE},
                               headers=bearer(sender))).json()["id"]
    assert (await keyed.get(f"/v1/otp/{otp_id}", headers=bearer(reader))).status_code == 200
    assert_problem(await keyed.get(f"/v1/otp/{otp_id}", headers=bearer(sender)), 403,
                   "forbidden")
    assert_problem(await keyed.post("/v1/otp", json={"to": PHONE}, headers=bearer(reader)),
                   403, "forbidden")
    assert_problem(await keyed.post(f"/v1/otp/{otp_id}/verify", json={"code": "000000"},
                                    headers=bearer(sender)), 403, "forbidden")
    assert_problem(await keyed.delete(f"/v1/otp/{otp_id}", headers=bearer(reader)), 403,
                   "forbidden")


async def test_an_admin_scope_opens_the_admin_routes(keyed: Client) -> None:
    admin = await make_key(keyed, admin=True)
    plain = await make_key(keyed)
    assert (await keyed.post("/v1/admin/unlock", json={"to": PHONE},
                             headers=bearer(admin))).status_code == 200
    assert_problem(await keyed.post("/v1/admin/unlock", json={"to": PHONE},
                                    headers=bearer(plain)), 403, "forbidden")


async def test_a_preflight_to_a_client_route_is_answered_for_a_web_origin(
    keyed: Client,
) -> None:
    response = await keyed.options("/v1/otp", headers={
        "origin": APP, "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type"})
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP
    assert "authorization" in response.headers["access-control-allow-headers"]
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["vary"] == "Origin"
    for path in ("/v1/verify", f"/v1/otp/{OTP_ID}/verify"):
        again = await keyed.options(path, headers={
            "origin": APP, "access-control-request-method": "POST"})
        assert again.headers["access-control-allow-origin"] == APP
    # a server route gets no CORS
    other = await keyed.options(f"/v1/otp/{OTP_ID}", headers={
        "origin": APP, "access-control-request-method": "GET"})
    assert "access-control-allow-origin" not in other.headers


async def test_a_client_key_bound_to_an_origin_works_from_it_and_echoes_it(
    keyed: Client,
) -> None:
    key = await make_key(keyed, kind="client", origins=[APP])
    created = await keyed.post("/v1/otp", json={"to": PHONE},
                               headers=bearer(key, origin=APP, **{"sec-fetch-site":
                                                                  "cross-site"}))
    assert created.status_code == 202, created.text
    assert created.headers["access-control-allow-origin"] == APP
    assert created.headers["vary"] == "Origin"
    wrong = await keyed.post("/v1/verify", json={"to": PHONE, "code": "000000"},
                             headers=bearer(key, origin="https://evil.example"))
    assert_problem(wrong, 403, "cross-origin-refused")
    assert "access-control-allow-origin" not in wrong.headers
    bare = await keyed.post("/v1/verify", json={"to": PHONE, "code": "000000"},
                            headers=bearer(key))
    assert_problem(bare, 403, "cross-origin-refused")


async def test_a_cross_site_page_needs_a_client_key_bound_to_it(keyed: Client) -> None:
    server = await make_key(keyed)
    unbound = await make_key(keyed, kind="client")
    for key in (server, unbound):
        response = await keyed.post("/v1/otp", json={"to": PHONE},
                                    headers=bearer(key, origin=APP))
        assert_problem(response, 403, "cross-origin-refused")
    # without a key, the edge refuses it before any route, as before
    assert_problem(await keyed.post("/v1/otp", json={"to": PHONE}, headers={"origin": APP}),
                   403, "cross-origin-refused")
    # and a server route from another site stays refused even with a bound client key
    bound = await make_key(keyed, kind="client", origins=[APP])
    assert_problem(await keyed.get(f"/v1/otp/{OTP_ID}", headers=bearer(bound, origin=APP)),
                   403, "cross-origin-refused")


async def test_a_rotated_key_takes_both_secrets_until_the_rotation_is_finished(
    keyed: Client, clock: FrozenClock
) -> None:
    store = runtime_of(keyed).backend.store
    key, old = await apikeys.create(store, "shop", clock.now())
    _, new = await apikeys.rotate(store, key.id, clock.now(), grace=3600)
    assert new != old and new.startswith(f"og_{key.id}_")
    for plaintext in (old, new):
        assert (await keyed.post("/v1/otp", json={"to": PHONE},
                                 headers=bearer(plaintext))).status_code == 202
    assert await apikeys.finish_rotation(store, key.id, clock.now())
    clock.advance(CACHE_TTL)
    assert_problem(await keyed.post("/v1/otp", json={"to": PHONE}, headers=bearer(old)),
                   401, "unauthorized")
    assert (await keyed.post("/v1/otp", json={"to": PHONE},
                             headers=bearer(new))).status_code == 202


async def test_the_previous_secret_dies_with_its_grace_period(
    keyed: Client, clock: FrozenClock
) -> None:
    store = runtime_of(keyed).backend.store
    key, old = await apikeys.create(store, "shop", clock.now())
    await apikeys.rotate(store, key.id, clock.now(), grace=60)
    assert (await keyed.post("/v1/otp", json={"to": PHONE},
                             headers=bearer(old))).status_code == 202
    clock.advance(60)
    assert_problem(await keyed.post("/v1/otp", json={"to": PHONE}, headers=bearer(old)),
                   401, "unauthorized")


async def test_an_empty_authorization_header_is_no_way_around_a_key_in_dev_mode(
    client: Client,
) -> None:
    """A cross-site page may send ``Authorization:`` with nothing in it; the edge lets a
    request with the header through to the key check, which must not take it for none."""
    response = await client.post("/v1/otp", json={"to": PHONE},
                                 headers={"authorization": "", "origin": "https://evil.example"})
    assert_problem(response, 401, "unauthorized")


async def test_a_client_key_may_not_send_a_fallback_step_to_another_address(
    keyed: Client,
) -> None:
    key = await make_key(keyed, kind="client")
    response = await keyed.post("/v1/otp", headers=bearer(key), json={
        "to": "jane@example.com",
        "fallback": [{"channel": "sms", "after": 30, "to": "+14155550199"}]})
    assert_problem(response, 403, "forbidden")
    server = await make_key(keyed)
    allowed = await keyed.post("/v1/otp", headers=bearer(server), json={
        "to": "jane@example.com",
        "fallback": [{"channel": "sms", "after": 30, "to": "+14155550199"}]})
    assert allowed.status_code == 202, allowed.text


async def test_twilio_approval_without_a_code_needs_the_verify_scope(keyed: Client) -> None:
    cancel_only = await make_key(keyed, scopes=[apikeys.CANCEL, apikeys.SEND])
    key_id, secret = cancel_only.split("_", 2)[1:]
    sid = "VA" + "0" * 31 + "1"
    base = f"/v2/Services/{sid}/Verifications"
    made = await keyed.post(base, data={"To": PHONE, "Channel": "sms"}, auth=(key_id, secret))
    assert made.status_code == 201, made.text
    approve = await keyed.post(f"{base}/{made.json()['sid']}", data={"Status": "approved"},
                               auth=(key_id, secret))
    assert approve.status_code == 403, approve.text
    cancel = await keyed.post(f"{base}/{made.json()['sid']}", data={"Status": "canceled"},
                              auth=(key_id, secret))
    assert (cancel.status_code, cancel.json()["status"]) == (200, "canceled")
