"""GET and DELETE /v1/otp/{id}: the status body, one entry per channel, and cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

from otpgate import apikeys
from otpgate.clock import isoformat
from tests.integration.conftest import (
    START,
    Client,
    assert_problem,
    request_code,
    runtime_of,
    sent_code,
)

STATUS_KEYS = {"id", "status", "to", "purpose", "channels", "send_count", "attempts_left",
               "expires_at", "created_at"}
CHANNEL_KEYS = {"channel", "driver", "status", "attempts", "updated_at"}


async def test_the_status_shows_the_otp_and_one_entry_per_channel(client: Client) -> None:
    otp = await request_code(client, purpose="login", reference="order-42")
    response = await client.get(f"/v1/otp/{otp['id']}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == STATUS_KEYS | {"reference"}
    assert body["id"] == otp["id"]
    assert (body["status"], body["to"], body["purpose"]) == ("pending", "+1415•••0123", "login")
    assert (body["send_count"], body["attempts_left"]) == (1, 5)
    assert body["created_at"] == isoformat(START)
    assert body["expires_at"] == isoformat(START + 300)
    assert body["reference"] == "order-42"
    [channel] = body["channels"]
    assert set(channel) == CHANNEL_KEYS
    assert (channel["channel"], channel["driver"]) == ("sms", "capture")
    assert channel["status"] in {"queued", "sent", "delivered"}


async def test_a_sent_message_shows_in_the_channel_status(client: Client) -> None:
    otp_id, _ = await sent_code(client)
    for _ in range(200):
        [channel] = (await client.get(f"/v1/otp/{otp_id}")).json()["channels"]
        if channel["status"] != "queued":
            break
        await asyncio.sleep(0.01)
    assert channel["status"] in {"sent", "delivered"}
    assert channel["attempts"] >= 1


async def test_the_status_omits_reference_when_none_was_given(client: Client) -> None:
    otp = await request_code(client)
    body = (await client.get(f"/v1/otp/{otp['id']}")).json()
    assert set(body) == STATUS_KEYS


async def test_delete_cancels_the_code_which_then_no_longer_verifies(client: Client) -> None:
    otp_id, code = await sent_code(client)
    response = await client.delete(f"/v1/otp/{otp_id}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == STATUS_KEYS
    assert body["status"] == "canceled"
    verdict = await client.post(f"/v1/otp/{otp_id}/verify", json={"code": code})
    assert verdict.json() == {"id": otp_id, "valid": False, "status": "canceled"}
    assert (await client.get(f"/v1/otp/{otp_id}")).json()["status"] == "canceled"


async def test_deleting_a_dead_code_answers_its_status_unchanged(client: Client) -> None:
    otp_id, code = await sent_code(client)
    await client.post(f"/v1/otp/{otp_id}/verify", json={"code": code})
    response = await client.delete(f"/v1/otp/{otp_id}")
    assert response.status_code == 200
    assert response.json()["status"] == "approved"


async def test_an_unknown_id_is_404_for_get_and_delete(client: Client) -> None:
    for otp_id in ("otp_AAAAAAAAAAAAAAAAAAAAAA", "otp_short", "<script>"):
        assert_problem(await client.get(f"/v1/otp/{otp_id}"), 404, "not-found")
        assert_problem(await client.delete(f"/v1/otp/{otp_id}"), 404, "not-found")


async def test_a_request_with_a_fallback_step_shows_an_entry_for_it(client: Client) -> None:
    accepted = await request_code(client, fallback=[{"channel": "voice", "after": 30}])
    assert accepted["channels"] == ["sms"]
    status = (await client.get(f"/v1/otp/{accepted['id']}")).json()
    [sms, voice] = status["channels"]
    assert sms["channel"] == "sms" and "step" not in sms
    assert voice == {"channel": "voice", "driver": "capture", "status": "queued",
                     "attempts": 0, "updated_at": voice["updated_at"], "step": 1,
                     "to": "+1415•••0123", "due_at": voice["due_at"]}


async def test_a_fallback_step_the_service_cannot_serve_is_a_422_naming_it(
    make_client: Any,
) -> None:
    async with make_client(dev=False, drivers={"sms": ("console://",)}) as client:
        _, key = await apikeys.create(runtime_of(client).backend.store, "shop", START)
        answer = await client.post("/v1/otp", json={
            "to": "+14155550123", "fallback": [{"channel": "voice", "after": 30}]},
            headers={"authorization": f"Bearer {key}"})
        assert_problem(answer, 422, "invalid-request", "fallback.channel")
