"""Idempotency-Key on POST /v1/otp: replay within 24 h, refuse reuse with another body."""

from __future__ import annotations

import pytest

from otpgate import apikeys
from otpgate.clock import FrozenClock
from tests.integration.conftest import CONSOLE, PHONE, START, Client, assert_problem, runtime_of


async def test_the_same_key_and_body_replays_the_first_answer_byte_for_byte(
    client: Client, clock: FrozenClock
) -> None:
    headers = {"idempotency-key": "order-42-login"}
    first = await client.post("/v1/otp", content=b'{"to":"+14155550123","purpose":"login"}',
                              headers=headers)
    assert first.status_code == 202
    assert "idempotent-replayed" not in first.headers
    clock.advance(60)  # without the key this would resend (send_count 2)
    again = await client.post(
        "/v1/otp", content=b'{ "purpose": "login",  "to": "+14155550123" }', headers=headers)
    assert again.status_code == 202
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["send_count"] == 1


async def test_the_same_key_with_another_body_is_422(client: Client) -> None:
    headers = {"idempotency-key": "k1"}
    assert (await client.post("/v1/otp", json={"to": PHONE},
                              headers=headers)).status_code == 202
    other = await client.post("/v1/otp", json={"to": PHONE, "purpose": "signup"},
                              headers=headers)
    assert_problem(other, 422, "idempotency-key-reused")


async def test_a_kept_answer_is_forgotten_after_24_hours(
    client: Client, clock: FrozenClock
) -> None:
    headers = {"idempotency-key": "k2"}
    first = await client.post("/v1/otp", json={"to": PHONE}, headers=headers)
    clock.advance(24 * 3600)
    later = await client.post("/v1/otp", json={"to": PHONE}, headers=headers)
    assert later.status_code == 202
    assert "idempotent-replayed" not in later.headers
    assert later.json()["id"] != first.json()["id"]


async def test_a_refused_request_is_not_kept(client: Client) -> None:
    headers = {"idempotency-key": "k3"}
    bad = await client.post("/v1/otp", json={"to": "12345"}, headers=headers)
    assert bad.status_code == 422
    good = await client.post("/v1/otp", json={"to": PHONE}, headers=headers)
    assert good.status_code == 202


@pytest.mark.parametrize("key", ["", "k" * 256, "tab\there", "del\x7f"])
async def test_a_malformed_idempotency_key_is_422(client: Client, key: str) -> None:
    response = await client.post("/v1/otp", json={"to": PHONE},
                                 headers={"idempotency-key": key})
    assert_problem(response, 422, "invalid-request", field="Idempotency-Key")


async def test_keys_are_scoped_by_api_key(make_client: object) -> None:
    async with make_client(dev=False, drivers=CONSOLE) as keyed:  # type: ignore[operator]
        store = runtime_of(keyed).backend.store
        _, one = await apikeys.create(store, "one", START)
        _, two = await apikeys.create(store, "two", START)
        shared = "same-key"
        a = await keyed.post("/v1/otp", json={"to": PHONE},
                             headers={"authorization": f"Bearer {one}",
                                      "idempotency-key": shared})
        b = await keyed.post("/v1/otp", json={"to": "+14155550199"},
                             headers={"authorization": f"Bearer {two}",
                                      "idempotency-key": shared})
        assert (a.status_code, b.status_code) == (202, 202)
        assert a.json()["id"] != b.json()["id"]
