"""The ``Driver`` port every provider implements, and what a driver is opened with.

A driver sends one rendered message and says how it went: it returns a ``SendReceipt``
(sent, with the provider's message id), or raises one of the outcomes of
``otpgate.errors``: ``TemporaryDeliveryError`` (worth retrying, maybe elsewhere; its
``UnknownOutcomeError`` when the provider may have taken the message without answering),
``PermanentDeliveryError`` (the recipient cannot be reached through this driver) or
``BrokenDriverError`` (the driver itself is refused: credentials, account). It never
returns ``False``. Each driver module opens with where its credentials come from and keeps
a table of the provider's documented codes and the outcome each maps to.

Drivers that take delivery reports also implement ``ReceiptReader``.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import msgspec

from otpgate.capture.base import CaptureSink
from otpgate.clock import Clock
from otpgate.errors import ConfigurationError
from otpgate.urls import Url

COMMON_OPTIONS = frozenset({"name", "mps", "burst", "concurrency"})
"""Options every driver URL takes, read by the assembly rather than by the driver."""
MAX_CONCURRENCY = 10_000
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}", re.ASCII)


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A rendered message, ready to hand to a provider. ``to`` is the full address and
    ``code`` the plain code (for providers that template it themselves, such as WhatsApp
    content templates): neither is ever logged."""

    otp_id: str
    send_no: int
    channel: str
    to: str
    body: str
    code: str = msgspec.field(default="")
    locale: str = "en"
    subject: str | None = None
    html: str | None = None
    """E-mail only: the HTML alternative of ``body``."""
    idempotency_key: str
    """Stable across redeliveries of the same send; drivers pass it on where the
    provider supports one."""
    expires_at: float

    def __repr__(self) -> str:
        return (f"Message(otp_id={self.otp_id!r}, send_no={self.send_no}, "
                f"channel={self.channel!r})")


class SendReceipt(msgspec.Struct, frozen=True):
    """The provider took the message: its id (receipts refer to it), and what it cost."""

    provider_id: str
    segments: int = 1
    encoding: str | None = None
    """``gsm-7`` or ``ucs-2`` for SMS, where the driver knows it."""


class Driver(Protocol):
    name: str
    """The configured name (``name=`` in the URL, default the scheme)."""
    channels: frozenset[str]

    async def send(self, message: Message) -> SendReceipt: ...

    def url(self, privacy: bool = True) -> str:
        """The driver's URL, with secrets masked unless ``privacy`` is off."""
        ...

    async def close(self) -> None: ...


ReceiptStatus = Literal["sent", "delivered", "failed"]


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """One delivery report, as a provider sent it, read by its driver."""

    provider_id: str
    status: ReceiptStatus
    error_code: str | None = None
    at: float | None = None


@dataclass(frozen=True, slots=True)
class ReceiptRequest:
    """A provider's callback: ``url`` is the public URL it was sent to (signatures are
    computed over it), ``body`` the raw bytes."""

    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes


@runtime_checkable
class ReceiptReader(Protocol):
    """A driver whose provider reports deliveries to ``/v1/receipts/{name}``."""

    async def read_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        """The reports a callback carries; ``Forbidden`` when its signature (or token)
        does not verify, ``InvalidRequest`` when it is not shaped as the provider's."""
        ...


@dataclass(frozen=True, slots=True)
class DriverContext:
    """What a driver may need besides its URL."""

    clock: Clock
    capture: CaptureSink
    allow_capture: bool
    name: str = ""
    """The driver's name; filled in by ``otpgate.drivers.open_driver``."""
    public_url: str | None = None
    """Where otpgate is reached from outside (``OTPGATE_PUBLIC_URL``), for callbacks."""

    @property
    def receipt_url(self) -> str | None:
        """The callback URL a provider should report this driver's deliveries to."""
        if not self.public_url:
            return None
        return f"{self.public_url.rstrip('/')}/v1/receipts/{self.name}"


def driver_name(url: Url) -> str:
    """``name=`` of a driver URL, else its scheme (``webhook`` for ``webhook+…``)."""
    name = url.option("name")
    if name is None:
        name = url.scheme.split("+")[0]
    if not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"driver name {name!r} must be 1-32 of a-z, 0-9, '-' and '_' ({url.masked})")
    return name


def driver_concurrency(url: Url) -> int | None:
    """``concurrency=`` of a driver URL: how many sends its dispatcher keeps in flight in
    one process (``None``: the dispatcher's default)."""
    raw = url.option("concurrency")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_CONCURRENCY):
        raise ConfigurationError(f"concurrency= is a whole number from 1 to {MAX_CONCURRENCY} "
                                 f"({url.masked})")
    return int(raw)


def driver_pace(url: Url) -> tuple[float, int] | None:
    """``mps=`` and ``burst=`` of a driver URL: messages a second (a bucket of ``burst``,
    default 1), ``None`` when unpaced."""
    raw, burst = url.option("mps"), url.option("burst")
    if raw is None:
        if burst is not None:
            raise ConfigurationError(f"burst= needs mps= ({url.masked})")
        return None
    try:
        rate = float(raw)
    except ValueError:
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        raise ConfigurationError(f"mps= is a positive number of messages a second "
                                 f"({url.masked})")
    if burst is not None and not (burst.isascii() and burst.isdigit()
                                  and 1 <= int(burst) <= MAX_CONCURRENCY):
        raise ConfigurationError(f"burst= is a whole number from 1 to {MAX_CONCURRENCY} "
                                 f"({url.masked})")
    return rate, int(burst) if burst is not None else 1


def check_host_less(url: Url, usage: str, allowed: frozenset[str]) -> dict[str, str]:
    """The driver options of a URL such as ``capture://?latency_ms=5``, which has no host
    or credentials; ``ConfigurationError`` naming ``usage`` otherwise."""
    if url.user is not None or url.host or url.path not in ("", "/"):
        raise ConfigurationError(f"the {url.scheme} driver's URL is {usage}")
    url.check_options(allowed | COMMON_OPTIONS, usage)
    return {k: v for k, v in url.query.items() if k not in COMMON_OPTIONS}


def stable_id(prefix: str, idempotency_key: str) -> str:
    """The same message id for the same send, as a provider honouring idempotency keys
    would answer."""
    return f"{prefix}_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
