"""Request and response bodies of the HTTP API, as msgspec Structs, and their decoding.

Bodies are decoded strictly from the raw bytes whatever the ``Content-Type`` (so that
``curl -d '{…}'`` works): a body that is not JSON at all is a 400 problem, JSON of the wrong
shape (not an object, a wrong type, an unknown or missing field) is a 422 problem naming
the field. Values are checked by the service (``otpgate.service``), not here.
"""

from __future__ import annotations

import re
from typing import Literal, TypeVar

import msgspec
from litestar.exceptions import ClientException

from otpgate.core.otp import Status
from otpgate.errors import InvalidRequest

T = TypeVar("T")


class OtpIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``POST /v1/otp``: ask for a code."""

    to: str
    channel: str | None = None
    channels: list[str] | None = None
    purpose: str | None = None
    locale: str | None = None
    code_length: int | None = None
    ttl_seconds: int | None = None
    reference: str | None = None
    country: str | None = None


class CodeIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/otp/{id}/verify``: the code the user typed."""

    code: str


class VerifyIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/verify``: a code for the pending OTP of (``to``, ``purpose``)."""

    to: str
    code: str
    purpose: str | None = None
    country: str | None = None


class OtpAccepted(msgspec.Struct):
    """202 answer to ``POST /v1/otp``; ``to`` is masked, times are RFC 3339 UTC."""

    id: str
    status: Status
    to: str
    channels: list[str]
    expires_at: str
    resend_after: str
    send_count: int
    attempts_left: int


class VerifyOut(msgspec.Struct, omit_defaults=True):
    """Answer to a verification; ``attempts_left`` only while the code can still be tried."""

    id: str
    valid: bool
    status: Status
    attempts_left: int | None = None


DeliveryState = Literal["queued", "sent", "delivered", "failed", "expired"]


class ChannelOut(msgspec.Struct):
    """How one channel of an OTP's latest send is doing."""

    channel: str
    driver: str
    status: DeliveryState
    attempts: int
    updated_at: str


class OtpStatusOut(msgspec.Struct, omit_defaults=True):
    """``GET`` / ``DELETE /v1/otp/{id}``: the OTP and one entry per channel."""

    id: str
    status: Status
    to: str
    purpose: str
    channels: list[ChannelOut]
    send_count: int
    attempts_left: int
    expires_at: str
    created_at: str
    reference: str | None = None


class MessageOut(msgspec.Struct):
    """A message the capture driver kept (dev mode); ``to`` is the full address."""

    id: str
    otp_id: str
    to: str
    channel: str
    body: str
    sent_at: str


class Health(msgspec.Struct):
    status: str


class SubscriptionBacklog(msgspec.Struct):
    """What waits in one bus subscription (``dispatch.<driver>`` for each driver)."""

    subscription: str
    depth: int
    """Deliveries not yet acknowledged (due, waiting for a retry, or in flight)."""
    due: int
    """Of those, deliveries that could be handled now and are not in flight."""
    oldest_due_age: float
    """Seconds the oldest due delivery has waited (0 when none is due)."""


class Ready(msgspec.Struct):
    """``GET /readyz`` 200: the store and the bus can be used, no send is late."""

    status: str
    subscriptions: list[SubscriptionBacklog]


class NotReady(msgspec.Struct, omit_defaults=True):
    """``GET /readyz`` 503: a problem (RFC 9457) with the backlog as an extension."""

    type: str
    title: str
    status: int
    detail: str
    retry_after: int | None = None
    subscriptions: list[SubscriptionBacklog] = msgspec.field(default_factory=list)


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details; ``field`` names the offending input where known."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    retry_after: int | None = None


REQUEST_BODIES: dict[tuple[str, str], type[msgspec.Struct]] = {
    ("/v1/otp", "post"): OtpIn,
    ("/v1/otp/{otp_id}/verify", "post"): CodeIn,
    ("/v1/verify", "post"): VerifyIn,
}
"""Which body each route reads, for the OpenAPI document (the handlers read raw bytes)."""

_DECODERS: dict[type[msgspec.Struct], msgspec.json.Decoder[msgspec.Struct]] = {
    t: msgspec.json.Decoder(t) for t in REQUEST_BODIES.values()
}
_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_NAMED = re.compile(r"field `(?P<name>[^`]*)`")


def decode(body: bytes, type_: type[T]) -> T:
    """Decode ``body`` as a JSON object of ``type_``; raise a 400 or 422 on failure."""
    decoder = _DECODERS.get(type_)  # type: ignore[arg-type]
    try:
        if decoder is not None:
            value: T = decoder.decode(body)  # type: ignore[assignment]
            return value
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise _shape_error(str(exc)) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise ClientException("request body must be a JSON object (UTF-8)") from None


def _shape_error(message: str) -> InvalidRequest:
    field: str | None = None
    if (at := _AT.search(message)) is not None and at["path"]:
        field = at["path"]
    elif (named := _NAMED.search(message)) is not None:
        field = named["name"]
    if message.startswith("Expected `object`") and field is None:
        message = "request body must be a JSON object"
    return InvalidRequest(message, field)
