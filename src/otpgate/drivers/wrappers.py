"""``Driver → Driver`` wrappers: what every driver gets around its own calls (a time bound
today; pacing, circuit breakers and metrics wrap the same way). Each keeps the inner
driver's name, channels and URL."""

from __future__ import annotations

import asyncio

from otpgate.drivers.base import Driver, Message, SendReceipt
from otpgate.errors import UnknownOutcomeError


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


def innermost(driver: Driver) -> Driver:
    return driver.unwrap() if isinstance(driver, Wrapper) else driver
