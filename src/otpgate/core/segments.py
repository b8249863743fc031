"""How many SMS segments a text costs, and in which encoding (3GPP TS 23.038, GSM 03.38).

A text made only of the GSM 7-bit default alphabet and its extension table goes out as
GSM-7: 160 septets in a single message, 153 in each part of a concatenated one (the user
data header takes the other seven). An extension character is sent as the escape septet
and its code, so it takes two septets, and the pair is never split across two parts.

Anything else makes the whole text UCS-2 (UTF-16 in practice): 70 units in a single
message, 67 in each part. A character beyond the basic plane is a surrogate pair, two
units that are never split either.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import NamedTuple

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"                 # 0x00-0x0F
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"                      # 0x10-0x1F, less 0x1B (the escape)
    " !\"#¤%&'()*+,-./0123456789:;<=>?"   # 0x20-0x3F
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"     # 0x40-0x5F
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"     # 0x60-0x7F
)
"""The default alphabet's 127 characters (0x1B, the escape to the extension table, is
not a character of its own)."""
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
"""The characters of the extension table, each sent as escape + code: two septets."""

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


class Encoding(enum.StrEnum):
    GSM7 = "gsm-7"
    UCS2 = "ucs-2"


class Segments(NamedTuple):
    encoding: Encoding
    parts: int


def encoding(text: str) -> Encoding:
    """GSM-7 when every character of ``text`` has a GSM-7 code, else UCS-2."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        return Encoding.GSM7
    return Encoding.UCS2


def units(text: str) -> int:
    """The length of ``text`` in its encoding's units: septets or UTF-16 code units."""
    return sum(_costs(text, encoding(text)))


def segments(text: str) -> Segments:
    """The encoding an SMS of ``text`` needs and how many segments it is sent as."""
    kind = encoding(text)
    single, part = (GSM7_SINGLE, GSM7_PART) if kind is Encoding.GSM7 else (
        UCS2_SINGLE, UCS2_PART)
    return Segments(kind, _pack(_costs(text, kind), single, part))


def _costs(text: str, kind: Encoding) -> Iterable[int]:
    if kind is Encoding.GSM7:
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _pack(costs: Iterable[int], single: int, part: int) -> int:
    """Parts needed for ``costs`` when one message holds ``single`` units and each part
    of a concatenated one ``part``, no character split between two parts."""
    costs = list(costs)
    if sum(costs) <= single:
        return 1
    count, used = 1, 0
    for cost in costs:
        if used + cost > part:
            count, used = count + 1, 0
        used += cost
    return count
