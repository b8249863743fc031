"""``Driver → Driver`` wrappers: what every driver gets around its own calls — a time
bound (``Bounded``), its pace (``Paced``), its circuit breaker (``Guarded``). Each keeps the
inner driver's name, channels and URL."""

from __future__ import annotations

import asyncio
import time

from otpgate.breaker import BreakerOpen, CircuitBreaker
from otpgate.clock import Clock
from otpgate.drivers.base import Driver, Message, SendReceipt
from otpgate.errors import (
    BrokenDriverError,
    PermanentDeliveryError,
    SendExpired,
    UnknownOutcomeError,
)
from otpgate.ratelimit.bucket import TokenBucket


class Wrapper:
    """Forwards everything to ``inner``; subclasses override ``send``."""

    def __init__(self, inner: Driver) -> None:
        self.inner = inner
        self.name = inner.name
        self.channels = inner.channels

    async def send(self, message: Message) -> SendReceipt:
        return await self.inner.send(message)

    def url(self, privacy: bool = True) -> str:
        return self.inner.url(privacy)

    async def close(self) -> None:
        await self.inner.close()

    def unwrap(self) -> Driver:
        """The driver at the bottom of the wrappers."""
        inner = self.inner
        return inner.unwrap() if isinstance(inner, Wrapper) else inner


class Bounded(Wrapper):
    """A send answers within ``seconds`` or its outcome is unknown: a provider that hangs
    must not hold a send past its lease, when another delivery would send it again while
    this call is still out."""

    def __init__(self, inner: Driver, seconds: float, bound: str | None = None) -> None:
        super().__init__(inner)
        self.seconds = seconds
        self._bound = bound or f"{seconds:g} s"

    async def send(self, message: Message) -> SendReceipt:
        try:
            async with asyncio.timeout(self.seconds):
                return await self.inner.send(message)
        except TimeoutError:
            raise UnknownOutcomeError(
                f"{self.name} did not answer within {self._bound}; the outcome is "
                "unknown") from None


class Paced(Wrapper):
    """At most ``rate`` sends a second (``burst`` at once), shared by every sender of this
    driver in the process: a send waits its turn — unless its turn comes only after its
    code expires, when it is not sent at all (``SendExpired``)."""

    def __init__(self, inner: Driver, bucket: TokenBucket, clock: Clock) -> None:
        super().__init__(inner)
        self.bucket = bucket
        self._clock = clock

    async def send(self, message: Message) -> SendReceipt:
        if self._clock.now() + self.bucket.wait_for(time.monotonic()) >= message.expires_at:
            raise SendExpired(f"{self.name}'s pace would send this code after it expires")
        wait = self.bucket.take(time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)
        return await self.inner.send(message)


class Guarded(Wrapper):
    """Calls ``inner`` only while its circuit breaker admits calls, and tells the breaker
    how each call went."""

    def __init__(self, inner: Driver, breaker: CircuitBreaker) -> None:
        super().__init__(inner)
        self.breaker = breaker

    async def send(self, message: Message) -> SendReceipt:
        if not self.breaker.admit():
            raise BreakerOpen(f"{self.name}'s circuit is open: not called")
        try:
            receipt = await self.inner.send(message)
        except PermanentDeliveryError:
            self.breaker.record(True)  # the provider works: the number is at fault
            raise
        except BrokenDriverError:
            self.breaker.record(False, broken=True)
            raise
        except BaseException:
            self.breaker.record(False)
            raise
        self.breaker.record(True)
        return receipt


def innermost(driver: Driver) -> Driver:
    return driver.unwrap() if isinstance(driver, Wrapper) else driver
