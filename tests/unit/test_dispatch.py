"""The dispatcher over the in-memory backend: ledger, retries, failover, and what leaks."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from otpgate import events, redact
from otpgate.backends import Backend, open_memory
from otpgate.breaker import BreakerPolicy, Breakers
from otpgate.bus.base import Limits, Subscription, delivery_number
from otpgate.bus.memory import MemoryBus
from otpgate.clock import FrozenClock
from otpgate.core.lifecycle import Change
from otpgate.core.messages import Templates
from otpgate.core.otp import Delivery, DeliveryStatus, Otp, RecipientState, SendKey, Status
from otpgate.core.policy import Policy
from otpgate.crypto import Keyring
from otpgate.dispatch import Dispatcher
from otpgate.drivers.base import Driver, Message, SendReceipt
from otpgate.drivers.capture import CaptureDriver
from otpgate.errors import (
    BrokenDriverError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    UnknownOutcomeError,
)
from otpgate.events import CloudEvent, EventType
from otpgate.ratelimit.pace import LocalPace
from otpgate.routing import StaticRouter
from otpgate.service import OtpRequest, OtpService
from otpgate.store.base import ClaimState
from tests.leaky import leaky_error

EVENTS = Path(__file__).parent.parent / "events"
SECRET = b"otpgate-test-secret-key-0123456789"
"""The test key ``tests/events/*.json`` were sealed with (never a real deployment's)."""
TO = "+14155550123"
LEASE = 30.0


class ScriptedDriver:
    """A provider double: answers each send with the next scripted error, else a receipt."""

    channels = frozenset({"sms", "email"})

    def __init__(self, name: str, *script: Exception) -> None:
        self.name = name
        self.script = list(script)
        self.calls: list[Message] = []

    async def send(self, message: Message) -> SendReceipt:
        self.calls.append(message)
        if self.script:
            raise self.script.pop(0)
        return SendReceipt(f"{self.name}_{len(self.calls)}")

    def url(self, privacy: bool = True) -> str:
        return f"{self.name}://"

    async def close(self) -> None:
        return None


@dataclass
class World:
    clock: FrozenClock
    backend: Backend
    keyring: Keyring
    routes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    codes: Iterator[str] = field(default_factory=lambda: iter(["482913", "771204", "305518"]))

    @property
    def bus(self) -> MemoryBus:
        assert isinstance(self.backend.bus, MemoryBus)
        return self.backend.bus

    async def dispatcher(self, driver: Driver, max_deliveries: int = 8,
                         lease: float = LEASE) -> Dispatcher:
        dispatcher = Dispatcher(store=self.backend.store, driver=driver, keyring=self.keyring,
                                clock=self.clock, templates=Templates.default(), brand="Acme",
                                max_deliveries=max_deliveries, lease=lease)
        await self.bus.declare(dispatcher.subscription())
        self.bus.consume(dispatcher.subscription().name, dispatcher.handle,
                         dispatcher.limits())
        return dispatcher

    async def one_send(self, driver: ScriptedDriver, max_deliveries: int = 8,
                       lease: float = LEASE) -> tuple[Dispatcher, str, CloudEvent]:
        """One SMS code routed to ``driver``: its dispatcher, the OTP id and the event."""
        self.routes = {"sms": (driver.name,)}
        dispatcher = await self.dispatcher(driver, max_deliveries, lease)
        otp_id = await self.request()
        [dispatch] = self.published(EventType.DISPATCH)
        return dispatcher, otp_id, dispatch

    def capture(self) -> CaptureDriver:
        return CaptureDriver(self.backend.capture, self.clock)

    async def request(self, **fields: Any) -> str:
        gateway = OtpService(self.backend.store, self.clock, self.keyring, Policy(),
                             StaticRouter(self.routes),
                          codegen=lambda n: next(self.codes))
        return (await gateway.request(OtpRequest(to=fields.pop("to", TO), **fields))).otp.id

    async def drain(self) -> None:
        while await self.bus.pump():
            pass

    def published(self, type_: EventType) -> list[CloudEvent]:
        return [e for e in self.bus.log if e.type == type_.value]

    async def delivery(self, otp_id: str, channel: str = "sms") -> Delivery:
        [row] = [d for d in await self.backend.store.deliveries(otp_id) if d.channel == channel]
        return row


@pytest.fixture
async def world() -> AsyncIterator[World]:
    clock = FrozenClock()
    backend = await open_memory("memory://", clock)
    yield World(clock, backend, Keyring.from_secret(SECRET))
    await backend.close()


async def test_a_requested_code_ends_as_a_captured_sms_with_the_code_and_the_brand(
    world: World,
) -> None:
    world.routes = {"sms": ("capture",)}
    await world.dispatcher(world.capture())
    otp_id = await world.request()
    await world.drain()
    [kept] = await world.backend.capture.list(TO)
    assert kept.otp_id == otp_id
    assert kept.body == "Your Acme code is 482913. It expires in 5 minutes. Don't share it."
    row = await world.delivery(otp_id)
    assert row.status is DeliveryStatus.SENT
    assert row.driver == "capture"
    assert row.attempts == 1
    assert row.provider_id == kept.id
    [sent] = world.published(EventType.SENT)
    assert sent.data == {"otp_id": otp_id, "send_no": 1, "channel": "sms",
                         "driver": "capture", "provider_id": kept.id, "segments": 1,
                         "encoding": "gsm-7"}


async def test_the_message_says_how_many_minutes_are_left_rounded_up(world: World) -> None:
    world.routes = {"sms": ("fake",)}
    fake = ScriptedDriver("fake")
    await world.dispatcher(fake)
    await world.request(ttl_seconds=600)
    world.clock.advance(61)
    await world.drain()
    assert "It expires in 9 minutes." in fake.calls[0].body


async def test_an_email_gets_its_subject_and_is_sent_to_the_full_address(world: World) -> None:
    world.routes = {"email": ("fake",)}
    fake = ScriptedDriver("fake")
    await world.dispatcher(fake)
    otp_id = await world.request(to="jane@example.com", locale="de-AT")
    await world.drain()
    [message] = fake.calls
    assert message.to == "jane@example.com"
    assert message.subject == "Ihr Acme-Bestätigungscode"
    assert "482913" in message.body
    assert message.idempotency_key == f"{otp_id}:1:email"


async def test_an_email_carries_its_html_alternative_and_an_sms_none(world: World) -> None:
    world.routes = {"email": ("fake",), "sms": ("fake",)}
    fake = ScriptedDriver("fake")
    await world.dispatcher(fake)
    await world.request(to="jane@example.com", locale="de-AT")
    await world.request(to="+14155550123")
    await world.drain()
    email, sms = sorted(fake.calls, key=lambda m: m.channel)
    assert email.html is not None
    assert "<strong>482913</strong>" in email.html
    assert '<html lang="de-AT">' in email.html
    assert sms.html is None


async def test_handling_the_same_dispatch_event_twice_sends_it_once(world: World) -> None:
    fake = ScriptedDriver("fake")
    dispatcher, otp_id, dispatch = await world.one_send(fake)
    await dispatcher.handle(dispatch)
    await dispatcher.handle(dispatch)
    await world.drain()
    assert len(fake.calls) == 1
    assert (await world.delivery(otp_id)).attempts == 1
    assert len(world.published(EventType.SENT)) == 1


async def test_a_send_held_by_a_dispatcher_that_died_is_retried_once_its_lease_runs_out(
    world: World,
) -> None:
    fake = ScriptedDriver("fake")
    dispatcher, otp_id, dispatch = await world.one_send(fake)
    key = SendKey(otp_id, 1, "sms")
    # A first dispatcher claims the send, then crashes before it settles anything.
    crashed = await world.backend.store.claim(key, "fake", world.clock.now(), LEASE)
    assert crashed.state is ClaimState.CLAIMED
    world.clock.advance(10)
    with pytest.raises(TemporaryDeliveryError) as busy:
        await dispatcher.handle(dispatch)
    assert busy.value.retry_after == pytest.approx(LEASE - 10)
    assert fake.calls == []
    world.clock.advance(LEASE - 10)
    await dispatcher.handle(dispatch)
    await dispatcher.handle(dispatch)
    assert len(fake.calls) == 1
    row = await world.delivery(otp_id)
    assert row.status is DeliveryStatus.SENT
    assert row.attempts == 2


class StallingDriver(ScriptedDriver):
    """Stalls its first send until released, then fails it: a provider call outliving the
    dispatcher's lease."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, message: Message) -> SendReceipt:
        self.calls.append(message)
        if len(self.calls) == 1:
            self.entered.set()
            await self.release.wait()
            raise PermanentDeliveryError("the first call failed, late")
        return SendReceipt(f"{self.name}_{len(self.calls)}")


async def test_a_stalled_dispatcher_taken_over_cannot_undo_its_successors_send(
    world: World,
) -> None:
    fake = StallingDriver("fake")
    dispatcher, otp_id, dispatch = await world.one_send(fake)
    stalled = asyncio.create_task(dispatcher.handle(dispatch))
    await fake.entered.wait()
    world.clock.advance(LEASE + 1)  # the lease runs out; another delivery takes over
    await dispatcher.handle(dispatch)
    fake.release.set()
    await stalled  # its late failure is dropped, not recorded
    row = await world.delivery(otp_id)
    assert (row.status, row.provider_id) == (DeliveryStatus.SENT, "fake_2")
    assert world.published(EventType.DELIVERY_FAILED) == []
    otp = await world.backend.store.get(otp_id)
    assert otp is not None
    assert otp.status is Status.PENDING


class SilentDriver(ScriptedDriver):
    """A provider that never answers."""

    async def send(self, message: Message) -> SendReceipt:
        self.calls.append(message)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_provider_that_does_not_answer_within_the_lease_is_a_temporary_failure(
    world: World,
) -> None:
    silent = SilentDriver("slow")
    dispatcher, otp_id, dispatch = await world.one_send(silent, max_deliveries=3, lease=0.05)
    with pytest.raises(TemporaryDeliveryError, match="did not answer within the lease"):
        await dispatcher.handle(dispatch)
    row = await world.delivery(otp_id)
    assert (row.status, row.attempts) == (DeliveryStatus.QUEUED, 1)
    assert len(silent.calls) == 1


async def test_a_send_whose_provider_call_went_through_before_the_crash_is_captured_once(
    world: World,
) -> None:
    world.routes = {"sms": ("capture",)}
    capture = world.capture()
    dispatcher = await world.dispatcher(capture)
    otp_id = await world.request()
    [dispatch] = world.published(EventType.DISPATCH)
    key = SendKey(otp_id, 1, "sms")
    await world.backend.store.claim(key, "capture", world.clock.now(), LEASE)
    await capture.send(Message(otp_id=otp_id, send_no=1, channel="sms", to=TO,
                               body="Your Acme code is 482913.", idempotency_key=str(key),
                               expires_at=world.clock.now() + 300))
    world.clock.advance(LEASE)  # ...and the dispatcher died before settling the ledger.
    await dispatcher.handle(dispatch)
    assert len(await world.backend.capture.list(TO)) == 1
    assert (await world.delivery(otp_id)).status is DeliveryStatus.SENT


async def test_an_event_whose_code_already_expired_is_settled_expired_and_not_sent(
    world: World,
) -> None:
    world.routes = {"sms": ("fake",)}
    fake = ScriptedDriver("fake")
    await world.dispatcher(fake)
    otp_id = await world.request(ttl_seconds=60)
    world.clock.advance(60)
    await world.drain()
    assert fake.calls == []
    row = await world.delivery(otp_id)
    assert row.status is DeliveryStatus.EXPIRED
    assert row.error == "the code expired before it could be sent"
    assert row.attempts == 0
    assert world.published(EventType.SENT) == []
    assert await world.bus.dead_letters() == []


async def test_a_send_superseded_by_a_resend_is_not_sent_but_the_resend_is(
    world: World,
) -> None:
    world.routes = {"sms": ("fake",)}
    fake = ScriptedDriver("fake")
    await world.dispatcher(fake)
    otp_id = await world.request()
    world.clock.advance(Policy().resend_cooldown)
    assert await world.request() == otp_id
    await world.drain()
    [message] = fake.calls
    assert message.send_no == 2
    assert "771204" in message.body
    again = await world.backend.store.claim(SendKey(otp_id, 1, "sms"), "fake",
                                                 world.clock.now(), LEASE)
    assert again.state is ClaimState.DONE
    assert [e.data["send_no"] for e in world.published(EventType.SENT)] == [2]


async def test_a_code_canceled_before_its_dispatch_is_not_sent(world: World) -> None:
    world.routes = {"sms": ("fake",)}
    fake = ScriptedDriver("fake")
    await world.dispatcher(fake)
    otp_id = await world.request()
    gateway = OtpService(world.backend.store, world.clock, world.keyring, Policy(),
                         StaticRouter(world.routes))
    await gateway.cancel(otp_id)
    await world.drain()
    assert fake.calls == []
    assert (await world.delivery(otp_id)).error == "the OTP is canceled"


async def test_a_temporary_failure_queues_the_send_and_the_bus_retries_until_it_goes_out(
    world: World,
) -> None:
    world.routes = {"sms": ("fake",)}
    fake = ScriptedDriver("fake", TemporaryDeliveryError("provider busy"),
                          ConnectionResetError("connection reset by peer"))
    await world.dispatcher(fake, max_deliveries=5)
    otp_id = await world.request()
    assert await world.bus.pump() == 1
    row = await world.delivery(otp_id)
    assert row.status is DeliveryStatus.QUEUED
    assert row.attempts == 1
    assert row.error == "TemporaryDeliveryError: provider busy"
    assert await world.bus.pump() == 0  # backing off
    world.clock.advance(1)
    await world.drain()
    row = await world.delivery(otp_id)
    assert row.status is DeliveryStatus.QUEUED
    assert row.error is not None
    assert "ConnectionResetError" in row.error
    world.clock.advance(2)
    await world.drain()
    row = await world.delivery(otp_id)
    assert row.status is DeliveryStatus.SENT
    assert row.attempts == 3
    assert len(fake.calls) == 3
    assert {m.idempotency_key for m in fake.calls} == {f"{otp_id}:1:sms"}


async def test_the_bus_waits_as_long_as_the_provider_asks_before_retrying(
    world: World,
) -> None:
    world.routes = {"sms": ("fake",)}
    fake = ScriptedDriver("fake", TemporaryDeliveryError("slow down", retry_after=45))
    await world.dispatcher(fake)
    otp_id = await world.request()
    await world.drain()
    world.clock.advance(44)
    await world.drain()
    assert len(fake.calls) == 1
    world.clock.advance(1)
    await world.drain()
    assert (await world.delivery(otp_id)).status is DeliveryStatus.SENT


async def test_a_send_failing_on_every_delivery_is_failed_instead_of_dead_lettered(
    world: World,
) -> None:
    world.routes = {"sms": ("fake",)}
    fake = ScriptedDriver("fake", *[TemporaryDeliveryError("provider down")] * 3)
    await world.dispatcher(fake, max_deliveries=3)
    otp_id = await world.request()
    for _ in range(3):
        await world.drain()
        world.clock.advance(10)
    assert len(fake.calls) == 3
    row = await world.delivery(otp_id)
    assert row.status is DeliveryStatus.FAILED
    [failed] = world.published(EventType.DELIVERY_FAILED)
    assert failed.data["permanent"] is False
    assert "provider down" in failed.data["reason"]
    assert await world.bus.dead_letters() == []


async def test_the_last_delivery_of_the_bus_gives_up_even_when_the_ledger_counts_fewer(
    world: World,
) -> None:
    # Deliveries can be spent without a claim (a busy send, a store hiccup): the bus's own
    # count decides when the last chance has come.
    fake = ScriptedDriver("fake", TemporaryDeliveryError("provider down"))
    dispatcher, otp_id, dispatch = await world.one_send(fake, max_deliveries=3)
    delivery_number.set(3)
    await dispatcher.handle(dispatch)  # no exception: nothing left for the bus to retry
    row = await world.delivery(otp_id)
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 1)
    assert len(world.published(EventType.DELIVERY_FAILED)) == 1


async def test_a_dead_lettered_dispatch_event_is_kept_without_its_sealed_payload(
    world: World,
) -> None:
    world.routes = {"sms": ("fake",)}
    await world.dispatcher(ScriptedDriver("fake"), max_deliveries=1)

    async def broken(event: CloudEvent) -> None:
        raise RuntimeError("the handler itself is broken")

    world.bus.consume("dispatch.fake", broken, Limits(max_deliveries=1, lease=LEASE))
    await world.request()
    await world.drain()
    [dead] = await world.bus.dead_letters()
    assert "sealed" not in dead.event.data
    assert dead.event.data["to"] == "+1415•••0123"


async def test_a_temporary_failure_fails_over_at_once_when_a_fallback_is_left(
    world: World,
) -> None:
    world.routes = {"sms": ("fake", "capture")}
    fake = ScriptedDriver("fake", *[TemporaryDeliveryError("down")] * 2)
    await world.dispatcher(fake, max_deliveries=2)
    await world.dispatcher(world.capture(), max_deliveries=2)
    otp_id = await world.request()
    await world.drain()  # the clock has not moved: no backoff was waited out
    row = await world.delivery(otp_id)
    assert (row.status, row.driver, row.attempts) == (DeliveryStatus.SENT, "capture", 1)
    assert len(fake.calls) == 1
    assert len(await world.backend.capture.list(TO)) == 1
    world.clock.advance(600)
    await world.drain()
    assert len(fake.calls) == 1, "never back to the driver it left"


@pytest.mark.parametrize("error", [
    UnknownOutcomeError("no answer"), BrokenDriverError("401"), RuntimeError("a driver bug")])
async def test_every_failure_of_a_driver_fails_over_at_once(world: World,
                                                            error: Exception) -> None:
    world.routes = {"sms": ("fake", "capture")}
    fake = ScriptedDriver("fake", error)
    await world.dispatcher(fake)
    await world.dispatcher(world.capture())
    otp_id = await world.request()
    await world.drain()
    assert (await world.delivery(otp_id)).driver == "capture"
    assert len(await world.backend.capture.list(TO)) == 1


async def test_an_open_breaker_skips_the_driver_without_a_call(world: World) -> None:
    world.routes = {"sms": ("fake", "capture")}
    fake = ScriptedDriver("fake")
    breakers = Breakers(BreakerPolicy(), world.clock)
    breakers.of("fake").record(False, broken=True)
    dispatcher = Dispatcher(store=world.backend.store, driver=fake, keyring=world.keyring,
                            clock=world.clock, templates=Templates.default(), brand="Acme",
                            breaker=breakers.of("fake"))
    await world.bus.declare(dispatcher.subscription())
    world.bus.consume(dispatcher.subscription().name, dispatcher.handle, dispatcher.limits())
    await world.dispatcher(world.capture())
    otp_id = await world.request()
    await world.drain()
    assert fake.calls == []
    assert (await world.delivery(otp_id)).driver == "capture"


async def test_an_open_breaker_without_a_fallback_retries_once_it_would_probe(
    world: World,
) -> None:
    fake = ScriptedDriver("fake")
    breakers = Breakers(BreakerPolicy(open_for=15), world.clock)
    breakers.of("fake").record(False, broken=True)
    world.routes = {"sms": ("fake",)}
    dispatcher = Dispatcher(store=world.backend.store, driver=fake, keyring=world.keyring,
                            clock=world.clock, templates=Templates.default(), brand="Acme",
                            breaker=breakers.of("fake"))
    await world.bus.declare(dispatcher.subscription())
    world.bus.consume(dispatcher.subscription().name, dispatcher.handle, dispatcher.limits())
    otp_id = await world.request()
    await world.drain()
    assert (await world.delivery(otp_id)).status is DeliveryStatus.QUEUED
    world.clock.advance(14)
    await world.drain()
    assert fake.calls == []
    world.clock.advance(1)
    await world.drain()
    assert len(fake.calls) == 1
    assert (await world.delivery(otp_id)).status is DeliveryStatus.SENT


async def test_a_send_its_pace_would_hold_past_its_expiry_is_expired_and_not_sent(
    world: World,
) -> None:
    world.routes = {"sms": ("fake",)}
    fake = ScriptedDriver("fake")
    pace = LocalPace(rate=1 / 120)  # one message every two minutes

    async def no_wait(seconds: float) -> None:
        return None

    dispatcher = Dispatcher(store=world.backend.store, driver=fake, keyring=world.keyring,
                            clock=world.clock, templates=Templates.default(), brand="Acme",
                            pace=pace, sleep=no_wait, lease=600)
    await world.bus.declare(dispatcher.subscription())
    world.bus.consume(dispatcher.subscription().name, dispatcher.handle, dispatcher.limits())
    first = await world.request(to="+14155550100")
    second = await world.request(to="+14155550101", ttl_seconds=60)
    await world.drain()
    assert [m.otp_id for m in fake.calls] == [first]
    row = await world.delivery(second)
    assert row.status is DeliveryStatus.EXPIRED
    assert row.error == "the code would expire before its turn in the driver's pace"


async def test_a_permanent_failure_hands_the_send_to_the_next_driver_which_sends_it(
    world: World,
) -> None:
    world.routes = {"sms": ("fake", "capture")}
    fake = ScriptedDriver("fake", PermanentDeliveryError("number unreachable"))
    await world.dispatcher(fake)
    await world.dispatcher(world.capture())
    otp_id = await world.request()
    await world.drain()
    first, handover = world.published(EventType.DISPATCH)
    assert (first.driver, handover.driver) == ("fake", "capture")
    assert first.data["fallbacks"] == ["capture"]
    assert handover.data == {**first.data, "fallbacks": []}
    assert len(fake.calls) == 1
    [kept] = await world.backend.capture.list(TO)
    assert "482913" in kept.body
    row = await world.delivery(otp_id)
    assert row.status is DeliveryStatus.SENT
    assert row.driver == "capture"
    assert world.published(EventType.DELIVERY_FAILED) == []


async def test_a_permanent_failure_without_a_fallback_fails_the_send_and_says_so(
    world: World,
) -> None:
    world.routes = {"sms": ("fake",)}
    fake = ScriptedDriver("fake", PermanentDeliveryError("number unreachable"))
    await world.dispatcher(fake)
    otp_id = await world.request()
    await world.drain()
    world.clock.advance(120)
    await world.drain()
    assert len(fake.calls) == 1
    row = await world.delivery(otp_id)
    assert row.status is DeliveryStatus.FAILED
    assert row.error == "PermanentDeliveryError: number unreachable"
    [failed] = world.published(EventType.DELIVERY_FAILED)
    assert failed.subject == otp_id
    assert failed.data == {"otp_id": otp_id, "send_no": 1, "channel": "sms", "driver": "fake",
                           "reason": "PermanentDeliveryError: number unreachable",
                           "permanent": True}


async def test_a_tampered_sealed_payload_fails_the_send_without_retry_or_failover(
    world: World,
) -> None:
    world.routes = {"sms": ("fake", "capture")}
    fake = ScriptedDriver("fake")
    dispatcher = await world.dispatcher(fake)
    otp_id = await world.request()
    [dispatch] = world.published(EventType.DISPATCH)
    sealed = dispatch.data["sealed"]
    flipped = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    tampered = msgspec.structs.replace(dispatch, data={**dispatch.data, "sealed": flipped})
    await dispatcher.handle(tampered)
    assert fake.calls == []
    row = await world.delivery(otp_id)
    assert row.status is DeliveryStatus.FAILED
    [failed] = world.published(EventType.DELIVERY_FAILED)
    assert failed.data["permanent"] is True
    assert "sealed" in failed.data["reason"]
    assert len(world.published(EventType.DISPATCH)) == 1


async def test_a_malformed_dispatch_event_is_recorded_as_failed_rather_than_retried(
    world: World, caplog: pytest.LogCaptureFixture,
) -> None:
    fake = ScriptedDriver("fake")
    dispatcher, otp_id, dispatch = await world.one_send(fake)
    broken = msgspec.structs.replace(dispatch, data={**dispatch.data, "expires_at": "soon"})
    await dispatcher.handle(broken)
    assert fake.calls == []
    assert (await world.delivery(otp_id)).status is DeliveryStatus.FAILED
    [failed] = world.published(EventType.DELIVERY_FAILED)
    assert "malformed" in failed.data["reason"]
    assert "expires_at" in failed.data["reason"]
    nameless = msgspec.structs.replace(dispatch, data={"hello": "world"})
    with caplog.at_level(logging.ERROR, logger="otpgate.dispatch"):
        await dispatcher.handle(nameless)
    assert any(nameless.id in r.getMessage() for r in caplog.records)


async def test_a_driver_that_cannot_serve_the_channel_is_a_permanent_failure(
    world: World,
) -> None:
    world.routes = {"email": ("fake", "capture")}
    sms_only = ScriptedDriver("fake")
    sms_only.channels = frozenset({"sms"})
    await world.dispatcher(sms_only)
    await world.dispatcher(world.capture())
    otp_id = await world.request(to="jane@example.com")
    await world.drain()
    assert sms_only.calls == []
    assert (await world.delivery(otp_id, "email")).driver == "capture"


async def test_events_and_logs_hold_neither_the_code_nor_the_full_address(
    world: World, caplog: pytest.LogCaptureFixture,
) -> None:
    world.routes = {"sms": ("flaky", "capture")}
    await world.dispatcher(ScriptedDriver("flaky", TemporaryDeliveryError("busy"),
                                          PermanentDeliveryError("gone")))
    await world.dispatcher(world.capture())
    with caplog.at_level(logging.DEBUG):
        await world.request()
        for _ in range(3):
            await world.drain()
            world.clock.advance(5)
    assert len(await world.backend.capture.list(TO)) == 1
    assert world.published(EventType.SENT)
    sealed = {e.data["sealed"] for e in world.published(EventType.DISPATCH)}
    for event in world.bus.log:
        data = {k: v for k, v in event.data.items() if k != "sealed"}
        text = json.dumps(data, ensure_ascii=False)
        assert "482913" not in text
        assert TO[1:] not in text
    logs = caplog.text
    assert "482913" not in logs
    assert TO[1:] not in logs
    assert all(blob not in logs for blob in sealed)
    assert "+1415•••0123" in logs


async def test_a_driver_error_quoting_the_code_and_number_is_masked_in_ledger_events_and_logs(
    world: World, caplog: pytest.LogCaptureFixture,
) -> None:
    redact.install()
    leaky = ScriptedDriver("leaky", leaky_error(TO, "482913"), leaky_error(TO, "482913"))
    world.routes = {"sms": ("leaky",)}
    await world.dispatcher(leaky, max_deliveries=2)
    with caplog.at_level(logging.DEBUG):
        otp_id = await world.request()
        for _ in range(2):
            await world.drain()
            world.clock.advance(10)
    row = await world.delivery(otp_id)
    assert row.status is DeliveryStatus.FAILED
    [failed] = world.published(EventType.DELIVERY_FAILED)
    assert row.error is not None and "HTTPStatusError" in row.error
    for text in (row.error, failed.data["reason"], caplog.text):
        assert "482913" not in text
        assert TO[1:] not in text and "%2B1415" not in text
    assert "HTTPStatusError" in caplog.text


def _fixture(name: str) -> CloudEvent:
    return events.decode((EVENTS / name).read_bytes())


async def _seed(world: World, otp_id: str, expires_at: float) -> None:
    """The OTP record a fixture's dispatch event belongs to, as the store would hold it."""
    now = world.clock.now()
    otp = Otp(id=otp_id, recipient="r" * 40, to_masked="+1415•••0123", purpose="login",
              channels=["sms"], status=Status.PENDING, digest=b"", code_length=6,
              locale="en", send_count=1, failed_attempts=0, max_attempts=5, created_at=now,
              expires_at=expires_at, resend_after=now + 30, updated_at=now)
    state = RecipientState(key=otp.recipient, pending={"login": otp})
    await world.backend.store.transact(
        otp.recipient, lambda _: Change(result=None, state=state, otps=[otp]))


async def test_the_dispatch_event_fixture_is_opened_rendered_and_captured(
    world: World,
) -> None:
    dispatch = _fixture("dispatch_sms.json")
    assert world.clock.now() == 1_800_000_000.0  # the fixture's time
    await _seed(world, dispatch.subject, dispatch.data["expires_at"])
    dispatcher = await world.dispatcher(world.capture())
    await dispatcher.handle(dispatch)
    [kept] = await world.backend.capture.list(TO)
    assert kept.body == "Your Acme code is 482913. It expires in 5 minutes. Don't share it."
    assert kept.otp_id == "otp_q7Hk2LmN9xP4vR8sT1wYzA"


@pytest.mark.parametrize(("fixture", "type_"), [
    ("sent_sms.json", EventType.SENT),
    ("delivery_failed_sms.json", EventType.DELIVERY_FAILED),
])
async def test_outcome_events_have_the_shape_of_their_fixtures(
    world: World, fixture: str, type_: EventType,
) -> None:
    dispatch = _fixture("dispatch_sms.json")
    await _seed(world, dispatch.subject, dispatch.data["expires_at"])
    script = [PermanentDeliveryError("no")] if type_ is EventType.DELIVERY_FAILED else []
    dispatcher = await world.dispatcher(ScriptedDriver("capture", *script))
    await dispatcher.handle(
        msgspec.structs.replace(dispatch, data={**dispatch.data, "fallbacks": []}))
    [ours] = world.published(type_)
    expected = _fixture(fixture)
    assert (ours.type, ours.subject, ours.channel) == (
        expected.type, expected.subject, expected.channel)
    assert {k: type(v) for k, v in ours.data.items()} == {
        k: type(v) for k, v in expected.data.items()}


def test_the_subscription_takes_only_dispatch_events_addressed_to_its_driver() -> None:
    dispatcher = Dispatcher(store=None, driver=ScriptedDriver("twilio-2"),  # type: ignore[arg-type]
                            keyring=Keyring.from_secret(SECRET), clock=FrozenClock(),
                            templates=Templates.default(), brand="Acme", max_deliveries=4,
                            lease=12.0)
    sub: Subscription = dispatcher.subscription()
    limits = dispatcher.limits()
    assert (sub.name, limits.max_deliveries, limits.lease) == ("dispatch.twilio-2", 4, 12.0)
    mine = events.new(EventType.DISPATCH, "otp_x", {}, 0.0, channel="sms", driver="twilio-2")
    other = events.new(EventType.DISPATCH, "otp_x", {}, 0.0, channel="sms", driver="twilio")
    sent = events.new(EventType.SENT, "otp_x", {}, 0.0, channel="sms", driver="twilio-2")
    assert [sub.filter.matches(e) for e in (mine, other, sent)] == [True, False, False]
