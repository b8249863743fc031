"""Message texts per locale and channel, and how many SMS segments a text costs.

Texts follow common practice for one-time codes: brand first, the code early, how long it
lives, and a warning not to share it. SMS texts are kept short enough for one segment with
a short brand; Spanish and Portuguese need accented letters outside GSM-7 and so go out as
UCS-2 (70 characters a segment).

E-mail also gets an HTML alternative made from the same text: every field escaped, the
code set apart in large monospace type (and once in place, in bold), paragraphs kept.

Segments follow GSM 03.38: a text made only of the basic alphabet and its extension table
is GSM-7 (extension characters take two septets, 160 septets in one segment, 153 per part
of a concatenated one); anything else is UCS-2 (70 UTF-16 units, 67 per part). A character
is never split across two parts.
"""

from __future__ import annotations

import enum
import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from otpgate.errors import ConfigurationError

_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")


class Encoding(enum.StrEnum):
    GSM7 = "gsm-7"
    UCS2 = "ucs-2"


class Segments(NamedTuple):
    encoding: Encoding
    parts: int


def _pack(costs: list[int], single: int, part: int) -> int:
    """Parts needed for ``costs`` when one part holds ``single`` units, else ``part``."""
    if sum(costs) <= single:
        return 1
    count, used = 1, 0
    for cost in costs:
        if used + cost > part:
            count, used = count + 1, 0
        used += cost
    return count


