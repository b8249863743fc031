"""Requests as they arrive, and the pure parser that validates them (once, for the HTTP
API, the CLI and every other surface alike). No I/O, no clock."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from otpgate.core import autofill, locales, recipients
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


def parse_request(req: OtpRequest, policy: Policy,
                  available: frozenset[str]) -> ParsedRequest:
    """Validate ``req`` against ``policy`` and the channels some driver serves
    (``available``); ``InvalidRequest`` naming the first bad field."""
    rcpt = recipients.parse(req.to, req.country)
    channels = parse_channels(rcpt, req.channel, req.channels, available)
    purpose = parse_purpose(req.purpose)
    return ParsedRequest(recipient=rcpt, channels=channels, purpose=purpose,
                         code_length=policy.code_length(req.code_length),
                         ttl=policy.ttl(req.ttl_seconds),
                         locale=parse_locale(req.locale, rcpt),
                         reference=parse_reference(req.reference),
                         app_hash=autofill.parse_app_hash(req.app_hash),
                         webotp_domain=autofill.parse_webotp_domain(req.webotp_domain))


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
