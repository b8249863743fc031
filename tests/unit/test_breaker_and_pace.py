"""Circuit breakers and pacing, over an injected clock: the state machine, the token
bucket's arithmetic, and the wrappers that put both around a driver."""

from __future__ import annotations

import pytest

from otpgate.breaker import BreakerOpen, BreakerPolicy, Breakers, BreakerState
from otpgate.clock import FrozenClock
from otpgate.drivers.base import Message, SendReceipt
from otpgate.drivers.wrappers import Guarded, Paced, PaceFull
from otpgate.errors import (
    BrokenDriverError,
    ConfigurationError,
    PermanentDeliveryError,
    SendExpired,
    TemporaryDeliveryError,
)
from otpgate.ratelimit.bucket import TokenBucket
from otpgate.ratelimit.pace import LocalPace

POLICY = BreakerPolicy(window=30, min_calls=4, failure_rate=0.5, open_for=15)


def test_a_token_bucket_spaces_tokens_by_its_rate_after_its_burst() -> None:
    bucket = TokenBucket(rate=10, burst=3)
    assert [round(bucket.take(0.0), 3) for _ in range(6)] == [0, 0, 0, 0.1, 0.2, 0.3]
    assert bucket.wait_for(100.0) == 0
    assert [round(bucket.take(100.0), 3) for _ in range(4)] == [0, 0, 0, 0.1]


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("inf"), 1), (5, 0)])
def test_a_bucket_that_cannot_pace_is_refused(rate: float, burst: int) -> None:
    with pytest.raises(ConfigurationError):
        TokenBucket(rate, burst)


def test_a_breaker_opens_on_its_failure_rate_then_half_opens_and_closes_on_success() -> None:
    clock = FrozenClock()
    breaker = Breakers(POLICY, clock).of("twilio")
    for ok in (True, False, False):
        assert breaker.admit()
        breaker.record(ok)
    assert breaker.state is BreakerState.CLOSED  # fewer calls than the minimum
    breaker.record(False)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.admit()
    clock.advance(15)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.admit()
    assert not breaker.admit(), "a half-open breaker lets one probe through at a time"
    breaker.record(True)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.view().calls == 0


def test_a_failed_probe_opens_the_breaker_again_for_a_whole_period() -> None:
    clock = FrozenClock()
    breaker = Breakers(POLICY, clock).of("twilio")
    breaker.record(False, broken=True)
    assert breaker.state is BreakerState.OPEN, "a broken driver opens at once"
    clock.advance(16)
    assert breaker.admit()
    breaker.record(False)
    clock.advance(14)
    assert breaker.state is BreakerState.OPEN
    clock.advance(1)
    assert breaker.state is BreakerState.HALF_OPEN


def test_late_answers_of_calls_let_through_before_it_opened_do_not_close_it() -> None:
    """Hundreds of sends are in flight when a provider starts failing: a success among them
    that lands after the breaker opened is no probe, and must not close it."""
    clock = FrozenClock()
    breaker = Breakers(POLICY, clock).of("twilio")
    for _ in range(20):
        assert breaker.admit()
    for _ in range(5):
        breaker.record(False)
    assert breaker.state is BreakerState.OPEN
    breaker.record(True)
    breaker.record(False)
    assert breaker.state is BreakerState.OPEN
    clock.advance(15)
    assert breaker.admit()  # the probe
    breaker.record(True)
    assert breaker.state is BreakerState.CLOSED


def test_failures_outside_the_window_are_forgotten() -> None:
    clock = FrozenClock()
    breaker = Breakers(POLICY, clock).of("twilio")
    for _ in range(3):
        breaker.record(False)
    clock.advance(31)
    breaker.record(False)
    assert breaker.state is BreakerState.CLOSED
    assert (breaker.view().calls, breaker.view().failures) == (1, 1)


class Scripted:
    name = "primary"
    channels = frozenset({"sms"})

    def __init__(self, *script: Exception | None) -> None:
        self.script = list(script)
        self.calls = 0

    async def send(self, message: Message) -> SendReceipt:
        self.calls += 1
        error = self.script.pop(0) if self.script else None
        if error is not None:
            raise error
        return SendReceipt(f"id-{self.calls}")

    def url(self, privacy: bool = True) -> str:
        return "scripted://"

    async def close(self) -> None:
        return None


def message(expires_at: float) -> Message:
    return Message(otp_id="otp_x", send_no=1, channel="sms", to="+14155550123", body="b",
                   idempotency_key="otp_x:1:sms", expires_at=expires_at)


