"""What operations need of every bus: dead letters are counted, and a dead letter can be
put back on its subscription (``Bus.replay``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from otpgate.backends import Backend
from otpgate.clock import FrozenClock
from otpgate.errors import TemporaryDeliveryError
from otpgate.events import CloudEvent, EventType, Filter
from tests.contract.conftest import (
    BUS_BACKEND_NAMES,
    Recorder,
    emitting,
    event,
    open_named,
    subscribe,
)

OTP = "otp_" + "r" * 22


@pytest.fixture(params=BUS_BACKEND_NAMES)
async def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock
                  ) -> AsyncIterator[Backend]:
    """The buses the clock-timed contract fits (SNS/SQS: ``tests/aws``)."""
    opened = await open_named(request.param, tmp_path / "data" / "otpgate.db", clock)
    try:
        yield opened
    finally:
        await opened.close()


def dead_count(subscription: str) -> float:
    return REGISTRY.get_sample_value("otpgate_dead_letters_total",
                                     {"subscription": subscription}) or 0.0


async def test_a_dead_letter_is_counted_and_replayed_onto_its_subscription(
    backend: Backend, clock: FrozenClock
) -> None:
    delivered = Recorder()
    failing = True

    async def handler(evt: CloudEvent) -> None:
        if failing:
            raise TemporaryDeliveryError("receiver down")
        await delivered(evt)

    bus = backend.bus
    name = f"replayed-{id(backend)}"
    await subscribe(bus, name, Filter(), handler, max_deliveries=2)
    first, second = (event(EventType.APPROVED, OTP, clock.now()),
                     event(EventType.EXPIRED, OTP, clock.now()))
    await backend.store.transact("r", lambda s: emitting([first, second]))
    before = dead_count(name)
    for _ in range(3):
        await bus.pump()
        clock.advance(600)
    assert sorted(d.event.id for d in await bus.dead_letters(name)) == sorted(
        [first.id, second.id])
    assert dead_count(name) - before == 2

    failing = False
    assert await bus.replay(name, first.id)
    assert not await bus.replay(name, first.id), "a dead letter is replayed once"
    assert not await bus.replay("elsewhere", second.id)
    assert [d.event.id for d in await bus.dead_letters(name)] == [second.id]
    assert await bus.pump() == 1
    assert delivered.ids == [first.id]
    assert (await bus.pump()) == 0
