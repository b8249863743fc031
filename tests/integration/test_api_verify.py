"""Verification by id and by recipient: verdicts, attempt countdown, expiry edges, replays."""

from __future__ import annotations

import pytest

from otpgate.clock import FrozenClock
from tests.integration.conftest import (
    PHONE,
    START,
    Client,
    assert_problem,
    sent_code,
    without_token,
)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**len(code):0{len(code)}d}"


async def test_the_right_code_is_approved_once_and_a_replay_is_answered_approved_but_invalid(
    client: Client,
) -> None:
    otp_id, code = await sent_code(client)
    first = await client.post(f"/v1/otp/{otp_id}/verify", json={"code": code})
    assert first.status_code == 200
    assert without_token(first.json()) == {"id": otp_id, "valid": True, "status": "approved"}
    again = await client.post(f"/v1/otp/{otp_id}/verify", json={"code": code})
    assert again.json() == {"id": otp_id, "valid": False, "status": "approved"}


async def test_wrong_codes_count_down_to_max_attempts_reached(client: Client) -> None:
    otp_id, code = await sent_code(client)
    for left in (4, 3, 2, 1):
        answer = await client.post(f"/v1/otp/{otp_id}/verify", json={"code": wrong(code)})
        assert answer.json() == {"id": otp_id, "valid": False, "status": "pending",
                                 "attempts_left": left}
    last = await client.post(f"/v1/otp/{otp_id}/verify", json={"code": wrong(code)})
    assert last.json() == {"id": otp_id, "valid": False, "status": "max_attempts_reached",
                           "attempts_left": 0}
    dead = await client.post(f"/v1/otp/{otp_id}/verify", json={"code": code})
    assert dead.json() == {"id": otp_id, "valid": False, "status": "max_attempts_reached"}


@pytest.mark.parametrize(("offset", "answer"), [
    (-1, {"valid": True, "status": "approved"}),
    (0, {"valid": False, "status": "expired"}),
    (1, {"valid": False, "status": "expired"}),
])
async def test_a_code_is_valid_until_just_before_expires_at(
    client: Client, clock: FrozenClock, offset: int, answer: dict[str, object]
) -> None:
    otp_id, code = await sent_code(client, ttl_seconds=60)
    clock.set(START + 60 + offset)
    response = await client.post(f"/v1/otp/{otp_id}/verify", json={"code": code})
    body = without_token(response.json()) if answer["valid"] else response.json()
    assert body == {"id": otp_id, **answer}


async def test_verifying_by_recipient_approves_the_pending_code(client: Client) -> None:
    otp_id, code = await sent_code(client, purpose="login")
    response = await client.post("/v1/verify",
                                 json={"to": PHONE, "purpose": "login", "code": code})
    assert response.status_code == 200
    assert without_token(response.json()) == {"id": otp_id, "valid": True, "status": "approved"}


async def test_verifying_by_national_number_and_country_finds_the_same_code(
    client: Client,
) -> None:
    otp_id, code = await sent_code(client)
    response = await client.post("/v1/verify",
                                 json={"to": "4155550123", "country": "US", "code": code})
    assert without_token(response.json()) == {"id": otp_id, "valid": True, "status": "approved"}


async def test_a_recipient_without_a_code_is_answered_like_a_wrong_code(client: Client) -> None:
    _, code = await sent_code(client)
    real = (await client.post("/v1/verify", json={"to": PHONE, "code": wrong(code)})).json()
    nobody = await client.post("/v1/verify", json={"to": "+14155550199", "code": "123456"})
    assert nobody.status_code == 200
    phantom = nobody.json()
    assert phantom == real == {"valid": False, "status": "pending", "attempts_left": 4}


async def test_an_unknown_id_is_404(client: Client) -> None:
    for otp_id in ("otp_AAAAAAAAAAAAAAAAAAAAAA", "nope"):
        response = await client.post(f"/v1/otp/{otp_id}/verify", json={"code": "123456"})
        assert_problem(response, 404, "not-found")


@pytest.mark.parametrize("code", ["١٢٣٤٥٦", "123 456", "12345a", "123", "12345678901", "",
                                  "12\u200b3456"])
async def test_a_malformed_code_is_422(client: Client, code: str) -> None:
    otp_id, _ = await sent_code(client)
    response = await client.post(f"/v1/otp/{otp_id}/verify", json={"code": code})
    assert_problem(response, 422, "invalid-request", field="code")
    by_recipient = await client.post("/v1/verify", json={"to": PHONE, "code": code})
    assert_problem(by_recipient, 422, "invalid-request", field="code")


async def test_a_code_given_as_a_number_is_422(client: Client) -> None:
    otp_id, _ = await sent_code(client)
    response = await client.post(f"/v1/otp/{otp_id}/verify", json={"code": 123456})
    assert_problem(response, 422, "invalid-request", field="code")


async def test_verifying_an_invalid_recipient_is_422(client: Client) -> None:
    response = await client.post("/v1/verify", json={"to": "+1415\u200b5550123",
                                                     "code": "123456"})
    assert_problem(response, 422, "invalid-recipient", field="to")
