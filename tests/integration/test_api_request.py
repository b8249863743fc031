"""POST /v1/otp: the 202 answer, coalescing, resends, send limits and input validation."""

from __future__ import annotations

import pytest

from otpgate.clock import FrozenClock, isoformat
from tests.integration.conftest import (
    PHONE,
    START,
    Client,
    assert_problem,
    code_in,
    request_code,
    sent_code,
    wait_for_messages,
    without_token,
)


async def test_a_request_is_accepted_with_exactly_the_contract_body(client: Client) -> None:
    response = await client.post("/v1/otp", json={
        "to": PHONE, "channel": "sms", "purpose": "login", "locale": "en",
        "code_length": 6, "ttl_seconds": 300, "reference": "order-42"})
    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"id", "status", "to", "channels", "expires_at", "resend_after",
                         "send_count", "attempts_left"}
    assert body["id"].startswith("otp_")
    assert body["status"] == "pending"
    assert body["to"] == "+1415•••0123"
    assert body["channels"] == ["sms"]
    assert body["expires_at"] == isoformat(START + 300)
    assert body["expires_at"].endswith("Z")
    assert body["resend_after"] == isoformat(START + 30)
    assert (body["send_count"], body["attempts_left"]) == (1, 5)


async def test_a_body_sent_as_form_data_by_curl_is_still_read_as_json(client: Client) -> None:
    response = await client.post(
        "/v1/otp", content=b'{"to":"+14155550123"}',
        headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 202, response.text


async def test_a_second_request_before_resend_after_is_coalesced(client: Client) -> None:
    first = await request_code(client, purpose="login")
    second = await request_code(client, purpose="login")
    assert second["id"] == first["id"]
    assert second["send_count"] == first["send_count"] == 1
    assert second["expires_at"] == first["expires_at"]


async def test_a_request_after_resend_after_sends_a_fresh_code_under_the_same_id(
    client: Client, clock: FrozenClock
) -> None:
    otp_id, old_code = await sent_code(client)
    clock.advance(30)
    resent = await request_code(client)
    assert resent["id"] == otp_id
    assert resent["send_count"] == 2
    messages = await wait_for_messages(client, PHONE, count=2)
    new_code = code_in(messages[0]["body"])
    if new_code != old_code:  # a 1-in-a-million draw could repeat the old code
        old = await client.post(f"/v1/otp/{otp_id}/verify", json={"code": old_code})
        assert old.json()["valid"] is False
    new = await client.post(f"/v1/otp/{otp_id}/verify", json={"code": new_code})
    assert without_token(new.json()) == {"id": otp_id, "valid": True, "status": "approved"}


async def test_past_the_send_limit_a_request_is_429_with_retry_after(
    client: Client, clock: FrozenClock
) -> None:
    for _ in range(5):
        await request_code(client)
        clock.advance(30)
    response = await client.post("/v1/otp", json={"to": PHONE})
    assert_problem(response, 429, "rate-limited")
    retry_after = int(response.headers["retry-after"])
    assert retry_after == response.json()["retry_after"] == 600 - 150


async def test_an_email_recipient_gets_the_email_channel_by_default(client: Client) -> None:
    body = await request_code(client, "jane@example.com")
    assert body["channels"] == ["email"]
    assert body["to"] == "j•••@example.com"


async def test_a_national_number_is_accepted_with_a_country_hint(client: Client) -> None:
    body = await request_code(client, "(415) 555-0123", country="US")
    assert body["to"] == "+1415•••0123"


@pytest.mark.parametrize("to", [
    "12345",
    "+1 415 555 0123x",
    "+١٤١٥٥٥٥٠١٢٣",
    "+1415\u200b5550123",
    "4155550123",
    "+1415555\x000123",
    "",
    "not an address@",
    "x" * 300,
])
async def test_a_malformed_recipient_is_422_naming_to(client: Client, to: str) -> None:
    response = await client.post("/v1/otp", json={"to": to})
    assert_problem(response, 422, "invalid-recipient", field="to")


@pytest.mark.parametrize(("fields", "field"), [
    ({"to": 5}, "to"),
    ({"to": PHONE, "code_length": "6"}, "code_length"),
    ({"to": PHONE, "code_length": True}, "code_length"),
    ({"to": PHONE, "ttl_seconds": 1.5}, "ttl_seconds"),
    ({"to": PHONE, "channels": "sms"}, "channels"),
    ({"to": {"nested": {"deeper": [1, 2]}}}, "to"),
    ({"to": PHONE, "colour": "blue"}, "colour"),
    ({"purpose": "login"}, "to"),
])
async def test_a_field_of_the_wrong_type_or_unknown_is_422_naming_it(
    client: Client, fields: dict[str, object], field: str
) -> None:
    response = await client.post("/v1/otp", json=fields)
    assert_problem(response, 422, "invalid-request", field=field)


@pytest.mark.parametrize(("fields", "field"), [
    ({"code_length": 3}, "code_length"),
    ({"code_length": 10**30}, "code_length"),
    ({"ttl_seconds": 5}, "ttl_seconds"),
    ({"purpose": "Login!"}, "purpose"),
    ({"locale": "english"}, "locale"),
    ({"channel": "email"}, "channel"),
    ({"channel": "sms", "channels": ["sms"]}, "channels"),
    ({"channels": []}, "channels"),
    ({"reference": "r" * 129}, "reference"),
])
async def test_an_invalid_value_is_422_naming_the_field(
    client: Client, fields: dict[str, object], field: str
) -> None:
    response = await client.post("/v1/otp", json={"to": PHONE, **fields})
    assert_problem(response, 422, "invalid-request", field=field)
