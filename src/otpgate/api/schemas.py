"""Request and response bodies of the HTTP API, as msgspec Structs, and their decoding.

Bodies are decoded strictly from the raw bytes whatever the ``Content-Type`` (so that
``curl -d '{…}'`` works): a body that is not JSON at all is a 400 problem, JSON of the wrong
shape (not an object, a wrong type, an unknown, missing or repeated field) is a 422 problem
naming the field. Values are checked by the service (``otpgate.service``), not here; the
OpenAPI document states the same rules (``document_rules``).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, InternalServerException

from otpgate.api import idempotency
from otpgate.config import Settings
from otpgate.core import codes, ids, intake, recipients
from otpgate.core.otp import Status
from otpgate.errors import InvalidRequest

T = TypeVar("T")


class FallbackIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A fallback step: send on ``channel`` (to ``to``, default the request's) ``after``
    seconds from the request, only if the code is still pending then."""

    channel: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    after: Annotated[int, msgspec.Meta(ge=1)]
    """Seconds from the request; less than the code's TTL."""
    to: Annotated[str, msgspec.Meta(min_length=1, max_length=recipients.MAX_LENGTH)] | None = None


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
    app_hash: str | None = None
    """Android SMS Retriever: the app's 11-character hash, on the SMS's last lines."""
    webotp_domain: str | None = None
    """WebOTP: the domain of the SMS's last line, ``@domain #code``."""
    fallback: list[FallbackIn] | None = None
    """Steps that send on other channels later, while the code is still pending."""
    client_ip: str | None = None
    """A server key's end user's address, for the per-address limits."""
    rate_keys: dict[str, str] | None = None
    """A server key's own keys to limit by (``{"user_id": "…"}``), configured by name."""


class CodeIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/otp/{id}/verify``: the code the user typed."""

    code: str
    client_ip: str | None = None


class VerifyIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/verify``: a code for the pending OTP of (``to``, ``purpose``)."""

    to: str
    code: str
    purpose: str | None = None
    country: str | None = None
    client_ip: str | None = None


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


