"""Test numbers: recipients that never get a message and answer a fixed code (app-store
review, CI). ``OTPGATE_TEST_NUMBERS="+15005550006=123456,…"`` or ``[abuse.test_numbers]``,
where a key may be a pattern (``+1500555*``, shell-style)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

from otpgate.core import codes
from otpgate.errors import ConfigurationError


class TestNumbers:
    """The configured test numbers: exact ones first, then patterns in their order."""

    __test__ = False  # not a pytest class
    __slots__ = ("_exact", "_patterns")

    def __init__(self, table: Mapping[str, str]) -> None:
        self._exact: dict[str, str] = {}
        self._patterns: list[tuple[str, str]] = []
        for number, code in table.items():
            try:
                codes.check_submitted(code)
            except Exception:
                raise ConfigurationError(f"test number {number}: the code must be 4 to 10 "
                                         "digits") from None
            if any(c in number for c in "*?["):
                _check_pattern(number)
                self._patterns.append((number, code))
            else:
                self._exact[number.lower()] = code

    def __bool__(self) -> bool:
        return bool(self._exact or self._patterns)

    def code_for(self, address: str) -> str | None:
        """The fixed code of ``address`` (an E.164 number or an e-mail address), if it is a
        test number."""
        if not self:
            return None
        found = self._exact.get(address.lower())
        if found is not None:
            return found
        for pattern, code in self._patterns:
            if fnmatch.fnmatchcase(address, pattern):
                return code
        return None


MIN_PATTERN_DIGITS = 7
"""Digits a pattern must fix before its first wildcard: a test number answers a code
anyone can know and meets no rule, so a pattern must stay a small block of numbers
(``+1500555*``), never a country or everyone."""


def _check_pattern(pattern: str) -> None:
    head = pattern[:min(pattern.find(c) for c in "*?[" if c in pattern)]
    if not head.startswith("+") or sum(c.isdigit() for c in head) < MIN_PATTERN_DIGITS:
        raise ConfigurationError(
            f"test number pattern {pattern!r}: a pattern is for phone numbers and must start "
            f"with + and {MIN_PATTERN_DIGITS} digits before its first wildcard "
            "(e.g. +1500555*); list e-mail addresses one by one")


def parse_pairs(text: str) -> dict[str, str]:
    """``number=code,number=code`` as a table."""
    table: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if part:
            number, sep, code = part.partition("=")
            if not sep:
                raise ConfigurationError("OTPGATE_TEST_NUMBERS takes number=code pairs, "
                                         "comma-separated")
            table[number.strip()] = code.strip()
    return table
