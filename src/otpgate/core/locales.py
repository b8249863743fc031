"""Locales: the texts one locale is made of, how it words a number of minutes, and which
locale a phone number's country gets when a request names none.

Plural rules are CLDR's, for the whole numbers below a million that a count of minutes
can be (the categories CLDR gives only for fractions or millions never occur): English
says "1 minute, 2 minutes", Russian "1 минуту, 2 минуты, 5 минут, 21 минуту", Arabic has
six forms, Chinese and Japanese one.

A country's locale is the language most of its people read: CLDR's likely language for
most countries, the written language of school and business where CLDR names one more
spoken than written (French for Senegal, Spanish for Paraguay, Russian for Belarus).
Locales otpgate has no texts for (``it`` for +39) still reach the templates, which fall
back to English — or serve an operator's own ``it`` texts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache

PluralRule = Callable[[int], str]
CATEGORIES = ("zero", "one", "two", "few", "many", "other")
"""CLDR's plural categories."""


@dataclass(frozen=True, slots=True)
class LocaleTexts:
    """One locale's texts. Placeholders: ``{brand}``, ``{code}`` and ``{minutes}``, the
    minutes already worded (``minutes`` by plural category, ``{n}`` standing for the
    number). The voice text gets the code spaced out, digit by digit; ``email_html``,
    when given, is a whole HTML document whose placeholders are filled HTML-escaped —
    without it the HTML alternative is made from ``email_body``."""

    sms: str
    voice: str
    email_subject: str
    email_body: str
    minutes: Mapping[str, str]
    email_html: str | None = None


def _one(n: int) -> str:
    return "one" if n == 1 else "other"


def _zero_or_one(n: int) -> str:
    return "one" if n in (0, 1) else "other"


def _east_slavic(n: int) -> str:
    if n % 10 == 1 and n % 100 != 11:
        return "one"
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return "few"
    return "many"


def _polish(n: int) -> str:
    if n == 1:
        return "one"
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return "few"
    return "many"


def _czech(n: int) -> str:
    return "one" if n == 1 else "few" if 2 <= n <= 4 else "other"


def _romanian(n: int) -> str:
    if n == 1:
        return "one"
    return "few" if n == 0 or 1 <= n % 100 <= 19 else "other"


def _hebrew(n: int) -> str:
    return "one" if n == 1 else "two" if n == 2 else "other"


def _arabic(n: int) -> str:
    if n in (0, 1, 2):
        return ("zero", "one", "two")[n]
    if 3 <= n % 100 <= 10:
        return "few"
    if 11 <= n % 100 <= 99:
        return "many"
    return "other"


def _none(n: int) -> str:
    return "other"


PLURAL_RULES: dict[str, PluralRule] = {
    **dict.fromkeys(("en", "de", "es", "it", "nl", "sv", "da", "nb", "fi", "el", "hu", "tr",
                     "ur", "pt-PT"), _one),
    **dict.fromkeys(("fr", "pt", "hi", "bn", "fa", "vi"), _zero_or_one),
    **dict.fromkeys(("ru", "uk"), _east_slavic),
    **dict.fromkeys(("cs", "sk"), _czech),
    **dict.fromkeys(("zh", "ja", "ko", "id", "th"), _none),
    "pl": _polish, "ro": _romanian, "he": _hebrew, "ar": _arabic,
}
"""Plural rule by locale or language; any other language counts as English does."""


def plural_rule(locale: str) -> PluralRule:
    """The rule of ``locale`` (``pt-PT``), else of its language (``pt``), else English's."""
    for candidate in candidates(locale):
        if candidate in PLURAL_RULES:
            return PLURAL_RULES[candidate]
    return _one


@cache
def plural_categories(locale: str) -> frozenset[str]:
    """The categories ``locale``'s rule gives whole numbers (every one shows below 200)."""
    rule = plural_rule(locale)
    return frozenset(rule(n) for n in range(200))


def canonical(locale: str) -> str:
    """``pt_br`` → ``pt-BR``, ``ZH-tw`` → ``zh-TW``, ``es-419`` → ``es-419``: BCP 47's
    usual letter case."""
    parts = [p for p in locale.strip().replace("_", "-").split("-") if p]
    if not parts:
        return ""
    shaped = [parts[0].lower()]
    for part in parts[1:]:
        shaped.append(part.upper() if len(part) == 2 else part.title() if len(part) == 4
                      else part.lower())
    return "-".join(shaped)


def candidates(locale: str) -> list[str]:
    """``zh-Hant-TW`` → ``zh-Hant-TW``, ``zh-Hant``, ``zh``: from the most to the least
    specific."""
    parts = canonical(locale).split("-")
    return ["-".join(parts[:n]) for n in range(len(parts), 0, -1) if parts[0]]


_BY_LANGUAGE: dict[str, tuple[str, ...]] = {
    "es": ("ES", "MX", "AR", "CO", "PE", "VE", "CL", "EC", "GT", "CU", "BO", "DO", "HN",
           "PY", "SV", "NI", "CR", "PA", "UY", "PR", "GQ"),
    "pt-PT": ("PT", "AO", "MZ", "CV", "GW", "ST"),
    "fr": ("FR", "MC", "LU", "SN", "CI", "ML", "BF", "NE", "TG", "BJ", "GN", "CM", "GA",
           "CG", "CD", "CF", "TD", "MG", "BI", "DJ", "KM", "HT", "RE", "GP", "MQ", "GF",
           "YT", "PM", "NC", "PF", "WF", "BL", "MF"),
    "de": ("DE", "AT", "CH", "LI"),
    "ar": ("SA", "AE", "EG", "IQ", "JO", "KW", "LB", "LY", "OM", "QA", "SY", "YE", "BH",
           "PS", "SD", "MR", "DZ", "MA", "TN"),
    "ru": ("RU", "BY", "KZ", "KG"),
    "zh": ("CN",),
    "zh-TW": ("TW",), "zh-HK": ("HK",), "zh-MO": ("MO",),
    "ja": ("JP",), "hi": ("IN",), "pt-BR": ("BR",),
    "it": ("IT", "SM", "VA"), "nl": ("NL", "BE", "SR"), "pl": ("PL",), "tr": ("TR",),
    "uk": ("UA",), "ko": ("KR",), "id": ("ID",), "vi": ("VN",), "th": ("TH",),
    "el": ("GR", "CY"), "cs": ("CZ",), "ro": ("RO", "MD"), "hu": ("HU",), "sv": ("SE",),
    "da": ("DK",), "fi": ("FI",), "nb": ("NO",), "he": ("IL",), "fa": ("IR",),
    "ur": ("PK",), "bn": ("BD",),
}
COUNTRY_LOCALES: dict[str, str] = {
    country: locale for locale, countries in _BY_LANGUAGE.items() for country in countries}
"""ISO 3166-1 country → the locale its numbers get by default; any other country gets
``en`` (the United States, the United Kingdom, Nigeria, Singapore, ...)."""


def for_country(country: str | None) -> str:
    """The default locale for a phone number of ``country`` (``None``: ``en``)."""
    return COUNTRY_LOCALES.get(country or "", "en")
