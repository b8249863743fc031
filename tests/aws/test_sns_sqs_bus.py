"""The SNS/SQS bus, on moto in server mode.

The shared bus contract times retries and leases by the injected clock; SQS times them by
its own, so this suite checks the same promises the way SQS keeps them: filters by
message attributes, retries through visibility, dead letters through the redrive policy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from otpgate.backends import Backend
from otpgate.bus.base import Limits, Subscription, delivery_number
from otpgate.bus.sns_sqs import REPUBLISH_AFTER, SnsSqsBus
from otpgate.clock import FrozenClock
from otpgate.core.lifecycle import Change
from otpgate.dispatch import subscription_for
from otpgate.errors import BusError, Deferred, TemporaryDeliveryError
from otpgate.events import CloudEvent, EventType, Filter
from tests.aws.backend import open_provisioned
from tests.contract.conftest import Recorder, emitting, event, subscribe

OTP = "otp_" + "c" * 22


@pytest.fixture
async def backend(clock: FrozenClock) -> AsyncIterator[Backend]:
    opened = await open_provisioned(clock)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


def bus_of(backend: Backend) -> SnsSqsBus:
    assert isinstance(backend.bus, SnsSqsBus)
    return backend.bus


async def test_events_reach_only_the_queues_whose_filter_policy_matches(
    backend: Backend, clock: FrozenClock,
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

    await backend.store.transact("r", lambda s: emitting(
        [event(EventType.REQUESTED, OTP, now), to_twilio, to_vonage, ok]))

    assert await bus.pump() == 3
    assert (twilio.seen, vonage.ids, approved.ids) == ([to_twilio], [to_vonage.id], [ok.id])
    assert await bus.pump() == 0


async def test_events_published_outside_a_transaction_are_delivered_too(
    backend: Backend, clock: FrozenClock,
) -> None:
    seen = Recorder()
    await subscribe(backend.bus, "all", Filter(), seen)
    published = [event(EventType.EXPIRED, OTP, clock.now()) for _ in range(3)]

    await backend.bus.publish(published)

    assert await backend.bus.pump() == 3
    assert sorted(seen.ids) == sorted(e.id for e in published)


async def test_a_failing_handler_is_retried_then_dead_lettered_without_its_seal(
    backend: Backend, clock: FrozenClock,
) -> None:
    calls: list[str] = []

    async def down(evt: CloudEvent) -> None:
        calls.append(evt.id)
        raise TemporaryDeliveryError("provider down", retry_after=0)

    sub = subscription_for("twilio")
    await backend.bus.declare(sub)
    backend.bus.consume(sub.name, down, Limits(max_deliveries=3))
    sealed = msgspec.structs.replace(
        event(EventType.DISPATCH, OTP, clock.now(), driver="twilio", channel="sms"),
        data={"otp_id": OTP, "sealed": "c2VhbGVkIGNvZGU"})
    await backend.bus.publish([sealed])

    for _ in range(3):
        assert await backend.bus.pump() == 1
    assert await backend.bus.pump() == 0  # moved to the dead-letter queue by SQS

    assert calls == [sealed.id] * 3
    [dead] = await backend.bus.dead_letters()
    assert (dead.subscription, dead.event.id, dead.deliveries) == (sub.name, sealed.id, 3)
    assert "sealed" not in dead.event.data
    assert await backend.bus.dead_letters("other") == []


class Sent:
    """An SQS client that notes the messages sent through it (then sends them)."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self.sent: list[dict[str, Any]] = []

    async def send_message(self, **call: Any) -> Any:
        self.sent.append(call)
        return await self._sqs.send_message(**call)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)


async def test_a_deferred_event_is_sent_again_delayed_and_spends_no_receive(
    backend: Backend, clock: FrozenClock, caplog: pytest.LogCaptureFixture,
) -> None:
    bus = bus_of(backend)
    sent = Sent(bus._sqs)
    bus._sqs = sent
    waits = [0.0] * 5 + [0.4]  # more deferrals than the queue's 3 receives
    receives: list[int] = []

    async def waiting(evt: CloudEvent) -> None:
        receives.append(delivery_number.get())
        if waits:
            raise Deferred("not due yet", waits.pop(0))

    await subscribe(bus, "waits", Filter(), waiting)
    step = event(EventType.DISPATCH, OTP, clock.now(), driver="twilio", channel="sms")
    await bus.publish([step])
    caplog.set_level(logging.DEBUG, logger="otpgate")

    for _ in range(6):
        assert await bus.pump() == 1
    assert await bus.pump() == 0, "delivered before its delay"
    async with asyncio.timeout(10):  # SQS times DelaySeconds by its own clock
        while not await bus.pump():
            await asyncio.sleep(0.1)

    assert receives == [1] * 7
    assert [call["DelaySeconds"] for call in sent.sent] == [0] * 5 + [1]
    url = await bus.queue_url("waits")
    assert {call["QueueUrl"] for call in sent.sent} == {url}
    assert await bus.dead_letters() == []
    [backlog] = await bus.backlog()
    assert backlog.depth == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_deferral_longer_than_sqs_delays_is_sent_for_15_minutes(
    backend: Backend, clock: FrozenClock,
) -> None:
    bus = bus_of(backend)
    sent = Sent(bus._sqs)
    bus._sqs = sent

    async def waiting(evt: CloudEvent) -> None:
        raise Deferred("not due yet", 3600)

    await subscribe(bus, "later", Filter(), waiting)
    await bus.publish([event(EventType.DISPATCH, OTP, clock.now(), driver="twilio")])

    assert await bus.pump() == 1
    assert await bus.pump() == 0
    assert [call["DelaySeconds"] for call in sent.sent] == [900]
    [backlog] = await bus.backlog()
    assert (backlog.depth, backlog.due) == (1, 0)


