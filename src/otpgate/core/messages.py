"""Message texts per locale and channel: choosing a locale's texts, checking them, and
rendering a message.

The shipped texts are in ``otpgate.core.texts`` (an operator may override any of them,
see ``otpgate.templates``); plural rules and the locale of a country in
``otpgate.core.locales``; SMS segments in ``otpgate.core.segments``.

E-mail also gets an HTML alternative made from the same text: every field escaped, the
code set apart in large monospace type (and once in place, in bold), paragraphs kept,
right to left for Arabic — unless the locale's texts bring an HTML document of their own.
An SMS may end with the SMS Retriever and WebOTP lines (``otpgate.core.autofill``).
"""

from __future__ import annotations

import html
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from otpgate.core import autofill, locales
from otpgate.core.locales import LocaleTexts
from otpgate.core.segments import Encoding, Segments, segments
from otpgate.errors import ConfigurationError

__all__ = ["FIELDS", "KEYS", "Encoding", "LocaleTexts", "Long", "Rendered", "Segments",
           "Templates", "check_minutes", "check_text", "segments"]

FIELDS = frozenset({"brand", "code", "minutes"})
"""The placeholders a template may use."""
KEYS = ("sms", "voice", "email_subject", "email_body", "email_html")
"""The templates of one locale."""
_NEED_CODE = frozenset(KEYS) - {"email_subject"}
_RTL = frozenset({"ar", "he", "fa", "ur"})
_SAMPLE = {"brand": "otpgate", "code": "123456", "minutes": "5 minutes"}


@dataclass(frozen=True, slots=True)
class Rendered:
    body: str
    subject: str | None = None
    html: str | None = None
    """E-mail only: the HTML alternative of ``body``."""


@dataclass(frozen=True, slots=True)
class Long:
    """A locale whose SMS takes more than one segment at its longest."""

    locale: str
    channel: str
    segments: Segments
    length: int


class Templates:
    """Texts per locale, with fallback from a regional locale to its language, then to
    ``fallback``. Every text is checked when the templates are made."""

    def __init__(self, texts: Mapping[str, LocaleTexts], fallback: str = "en") -> None:
        self._texts = {locales.canonical(k): v for k, v in texts.items()}
        self._fallback = locales.canonical(fallback)
        if self._fallback not in self._texts:
            raise ConfigurationError(f"the fallback locale {fallback!r} has no texts")
        for locale, one in self._texts.items():
            try:
                check(locale, one)
            except ConfigurationError as exc:
                raise ConfigurationError(f"locale {locale}: {exc.detail}") from None

    @classmethod
    def default(cls) -> Templates:
        """The texts otpgate ships (see ``otpgate.core.texts``)."""
        from otpgate.core.texts import SHIPPED

        return cls(SHIPPED)

    @property
    def locales(self) -> list[str]:
        return sorted(self._texts)

    def resolve(self, locale: str) -> str:
        """The locale whose texts serve ``locale``: ``pt-BR`` if present, else ``pt``,
        else the fallback locale."""
        for candidate in locales.candidates(locale):
            if candidate in self._texts:
                return candidate
        return self._fallback

    def texts(self, locale: str) -> LocaleTexts:
        return self._texts[self.resolve(locale)]

    def render(self, channel: str, locale: str, brand: str, code: str, minutes_left: int,
               *, app_hash: str | None = None,
               webotp_domain: str | None = None) -> Rendered:
        """The message for ``channel``; e-mail gets a subject and an HTML alternative,
        an SMS the autofill lines asked for. WhatsApp and unknown channels use the SMS
        text, without those lines."""
        served = self.resolve(locale)
        texts = self._texts[served]
        fields = {"brand": brand, "code": code,
                  "minutes": minutes(texts, served, max(1, minutes_left))}
        if channel == "email":
            subject = texts.email_subject.format(**fields)
            page = (texts.email_html.format(**_escaped(fields)) if texts.email_html
                    else _email_html(texts, fields, subject, _lang(locale, served)))
            return Rendered(texts.email_body.format(**fields), subject, page)
        if channel == "voice":
            return Rendered(texts.voice.format(**{**fields, "code": _spoken(code)}))
        body = texts.sms.format(**fields)
        if channel == "sms":
            body = autofill.with_autofill(body, code, app_hash, webotp_domain)
        return Rendered(body)

    def longest_sms(self, brand: str, code_length: int, max_minutes: int,
                    webotp_domain: str | None = None) -> list[Long]:
        """Each locale whose SMS needs more than one segment with ``brand``, a code of
        ``code_length`` digits, the longest wording of up to ``max_minutes`` minutes and
        the WebOTP line of ``webotp_domain``, if one is set for every SMS."""
        code = "8" * code_length
        found = []
        for locale, texts in sorted(self._texts.items()):
            worded = {minutes(texts, locale, n) for n in range(1, max(1, max_minutes) + 1)}
            body = max((autofill.with_autofill(
                texts.sms.format(brand=brand, code=code, minutes=w), code, None,
                webotp_domain) for w in worded), key=_cost)
            if (cost := segments(body)).parts > 1:
                found.append(Long(locale, "sms", cost, len(body)))
        return found


