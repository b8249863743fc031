"""Browsers, other sites and rebinding pages: what the edge of the API lets through, and
the headers every answer carries."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import (
    BASE_URL,
    CONSOLE,
    PHONE,
    Client,
    assert_problem,
    request_code,
    runtime_of,
    wait_for_messages,
)

EVIL = "https://evil.example"


async def test_a_cross_site_text_plain_post_is_refused_and_never_reaches_the_service(
    client: Client,
) -> None:
    # What any web page can make a visitor's browser send without a preflight.
    response = await client.post("/v1/otp", content=b'{"to":"+14155550102"}',
                                 headers={"Content-Type": "text/plain", "Origin": EVIL})
    assert_problem(response, 403, "cross-origin-refused")
    assert await runtime_of(client).backend.capture.list(None) == []
    assert (await client.get("/v1/dev/messages")).json() == []


async def test_curl_without_an_origin_and_the_server_s_own_pages_are_let_through(
    client: Client,
) -> None:
    curl = await client.post("/v1/otp", content=b'{"to":"+14155550123"}',
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert curl.status_code == 202, curl.text
    own = await client.post("/v1/otp", json={"to": "+14155550124"},
                            headers={"Origin": BASE_URL, "Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 202, own.text


async def test_a_foreign_origin_is_refused_on_every_method_unless_it_is_allowed(
    make_client: Any,
) -> None:
    async with make_client() as c:
        assert_problem(await c.get("/v1/dev/messages", headers={"Origin": EVIL}), 403,
                       "cross-origin-refused")
        assert_problem(await c.get("/v1/dev/messages", headers={"Origin": "null"}), 403,
                       "cross-origin-refused")
    async with make_client(allowed_origins=["https://app.example"]) as c:
        allowed = await c.post("/v1/otp", json={"to": PHONE},
                               headers={"Origin": "https://app.example"})
        assert allowed.status_code == 202, allowed.text
        assert_problem(await c.post("/v1/otp", json={"to": PHONE}, headers={"Origin": EVIL}),
                       403, "cross-origin-refused")


async def test_a_browser_request_from_another_site_without_an_origin_may_only_read(
    client: Client,
) -> None:
    refused = await client.post("/v1/otp", json={"to": PHONE},
                                headers={"Sec-Fetch-Site": "cross-site"})
    assert_problem(refused, 403, "cross-origin-refused")
    # A link to the inbox from elsewhere still opens it: a navigation changes nothing.
    page = await client.get("/dev/inbox", headers={"Sec-Fetch-Site": "cross-site",
                                                   "Sec-Fetch-Mode": "navigate"})
    assert page.status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.nip.io"])
async def test_dev_mode_answers_421_to_a_host_it_does_not_serve(client: Client,
                                                                host: str) -> None:
    # A DNS-rebinding page reaches the server under its own name.
    response = await client.get("/v1/dev/messages", headers={"Host": host})
    assert_problem(response, 421, "misdirected-request")


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "localhost",
                                  "[::1]:8080", "192.0.2.7:8080"])
async def test_dev_mode_answers_loopback_names_and_ip_addresses(client: Client,
                                                                host: str) -> None:
    response = await client.get("/v1/dev/messages", headers={"Host": host})
    assert response.status_code == 200, response.text


async def test_outside_dev_mode_any_host_is_served(make_client: Any) -> None:
    async with make_client(dev=False, drivers=CONSOLE) as c:
        response = await c.get("/healthz", headers={"Host": "otp.example.com"})
        assert response.status_code == 200


async def test_answers_with_codes_numbers_or_states_are_never_stored_by_caches(
    client: Client,
) -> None:
    otp = await request_code(client)
    await wait_for_messages(client, PHONE)
    answers = [
        await client.post("/v1/otp", json={"to": PHONE}),
        await client.post(f"/v1/otp/{otp['id']}/verify", json={"code": "000000"}),
        await client.post("/v1/verify", json={"to": PHONE, "code": "000000"}),
        await client.get(f"/v1/otp/{otp['id']}"),
        await client.get("/v1/dev/messages", params={"to": PHONE}),
        await client.get("/dev/inbox"),
        await client.post("/v1/otp", json={"to": "nope"}),
    ]
    for answer in answers:
        assert answer.headers["cache-control"] == "no-store", answer.request.url
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
