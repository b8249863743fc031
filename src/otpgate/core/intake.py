"""Requests as they arrive, and the pure parser that validates them (once, for the HTTP
API, the CLI and every other surface alike). No I/O, no clock."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from otpgate.core import autofill, codes, locales, recipients
from otpgate.core.policy import Policy
from otpgate.core.recipients import Recipient
from otpgate.errors import InvalidRequest

PURPOSE_PATTERN = r"[a-z0-9_.-]{1,64}"
LOCALE_PATTERN = r"[a-z]{2,3}(-[A-Z]{2})?"
REFERENCE_PATTERN = r"[\x20-\x7e]{1,128}"
_PURPOSE = re.compile(PURPOSE_PATTERN, re.ASCII)
_LOCALE = re.compile(LOCALE_PATTERN, re.ASCII)
_REFERENCE = re.compile(REFERENCE_PATTERN, re.ASCII)
PHONE_CHANNELS = frozenset({"sms", "voice", "whatsapp"})
EMAIL_CHANNELS = frozenset({"email"})
MAX_CHANNELS = 4
MAX_STEPS = 3
"""Fallback steps one request may name."""
MAX_BRAND = 30
"""The longest brand a request may name (Twilio's limit for a friendly name)."""
BODY_CHANNELS = frozenset({"sms", "email"})
"""Channels a whole message handed over by another service may go out on."""
MAX_BODY = {"sms": 1600, "email": 10_000}
MAX_SUBJECT = 200


@dataclass(frozen=True, slots=True)
class FallbackRequest:
    """One ``fallback`` step as received: send on ``channel`` (to ``to``, default the
    request's recipient) ``after`` seconds from the request, if the code is still pending."""

    channel: str
    after: int
    to: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """A fallback step, validated."""

    channel: str
    after: int
    recipient: Recipient


@dataclass(frozen=True, slots=True)
class OtpRequest:
    """A request for a code, as received (not yet validated)."""

    to: str
    channel: str | None = None
    channels: Sequence[str] | None = None
    purpose: str | None = None
    locale: str | None = None
    code_length: int | None = None
    ttl_seconds: int | None = None
    reference: str | None = None
    country: str | None = None
    app_hash: str | None = None
    webotp_domain: str | None = None
    brand: str | None = None
    """The name the message gives, instead of the configured brand."""
    custom_code: str | None = None
    """A code the caller chose (Twilio Verify's ``CustomCode``, where its service allows
    it); otpgate makes one otherwise."""
    fallback: Sequence[FallbackRequest] | None = None


@dataclass(frozen=True, slots=True)
class DeliverRequest:
    """A code — or a whole message — another service made, for otpgate to deliver only
    (Supabase Auth's Send-SMS hook, Ory Kratos' courier); not yet validated. With ``body``
    the text goes out as it is, otherwise otpgate's template carries ``code``."""

    to: str
    code: str | None = None
    body: str | None = None
    subject: str | None = None
    channel: str | None = None
    purpose: str | None = None
    locale: str | None = None
    country: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedDelivery:
    recipient: Recipient
    channel: str
    purpose: str
    locale: str
    ttl: int
    code: str
    """The code, or ``""`` for a message that carries none (a notice)."""
    body: str | None
    subject: str | None

    @property
    def material(self) -> str:
        """Everything the recipient will read: what a repeated hand-over repeats."""
        return "\x00".join((self.code, self.subject or "", self.body or ""))


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A request whose every field is valid (drivers for its channels aside)."""

    recipient: Recipient
    channels: tuple[str, ...]
    purpose: str
    code_length: int
    ttl: int
    locale: str
    reference: str | None
    app_hash: str | None = None
    webotp_domain: str | None = None
    brand: str | None = None
    custom_code: str | None = None
    fallback: tuple[Step, ...] = ()


def parse_request(req: OtpRequest, policy: Policy,
                  available: frozenset[str]) -> ParsedRequest:
    """Validate ``req`` against ``policy`` and the channels some driver serves
    (``available``); ``InvalidRequest`` naming the first bad field."""
    rcpt = recipients.parse(req.to, req.country)
    channels = parse_channels(rcpt, req.channel, req.channels, available)
    purpose = parse_purpose(req.purpose)
    custom = parse_custom_code(req.custom_code, req.code_length)
    ttl = policy.ttl(req.ttl_seconds)
    steps = parse_fallback(req.fallback, rcpt, channels, ttl, req.country, available)
    return ParsedRequest(recipient=rcpt, channels=channels, purpose=purpose,
                         code_length=policy.code_length(
                             len(custom) if custom is not None else req.code_length),
                         ttl=ttl, locale=parse_locale(req.locale, rcpt),
                         reference=parse_reference(req.reference),
                         app_hash=autofill.parse_app_hash(req.app_hash),
                         webotp_domain=autofill.parse_webotp_domain(req.webotp_domain),
                         brand=parse_brand(req.brand), custom_code=custom,
                         fallback=steps)


def parse_delivery(req: DeliverRequest, policy: Policy,
                   available: frozenset[str]) -> ParsedDelivery:
    """Validate a hand-over: a code of 4 to 10 digits, or a text of its own for SMS or
    e-mail (or both); ``InvalidRequest`` naming the first bad field."""
    rcpt = recipients.parse(req.to, req.country)
    (channel,) = parse_channels(rcpt, req.channel, None, available)
    if req.code is None and req.body is None:
        raise InvalidRequest("a code or a message body is required", "code")
    code = "" if req.code is None else codes.check_submitted(req.code)
    body = req.body
    if body is not None:
        if channel not in BODY_CHANNELS:
            raise InvalidRequest(f"a message of its own cannot go out on {channel!r}",
                                 "channel")
        if not isinstance(body, str) or not body.strip() or len(body) > MAX_BODY[channel] \
                or not _printable(body):
            raise InvalidRequest(f"the body must be printable text of at most "
                                 f"{MAX_BODY[channel]} characters", "body")
    subject = req.subject or None
    if subject is not None and (not isinstance(subject, str) or len(subject) > MAX_SUBJECT
                                or not subject.isprintable()):
        raise InvalidRequest(f"the subject must be one printable line of at most "
                             f"{MAX_SUBJECT} characters", "subject")
    return ParsedDelivery(recipient=rcpt, channel=channel, purpose=parse_purpose(req.purpose),
                          locale=parse_locale(req.locale, rcpt), ttl=policy.default_ttl,
                          code=code, body=body, subject=subject if channel == "email" else None)


def _printable(text: str) -> bool:
    """Printable but for line breaks and tabs."""
    return text.replace("\n", "").replace("\r", "").replace("\t", "").isprintable()


def parse_brand(value: str | None) -> str | None:
    if value is not None and (
            not isinstance(value, str) or not 1 <= len(value) <= MAX_BRAND
            or not value.isprintable() or value.strip() != value):
        raise InvalidRequest(f"the brand must be 1 to {MAX_BRAND} printable characters, "
                             "without surrounding spaces", "brand")
    return value


def parse_custom_code(value: str | None, code_length: int | None) -> str | None:
    """A code the caller chose: 4 to 10 ASCII digits (the policy's shortest code length
    applies too), matching ``code_length`` if that is given as well."""
    if value is None:
        return None
    code = codes.check_submitted(value)
    if code_length is not None and code_length != len(code):
        raise InvalidRequest("the custom code must have code_length digits", "code_length")
    return code


def parse_channels(rcpt: Recipient, channel: str | None, channels: Sequence[str] | None,
                   available: frozenset[str]) -> tuple[str, ...]:
    """The channels asked for (``channel`` or ``channels``, default by recipient kind)."""
    if channel is not None and channels is not None:
        raise InvalidRequest("give channel or channels, not both", "channels")
    if channels is not None and (
            isinstance(channels, str) or not all(isinstance(c, str) for c in channels)):
        raise InvalidRequest("channels must be a list of channel names", "channels")
    wanted = list(channels) if channels is not None else [
        channel if channel is not None else rcpt.default_channel()]
    if not wanted or len(wanted) > MAX_CHANNELS or len(set(wanted)) != len(wanted):
        raise InvalidRequest(f"channels must list 1 to {MAX_CHANNELS} distinct channels",
                             "channels")
    fits = PHONE_CHANNELS if rcpt.kind is recipients.Kind.PHONE else EMAIL_CHANNELS
    for one in wanted:
        if not isinstance(one, str) or one not in fits:
            raise InvalidRequest(
                f"channel {one!r} cannot reach a {rcpt.kind.value} recipient", "channel")
        if one not in available:
            raise InvalidRequest(f"no driver is configured for channel {one!r}", "channel")
    return tuple(wanted)


def parse_fallback(raw: Sequence[FallbackRequest] | None, rcpt: Recipient,
                   channels: tuple[str, ...], ttl: int, country: str | None,
                   available: frozenset[str]) -> tuple[Step, ...]:
    """The fallback steps: each on a channel some driver serves and that reaches its
    recipient (its own ``to``, else the request's), none on a channel the request or
    another step already uses, each due while the code lives (1 s to the TTL, exclusive)."""
    if raw is None:
        return ()
    if isinstance(raw, str | bytes) or len(raw) > MAX_STEPS:
        raise InvalidRequest(f"fallback must list at most {MAX_STEPS} steps", "fallback")
    steps: list[Step] = []
    used = set(channels)
    for step in raw:
        after = step.after
        if isinstance(after, bool) or not isinstance(after, int) or not 1 <= after < ttl:
            raise InvalidRequest(f"a fallback step's after must be 1 to {ttl - 1} seconds "
                                 "(within the code's life)", "fallback.after")
        try:
            target = rcpt if step.to is None else recipients.parse(step.to, country)
        except InvalidRequest as exc:
            raise InvalidRequest(exc.detail, "fallback.to") from None
        if not isinstance(step.channel, str):
            raise InvalidRequest("a fallback step names its channel", "fallback.channel")
        try:
            (channel,) = parse_channels(target, step.channel, None, available)
        except InvalidRequest as exc:
            raise InvalidRequest(exc.detail, "fallback.channel") from None
        if channel in used:
            raise InvalidRequest(f"channel {channel!r} is already used by this request",
                                 "fallback.channel")
        used.add(channel)
        steps.append(Step(channel, after, target))
    if [s.after for s in steps] != sorted(s.after for s in steps):
        raise InvalidRequest("fallback steps must come in the order of their after",
                             "fallback.after")
    return tuple(steps)


def parse_purpose(value: str | None) -> str:
    if value is None:
        return "default"
    if not isinstance(value, str) or not _PURPOSE.fullmatch(value):
        raise InvalidRequest("purpose must match [a-z0-9_.-]{1,64}", "purpose")
    return value


def parse_locale(value: str | None, rcpt: Recipient | None = None) -> str:
    """The locale asked for, else that of a phone number's country, else ``en``."""
    if value is None:
        return locales.for_country(rcpt.country if rcpt is not None else None)
    if not isinstance(value, str) or not _LOCALE.fullmatch(value):
        raise InvalidRequest("locale must look like 'en' or 'pt-BR'", "locale")
    return value


def parse_reference(value: str | None) -> str | None:
    if value is not None and (not isinstance(value, str) or not _REFERENCE.fullmatch(value)):
        raise InvalidRequest("reference must be 1 to 128 printable ASCII characters",
                             "reference")
    return value
