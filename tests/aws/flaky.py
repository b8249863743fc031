"""``flaky://``: a driver whose provider is always down for now (for the retry tests)."""

from __future__ import annotations

from otpgate.drivers.base import Driver, DriverContext, Message, SendReceipt
from otpgate.errors import TemporaryDeliveryError
from otpgate.urls import Url


class FlakyDriver:
    channels = frozenset({"sms"})

    def __init__(self, name: str) -> None:
        self.name = name

    async def send(self, message: Message) -> SendReceipt:
        raise TemporaryDeliveryError("provider down", retry_after=0)

    def url(self, privacy: bool = True) -> str:
        return "flaky://"

    async def close(self) -> None:
        return None


def from_url(url: Url, ctx: DriverContext) -> Driver:
    return FlakyDriver(ctx.name or "flaky")