async def test_an_acknowledged_event_is_deleted_from_its_queue(
    backend: Backend, clock: FrozenClock,
) -> None:
    seen = Recorder()
    await subscribe(backend.bus, "once", Filter(), seen, lease=1)
    await backend.store.transact("r", lambda s: emitting([event(EventType.SENT, OTP, 0)]))

    assert await backend.bus.pump() == 1
    [backlog] = await backend.bus.backlog()
    assert (backlog.depth, backlog.due) == (0, 0)


async def test_the_backlog_counts_what_waits_in_each_queue(
    backend: Backend, clock: FrozenClock,
) -> None:
    await backend.bus.declare(Subscription("queue", Filter.of(type=EventType.SENT.value)))
    await backend.bus.declare(Subscription("idle", Filter.of(type=EventType.APPROVED.value)))
    for _ in range(2):
        await backend.store.transact("r", lambda s: emitting([event(EventType.SENT, OTP,
                                                                    clock.now())]))

    found = {b.subscription: b for b in await backend.bus.backlog()}

    assert (found["queue"].depth, found["queue"].due) == (2, 2)
    assert (found["idle"].depth, found["idle"].due) == (0, 0)


async def test_a_started_bus_delivers_in_the_background_until_stopped(
    backend: Backend, clock: FrozenClock,
) -> None:
    arrived: asyncio.Queue[CloudEvent] = asyncio.Queue()

    async def handler(evt: CloudEvent) -> None:
        await arrived.put(evt)

    await subscribe(backend.bus, "bg", Filter(), handler)
    await backend.bus.start()
    first = event(EventType.SENT, OTP, clock.now())
    await backend.store.transact("r", lambda s: emitting([first]))
    assert (await asyncio.wait_for(arrived.get(), 10)).id == first.id

    await backend.bus.stop()
    second = event(EventType.SENT, OTP, clock.now())
    await backend.store.transact("r", lambda s: emitting([second]))
    assert await backend.bus.pump() == 1
    assert (await arrived.get()).id == second.id


async def test_a_filter_on_an_attribute_sns_does_not_carry_is_refused(
    backend: Backend,
) -> None:
    with pytest.raises(BusError, match="filter only on"):
        await backend.bus.declare(Subscription("odd", Filter.of(subject=OTP)))


async def test_an_outbox_item_left_by_a_crash_is_republished_once_it_is_old_enough(
    backend: Backend, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = Recorder()
    await subscribe(backend.bus, "all", Filter(), seen)
    bus = bus_of(backend)

    async def lost(outbox: str, batch: object) -> None:
        return None  # the writer died before publishing

    monkeypatch.setattr(bus, "relay", lost)
    stranded = event(EventType.SENT, OTP, clock.now())
    await backend.store.transact("r", lambda s: Change(None, None, [], [stranded]))
    monkeypatch.undo()

    clock.advance(REPUBLISH_AFTER - 1)
    assert await bus.republish() == 0
    clock.advance(1)
    assert await bus.republish() == 1
    assert await bus.republish() == 0
    assert await backend.bus.pump() == 1
    assert seen.ids == [stranded.id]


async def test_ping_answers_while_sns_is_reachable(backend: Backend) -> None:
    await backend.bus.ping()


async def test_a_dead_letter_is_counted_and_replayed_onto_its_queue(
    backend: Backend, clock: FrozenClock,
) -> None:
    from prometheus_client import REGISTRY

    failing = [True]
    delivered: list[str] = []

    async def flaky(evt: CloudEvent) -> None:
        if failing[0]:
            raise TemporaryDeliveryError("receiver down", retry_after=0)
        delivered.append(evt.id)

    sub = Subscription("webhooks", Filter.of(type=EventType.APPROVED.value))
    await backend.bus.declare(sub)
    backend.bus.consume(sub.name, flaky, Limits(max_deliveries=3))
    approved = event(EventType.APPROVED, OTP, clock.now())
    await backend.bus.publish([approved])
    before = REGISTRY.get_sample_value("otpgate_dead_letters_total",
                                       {"subscription": "webhooks"}) or 0.0
    for _ in range(3):  # the queues' redrive policy: 3 receives
        assert await backend.bus.pump() == 1
    assert await backend.bus.pump() == 0
    [dead] = await backend.bus.dead_letters("webhooks")
    assert dead.event.id == approved.id
    assert REGISTRY.get_sample_value("otpgate_dead_letters_total",
                                     {"subscription": "webhooks"}) == before + 1

    failing[0] = False
    assert await backend.bus.replay("webhooks", approved.id)
    assert not await backend.bus.replay("webhooks", "no-such-event")
    assert await backend.bus.pump() == 1
    assert delivered == [approved.id]
    assert await backend.bus.dead_letters("webhooks") == []
