"""``console://`` — print one masked line per message, for local debugging.

No credentials. Nothing is delivered: each message becomes one line on standard output
(or standard error with ``?stream=stderr``) naming the channel, the masked address, the OTP
and the text's length — never the code, the body or the full address::

    OTPGATE_DRIVERS_SMS=console://
    OTPGATE_DRIVERS_EMAIL=console://?stream=stderr
"""

from __future__ import annotations

import sys
from typing import TextIO

from otpgate.core.messages import segments
from otpgate.core.recipients import mask
from otpgate.drivers.base import Driver, Message, SendReceipt, stable_id, url_options
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
        return SendReceipt(provider_id=stable_id("con", message.idempotency_key),
                           segments=parts)

    def url(self, privacy: bool = True) -> str:
        return "console://" if self._stream == "stdout" else f"console://?stream={self._stream}"

    async def close(self) -> None:
        return None


def from_url(url: str, ctx: DriverContext) -> Driver:
    """``console://[?stream=stdout|stderr]``."""
    options = url_options(url, "console", frozenset({"stream"}),
                          "console://[?stream=stderr]")
    return ConsoleDriver(options.get("stream", "stdout"))
