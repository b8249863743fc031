"""POST /v1/receipts/{driver}: delivery reports move a channel forward, once, and fail a
send over to the next driver of its chain. Played against the capture driver, whose
receipts need no signature (it exists only in dev mode)."""

from __future__ import annotations

import asyncio
from typing import Any

from otpgate.clock import FrozenClock
from otpgate.events import EventType
from tests.integration.conftest import (
    PHONE,
    Client,
    assert_problem,
    request_code,
    runtime_of,
    wait_for_messages,
)


async def channel_of(client: Client, otp_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/otp/{otp_id}")
    assert response.status_code == 200, response.text
    [channel] = response.json()["channels"]
    return dict(channel)


async def settled(client: Client, otp_id: str, status: str) -> dict[str, Any]:
    for _ in range(300):
        channel = await channel_of(client, otp_id)
        if channel["status"] == status:
            return channel
        await asyncio.sleep(0.01)
    raise AssertionError(f"the channel never became {status}: {channel}")


async def test_a_delivered_receipt_shows_in_the_status_and_publishes_delivered(
    client: Client,
) -> None:
    otp = await request_code(client)
    [message] = await wait_for_messages(client, PHONE)
    await settled(client, otp["id"], "sent")

    response = await client.post("/v1/receipts/capture",
                                 json={"id": message["id"], "status": "delivered"})
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "moved": 1}
    assert (await channel_of(client, otp["id"]))["status"] == "delivered"
    bus_log = runtime_of(client).backend.bus.log  # type: ignore[attr-defined]
    delivered = [e for e in bus_log if e.type == EventType.DELIVERED.value]
    assert [e.subject for e in delivered] == [otp["id"]]
    assert PHONE not in str(delivered[0].data)


async def test_the_same_receipt_twice_and_a_late_failure_change_nothing(client: Client) -> None:
    otp = await request_code(client)
    [message] = await wait_for_messages(client, PHONE)
    await settled(client, otp["id"], "sent")
    first = await client.post("/v1/receipts/capture",
                              json={"id": message["id"], "status": "delivered"})
    again = await client.post("/v1/receipts/capture",
                              json={"id": message["id"], "status": "delivered"})
    late = await client.post("/v1/receipts/capture",
                             json={"id": message["id"], "status": "failed"})
    assert [r.json()["moved"] for r in (first, again, late)] == [1, 0, 0]
    assert (await channel_of(client, otp["id"]))["status"] == "delivered"


async def test_a_receipt_for_an_unknown_message_is_taken_and_changes_nothing(
    client: Client,
) -> None:
    response = await client.post("/v1/receipts/capture",
                                 json={"id": "cap_000000000000000000000000",
                                       "status": "delivered"})
    assert response.status_code == 200
    assert response.json() == {"received": True, "moved": 0}


async def test_a_receipt_for_a_driver_that_takes_none_or_malformed_is_refused(
    client: Client,
) -> None:
    assert_problem(await client.post("/v1/receipts/twilio", json={}), 404, "not-found")
    assert_problem(await client.post("/v1/receipts/capture", content=b"{not json"),
                   422, "invalid-request")
    assert_problem(await client.post("/v1/receipts/capture",
                                     json={"id": "x", "status": "exploded"}),
                   422, "invalid-request")


async def test_a_failed_receipt_fails_the_send_over_to_the_next_driver(make_client: Any) -> None:
    drivers = {"sms": ("capture://?name=first", "capture://?name=second")}
    async with make_client(drivers=drivers) as client:
        otp = await request_code(client)
        [message] = await wait_for_messages(client, PHONE)
        await settled(client, otp["id"], "sent")

        response = await client.post("/v1/receipts/first", json={
            "id": message["id"], "status": "failed", "error_code": "30003"})
        assert response.json() == {"received": True, "moved": 1}
        channel = await settled(client, otp["id"], "sent")
        assert channel["driver"] == "second"
        # The second driver keeps its own copy of the same code.
        messages = await wait_for_messages(client, PHONE, 1)
        assert {m["body"] for m in messages} == {message["body"]}


