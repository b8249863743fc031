"""``capture://`` — keep messages instead of sending them (dev mode, tests).

No credentials: messages go to the backend's capture sink, where the dev inbox
(``GET /v1/dev/messages``) reads them. Configure it as a driver URL::

    OTPGATE_DRIVERS_SMS=capture://
    OTPGATE_DRIVERS_SMS=capture://?latency_ms=60   # act like a slow provider

It refuses to start unless captures are allowed (``otpgate serve --dev`` or
``OTPGATE_ALLOW_CAPTURE=true``), so real traffic never ends up in an inbox by accident.
A repeated send (same idempotency key) is kept once and answers with the same id.

Delivery receipts can be played by hand, as a provider would send them:
``POST /v1/receipts/capture`` with ``{"id": "cap_…", "status": "delivered"}`` (or
``"failed"`` with an ``"error_code"``). They carry no signature, so they are taken in dev
mode only — never where captures are merely allowed (``OTPGATE_ALLOW_CAPTURE``), since a
message id can be derived from an OTP id.
"""

from __future__ import annotations

import asyncio

import msgspec

from otpgate.capture.base import CapturedMessage, CaptureSink
from otpgate.clock import Clock
from otpgate.core.messages import segments
from otpgate.drivers.base import (
    Driver,
    DriverContext,
    Message,
    Receipt,
    ReceiptRequest,
    ReceiptStatus,
    SendReceipt,
    check_host_less,
    stable_id,
)
from otpgate.errors import ConfigurationError, InvalidRequest, PermanentDeliveryError
from otpgate.urls import Url

CHANNELS = frozenset({"sms", "email", "voice", "whatsapp"})


class PlayedReceipt(msgspec.Struct, forbid_unknown_fields=True):
    """A delivery report played by hand against the capture driver."""

    id: str
    status: ReceiptStatus
    error_code: str | None = None


_played = msgspec.json.Decoder(PlayedReceipt)


class CaptureDriver:
    """Keeps each message in a ``CaptureSink`` under its idempotency key."""

    channels = CHANNELS

    def __init__(self, sink: CaptureSink, clock: Clock, latency_ms: int = 0,
                 name: str = "capture") -> None:
        self.name = name
        self._sink = sink
        self._clock = clock
        self._latency_ms = latency_ms

    async def send(self, message: Message) -> SendReceipt:
        if message.channel not in self.channels:
            raise PermanentDeliveryError(f"capture cannot send on channel {message.channel!r}")
        if self._latency_ms:
            await asyncio.sleep(self._latency_ms / 1000)
        message_id = stable_id("cap", message.idempotency_key)
        await self._sink.add(CapturedMessage(
            id=message_id, otp_id=message.otp_id, to=message.to, channel=message.channel,
            body=message.body, subject=message.subject, sent_at=self._clock.now(),
        ), message.idempotency_key)
        if message.channel == "sms":
            encoding, parts = segments(message.body)
            return SendReceipt(message_id, parts, encoding.value)
        return SendReceipt(message_id)

    async def read_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        try:
            played = _played.decode(request.body)
        except msgspec.DecodeError as exc:
            raise InvalidRequest(f"a capture receipt is {{id, status[, error_code]}}: {exc}"
                                 ) from None
        return [Receipt(provider_id=played.id, status=played.status,
                        error_code=played.error_code)]

    def url(self, privacy: bool = True) -> str:
        options = [f"latency_ms={self._latency_ms}"] if self._latency_ms else []
        if self.name != "capture":
            options.append(f"name={self.name}")
        return "capture://" + ("?" + "&".join(options) if options else "")

    async def close(self) -> None:
        return None


def from_url(url: Url, ctx: DriverContext) -> Driver:
    """``capture://[?latency_ms=N]``; ``ConfigurationError`` unless captures are allowed."""
    if not ctx.allow_capture:
        raise ConfigurationError(
            "the capture driver keeps messages instead of sending them; it runs only in dev "
            "mode or with OTPGATE_ALLOW_CAPTURE=true")
    options = check_host_less(url, "capture://[?latency_ms=N]", frozenset({"latency_ms"}))
    latency = options.get("latency_ms", "0")
    if not latency.isascii() or not latency.isdigit():
        raise ConfigurationError("capture:// latency_ms must be a whole number of milliseconds")
    return CaptureDriver(ctx.capture, ctx.clock, int(latency), ctx.name or "capture")
