"""``console://`` — print one masked line per message, for local debugging.

No credentials. Nothing is delivered: each message becomes one line on standard output
(or standard error with ``?stream=stderr``) naming the channel, the masked address, the OTP
and the text's length — never the code, the body or the full address::

    OTPGATE_DRIVERS_SMS=console://
    OTPGATE_DRIVERS_EMAIL=console://?stream=stderr
"""

from __future__ import annotations

import hashlib
import sys
from typing import TextIO
from urllib.parse import parse_qs, urlsplit

from otpgate.core.messages import segments
from otpgate.core.recipients import mask
from otpgate.drivers.base import Driver, Message, SendReceipt
from otpgate.errors import ConfigurationError
from otpgate.registry import DriverContext

CHANNELS = frozenset({"sms", "email", "voice", "whatsapp"})
_STREAMS = ("stdout", "stderr")


class ConsoleDriver:
    """Writes a masked line per message to ``sys.stdout`` or ``sys.stderr``."""

    name = "console"
    channels = CHANNELS

    def __init__(self, stream: str = "stdout") -> None:
        if stream not in _STREAMS:
            raise ConfigurationError(f"console:// stream must be one of {list(_STREAMS)}")
        self._stream = stream

    def _out(self) -> TextIO:
        # Looked up per message, so that a redirected sys.stdout is honoured.
        out: TextIO = getattr(sys, self._stream)
        return out

    async def send(self, message: Message) -> SendReceipt:
        parts = segments(message.body).parts if message.channel == "sms" else 1
        print(f"otpgate console: {message.channel} to {mask(message.to)} "
              f"otp={message.otp_id} send={message.send_no} chars={len(message.body)} "
              f"segments={parts}", file=self._out(), flush=True)
        digest = hashlib.sha256(message.idempotency_key.encode()).hexdigest()[:24]
        return SendReceipt(provider_id=f"con_{digest}", segments=parts)

    def url(self, privacy: bool = True) -> str:
        return "console://" if self._stream == "stdout" else f"console://?stream={self._stream}"

    async def close(self) -> None:
        return None


def from_url(url: str, ctx: DriverContext) -> Driver:
    """``console://[?stream=stdout|stderr]``."""
    parts = urlsplit(url)
    if parts.scheme != "console" or parts.netloc or parts.path not in ("", "/"):
        raise ConfigurationError("the console driver's URL is console://[?stream=stderr]")
    options = parse_qs(parts.query, keep_blank_values=True)
    if unknown := set(options) - {"stream"}:
        raise ConfigurationError(f"console:// does not know the options {sorted(unknown)}")
    return ConsoleDriver(options.get("stream", ["stdout"])[-1])
