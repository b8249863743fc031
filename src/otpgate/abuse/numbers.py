"""Where codes may go: countries allowed or blocked (per channel), and the number types
libphonenumber tells apart. Pure: a recipient and the settings in, a refusal out.

Defaults (the contract's): premium-rate, shared-cost, UAN, pager and voicemail numbers
are refused on every phone channel; fixed-line is refused for SMS and WhatsApp (a
landline cannot read a text, and a code sent to one is money spent for nothing), not for
voice; FIXED_LINE_OR_MOBILE, VoIP and the rest are allowed unless blocked.
"""

from __future__ import annotations

from collections.abc import Sequence

from phonenumbers import PhoneNumberType

from otpgate.abuse.settings import AbuseSettings
from otpgate.core.recipients import Kind, Recipient
from otpgate.errors import GeoBlocked, NumberTypeRefused

TYPES: dict[int, str] = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.UNKNOWN: "unknown",
}
REFUSED_EVERYWHERE = frozenset({"premium_rate", "shared_cost", "uan", "pager", "voicemail"})
REFUSED_FOR_TEXT = frozenset({"fixed_line"})
TEXT_CHANNELS = frozenset({"sms", "whatsapp"})


def number_type(rcpt: Recipient) -> str:
    found = rcpt.number_type
    return "unknown" if found is None else TYPES.get(found, "unknown")


def geo_refusal(rcpt: Recipient, channels: Sequence[str],
                settings: AbuseSettings) -> GeoBlocked | None:
    """Why the recipient's country may not get a code on one of ``channels``."""
    if rcpt.kind is not Kind.PHONE:
        return None
    country = rcpt.country or "ZZ"
    for channel in channels:
        per = settings.geo.get(channel)
        allow = per.allow if per is not None and per.allow else settings.geo_allow
        block = (*settings.geo_block, *(per.block if per is not None else ()))
        if (allow and country not in allow) or country in block:
            return GeoBlocked(f"codes are not sent to numbers of {country} on {channel}")
    return None


def type_refusal(rcpt: Recipient, channels: Sequence[str],
                 settings: AbuseSettings) -> NumberTypeRefused | None:
    """Why a number of this type may not get a code on one of ``channels``."""
    if rcpt.kind is not Kind.PHONE:
        return None
    kind = number_type(rcpt)
    allowed, blocked = settings.number_types_allow, settings.number_types_block
    for channel in channels:
        refused = kind in REFUSED_EVERYWHERE or (
            channel in TEXT_CHANNELS and kind in REFUSED_FOR_TEXT)
        if (refused and kind not in allowed) or kind in blocked:
            return NumberTypeRefused(
                f"codes are not sent to {kind.replace('_', '-')} numbers on {channel}")
    return None