async def test_a_failed_receipt_with_no_driver_left_fails_the_otp(client: Client) -> None:
    otp = await request_code(client)
    [message] = await wait_for_messages(client, PHONE)
    await settled(client, otp["id"], "sent")
    await client.post("/v1/receipts/capture", json={"id": message["id"], "status": "failed"})
    for _ in range(300):
        body = (await client.get(f"/v1/otp/{otp['id']}")).json()
        if body["status"] == "failed":
            break
        await asyncio.sleep(0.01)
    assert body["status"] == "failed"
    assert body["channels"][0]["status"] == "failed"


async def test_played_receipts_are_refused_outside_dev_mode_where_they_could_be_forged(
    make_client: Any,
) -> None:
    """A capture receipt carries no signature and its id can be derived from an OTP id: with
    captures allowed outside dev mode (OTPGATE_ALLOW_CAPTURE), nobody may play one."""
    async with make_client(dev=False, allow_capture=True) as client:
        response = await client.post("/v1/receipts/capture",
                                     json={"id": "cap_x", "status": "failed"})
        assert_problem(response, 404, "not-found")
        assert (await client.post("/v1/otp", json={"to": PHONE})).status_code == 401


async def test_captured_messages_outside_dev_mode_are_for_admin_keys_only(
    make_client: Any,
) -> None:
    """Captures are not kept per tenant: a tenant's key must not read another's codes."""
    from otpgate import apikeys
    from tests.integration.conftest import START

    async with make_client(dev=False, allow_capture=True) as client:
        store = runtime_of(client).backend.store
        _, shop = await apikeys.create(store, "shop", START, tenant="acme")
        _, ops = await apikeys.create(store, "ops", START, tenant="acme", admin=True)
        plain = await client.get("/v1/dev/messages", headers={"authorization": f"Bearer {shop}"})
        assert_problem(plain, 403, "forbidden")
        admin = await client.get("/v1/dev/messages", headers={"authorization": f"Bearer {ops}"})
        assert admin.status_code == 200


async def test_a_failed_receipt_on_a_fallback_step_fails_over_to_its_address(
    make_client: Any, clock: FrozenClock,
) -> None:
    drivers = {"sms": ("capture://?name=first",),
               "email": ("capture://?name=first", "capture://?name=second")}
    jane = "jane@example.com"
    async with make_client(drivers=drivers) as client:
        otp = await request_code(client, fallback=[{"channel": "email", "after": 30,
                                                    "to": jane}])
        await wait_for_messages(client, PHONE)
        clock.advance(30)
        [message] = await wait_for_messages(client, jane)

        async def step() -> dict[str, Any]:
            body = (await client.get(f"/v1/otp/{otp['id']}")).json()
            [found] = [c for c in body["channels"] if c.get("step") == 1]
            return dict(found)

        for _ in range(300):
            if (await step())["status"] == "sent":
                break
            await asyncio.sleep(0.01)
        response = await client.post("/v1/receipts/first", json={
            "id": message["id"], "status": "failed"})
        assert response.json() == {"received": True, "moved": 1}
        bus_log = runtime_of(client).backend.bus.log  # type: ignore[attr-defined]
        [first, handed] = [e for e in bus_log if e.type == EventType.DISPATCH.value
                           and e.data["channel"] == "email"]
        assert (first.driver, handed.driver) == ("first", "second")
        # The step's own address and seal travel on, not the request's.
        assert handed.data["to"] == first.data["to"] == "j•••@example.com"
        assert handed.data["sealed"] == first.data["sealed"]
        for _ in range(300):
            if (found := await step())["driver"] == "second" and found["status"] == "sent":
                break
            await asyncio.sleep(0.01)
        assert (found["driver"], found["status"], found["to"]) == ("second", "sent",
                                                                   "j•••@example.com")