def minutes(texts: LocaleTexts, locale: str, count: int) -> str:
    """``count`` minutes in ``locale``'s words (its plural rule picks the form)."""
    category = locales.plural_rule(locale)(count)
    form = texts.minutes.get(category) or texts.minutes.get("other") or "{n}"
    return form.format(n=count)


def check(locale: str, texts: LocaleTexts) -> None:
    """``ConfigurationError`` naming the first key of ``texts`` that is not a usable
    template for ``locale`` (see ``check_text`` and ``check_minutes``)."""
    for key in KEYS:
        value = getattr(texts, key)
        if value is not None:
            check_text(key, value)
    check_minutes(locale, texts.minutes)


def check_text(key: str, text: object) -> None:
    """``ConfigurationError`` (``"key: why"``) unless ``text`` is a template that renders:
    a string using only ``{brand}``, ``{code}`` and ``{minutes}`` (``{{`` for a brace),
    naming ``{code}`` except in the subject."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError(f"{key}: must be a non-empty string")
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConfigurationError(f"{key}: does not render ({exc}); write a literal "
                                 "brace as {{ or }}") from None
    names = set()
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in FIELDS:
            raise ConfigurationError(f"{key}: unknown placeholder {{{name}}}; use "
                                     "{brand}, {code} and {minutes}")
        if spec or conversion:
            raise ConfigurationError(f"{key}: write {{{name}}} without a format or "
                                     "conversion")
        names.add(name)
    if key in _NEED_CODE and "code" not in names:
        raise ConfigurationError(f"{key}: must contain {{code}}")
    text.format(**_SAMPLE)  # cannot fail once the placeholders are known good


def check_minutes(locale: str, forms: object) -> None:
    """``ConfigurationError`` unless ``forms`` words every plural category ``locale``'s
    rule gives a whole number, each form using only ``{n}``."""
    if not isinstance(forms, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in forms.items()):
        raise ConfigurationError("minutes: must be a table of plural category → text")
    if unknown := sorted(set(forms) - set(locales.CATEGORIES)):
        raise ConfigurationError(f"minutes: unknown plural category {unknown[0]!r}; the "
                                 f"categories are {', '.join(locales.CATEGORIES)}")
    if missing := sorted(locales.plural_categories(locale) - set(forms)):
        raise ConfigurationError(f"minutes: {locale} needs the plural forms "
                                 f"{', '.join(sorted(locales.plural_categories(locale)))}"
                                 f" (missing {', '.join(missing)})")
    for category, form in forms.items():
        try:
            parts = list(string.Formatter().parse(form))
        except ValueError as exc:
            raise ConfigurationError(f"minutes.{category}: does not render ({exc})") from None
        if any(name is not None and (name, spec, conversion) != ("n", "", None)
               for _, name, spec, conversion in parts):
            raise ConfigurationError(f"minutes.{category}: the only placeholder is {{n}}, "
                                     "without a format or conversion")


def _lang(asked: str, served: str) -> str:
    """The language tag of a page in ``served``'s texts for a reader of ``asked``:
    ``de-AT`` for German texts read in Austria, ``en`` for English ones sent to ``it``."""
    asked = locales.canonical(asked)
    return asked if asked.split("-")[0] == served.split("-")[0] else served


def _cost(body: str) -> tuple[int, int]:
    count = segments(body)
    return count.parts, len(body)


def _escaped(fields: Mapping[str, str]) -> dict[str, str]:
    return {name: html.escape(value) for name, value in fields.items()}


_CODE_MARK = "\x00code\x00"
_HTML_PAGE = (
    '<!DOCTYPE html>\n<html lang="{lang}"{dir}>\n<head><meta charset="utf-8">'
    "<title>{subject}</title></head>\n"
    '<body style="font-family:Helvetica,Arial,sans-serif;font-size:16px;line-height:1.5;'
    'color:#222;margin:0;padding:24px">\n{paragraphs}\n</body>\n</html>\n')
_HTML_CODE = ('<p style="font-family:Menlo,Consolas,monospace;font-size:32px;font-weight:bold;'
              'letter-spacing:6px;margin:24px 0">{code}</p>')


def _email_html(texts: LocaleTexts, fields: Mapping[str, str], subject: str,
                locale: str) -> str:
    """The e-mail text as HTML: each paragraph escaped, the code in bold where the text
    names it and, after the paragraph that does, on a line of its own in large type."""
    code = html.escape(fields["code"])
    text = texts.email_body.format(**{**fields, "code": _CODE_MARK})
    paragraphs: list[str] = []
    for paragraph in (p.strip() for p in text.split("\n\n")):
        if not paragraph:
            continue
        escaped = html.escape(paragraph).replace("\n", "<br>\n")
        paragraphs.append("<p>" + escaped.replace(_CODE_MARK, f"<strong>{code}</strong>")
                          + "</p>")
        if _CODE_MARK in paragraph:
            paragraphs.append(_HTML_CODE.format(code=code))
    lang = locale.split("-")[0]
    return _HTML_PAGE.format(lang=html.escape(locale, quote=True),
                             dir=' dir="rtl"' if lang in _RTL else "",
                             subject=html.escape(subject), paragraphs="\n".join(paragraphs))


def _spoken(code: Iterable[str]) -> str:
    """``123456`` → ``1 2 3 4 5 6``: text-to-speech reads digits one by one."""
    return " ".join(code)
