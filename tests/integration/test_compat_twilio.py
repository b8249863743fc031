"""Twilio Verify's ``/v2`` surface over the in-memory backend and a frozen clock: resend
rules, services, sids, errors in Twilio's shape, credentials."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from otpgate import apikeys
from otpgate.clock import FrozenClock
from otpgate.compat.twilio import Sids
from tests.integration.conftest import (
    CONSOLE,
    START,
    Client,
    assert_problem,
    code_in,
    runtime_of,
    wait_for_messages,
)

PLAIN = "VA" + "0" * 31 + "1"
LONG = "VA" + "e" * 32
TO = "+14155550123"
SERVICES = {LONG: {"purpose": "signup", "brand": "Acme", "code_length": 8, "ttl": 120}}


def v2(sid: str = PLAIN, tail: str = "Verifications") -> str:
    return f"/v2/Services/{sid}/{tail}"


async def create(client: Client, to: str = TO, sid: str = PLAIN,
                 **fields: str) -> dict[str, Any]:
    response = await client.post(v2(sid), data={"To": to, "Channel": "sms", **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def check(client: Client, code: str, to: str = TO, sid: str = PLAIN) -> Any:
    return await client.post(v2(sid, "VerificationCheck"), data={"To": to, "Code": code})


def assert_twilio_error(response: Any, status: int, code: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "more_info", "status"}
    assert (body["code"], body["status"]) == (code, status)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"


@pytest.fixture
async def services_client(make_client: Callable[..., Any]) -> AsyncIterator[Client]:
    async with make_client(services=SERVICES) as c:
        yield c


async def test_a_second_create_before_resend_after_is_coalesced_and_one_after_resends(
        client: Client, clock: FrozenClock) -> None:
    first = await create(client)
    again = await create(client)
    assert again["sid"] == first["sid"] and len(again["send_code_attempts"]) == 1
    old = code_in((await wait_for_messages(client, TO))[0]["body"])
    clock.advance(31)
    resent = await create(client)
    assert resent["sid"] == first["sid"] and len(resent["send_code_attempts"]) == 2
    new = code_in((await wait_for_messages(client, TO, 2))[0]["body"])
    if new != old:
        assert (await check(client, old)).json()["status"] == "pending"
    assert (await check(client, new)).json()["status"] == "approved"


async def test_a_sid_configured_nowhere_keeps_its_codes_under_the_sid_as_purpose(
        client: Client) -> None:
    made = await create(client)
    otp_id = Sids(runtime_of(client).keyring.digest_key).otp_id(made["sid"])
    status = await client.get(f"/v1/otp/{otp_id}")
    assert status.json()["purpose"] == PLAIN.lower()


async def test_a_configured_service_brings_its_brand_code_length_and_ttl(
        services_client: Client, clock: FrozenClock) -> None:
    made = await create(services_client, sid=LONG)
    body = (await wait_for_messages(services_client, TO))[0]["body"]
    assert "Acme" in body and code_in(body, 8)
    otp_id = Sids(runtime_of(services_client).keyring.digest_key).otp_id(made["sid"])
    assert (await services_client.get(f"/v1/otp/{otp_id}")).json()["purpose"] == "signup"
    clock.advance(121)
    assert_twilio_error(await check(services_client, code_in(body, 8), sid=LONG), 404, 20404)
    fetched = await services_client.get(v2(LONG, f"Verifications/{made['sid']}"))
    assert fetched.json()["status"] == "expired"


async def test_another_services_verification_is_not_found_under_this_one(
        services_client: Client) -> None:
    made = await create(services_client, sid=LONG)
    assert_twilio_error(await services_client.get(v2(tail=f"Verifications/{made['sid']}")),
                        404, 20404)
    otp = await services_client.post("/v1/otp", json={"to": "+14155550124"})
    sid = Sids(runtime_of(services_client).keyring.digest_key).verification(otp.json()["id"])
    assert_twilio_error(await services_client.get(v2(tail=f"Verifications/{sid}")), 404,
                        20404)


@pytest.mark.parametrize(("fields", "param"), [
    ({"To": TO}, "Channel"),
    ({"Channel": "sms"}, "To"),
    ({"To": TO, "Channel": "sna"}, "Channel"),
    ({"To": TO, "Channel": "pigeon"}, "Channel"),
    ({"To": "4155550123", "Channel": "sms"}, "To"),
    ({"To": TO, "Channel": "sms", "Locale": "english"}, "Locale"),
    ({"To": TO, "Channel": "sms", "CustomCode": "123456"}, "CustomCode"),
    ({"To": TO, "Channel": "sms", "CustomFriendlyName": " x"}, "CustomFriendlyName"),
])
async def test_a_bad_parameter_is_60200_naming_it(client: Client, fields: dict[str, str],
                                                   param: str) -> None:
    response = await client.post(v2(), data=fields)
    assert_twilio_error(response, 400, 60200)
    assert f"`{param}`" in response.json()["message"]


async def test_a_body_naming_a_parameter_twice_is_60200(client: Client) -> None:
    response = await client.post(v2(), content=b"To=%2B14155550123&To=%2B14155550124"
                                 b"&Channel=sms",
                                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert_twilio_error(response, 400, 60200)


async def test_unknown_paths_methods_and_service_sids_answer_in_twilios_shape(
        client: Client) -> None:
    assert_twilio_error(await client.get("/v2/Services/nope"), 404, 20404)
    assert_twilio_error(await client.put(v2()), 405, 20004)
    assert_twilio_error(await client.post(v2("VA123"), data={"To": TO, "Channel": "sms"}),
                        404, 20404)
    assert_twilio_error(await client.get(v2(tail="Verifications/VE" + "0" * 32)), 404, 20404)


async def test_a_check_needs_a_code_shaped_like_one_and_a_target(client: Client) -> None:
    await create(client)
    assert_twilio_error(await check(client, "12ab56"), 400, 60200)
    response = await client.post(v2(tail="VerificationCheck"), data={"Code": "123456"})
    assert_twilio_error(response, 400, 60200)


async def test_an_update_takes_canceled_or_approved_of_a_pending_verification_only(
        client: Client) -> None:
    made = await create(client)
    path = v2(tail=f"Verifications/{made['sid']}")
    assert_twilio_error(await client.post(path, data={"Status": "pending"}), 400, 60200)
    assert (await client.post(path, data={"Status": "canceled"})).json()["status"] == \
        "canceled"
    assert_twilio_error(await client.post(path, data={"Status": "approved"}), 404, 20404)


async def test_a_browser_page_cannot_call_v2_even_from_an_allowed_origin(
        make_client: Callable[..., Any]) -> None:
    async with make_client(allowed_origins=["https://app.example"]) as client:
        response = await client.post(v2(), data={"To": TO, "Channel": "sms"},
                                     headers={"origin": "https://app.example"})
        assert_twilio_error(response, 403, 20403)
        hook = await client.post("/hooks/kratos/courier", json={},
                                 headers={"sec-fetch-site": "same-origin"})
        assert_problem(hook, 403, "cross-origin-refused")


async def test_dev_mode_takes_any_credentials_or_none(client: Client) -> None:
    anyone = base64.b64encode(b"ACanything:whatever").decode()
    response = await client.post(v2(), data={"To": TO, "Channel": "sms"},
                                 headers={"authorization": f"Basic {anyone}"})
    assert response.status_code == 201
    assert (await client.post(v2(), data={"To": TO, "Channel": "sms"})).status_code == 201


async def test_outside_dev_mode_a_key_is_taken_as_basic_or_bearer(
        make_client: Callable[..., Any]) -> None:
    async with make_client(dev=False, drivers=CONSOLE) as client:
        key, whole = await apikeys.create(runtime_of(client).backend.store, "app", START)
        secret = whole.split("_", 2)[2]

        async def as_(user: str, password: str) -> Any:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            return await client.post(v2(), data={"To": TO, "Channel": "sms"},
                                     headers={"authorization": f"Basic {token}"})

        assert (await as_(key.id, secret)).status_code == 201
        assert (await as_(key.id, whole)).status_code == 201
        bearer = await client.post(v2(), data={"To": TO, "Channel": "sms"},
                                   headers={"authorization": f"Bearer {whole}"})
        assert bearer.status_code == 201
        assert_twilio_error(await as_("0badc0de", whole), 401, 20003)
        assert_twilio_error(await as_(key.id, "A" * 43), 401, 20003)
        missing = await client.post(v2(), data={"To": TO, "Channel": "sms"})
        assert_twilio_error(missing, 401, 20003)
        assert missing.headers["www-authenticate"].startswith("Basic")
        assert_problem(await client.post("/v1/otp", json={"to": TO}, headers={
            "authorization": "Basic " + base64.b64encode(f"{key.id}:{secret}".encode())
            .decode()}), 401, "unauthorized")


async def test_amount_and_payee_are_echoed_by_the_answer_they_came_with_only(
        client: Client) -> None:
    made = await create(client, Amount="€39.99", Payee="Acme Ltd")
    assert (made["amount"], made["payee"]) == ("€39.99", "Acme Ltd")
    fetched = await client.get(v2(tail=f"Verifications/{made['sid']}"))
    assert (fetched.json()["amount"], fetched.json()["payee"]) == (None, None)
    too_long = await client.post(v2(), data={"To": TO, "Channel": "sms", "Amount": "9" * 129})
    assert_twilio_error(too_long, 400, 60200)