def segments(text: str) -> Segments:
    """The encoding an SMS of ``text`` needs and how many segments it is sent as."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENSION for ch in text):
        costs = [2 if ch in _GSM_EXTENSION else 1 for ch in text]
        return Segments(Encoding.GSM7, _pack(costs, 160, 153))
    costs = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return Segments(Encoding.UCS2, _pack(costs, 70, 67))


@dataclass(frozen=True, slots=True)
class LocaleTexts:
    """One locale's texts. Placeholders: ``{brand}``, ``{code}``, ``{minutes}`` (already
    worded, e.g. "5 minutes"); the voice text gets the code spaced out, digit by digit."""

    sms: str
    email_subject: str
    email_body: str
    voice: str
    minute_one: str
    minute_other: str

    def minutes(self, count: int) -> str:
        return (self.minute_one if count == 1 else self.minute_other).format(n=count)


@dataclass(frozen=True, slots=True)
class Rendered:
    body: str
    subject: str | None = None
    html: str | None = None
    """E-mail only: the HTML alternative of ``body``."""


_DEFAULT: dict[str, LocaleTexts] = {
    "en": LocaleTexts(
        sms="Your {brand} code is {code}. It expires in {minutes}. Don't share it.",
        email_subject="Your {brand} verification code",
        email_body=("Your {brand} verification code is {code}.\n\n"
                    "It expires in {minutes}. If you did not ask for it, ignore this "
                    "e-mail. Never share this code with anyone.\n"),
        voice="Your {brand} code is {code}. Again, your code is {code}.",
        minute_one="{n} minute", minute_other="{n} minutes",
    ),
    "es": LocaleTexts(
        sms="Tu código de {brand} es {code}. Caduca en {minutes}. No lo compartas.",
        email_subject="Tu código de verificación de {brand}",
        email_body=("Tu código de verificación de {brand} es {code}.\n\n"
                    "Caduca en {minutes}. Si no lo has solicitado, ignora este correo. "
                    "No compartas este código con nadie.\n"),
        voice="Tu código de {brand} es {code}. Repito, tu código es {code}.",
        minute_one="{n} minuto", minute_other="{n} minutos",
    ),
    "fr": LocaleTexts(
        sms="Votre code {brand} est {code}. Il expire dans {minutes}. Ne le partagez pas.",
        email_subject="Votre code de vérification {brand}",
        email_body=("Votre code de vérification {brand} est {code}.\n\n"
                    "Il expire dans {minutes}. Si vous ne l'avez pas demandé, ignorez cet "
                    "e-mail. Ne communiquez jamais ce code à personne.\n"),
        voice="Votre code {brand} est {code}. Je répète, votre code est {code}.",
        minute_one="{n} minute", minute_other="{n} minutes",
    ),
    "de": LocaleTexts(
        sms=("Ihr {brand}-Code lautet {code}. Er läuft in {minutes} ab. "
             "Geben Sie ihn nicht weiter."),
        email_subject="Ihr {brand}-Bestätigungscode",
        email_body=("Ihr {brand}-Bestätigungscode lautet {code}.\n\n"
                    "Er läuft in {minutes} ab. Wenn Sie ihn nicht angefordert haben, "
                    "ignorieren Sie diese E-Mail. Geben Sie den Code niemals weiter.\n"),
        voice="Ihr {brand}-Code lautet {code}. Ich wiederhole: {code}.",
        minute_one="{n} Minute", minute_other="{n} Minuten",
    ),
    "pt": LocaleTexts(
        sms="Seu código {brand} é {code}. Expira em {minutes}. Não o compartilhe.",
        email_subject="Seu código de verificação {brand}",
        email_body=("Seu código de verificação {brand} é {code}.\n\n"
                    "Ele expira em {minutes}. Se você não o solicitou, ignore este e-mail. "
                    "Nunca compartilhe este código.\n"),
        voice="Seu código {brand} é {code}. Repetindo, seu código é {code}.",
        minute_one="{n} minuto", minute_other="{n} minutos",
    ),
}


class Templates:
    """Texts per locale, with fallback from a regional locale to its language, then to
    ``fallback``."""

    def __init__(self, texts: Mapping[str, LocaleTexts], fallback: str = "en") -> None:
        if fallback not in texts:
            raise ConfigurationError(f"the fallback locale {fallback!r} has no texts")
        self._texts = {_norm(k): v for k, v in texts.items()}
        self._fallback = _norm(fallback)

    @classmethod
    def default(cls) -> Templates:
        """The texts otpgate ships: en, es, fr, de, pt."""
        return cls(_DEFAULT)

    @property
    def locales(self) -> list[str]:
        return sorted(self._texts)

    def texts(self, locale: str) -> LocaleTexts:
        """``pt-BR`` → ``pt-br`` if present, else ``pt``, else the fallback locale."""
        wanted = _norm(locale)
        for candidate in (wanted, wanted.split("-")[0]):
            if candidate in self._texts:
                return self._texts[candidate]
        return self._texts[self._fallback]

    def render(
        self, channel: str, locale: str, brand: str, code: str, minutes_left: int
    ) -> Rendered:
        """The message for ``channel``; e-mail gets a subject and an HTML alternative,
        other channels do not. WhatsApp and unknown channels use the SMS text."""
        texts = self.texts(locale)
        fields = {"brand": brand, "code": code, "minutes": texts.minutes(max(1, minutes_left))}
        if channel == "email":
            subject = texts.email_subject.format(**fields)
            return Rendered(texts.email_body.format(**fields), subject,
                            _email_html(texts, fields, subject, locale))
        if channel == "voice":
            return Rendered(texts.voice.format(**{**fields, "code": _spoken(code)}))
        return Rendered(texts.sms.format(**fields))


_CODE_MARK = "\x00code\x00"
_HTML_PAGE = (
    '<!DOCTYPE html>\n<html lang="{lang}">\n<head><meta charset="utf-8">'
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
    lang = html.escape(_norm(locale) or "en", quote=True)
    return _HTML_PAGE.format(lang=lang, subject=html.escape(subject),
                             paragraphs="\n".join(paragraphs))


def _norm(locale: str) -> str:
    return locale.strip().replace("_", "-").lower()


def _spoken(code: Iterable[str]) -> str:
    """``123456`` → ``1 2 3 4 5 6``: text-to-speech reads digits one by one."""
    return " ".join(code)
