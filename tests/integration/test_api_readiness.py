"""``GET /readyz``: what waits per subscription, and not-ready once a send is late."""

from __future__ import annotations

from typing import Any

from otpgate.clock import FrozenClock
from tests.integration.conftest import (
    PHONE,
    assert_problem,
    request_code,
    runtime_of,
    wait_for_messages,
)

SECOND = "+14155550124"


def waiting(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["subscription"]: s for s in body["subscriptions"]}


async def test_readyz_lists_each_subscription_with_its_depth_and_its_oldest_due_send(
    make_client: Any, clock: FrozenClock
) -> None:
    async with make_client(api_only=True) as client:  # nothing sends: the codes wait
        await request_code(client, PHONE)
        clock.advance(4)
        await request_code(client, SECOND)
        clock.advance(6)
        response = await client.get("/readyz")
    assert response.status_code == 200
    found = waiting(response.json())
    assert found["dispatch.capture"] == {"subscription": "dispatch.capture", "depth": 2,
                                         "due": 2, "oldest_due_age": 10.0}
    assert found["lifecycle.delivery_failed"]["depth"] == 0


async def test_readyz_is_503_with_retry_after_once_a_due_send_has_waited_past_the_limit(
    make_client: Any, clock: FrozenClock
) -> None:
    async with make_client(api_only=True) as client:
        await request_code(client)
        clock.advance(30)
        assert (await client.get("/readyz")).status_code == 200, "30 s is not past 30 s"
        clock.advance(1)
        response = await client.get("/readyz")
    assert_problem(response, 503, "sends-late")
    assert response.headers["retry-after"] == "5"
    body = response.json()
    assert body["retry_after"] == 5
    assert "dispatch.capture" in body["detail"]
    assert waiting(body)["dispatch.capture"]["oldest_due_age"] == 31.0


async def test_the_late_send_limit_is_configurable_and_0_turns_it_off(
    make_client: Any, clock: FrozenClock
) -> None:
    async with make_client(api_only=True, ready_max_due_age=120) as client:
        await request_code(client)
        clock.advance(100)
        assert (await client.get("/readyz")).status_code == 200
        clock.advance(21)
        assert (await client.get("/readyz")).status_code == 503
    async with make_client(api_only=True, ready_max_due_age=0) as client:
        await request_code(client, SECOND)
        clock.advance(3600)
        assert (await client.get("/readyz")).status_code == 200


async def test_sends_that_go_out_keep_the_process_ready(
    make_client: Any, clock: FrozenClock
) -> None:
    async with make_client() as client:  # the dispatcher runs: the send leaves at once
        await request_code(client)
        await wait_for_messages(client, PHONE)
        clock.advance(60)
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert waiting(response.json())["dispatch.capture"]["depth"] == 0


async def test_readyz_shows_each_drivers_breaker_as_its_dispatchers_see_it(
    make_client: Any, clock: FrozenClock
) -> None:
    async with make_client() as client:
        response = await client.get("/readyz")
        assert response.json()["breakers"] == [{"driver": "capture", "state": "closed"}]
        breaker = runtime_of(client).breakers.of("capture")
        breaker.record(False, broken=True)
        clock.advance(5)
        shown = (await client.get("/readyz")).json()["breakers"]
        assert shown == [{"driver": "capture", "state": "open",
                          "open_until": clock.now() + 10}]
        metrics = (await client.get("/metrics")).text
        assert 'otpgate_breaker_state{driver="capture"} 2.0' in metrics
        clock.advance(10)
        shown = (await client.get("/readyz")).json()["breakers"]
        assert shown == [{"driver": "capture", "state": "half_open"}]
