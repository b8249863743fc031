"""The ``Driver`` port every provider implements.

A driver sends one rendered message and says how it went: it returns a ``SendReceipt``,
or raises ``TemporaryDeliveryError`` (worth retrying, maybe elsewhere) or
``PermanentDeliveryError`` (never retry this message on this driver). It never returns
``False``.
"""

from __future__ import annotations

import hashlib
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import msgspec

from otpgate.errors import ConfigurationError


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A rendered message, ready to hand to a provider. ``to`` is the full address."""

    otp_id: str
    send_no: int
    channel: str
    to: str
    body: str
    subject: str | None = None
    idempotency_key: str
    """Stable across redeliveries of the same send; drivers pass it on where the
    provider supports one."""
    expires_at: float


class SendReceipt(msgspec.Struct, frozen=True):
    provider_id: str
    segments: int = 1


class Driver(Protocol):
    name: str
    """The URL scheme, e.g. ``"twilio"``."""
    channels: frozenset[str]

    async def send(self, message: Message) -> SendReceipt: ...

    def url(self, privacy: bool = True) -> str:
        """The driver's URL, with secrets masked unless ``privacy`` is off."""
        ...

    async def close(self) -> None: ...


class CapturedMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message the ``capture`` driver kept instead of sending (dev mode)."""

    id: str
    otp_id: str
    to: str
    channel: str
    body: str
    sent_at: float
    subject: str | None = None


class CaptureSink(Protocol):
    """Where the ``capture`` driver keeps messages; one per backend."""

    async def add(self, message: CapturedMessage, idempotency_key: str) -> bool:
        """Keep ``message`` unless one with the same key is kept; True if it was added."""
        ...

    async def list(self, to: str | None = None, limit: int = 100) -> list[CapturedMessage]:
        """Newest first, optionally only those sent to ``to``."""
        ...


def url_options(url: str, scheme: str, allowed: frozenset[str], usage: str) -> dict[str, str]:
    """The query options of a host-less driver URL such as ``capture://?latency_ms=5``
    (the last value of each); ``ConfigurationError`` naming ``usage`` otherwise."""
    parts = urlsplit(url)
    if parts.scheme != scheme or parts.netloc or parts.path not in ("", "/"):
        raise ConfigurationError(f"the {scheme} driver's URL is {usage}")
    options = parse_qs(parts.query, keep_blank_values=True)
    if unknown := set(options) - allowed:
        raise ConfigurationError(f"{scheme}:// does not know the options {sorted(unknown)}")
    return {name: values[-1] for name, values in options.items()}


def stable_id(prefix: str, idempotency_key: str) -> str:
    """The same message id for the same send, as a provider honouring idempotency keys
    would answer."""
    return f"{prefix}_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
