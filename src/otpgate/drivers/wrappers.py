"""``Driver → Driver`` wrappers: what every driver gets around its own calls — a time
bound (``Bounded``), its pace (``Paced``), its circuit breaker (``Guarded``). Each keeps the
inner driver's name, channels and URL."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from otpgate.breaker import BreakerOpen, CircuitBreaker
from otpgate.clock import Clock
from otpgate.drivers.base import Driver, Message, SendReceipt
from otpgate.errors import (
    BrokenDriverError,
    PermanentDeliveryError,
    SendExpired,
    TemporaryDeliveryError,
    UnknownOutcomeError,
)
from otpgate.ratelimit.pace import Pace


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


Sleep = Callable[[float], Awaitable[None]]


class Paced(Wrapper):
    """At most ``rate`` sends a second (``burst`` at once), shared by every sender of this
    driver (``otpgate.ratelimit.pace``): a send waits its turn — unless its turn comes only
    after its code expires, when it is not sent at all (``SendExpired``), or later than
    ``max_wait`` (the time its lease leaves for waiting), when it is refused for now with
    the wait as ``retry_after`` (it fails over, or comes back then). Either way it takes
    no slot from the sends behind it. Time is the injected clock's; ``sleep`` waits."""

    def __init__(self, inner: Driver, pace: Pace, clock: Clock, *,
                 max_wait: float = math.inf, sleep: Sleep = asyncio.sleep) -> None:
        super().__init__(inner)
        self.pace = pace
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep

    async def send(self, message: Message) -> SendReceipt:
        now = self._clock.now()
        left = message.expires_at - now
        if left <= 0:
            raise SendExpired(f"{self.name}: the code expired before its turn")
        slot = await self.pace.reserve(now, min(left, self.max_wait))
        if not slot.taken:
            if slot.wait >= left:
                raise SendExpired(f"{self.name}'s pace would send this code after it "
                                  "expires")
            raise PaceFull(f"{self.name}'s pace has no slot for {slot.wait:.1f} s",
                           retry_after=slot.wait)
        if slot.wait > 0:
            await self._sleep(slot.wait)
        return await self.inner.send(message)


class PaceFull(TemporaryDeliveryError):
    """The driver's pace has no slot soon enough: it was not called."""

    slug = "pace-full"


class Guarded(Wrapper):
    """Calls ``inner`` only while its circuit breaker admits calls, and tells the breaker
    how each call went. A send the driver's pace refused (``SendExpired``, ``PaceFull``)
    never reached the provider: it tells the breaker nothing."""

    def __init__(self, inner: Driver, breaker: CircuitBreaker) -> None:
        super().__init__(inner)
        self.breaker = breaker

    async def send(self, message: Message) -> SendReceipt:
        if not self.breaker.admit():
            raise BreakerOpen(f"{self.name}'s circuit is open: not called",
                              retry_after=max(1.0, self.breaker.reopens_in()))
        try:
            receipt = await self.inner.send(message)
        except (SendExpired, PaceFull):
            self.breaker.release()
            raise
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
