"""``flaky://``: a driver whose provider is always down for now, or with
``?permanent=true`` always refuses the number (for the retry and failure tests)."""

from __future__ import annotations

from otpgate.drivers.base import Driver, DriverContext, Message, SendReceipt
from otpgate.errors import PermanentDeliveryError, TemporaryDeliveryError
from otpgate.urls import Url


class FlakyDriver:
    channels = frozenset({"sms"})

    def __init__(self, name: str, permanent: bool) -> None:
        self.name = name
        self._permanent = permanent

    async def send(self, message: Message) -> SendReceipt:
        if self._permanent:
            raise PermanentDeliveryError("the number cannot take messages")
        raise TemporaryDeliveryError("provider down", retry_after=0)

    def url(self, privacy: bool = True) -> str:
        return "flaky://"

    async def close(self) -> None:
        return None


def from_url(url: Url, ctx: DriverContext) -> Driver:
    return FlakyDriver(ctx.name or "flaky", url.option("permanent") == "true")
