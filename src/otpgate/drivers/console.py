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
from otpgate.drivers.base import (
    Driver,
    DriverContext,
    Message,
    SendReceipt,
    check_host_less,
    stable_id,
)
from otpgate.errors import ConfigurationError
from otpgate.urls import Url

CHANNELS = frozenset({"sms", "email", "voice", "whatsapp"})
_STREAMS = ("stdout", "stderr")


class ConsoleDriver:
    """Writes a masked line per message to ``sys.stdout`` or ``sys.stderr``."""

    channels = CHANNELS

    def __init__(self, stream: str = "stdout", name: str = "console") -> None:
        self.name = name
        if stream not in _STREAMS:
            raise ConfigurationError(f"console:// stream must be one of {list(_STREAMS)}")
        self._stream = stream

    def _out(self) -> TextIO:
        # Looked up per message, so that a redirected sys.stdout is honoured.
        out: TextIO = getattr(sys, self._stream)
        return out

    async def send(self, message: Message) -> SendReceipt:
        encoding, parts = segments(message.body) if message.channel == "sms" else (None, 1)
        print(f"otpgate console: {message.channel} to {mask(message.to)} "
              f"otp={message.otp_id} send={message.send_no} chars={len(message.body)} "
              f"segments={parts}", file=self._out(), flush=True)
        return SendReceipt(stable_id("con", message.idempotency_key), parts,
                           encoding.value if encoding is not None else None)

    def url(self, privacy: bool = True) -> str:
        options = [f"stream={self._stream}"] if self._stream != "stdout" else []
        if self.name != "console":
            options.append(f"name={self.name}")
        return "console://" + ("?" + "&".join(options) if options else "")

    async def close(self) -> None:
        return None


def from_url(url: Url, ctx: DriverContext) -> Driver:
    """``console://[?stream=stdout|stderr]``."""
    options = check_host_less(url, "console://[?stream=stderr]", frozenset({"stream"}))
    return ConsoleDriver(options.get("stream", "stdout"), ctx.name or "console")
