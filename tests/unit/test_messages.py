"""Message texts per locale and channel, and SMS segment counting (GSM-7 / UCS-2)."""

from __future__ import annotations

import pytest

from otpgate.core.messages import Encoding, LocaleTexts, Templates, segments
from otpgate.errors import ConfigurationError

TEMPLATES = Templates.default()
LOCALES = TEMPLATES.locales


def test_the_shipped_templates_cover_english_spanish_french_german_and_portuguese() -> None:
    assert set(LOCALES) >= {"en", "es", "fr", "de", "pt"}


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("channel", ["sms", "email", "whatsapp"])
def test_every_locale_renders_the_code_and_the_brand(locale: str, channel: str) -> None:
    text = TEMPLATES.render(channel, locale, "Acme", "048213", 5)
    assert "048213" in text.body
    assert "Acme" in text.body
    assert "5" in text.body


@pytest.mark.parametrize("locale", LOCALES)
def test_only_email_gets_a_subject_and_the_subject_does_not_give_the_code_away(
    locale: str,
) -> None:
    email = TEMPLATES.render("email", locale, "Acme", "048213", 5)
    assert email.subject is not None
    assert "Acme" in email.subject
    assert "048213" not in email.subject
    assert TEMPLATES.render("sms", locale, "Acme", "048213", 5).subject is None


@pytest.mark.parametrize("locale", LOCALES)
def test_a_voice_message_spells_the_code_digit_by_digit(locale: str) -> None:
    body = TEMPLATES.render("voice", locale, "Acme", "048213", 5).body
    assert "0 4 8 2 1 3" in body


@pytest.mark.parametrize("locale", LOCALES)
def test_an_email_has_an_html_alternative_with_the_code_set_apart(locale: str) -> None:
    email = TEMPLATES.render("email", locale, "Acme", "048213", 5)
    assert email.html is not None
    assert email.html.startswith("<!DOCTYPE html>")
    assert f'<html lang="{locale}">' in email.html
    assert "<strong>048213</strong>" in email.html
    assert "font-size:32px;font-weight:bold;letter-spacing:6px;margin:24px 0\">048213</p>" in (
        email.html)
    assert f"<title>{email.subject}</title>" in email.html


def test_the_html_alternative_says_what_the_text_says_paragraph_by_paragraph() -> None:
    email = TEMPLATES.render("email", "en", "Acme", "048213", 5)
    assert email.html is not None
    assert "<p>Your Acme verification code is <strong>048213</strong>.</p>" in email.html
    assert ("<p>It expires in 5 minutes. If you did not ask for it, ignore this e-mail. "
            "Never share this code with anyone.</p>") in email.html


def test_the_html_alternative_escapes_the_brand_and_the_locale() -> None:
    email = TEMPLATES.render("email", 'x"><script>', "<b>Acme & Co</b>", "048213", 5)
    assert email.html is not None
    assert "<b>" not in email.html
    assert "<script>" not in email.html
    assert "&lt;b&gt;Acme &amp; Co&lt;/b&gt;" in email.html
    assert "<b>Acme & Co</b>" in email.body, "the text part stays plain text"


def test_only_email_gets_an_html_alternative() -> None:
    for channel in ("sms", "voice", "whatsapp"):
        assert TEMPLATES.render(channel, "en", "Acme", "048213", 5).html is None


def test_the_english_sms_follows_common_practice() -> None:
    text = TEMPLATES.render("sms", "en", "Acme", "123456", 5)
    assert text.body == "Your Acme code is 123456. It expires in 5 minutes. Don't share it."


def test_one_minute_left_is_worded_in_the_singular_and_never_as_zero() -> None:
    assert "in 1 minute." in TEMPLATES.render("sms", "en", "Acme", "123456", 1).body
    assert "in 1 minute." in TEMPLATES.render("sms", "en", "Acme", "123456", 0).body
    assert "in 2 minutes." in TEMPLATES.render("sms", "en", "Acme", "123456", 2).body
    assert "in 1 Minute ab" in TEMPLATES.render("sms", "de", "Acme", "123456", 1).body


@pytest.mark.parametrize(("asked", "served"), [
    ("pt-BR", "pt"), ("pt_BR", "pt"), ("PT", "pt"), ("de-AT", "de"), ("fr-CA", "fr"),
    ("es-419", "es"), ("ja", "en"), ("zz-ZZ", "en"), ("", "en"),
])
def test_a_regional_locale_falls_back_to_its_language_then_to_english(
    asked: str, served: str,
) -> None:
    assert TEMPLATES.texts(asked) == TEMPLATES.texts(served)


