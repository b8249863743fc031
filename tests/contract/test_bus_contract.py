"""The ``Bus`` contract, run against every backend, events published through the store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from otpgate.backends import Backend
from otpgate.bus.base import Limits, Subscription, delivery_number
from otpgate.clock import FrozenClock
from otpgate.errors import BusError, Deferred, TemporaryDeliveryError
from otpgate.events import CloudEvent, EventType, Filter
from tests.contract.conftest import (
    BUS_BACKEND_NAMES,
    Recorder,
    emitting,
    event,
    open_named,
    subscribe,
)
from tests.leaky import CODE, NUMBER, leaky_error

OTP = "otp_" + "b" * 22


@pytest.fixture(params=BUS_BACKEND_NAMES)
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[Backend]:
    """The backends whose bus this contract fits (see ``BackendCase.bus_contract``)."""
    opened = await open_named(request.param, tmp_path / "data" / "otpgate.db", clock)
    try:
        yield opened
    finally:
        await opened.close()


async def test_events_reach_the_subscriptions_whose_filter_matches_only(
    backend: Backend, clock: FrozenClock
) -> None:
    twilio, vonage, approved = Recorder(), Recorder(), Recorder()
    dispatch = EventType.DISPATCH.value
    bus = backend.bus
    await subscribe(bus, "twilio", Filter.of(type=dispatch, driver="twilio"), twilio)
    await subscribe(bus, "vonage", Filter.of(type=dispatch, driver="vonage"), vonage)
    await subscribe(bus, "approved", Filter.of(type=EventType.APPROVED.value), approved)
    now = clock.now()
    to_twilio = event(EventType.DISPATCH, OTP, now, driver="twilio", channel="sms")
    to_vonage = event(EventType.DISPATCH, OTP, now, driver="vonage", channel="sms")
    ok = event(EventType.APPROVED, OTP, now)
    ignored = event(EventType.REQUESTED, OTP, now)

    await backend.store.transact("r", lambda s: emitting([ignored, to_twilio, to_vonage, ok]))

    assert await bus.pump() == 3
    assert twilio.seen == [to_twilio]
    assert vonage.ids == [to_vonage.id]
    assert approved.ids == [ok.id]
    assert await bus.pump() == 0


async def test_events_published_outside_a_transaction_are_delivered_too(
    backend: Backend, clock: FrozenClock
) -> None:
    seen = Recorder()
    await subscribe(backend.bus, "all", Filter(), seen)
    published = [event(EventType.EXPIRED, OTP, clock.now()) for _ in range(3)]

    await backend.bus.publish(published)

    assert await backend.bus.pump() == 3
    assert seen.ids == [e.id for e in published]


async def test_a_subscription_only_receives_events_published_after_it_exists(
    backend: Backend, clock: FrozenClock
) -> None:
    early = event(EventType.SENT, OTP, clock.now())
    await backend.store.transact("r", lambda s: emitting([early]))
    seen = Recorder()
    await subscribe(backend.bus, "late", Filter(), seen)
    later = event(EventType.SENT, OTP, clock.now())
    await backend.store.transact("r", lambda s: emitting([later]))

    await backend.bus.pump()

    assert seen.ids == [later.id]


async def test_a_failing_handler_is_retried_after_backoff_then_dead_lettered(
    backend: Backend, clock: FrozenClock
) -> None:
    calls: list[str] = []

    async def flaky(evt: CloudEvent) -> None:
        calls.append(evt.id)
        raise TemporaryDeliveryError("provider down", retry_after=10)

    bus = backend.bus
    await subscribe(bus, "flaky", Filter(), flaky, max_deliveries=3)
    failing = event(EventType.DISPATCH, OTP, clock.now(), driver="twilio")
    await backend.store.transact("r", lambda s: emitting([failing]))

    assert await bus.pump() == 1
    clock.advance(9.9)
    assert await bus.pump() == 0, "redelivered before the backoff ran out"
    clock.advance(0.1)
    assert await bus.pump() == 1
    assert await bus.dead_letters() == []
    clock.advance(10)
    assert await bus.pump() == 1

    dead = await bus.dead_letters()
    assert len(calls) == 3
    assert [(d.subscription, d.event, d.deliveries) for d in dead] == [("flaky", failing, 3)]
    assert dead[0].error == "TemporaryDeliveryError: provider down"
    assert dead[0].failed_at == clock.now()
    assert await bus.dead_letters("other") == []
    clock.advance(3600)
    assert await bus.pump() == 0


async def test_a_deferred_event_comes_back_at_its_time_uncounted_and_quietly(
    backend: Backend, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    due_at = clock.now() + 50
    deliveries: list[tuple[float, int]] = []

    async def waits(evt: CloudEvent) -> None:
        deliveries.append((clock.now(), delivery_number.get()))
        if clock.now() < due_at:
            raise Deferred("not due yet", due_at - clock.now())

    bus = backend.bus
    await subscribe(bus, "waits", Filter(), waits, max_deliveries=2, backoff_cap=10)
    step = event(EventType.DISPATCH, OTP, clock.now(), driver="twilio")
    await backend.store.transact("r", lambda s: emitting([step]))
    caplog.set_level(logging.DEBUG, logger="otpgate")

    assert await bus.pump() == 1
    for _ in range(4):  # asked again every backoff_cap seconds, never before
        clock.advance(9.9)
        assert await bus.pump() == 0, "redelivered before its wait ran out"
        clock.advance(0.1)
        assert await bus.pump() == 1
        assert await bus.dead_letters() == []
    clock.advance(9.9)
    assert await bus.pump() == 0
    clock.advance(0.1)
    assert await bus.pump() == 1  # at its time: handled, acknowledged

    start = due_at - 50
    assert deliveries == [(start + t, 1) for t in (0, 10, 20, 30, 40, 50)]
    clock.advance(3600)
    assert await bus.pump() == 0
    assert await bus.dead_letters() == []
    [backlog] = await bus.backlog()
    assert backlog.depth == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("deferred" in r.getMessage() for r in caplog.records)


async def test_an_acknowledged_event_is_not_delivered_again(
    backend: Backend, clock: FrozenClock
) -> None:
    seen = Recorder()
    await subscribe(backend.bus, "once", Filter(), seen, lease=5)
    await backend.store.transact("r", lambda s: emitting([event(EventType.SENT, OTP, 0)]))

    assert await backend.bus.pump() == 1
    clock.advance(60)
    assert await backend.bus.pump() == 0
    assert len(seen.seen) == 1


async def test_an_event_whose_handler_never_finished_is_delivered_again_after_its_lease(
    backend: Backend, clock: FrozenClock
) -> None:
    started, never = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    async def handler(evt: CloudEvent) -> None:
        calls.append(evt.id)
        if len(calls) == 1:  # the first consumer hangs, as if its process froze
            started.set()
            await never.wait()

    bus = backend.bus
    await subscribe(bus, "leased", Filter(), handler, lease=30)
    stuck = event(EventType.DISPATCH, OTP, clock.now())
    await backend.store.transact("r", lambda s: emitting([stuck]))
    hung = asyncio.create_task(bus.pump())
    await asyncio.wait_for(started.wait(), 5)

    clock.advance(29)
    assert await bus.pump() == 0, "the live lease was not respected"
    clock.advance(1)
    assert await bus.pump() == 1

    assert calls == [stuck.id, stuck.id]
    hung.cancel()
    await asyncio.gather(hung, return_exceptions=True)
    clock.advance(60)
    assert await bus.pump() == 0


async def test_a_started_bus_delivers_in_the_background_until_stopped(
    backend: Backend, clock: FrozenClock
) -> None:
    arrived: asyncio.Queue[CloudEvent] = asyncio.Queue()

    async def handler(evt: CloudEvent) -> None:
        await arrived.put(evt)

    bus = backend.bus
    await subscribe(bus, "bg", Filter(), handler)
    await bus.start()
    await bus.start()  # idempotent
    first = event(EventType.SENT, OTP, clock.now())
    await backend.store.transact("r", lambda s: emitting([first]))
    assert (await asyncio.wait_for(arrived.get(), 5)).id == first.id

    await bus.stop()
    await bus.stop()  # idempotent
    second = event(EventType.SENT, OTP, clock.now())
    await backend.store.transact("r", lambda s: emitting([second]))
    await asyncio.sleep(0.05)  # several poll intervals: a running consumer would have taken it
    assert arrived.empty()
    assert await bus.pump() == 1
    assert (await arrived.get()).id == second.id


@pytest.mark.parametrize("backend_name", BUS_BACKEND_NAMES)
async def test_a_saturated_consumer_moves_on_as_slots_free_without_waiting_for_a_poll(
    tmp_path: Path, clock: FrozenClock, backend_name: str
) -> None:
    # A poll interval far longer than the test: only wake-ups can make progress.
    opened = await open_named(backend_name, tmp_path / "slow.db", clock, poll_interval=60)
    seen: list[CloudEvent] = []

    async def handler(evt: CloudEvent) -> None:
        await asyncio.sleep(0)
        seen.append(evt)

    try:
        await subscribe(opened.bus, "narrow", Filter(), handler, concurrency=2)
        await opened.bus.start()
        batch = [event(EventType.SENT, OTP, clock.now()) for _ in range(40)]
        await opened.store.transact("r", lambda s: emitting(batch))
        async with asyncio.timeout(5):
            while len(seen) < len(batch):
                await asyncio.sleep(0.005)
    finally:
        await opened.close()
    assert sorted(e.id for e in seen) == sorted(e.id for e in batch)


async def test_an_event_whose_last_delivery_never_answers_is_dead_lettered_not_redelivered(
    backend: Backend, clock: FrozenClock
) -> None:
    hung: list[CloudEvent] = []

    async def hang(evt: CloudEvent) -> None:
        hung.append(evt)
        await asyncio.Event().wait()  # never answers

    bus = backend.bus
    await subscribe(bus, "hangs", Filter(), hang, max_deliveries=2, lease=10)
    first = event(EventType.SENT, OTP, clock.now())
    await backend.store.transact("r", lambda s: emitting([first]))
    for delivery in (1, 2):  # two deliveries, each left hanging until its lease runs out
        pumping = asyncio.ensure_future(bus.pump())
        async with asyncio.timeout(10):  # until the handler has it (a loaded server is slow)
            while len(hung) < delivery:
                await asyncio.sleep(0.005)
        pumping.cancel()
        clock.advance(11)
    assert len(hung) == 2
    assert await bus.pump() == 0
    assert len(hung) == 2
    [dead] = await bus.dead_letters("hangs")
    assert dead.event.id == first.id
    assert dead.deliveries == 2
    assert "lease" in dead.error


async def test_a_subscription_must_be_declared_before_it_is_consumed(backend: Backend) -> None:
    async def handler(evt: CloudEvent) -> None:
        return None

    with pytest.raises(BusError, match="declared"):
        backend.bus.consume("nowhere", handler, Limits())


async def test_a_declared_subscription_keeps_events_for_a_consumer_that_comes_later(
    backend: Backend, clock: FrozenClock
) -> None:
    await backend.bus.declare(Subscription("later", Filter.of(type=EventType.SENT.value)))
    kept = event(EventType.SENT, OTP, clock.now())
    await backend.store.transact("r", lambda s: emitting([kept]))
    seen = Recorder()
    backend.bus.consume("later", seen, Limits())
    assert await backend.bus.pump() == 1
    assert seen.ids == [kept.id]


async def test_the_backlog_counts_what_waits_and_how_long_the_oldest_has_been_due(
    backend: Backend, clock: FrozenClock
) -> None:
    await backend.bus.declare(Subscription("queue", Filter.of(type=EventType.SENT.value)))
    await backend.bus.declare(Subscription("idle", Filter.of(type=EventType.APPROVED.value)))
    await backend.store.transact("r", lambda s: emitting([event(EventType.SENT, OTP,
                                                                clock.now())]))
    clock.advance(3)
    await backend.store.transact("r", lambda s: emitting([event(EventType.SENT, OTP,
                                                                clock.now())]))
    clock.advance(2)
    found = {b.subscription: b for b in await backend.bus.backlog()}
    assert (found["queue"].depth, found["queue"].due) == (2, 2)
    assert found["queue"].oldest_due_age == pytest.approx(5)
    assert (found["idle"].depth, found["idle"].due, found["idle"].oldest_due_age) == (0, 0, 0)


async def test_a_dead_letter_keeps_an_error_with_the_code_and_number_it_quoted_masked(
    backend: Backend, clock: FrozenClock
) -> None:
    async def leaky(evt: CloudEvent) -> None:
        raise leaky_error(NUMBER, CODE)

    await subscribe(backend.bus, "leaky", Filter(), leaky, max_deliveries=1)
    await backend.store.transact("r", lambda s: emitting(
        [event(EventType.DISPATCH, OTP, clock.now(), driver="leaky")]))
    assert await backend.bus.pump() == 1
    [dead] = await backend.bus.dead_letters()
    assert dead.error.startswith("HTTPStatusError: Server error '502 Bad Gateway'")
    assert CODE not in dead.error
    assert NUMBER[1:] not in dead.error and "%2B1415" not in dead.error
