"""A driver whose provider answers 502, raised as ``httpx`` raises it: the error's text
quotes the request URL, and with it the number and the code the message carried.

``leaky://?reveal=PATH`` also writes ``<number> <code>`` to PATH, so that a test in
another process knows what must not show anywhere.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx

from otpgate.drivers.base import DriverContext, Message, SendReceipt
from otpgate.urls import Url

NUMBER = "+14155550123"
CODE = "482913"


def leaky_error(to: str = NUMBER, code: str = CODE) -> httpx.HTTPStatusError:
    """What ``raise_for_status`` raises for a 502 to ``…?to=<to>&text=…<code>…``."""
    url = (f"https://sms.provider.test/send?to={quote(to)}"
           f"&text={quote_plus(f'Your code is {code}')}")
    response = httpx.Response(502, request=httpx.Request("POST", url))
    try:
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        return exc
    raise AssertionError("a 502 did not raise")


class LeakyDriver:
    channels = frozenset({"sms", "email"})

    def __init__(self, name: str = "leaky", reveal: Path | None = None) -> None:
        self.name = name
        self._reveal = reveal

    async def send(self, message: Message) -> SendReceipt:
        if self._reveal is not None:
            self._reveal.write_text(f"{message.to} {message.code}")
        raise leaky_error(message.to, message.code)

    def url(self, privacy: bool = True) -> str:
        return "leaky://"

    async def close(self) -> None:
        return None


def from_url(url: Url, ctx: DriverContext) -> LeakyDriver:
    reveal = url.option("reveal")
    return LeakyDriver(ctx.name or "leaky", Path(reveal) if reveal else None)