class VerifyOut(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Answer to a verification; ``attempts_left`` only while the code can still be tried.
    By recipient, only an ``approved`` answer carries the ``id``. An answer that approves
    carries ``token``: a JWT (EdDSA) the keys at ``/.well-known/jwks.json`` verify."""

    id: str | None = None
    valid: bool
    status: Status
    attempts_left: int | None = None
    token: str | None = None


class Jwk(msgspec.Struct, kw_only=True):
    """An Ed25519 public key (RFC 8037)."""

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    use: Literal["sig"]
    alg: Literal["EdDSA"]
    kid: str


class Jwks(msgspec.Struct, kw_only=True):
    """The keys verification tokens are signed with (RFC 7517), current first."""

    keys: list[Jwk]


class UnlockIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/admin/unlock``: the recipient to unlock (in the key's tenant)."""

    to: str
    country: str | None = None


class UnlockOut(msgspec.Struct):
    """What an unlock undid: whether the recipient was locked, and the consecutive wrong
    answers it forgot."""

    to: str
    was_locked: bool
    failures: int


DeliveryState = Literal["queued", "sent", "delivered", "failed", "expired"]


class ChannelOut(msgspec.Struct, omit_defaults=True):
    """How one channel of an OTP's latest send is doing — or one fallback step
    (``step``, from 1, with ``to`` and ``due_at``; ``queued`` until it fires)."""

    channel: str
    driver: str
    status: DeliveryState
    attempts: int
    updated_at: str
    step: int | None = None
    to: str | None = None
    """A step's masked address."""
    due_at: str | None = None


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


class ReceiptOut(msgspec.Struct):
    """Answer to a provider's delivery report."""

    received: bool
    moved: int
    """How many sends the report moved (0 for one otpgate does not know)."""


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


class DriverBreaker(msgspec.Struct, omit_defaults=True):
    """A driver's circuit breaker in this process."""

    driver: str
    state: Literal["closed", "open", "half_open"]
    calls: int = 0
    """Calls in the breaker's window."""
    failures: int = 0
    open_until: float | None = None
    """While open: when a probe is let through (Unix seconds)."""


class Ready(msgspec.Struct):
    """``GET /readyz`` 200: the store and the bus can be used, no send is late."""

    status: str
    subscriptions: list[SubscriptionBacklog]
    breakers: list[DriverBreaker] = msgspec.field(default_factory=list)


class NotReady(msgspec.Struct, omit_defaults=True):
    """``GET /readyz`` 503: a problem (RFC 9457) with the backlog as an extension."""

    type: str
    title: str
    status: int
    detail: str
    retry_after: int | None = None
    subscriptions: list[SubscriptionBacklog] = msgspec.field(default_factory=list)
    breakers: list[DriverBreaker] = msgspec.field(default_factory=list)


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details; ``field`` names the offending input where known."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    retry_after: int | None = None
    rule: str | None = None
    """For 429: the rule that refused (``send-limit``, ``recipient-lock``, ...)."""


REQUEST_BODIES: dict[tuple[str, str], type[msgspec.Struct]] = {
    ("/v1/otp", "post"): OtpIn,
    ("/v1/otp/{otp_id}/verify", "post"): CodeIn,
    ("/v1/verify", "post"): VerifyIn,
    ("/v1/admin/unlock", "post"): UnlockIn,
}
"""Which body each route reads, for the OpenAPI document (the handlers read raw bytes)."""

_DECODERS: dict[type[msgspec.Struct], msgspec.json.Decoder[msgspec.Struct]] = {
    t: msgspec.json.Decoder(t) for t in REQUEST_BODIES.values()
}
_JSON_KEY = re.compile(rb'"([^"]*)"\s*:')
_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_NAMED = re.compile(r"field `(?P<name>[^`]*)`")


class ClientDisconnected(ClientException):
    """The client went away before its request's body arrived: nothing to answer, and
    nothing went wrong here (logged as a client error, not as a server error)."""

    status_code = 499


async def read_body(request: Request[Any, Any, Any]) -> bytes:
    """The request's body; ``ClientDisconnected`` if the client left before sending it."""
    try:
        return await request.body()
    except InternalServerException:  # Litestar's word for "the client disconnected"
        raise ClientDisconnected("the client disconnected before sending its body") from None


def decode(body: bytes, type_: type[T]) -> T:
    """Decode ``body`` as a JSON object of ``type_``; raise a 400 or 422 on failure, a
    field given twice included (JSON parsers disagree on which one counts)."""
    decoder = _DECODERS.get(type_)  # type: ignore[arg-type]
    try:
        if decoder is None:
            return msgspec.json.decode(body, type=type_)
        value: T = decoder.decode(body)  # type: ignore[assignment]
    except msgspec.ValidationError as exc:
        raise _shape_error(str(exc)) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise ClientException("request body must be a JSON object (UTF-8)") from None
    # msgspec keeps the last of repeated keys. Without a backslash no string can hold a
    # quote, so every `"…" :` is a key (and, decoded, a known field): a scan finds them.
    # A body with escapes, or with nested objects (whose keys may repeat their parent's:
    # a fallback step's "to"), is parsed again, exactly, object by object.
    if b"\\" in body or body.count(b"{") > 1:
        _refuse_repeated_keys(body)
    else:
        keys = _JSON_KEY.findall(body)
        if len(keys) != len(set(keys)):
            repeated = next(k for k in keys if keys.count(k) > 1).decode()
            raise InvalidRequest(f"the field {repeated!r} is given twice", repeated)
    return value


def _refuse_repeated_keys(body: bytes) -> None:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                raise InvalidRequest(f"the field {key!r} is given twice", key)
            seen.add(key)
        return dict(items)

    json.loads(body, object_pairs_hook=pairs)


def document_rules(settings: Settings) -> dict[str, dict[str, Any]]:
    """JSON Schema constraints of each request value, by name, as the service checks it
    (``otpgate.core``): for the OpenAPI document."""
    policy = settings.policy
    channels = sorted(set(settings.driver_urls) & (intake.PHONE_CHANNELS
                                                   | intake.EMAIL_CHANNELS))
    return {
        "to": {"minLength": 1, "maxLength": recipients.MAX_LENGTH,
               "pattern": recipients.DOCUMENTED_PATTERN},
        "channel": {"enum": channels},
        "channels": {"minItems": 1, "maxItems": intake.MAX_CHANNELS, "uniqueItems": True,
                     "items": {"type": "string", "enum": channels}},
        "fallback": {"minItems": 0, "maxItems": intake.MAX_STEPS},
        "after": {"minimum": 1, "maximum": policy.max_ttl - 1},
        "purpose": _pattern(intake.PURPOSE_PATTERN, 1, 64),
        "locale": _pattern(intake.LOCALE_PATTERN, 2, 6),
        "reference": _pattern(intake.REFERENCE_PATTERN, 1, 128),
        "country": _pattern(recipients.COUNTRY_PATTERN, 2, 2),
        "code": _pattern(codes.CODE_PATTERN, codes.MIN_LENGTH, codes.MAX_LENGTH),
        "code_length": {"minimum": codes.MIN_LENGTH, "maximum": codes.MAX_LENGTH},
        "ttl_seconds": {"minimum": policy.min_ttl, "maximum": policy.max_ttl},
        "otp_id": _pattern(ids.OTP_ID_PATTERN, len(ids.new_otp_id()), len(ids.new_otp_id())),
        "client_ip": {"minLength": 2, "maxLength": 45,
                      "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
        idempotency.HEADER: _pattern(idempotency.KEY_PATTERN, 1, 255),
    }


def _pattern(pattern: str, shortest: int, longest: int) -> dict[str, Any]:
    return {"pattern": f"^(?:{pattern})$", "minLength": shortest, "maxLength": longest}


def _shape_error(message: str) -> InvalidRequest:
    field: str | None = None
    if (at := _AT.search(message)) is not None and at["path"]:
        field = at["path"]
    elif (named := _NAMED.search(message)) is not None:
        field = named["name"]
    if message.startswith("Expected `object`") and field is None:
        message = "request body must be a JSON object"
    return InvalidRequest(message, field)
