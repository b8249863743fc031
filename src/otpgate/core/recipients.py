"""Recipients: E.164 phone numbers (libphonenumber) and e-mail addresses.

Input is refused rather than cleaned: unicode digits, zero-width and control characters
make a recipient invalid. Numbers are masked (``+1415•••0123``) wherever they are shown.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import re
from dataclasses import dataclass

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from otpgate.core.tenants import DEFAULT as DEFAULT_TENANT
from otpgate.errors import InvalidRecipient

MASK = "•••"
MAX_LENGTH = 254
LOCAL_PART_MAX_LENGTH = 64

# What a phone number may be written with: ASCII digits, a leading plus, and the usual
# visible separators. Anything else (unicode digits, zero-width joiners, tabs) is refused.
PHONE_PATTERN = r"\+?[0-9 ().\-]{3,32}"
COUNTRY_PATTERN = r"[A-Z]{2}"
DOCUMENTED_PATTERN = rf"^(?:{PHONE_PATTERN}|[^\s@]{{1,{LOCAL_PART_MAX_LENGTH}}}@[^\s@]+)$"
"""What ``parse`` can accept, as the OpenAPI document states it (libphonenumber and the
e-mail rules then decide)."""
_PHONE_CHARS = re.compile(PHONE_PATTERN, re.ASCII)
_COUNTRY = re.compile(COUNTRY_PATTERN, re.ASCII)


class Kind(enum.StrEnum):
    PHONE = "phone"
    EMAIL = "email"


@dataclass(frozen=True, slots=True)
class Recipient:
    """A validated, normalised recipient: E.164 for phones, normalised address for e-mail."""

    kind: Kind
    address: str

    @property
    def masked(self) -> str:
        return mask(self.address)

    @property
    def country(self) -> str | None:
        """ISO 3166-1 alpha-2 code of a phone number's country (``None`` for e-mail, and
        for numbers of no single country, such as +800 freephone)."""
        return _facts(self.address)[0] if self.kind is Kind.PHONE else None

    @property
    def number_type(self) -> int | None:
        """libphonenumber's ``PhoneNumberType`` of a phone number (``None`` for e-mail)."""
        return _facts(self.address)[1] if self.kind is Kind.PHONE else None

    def default_channel(self) -> str:
        return "sms" if self.kind is Kind.PHONE else "email"

    def key(self, secret: bytes, tenant: str = DEFAULT_TENANT) -> str:
        """A keyed digest that identifies the recipient of ``tenant`` in the store without
        revealing it: one tenant's limits and locks are not another's."""
        # Mailboxes ignore the case of the local part in practice: JANE@ and jane@ are
        # one recipient for limits and lockouts, though each is written to as given.
        identity = self.address.lower() if self.kind is Kind.EMAIL else self.address
        # The default tenant keeps the digest of the releases before tenants.
        scope = b"otpgate.recipient.v1\x00" if tenant == DEFAULT_TENANT else \
            b"otpgate.recipient.v2\x00" + tenant.encode() + b"\x00"
        mac = hmac.new(secret, scope + identity.encode(), hashlib.sha256)
        return mac.hexdigest()[:40]


def parse(raw: object, country: str | None = None) -> Recipient:
    """Validate ``raw`` as an e-mail address or an E.164 number (or a national one with
    a ``country`` hint, ISO 3166-1 alpha-2)."""
    if not isinstance(raw, str) or not raw:
        raise InvalidRecipient("to must be a non-empty string")
    if len(raw) > MAX_LENGTH:
        raise InvalidRecipient(f"to must be at most {MAX_LENGTH} characters")
    if "@" in raw:
        return _parse_email(raw)
    return _parse_phone(raw, country)


@functools.lru_cache(maxsize=4096)
def _parse_phone(raw: str, country: str | None) -> Recipient:
    """Cached: libphonenumber's parse and validation are most of a verify's time, and a
    number under attack (or just in use) is the same few strings over and over."""
    if not _PHONE_CHARS.fullmatch(raw):
        raise InvalidRecipient(
            "to must be an E.164 phone number written with ASCII digits, e.g. +14155550123"
        )
    region = None
    if country is not None and (not isinstance(country, str)
                                or not _COUNTRY.fullmatch(country)):
        raise InvalidRecipient("country must be an ISO 3166-1 alpha-2 code", "country")
    if not raw.startswith("+"):
        if country is None:
            raise InvalidRecipient(
                "to must be in international format (+ and country code), "
                "or give a country hint"
            )
        region = country
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidRecipient(f"to is not a phone number: {exc._msg}") from None
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        raise InvalidRecipient("to is not a valid phone number for its country")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    _remember(e164, number)
    return Recipient(Kind.PHONE, e164)


_NUMBERS: dict[str, phonenumbers.PhoneNumber] = {}
"""Parsed numbers by E.164, from ``_parse_phone``'s own parse, for their facts."""
_CACHED = 4096


def _remember(e164: str, number: phonenumbers.PhoneNumber) -> None:
    if len(_NUMBERS) >= _CACHED:
        _NUMBERS.clear()
    _NUMBERS[e164] = number


@functools.lru_cache(maxsize=_CACHED)
def _facts(e164: str) -> tuple[str | None, int]:
    """A number's country and type, from one parse: a request asks for them several times
    (routing, locale, geo and number-type rules, prices)."""
    number = _NUMBERS.get(e164) or phonenumbers.parse(e164)
    region = phonenumbers.region_code_for_number(number)
    return (region if region and region != "001" else None), phonenumbers.number_type(number)


def _parse_email(raw: str) -> Recipient:
    if any(not ch.isprintable() or ch.isspace() for ch in raw):
        raise InvalidRecipient("to contains invisible or control characters")
    try:
        # strict: a local part longer than 64 characters (RFC 5321) is refused too.
        info = validate_email(raw, check_deliverability=False, strict=True)
    except EmailNotValidError as exc:
        raise InvalidRecipient(f"to is not a valid e-mail address: {exc}") from None
    return Recipient(Kind.EMAIL, info.normalized)


def mask(address: str) -> str:
    """``+14155550123`` → ``+1415•••0123``; ``jane@example.com`` → ``j•••@example.com``.

    At least three digits stay hidden, and at least five of a number shorter than eleven
    digits, where showing four at each end would give most of it away.
    """
    if "@" in address:
        local, _, domain = address.rpartition("@")
        return f"{local[:1]}{MASK}@{domain}"
    plus, digits = ("+", address[1:]) if address.startswith("+") else ("", address)
    if len(digits) >= 11:
        head, tail = 4, 4
    else:
        tail = 2
        head = max(0, min(4, len(digits) - tail - 5))
    return plus + digits[:head] + MASK + digits[len(digits) - tail:]