async def test_a_guarded_driver_is_not_called_while_its_breaker_is_open() -> None:
    clock = FrozenClock()
    inner = Scripted(*[TemporaryDeliveryError("503")] * 4)
    guarded = Guarded(inner, Breakers(POLICY, clock).of("primary"))
    for _ in range(4):
        with pytest.raises(TemporaryDeliveryError):
            await guarded.send(message(clock.now() + 300))
    with pytest.raises(BreakerOpen):
        await guarded.send(message(clock.now() + 300))
    assert inner.calls == 4
    clock.advance(15)
    assert (await guarded.send(message(clock.now() + 300))).provider_id == "id-5"
    assert guarded.breaker.state is BreakerState.CLOSED


async def test_a_refused_number_says_nothing_bad_about_the_driver() -> None:
    clock = FrozenClock()
    inner = Scripted(*[PermanentDeliveryError("21211")] * 6)
    guarded = Guarded(inner, Breakers(POLICY, clock).of("primary"))
    for _ in range(6):
        with pytest.raises(PermanentDeliveryError):
            await guarded.send(message(clock.now() + 300))
    assert guarded.breaker.state is BreakerState.CLOSED


async def test_bad_credentials_open_the_breaker_at_once() -> None:
    clock = FrozenClock()
    guarded = Guarded(Scripted(BrokenDriverError("401")), Breakers(POLICY, clock).of("p"))
    with pytest.raises(BrokenDriverError):
        await guarded.send(message(clock.now() + 300))
    assert guarded.breaker.state is BreakerState.OPEN


class Sleeper:
    """An injected sleep that moves the frozen clock instead of waiting."""

    def __init__(self, clock: FrozenClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(round(seconds, 6))


async def test_paced_sends_wait_their_turn_by_the_rate() -> None:
    clock = FrozenClock()
    sleeper = Sleeper(clock)
    inner = Scripted()
    paced = Paced(inner, LocalPace(rate=50), clock, sleep=sleeper)
    for _ in range(6):
        await paced.send(message(clock.now() + 300))
    assert sleeper.waits == [0.02, 0.04, 0.06, 0.08, 0.1]
    assert inner.calls == 6


async def test_a_send_whose_turn_comes_after_its_code_expires_is_not_sent() -> None:
    clock = FrozenClock()
    inner = Scripted()
    paced = Paced(inner, LocalPace(rate=1), clock, sleep=Sleeper(clock))
    await paced.send(message(clock.now() + 300))
    with pytest.raises(SendExpired):
        await paced.send(message(clock.now() + 0.5))
    assert inner.calls == 1
    await paced.send(message(clock.now() + 300))  # the refused send took no slot
    assert inner.calls == 2


async def test_a_turn_further_off_than_the_lease_allows_is_refused_for_now() -> None:
    clock = FrozenClock()
    inner = Scripted()
    paced = Paced(inner, LocalPace(rate=1), clock, max_wait=2.5, sleep=Sleeper(clock))
    for _ in range(3):
        await paced.send(message(clock.now() + 300))
    with pytest.raises(PaceFull) as refused:
        await paced.send(message(clock.now() + 300))
    assert refused.value.retry_after == 3.0
    assert inner.calls == 3


async def test_a_refusal_of_the_pace_tells_the_breaker_nothing() -> None:
    clock = FrozenClock()
    breaker = Breakers(POLICY, clock).of("primary")
    breaker.record(False, broken=True)
    clock.advance(15)
    guarded = Guarded(Paced(Scripted(), LocalPace(rate=1), clock, sleep=Sleeper(clock)),
                      breaker)
    with pytest.raises(SendExpired):
        await guarded.send(message(clock.now()))
    assert breaker.state is BreakerState.HALF_OPEN
    await guarded.send(message(clock.now() + 300))  # the probe was given back
    assert breaker.state is BreakerState.CLOSED


def test_an_open_breaker_says_when_it_lets_a_probe_through() -> None:
    clock = FrozenClock()
    breaker = Breakers(POLICY, clock).of("primary")
    assert breaker.reopens_in() == 0
    breaker.record(False, broken=True)
    clock.advance(5)
    assert breaker.reopens_in() == 10


def test_failures_in_a_row_open_the_breaker_whatever_the_window_holds() -> None:
    clock = FrozenClock()
    breaker = Breakers(BreakerPolicy(min_calls=10, consecutive=3), clock).of("twilio")
    for _ in range(50):
        breaker.record(True)
    breaker.record(False)
    breaker.record(False)
    breaker.record(True)  # a success ends the run
    breaker.record(False)
    breaker.record(False)
    assert breaker.state is BreakerState.CLOSED
    breaker.record(False)
    assert breaker.state is BreakerState.OPEN