def test_a_regional_text_wins_over_its_language_when_one_is_given() -> None:
    base = TEMPLATES.texts("pt")
    brazil = LocaleTexts("Código {brand}: {code} ({minutes}).", base.email_subject,
                         base.email_body, base.voice, base.minute_one, base.minute_other)
    templates = Templates({"en": TEMPLATES.texts("en"), "pt": base, "pt-BR": brazil})
    assert templates.render("sms", "pt-BR", "Acme", "1234", 3).body == (
        "Código Acme: 1234 (3 minutos).")
    assert templates.render("sms", "pt-PT", "Acme", "1234", 3).body.startswith("Seu código")


def test_templates_without_their_fallback_locale_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        Templates({"de": TEMPLATES.texts("de")})


@pytest.mark.parametrize("locale", LOCALES)
def test_every_shipped_sms_fits_one_segment_with_the_default_brand_code_and_longest_ttl(
    locale: str,
) -> None:
    body = TEMPLATES.render("sms", locale, "otpgate", "123456", 10).body
    assert segments(body).parts == 1, (locale, segments(body), len(body))


@pytest.mark.parametrize(("text", "expected"), [
    ("", (Encoding.GSM7, 1)),
    ("a" * 160, (Encoding.GSM7, 1)),
    ("a" * 161, (Encoding.GSM7, 2)),
    ("a" * 306, (Encoding.GSM7, 2)),
    ("a" * 307, (Encoding.GSM7, 3)),
    ("ж" * 70, (Encoding.UCS2, 1)),
    ("ж" * 71, (Encoding.UCS2, 2)),
    ("ж" * 134, (Encoding.UCS2, 2)),
    ("ж" * 135, (Encoding.UCS2, 3)),
])
def test_segments_split_at_160_and_153_for_gsm7_and_at_70_and_67_for_ucs2(
    text: str, expected: tuple[Encoding, int],
) -> None:
    assert segments(text) == expected


def test_gsm7_accented_letters_of_the_basic_table_stay_gsm7() -> None:
    assert segments("Zürich: ÄÖÑÜäöñüà èéùìò ÇØøÅåÆæßÉ ¡¿ £¥§ ΔΦΓΛΩΠΨΣΘΞ @$_").encoding is (
        Encoding.GSM7)


@pytest.mark.parametrize("char", list("^{}\\[~]|€\f"))
def test_characters_of_the_extension_table_count_double(char: str) -> None:
    assert segments(char * 80) == (Encoding.GSM7, 1)
    assert segments(char * 81) == (Encoding.GSM7, 2)
    assert segments("a" * 159 + char) == (Encoding.GSM7, 2)


def test_an_extension_character_is_never_split_across_two_parts() -> None:
    # 306 septets would fit two parts of 153, but the euro sign cannot straddle them.
    assert segments("a" * 152 + "€" + "a" * 152) == (Encoding.GSM7, 3)
    assert segments("a" * 151 + "€" + "a" * 153) == (Encoding.GSM7, 2)


def test_a_character_outside_gsm_turns_the_whole_text_into_ucs2() -> None:
    assert segments("a" * 69 + "ó") == (Encoding.UCS2, 1)
    assert segments("a" * 70 + "ó") == (Encoding.UCS2, 2)
    assert segments("Your code is 123456 ✅") == (Encoding.UCS2, 1)


def test_characters_beyond_the_basic_plane_take_two_ucs2_units() -> None:
    assert segments("🔐" * 35) == (Encoding.UCS2, 1)
    assert segments("🔐" * 36) == (Encoding.UCS2, 2)
    assert segments("a" * 66 + "🔐" + "a" * 66) == (Encoding.UCS2, 3)


def test_a_brand_with_characters_outside_gsm_switches_the_sms_to_ucs2() -> None:
    plain = TEMPLATES.render("sms", "en", "Zürich Bank", "123456", 5).body
    polish = TEMPLATES.render("sms", "en", "Łódź Bank", "123456", 5).body
    assert segments(plain) == (Encoding.GSM7, 1)
    assert segments(polish).encoding is Encoding.UCS2
    assert segments(TEMPLATES.render("sms", "en", "Łódź Bank Spółdzielczy", "123456", 5)
                    .body) == (Encoding.UCS2, 2)
