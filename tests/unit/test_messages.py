"""Messages: texts per locale and channel, plurals, the locale of a number's country, SMS
segments (GSM-7 / UCS-2), the SMS Retriever and WebOTP lines, operators' template
folders, and the start-up warning for SMS longer than a segment."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from litestar.testing import AsyncTestClient

from otpgate import templates
from otpgate.api.app import create_app
from otpgate.clock import FrozenClock
from otpgate.config import build
from otpgate.core import autofill, locales
from otpgate.core.intake import OtpRequest, parse_request
from otpgate.core.locales import LocaleTexts
from otpgate.core.messages import Encoding, Templates, segments
from otpgate.core.policy import Policy
from otpgate.core.segments import GSM7_BASIC, GSM7_EXTENSION, units
from otpgate.errors import ConfigurationError, InvalidRequest
from otpgate.runtime import check_drivers, load_templates, warn_long_sms
from tests.integration.conftest import (
    BASE_URL,
    START,
    Client,
    assert_problem,
    request_code,
    settings,
    wait_for_messages,
)

TEMPLATES = Templates.default()
LOCALES = TEMPLATES.locales
TEN = ("en", "es", "fr", "de", "pt", "hi", "ar", "zh", "ja", "ru")
HASH = "FA+9qCX9VSu"


# -- segments (GSM 03.38) ---------------------------------------------------------------

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


def test_the_gsm7_default_alphabet_has_its_127_characters_and_the_extension_table_ten() -> None:
    assert len(GSM7_BASIC) == 127
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION
    assert "\x1b" not in GSM7_BASIC


def test_gsm7_accented_letters_of_the_basic_table_stay_gsm7() -> None:
    assert segments("Zürich: ÄÖÑÜäöñüà èéùìò ÇØøÅåÆæßÉ ¡¿ £¥§¤ ΔΦΓΛΩΠΨΣΘΞ @$_\r\n").encoding is (
        Encoding.GSM7)


@pytest.mark.parametrize("char", [*"çêâôûëïóúíáãõÀÊ`", "\u0391", "\u00a0", "’"])
def test_letters_outside_the_gsm7_tables_need_ucs2(char: str) -> None:
    # ç, ó, ã and the like are not GSM-7, nor is a Greek capital alpha that looks like A,
    # a no-break space or a typographic apostrophe.
    assert segments("Code " + char).encoding is Encoding.UCS2


@pytest.mark.parametrize("char", list("^{}\\[~]|€\f"))
def test_characters_of_the_extension_table_count_double(char: str) -> None:
    assert units(char) == 2
    assert segments(char * 80) == (Encoding.GSM7, 1)
    assert segments(char * 81) == (Encoding.GSM7, 2)
    assert segments("a" * 159 + char) == (Encoding.GSM7, 2)
    assert segments("a" * 158 + char) == (Encoding.GSM7, 1)


def test_an_extension_character_is_never_split_across_two_parts() -> None:
    # 306 septets would fit two parts of 153, but the euro sign cannot straddle them.
    assert segments("a" * 152 + "€" + "a" * 152) == (Encoding.GSM7, 3)
    assert segments("a" * 151 + "€" + "a" * 153) == (Encoding.GSM7, 2)


def test_a_character_outside_gsm_turns_the_whole_text_into_ucs2() -> None:
    assert segments("a" * 69 + "ó") == (Encoding.UCS2, 1)
    assert segments("a" * 70 + "ó") == (Encoding.UCS2, 2)
    assert segments("€" * 69 + "ó") == (Encoding.UCS2, 1), "€ is one UTF-16 unit"
    assert segments("Your code is 123456 ✅") == (Encoding.UCS2, 1)


def test_a_surrogate_pair_takes_two_ucs2_units_and_is_never_split() -> None:
    assert units("🔐") == 2
    assert segments("🔐" * 35) == (Encoding.UCS2, 1)
    assert segments("🔐" * 36) == (Encoding.UCS2, 2)
    assert segments("a" * 68 + "🔐") == (Encoding.UCS2, 1)
    assert segments("a" * 69 + "🔐") == (Encoding.UCS2, 2)
    # 134 units would fit two parts of 67, but the pair cannot straddle them.
    assert segments("a" * 66 + "🔐" + "a" * 66) == (Encoding.UCS2, 3)
    assert segments("a" * 65 + "🔐" + "a" * 67) == (Encoding.UCS2, 2)


def test_a_brand_with_characters_outside_gsm_switches_the_sms_to_ucs2() -> None:
    plain = TEMPLATES.render("sms", "en", "Zürich Bank", "123456", 5).body
    polish = TEMPLATES.render("sms", "en", "Łódź Bank", "123456", 5).body
    assert segments(plain) == (Encoding.GSM7, 1)
    assert segments(polish).encoding is Encoding.UCS2
    assert segments(TEMPLATES.render("sms", "en", "Łódź Bank Spółdzielczy", "123456", 5)
                    .body) == (Encoding.UCS2, 2)


# -- the shipped texts ------------------------------------------------------------------

def test_the_shipped_templates_cover_the_ten_languages_and_their_regional_variants() -> None:
    assert set(LOCALES) >= {*TEN, "pt-BR", "pt-PT", "zh-TW", "zh-HK"}


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("minutes", range(1, 11))
def test_every_shipped_sms_fits_one_segment_with_the_default_brand_and_an_8_digit_code(
    locale: str, minutes: int,
) -> None:
    body = TEMPLATES.render("sms", locale, "otpgate", "12345678", minutes).body
    assert segments(body).parts == 1, (locale, segments(body), len(body), body)


def test_no_shipped_sms_needs_a_second_segment_even_with_a_10_digit_code() -> None:
    assert TEMPLATES.longest_sms("otpgate", 10, 10) == []


@pytest.mark.parametrize(("locale", "encoding"), [
    ("en", Encoding.GSM7), ("fr", Encoding.GSM7), ("de", Encoding.GSM7),
    ("es", Encoding.UCS2), ("pt", Encoding.UCS2), ("ru", Encoding.UCS2),
    ("ar", Encoding.UCS2), ("hi", Encoding.UCS2), ("zh", Encoding.UCS2), ("ja", Encoding.UCS2),
])
def test_latin_texts_stay_gsm7_where_their_spelling_allows(
    locale: str, encoding: Encoding,
) -> None:
    assert segments(TEMPLATES.render("sms", locale, "otpgate", "123456", 5).body).encoding \
        is encoding


@pytest.mark.parametrize(("locale", "minutes", "expected"), [
    ("en", 5, "Your Acme code is 123456. It expires in 5 minutes. Don't share it."),
    ("es", 1, "Código de Acme: 123456. Vence en 1 minuto. No lo compartas."),
    ("fr", 1, "Votre code Acme est 123456. Il expire dans 1 minute. "
              "Ne le communiquez à personne."),
    ("de", 5, "Ihr Acme-Code lautet 123456. Er läuft in 5 Minuten ab. "
              "Geben Sie ihn nicht weiter."),
    ("pt-BR", 2, "Seu código Acme é 123456. Vale por 2 minutos. Não compartilhe."),
    ("pt-PT", 1, "Código Acme: 123456. Válido por 1 minuto. Não o partilhe."),
    ("hi", 5, "आपका Acme कोड 123456 है। 5 मिनट तक मान्य। किसी से साझा न करें।"),
    ("ar", 2, "رمز Acme: 123456. صالح لمدة دقيقتين. لا تشاركه مع أحد."),
    ("zh", 5, "【Acme】您的验证码为123456，5分钟内有效。请勿泄露给他人。"),
    ("zh-TW", 5, "【Acme】您的驗證碼為123456，5分鐘內有效。請勿告知他人。"),
    ("ja", 5, "Acmeの認証コードは123456です。有効期間は5分です。他人に教えないでください。"),
    ("ru", 21, "Код Acme: 123456. Действует 21 минуту. Никому его не сообщайте."),
])
def test_each_sms_reads_as_its_language_writes_it(
    locale: str, minutes: int, expected: str,
) -> None:
    assert TEMPLATES.render("sms", locale, "Acme", "123456", minutes).body == expected


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("channel", ["sms", "email", "whatsapp", "voice"])
def test_every_locale_renders_the_brand_the_code_and_the_minutes(
    locale: str, channel: str,
) -> None:
    text = TEMPLATES.render(channel, locale, "Acme", "048213", 5)
    code = "0 4 8 2 1 3" if channel == "voice" else "048213"
    assert code in text.body
    assert "Acme" in text.body
    assert channel == "voice" or "5" in text.body.replace("048213", "")


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
def test_an_email_has_an_html_alternative_with_the_code_set_apart(locale: str) -> None:
    email = TEMPLATES.render("email", locale, "Acme", "048213", 5)
    assert email.html is not None
    assert email.html.startswith("<!DOCTYPE html>")
    rtl = ' dir="rtl"' if locale == "ar" else ""
    assert f'<html lang="{locale}"{rtl}>' in email.html
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


def test_the_html_alternative_is_tagged_with_the_readers_locale_or_the_texts_language() -> None:
    def lang(locale: str) -> str:
        page = TEMPLATES.render("email", locale, "Acme", "048213", 5).html
        assert page is not None
        return page.split("<html ", 1)[1].split(">", 1)[0]

    assert lang("de-AT") == 'lang="de-AT"'
    assert lang("pt_br") == 'lang="pt-BR"'
    assert lang("ar-EG") == 'lang="ar-EG" dir="rtl"'
    assert lang("it") == 'lang="en"', "English texts for an Italian reader are English"


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


@pytest.mark.parametrize(("asked", "served"), [
    ("pt-BR", "pt-BR"), ("pt_BR", "pt-BR"), ("PT", "pt"), ("pt-PT", "pt-PT"),
    ("pt-AO", "pt"), ("de-AT", "de"), ("fr-CA", "fr"), ("es-MX", "es"), ("zh-TW", "zh-TW"),
    ("zh-hk", "zh-HK"), ("zh-SG", "zh"), ("ja-JP", "ja"), ("ar-EG", "ar"), ("it", "en"),
    ("zz-ZZ", "en"), ("", "en"),
])
def test_a_regional_locale_falls_back_to_its_language_then_to_english(
    asked: str, served: str,
) -> None:
    assert TEMPLATES.resolve(asked) == served


def test_taiwan_hong_kong_and_macau_read_traditional_chinese() -> None:
    simplified = TEMPLATES.render("sms", "zh", "Acme", "123456", 5).body
    for locale in ("zh-TW", "zh-HK", "zh-MO"):
        traditional = TEMPLATES.render("sms", locale, "Acme", "123456", 5).body
        assert "驗證碼" in traditional
        assert "验证码" in simplified
        assert traditional != simplified


def test_templates_without_their_fallback_locale_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        Templates({"de": TEMPLATES.texts("de")})


def test_templates_made_in_code_are_checked_too() -> None:
    broken = LocaleTexts(sms="no code here", voice="{code}", email_subject="x",
                         email_body="{code}", minutes={"one": "{n}", "other": "{n}"})
    with pytest.raises(ConfigurationError, match=r"locale de: sms: must contain \{code\}"):
        Templates({"en": TEMPLATES.texts("en"), "de": broken})


# -- plurals ----------------------------------------------------------------------------

@pytest.mark.parametrize(("locale", "counts"), [
    ("ru", {"one": [1, 21, 101, 1001], "few": [2, 3, 4, 22, 34, 102],
            "many": [0, 5, 10, 11, 12, 14, 19, 20, 25, 100, 111, 112]}),
    ("uk", {"one": [1, 31], "few": [2, 23], "many": [5, 11, 13]}),
    ("pl", {"one": [1], "few": [2, 4, 22, 104], "many": [0, 5, 11, 12, 21, 25, 112]}),
    ("ar", {"zero": [0], "one": [1], "two": [2], "few": [3, 10, 103, 110],
            "many": [11, 26, 99, 111], "other": [100, 101, 102, 200]}),
    ("cs", {"one": [1], "few": [2, 3, 4], "other": [0, 5, 22]}),
    ("ro", {"one": [1], "few": [0, 2, 19, 101, 119], "other": [20, 100, 120]}),
    ("he", {"one": [1], "two": [2], "other": [0, 3, 10, 20]}),
    ("fr", {"one": [0, 1], "other": [2, 10, 1000]}),
    ("pt", {"one": [0, 1], "other": [2, 10]}),
    ("pt-BR", {"one": [0, 1], "other": [2]}),
    ("pt-PT", {"one": [1], "other": [0, 2]}),
    ("hi", {"one": [0, 1], "other": [2, 5]}),
    ("en", {"one": [1], "other": [0, 2, 11, 21]}),
    ("de", {"one": [1], "other": [0, 2]}),
    ("es-MX", {"one": [1], "other": [0, 2]}),
    ("ja", {"other": [0, 1, 2, 10]}),
    ("zh-TW", {"other": [0, 1, 2, 10]}),
    ("xx", {"one": [1], "other": [0, 2]}),
])
def test_each_language_picks_its_cldr_plural_category(
    locale: str, counts: dict[str, list[int]],
) -> None:
    rule = locales.plural_rule(locale)
    assert {n: rule(n) for ns in counts.values() for n in ns} == {
        n: category for category, ns in counts.items() for n in ns}
    assert locales.plural_categories(locale) <= set(counts)


@pytest.mark.parametrize(("minutes", "expected"), [
    (1, "Действует 1 минуту."), (2, "Действует 2 минуты."), (4, "Действует 4 минуты."),
    (5, "Действует 5 минут."), (10, "Действует 10 минут."), (11, "Действует 11 минут."),
    (21, "Действует 21 минуту."), (22, "Действует 22 минуты."), (25, "Действует 25 минут."),
])
def test_russian_minutes_take_the_one_few_and_many_forms(minutes: int, expected: str) -> None:
    assert expected in TEMPLATES.render("sms", "ru", "Acme", "123456", minutes).body


@pytest.mark.parametrize(("minutes", "expected"), [
    (1, "صالح لمدة دقيقة واحدة."), (2, "صالح لمدة دقيقتين."), (3, "صالح لمدة 3 دقائق."),
    (10, "صالح لمدة 10 دقائق."), (11, "صالح لمدة 11 دقيقة."), (60, "صالح لمدة 60 دقيقة."),
    (100, "صالح لمدة 100 دقيقة."), (103, "صالح لمدة 103 دقائق."),
])
def test_arabic_minutes_take_the_one_two_few_and_many_forms(minutes: int, expected: str) -> None:
    assert expected in TEMPLATES.render("sms", "ar", "Acme", "123456", minutes).body


def test_one_minute_left_is_worded_in_the_singular_and_never_as_zero() -> None:
    assert "in 1 minute." in TEMPLATES.render("sms", "en", "Acme", "123456", 1).body
    assert "in 1 minute." in TEMPLATES.render("sms", "en", "Acme", "123456", 0).body
    assert "in 2 minutes." in TEMPLATES.render("sms", "en", "Acme", "123456", 2).body
    assert "in 1 Minute ab" in TEMPLATES.render("sms", "de", "Acme", "123456", 1).body
    assert "dans 1 minute." in TEMPLATES.render("sms", "fr", "Acme", "123456", 1).body
    assert "Vence en 1 minuto." in TEMPLATES.render("sms", "es", "Acme", "123456", 1).body
    assert "1分钟内有效" in TEMPLATES.render("sms", "zh", "Acme", "123456", 1).body


@pytest.mark.parametrize("locale", LOCALES)
def test_every_shipped_locale_words_every_plural_category_its_language_has(locale: str) -> None:
    assert locales.plural_categories(locale) <= set(TEMPLATES.texts(locale).minutes)


# -- the locale of a number's country ---------------------------------------------------

def _example(region: str) -> str:
    number = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _locale(to: str, locale: str | None = None) -> str:
    request = OtpRequest(to=to, locale=locale)
    return parse_request(request, Policy(), frozenset({"sms", "email"})).locale


@pytest.mark.parametrize(("region", "locale"), [
    ("FR", "fr"), ("DE", "de"), ("JP", "ja"), ("MX", "es"), ("ES", "es"), ("BR", "pt-BR"),
    ("PT", "pt-PT"), ("RU", "ru"), ("IN", "hi"), ("CN", "zh"), ("TW", "zh-TW"),
    ("HK", "zh-HK"), ("EG", "ar"), ("SA", "ar"), ("CH", "de"), ("SN", "fr"),
    ("US", "en"), ("GB", "en"), ("NG", "en"), ("IT", "it"), ("UA", "uk"),
])
def test_a_request_without_a_locale_gets_the_locale_of_its_numbers_country(
    region: str, locale: str,
) -> None:
    assert _locale(_example(region)) == locale


def test_an_explicit_locale_wins_over_the_country() -> None:
    assert _locale(_example("FR"), "de") == "de"
    assert _locale(_example("BR"), "pt-PT") == "pt-PT"


def test_an_email_recipient_without_a_locale_gets_english() -> None:
    assert _locale("jean@example.fr") == "en"


def test_a_number_of_no_single_country_gets_english() -> None:
    assert locales.for_country(None) == "en"
    assert _locale("+80012345678") == "en"


# -- app_hash and webotp_domain ---------------------------------------------------------

def test_an_app_hash_is_the_last_line_after_a_blank_one_and_nothing_else_changes() -> None:
    plain = TEMPLATES.render("sms", "en", "Acme", "123456", 5).body
    hashed = TEMPLATES.render("sms", "en", "Acme", "123456", 5, app_hash=HASH).body
    assert hashed == plain + "\n\n" + HASH


def test_a_webotp_domain_makes_the_last_line_at_domain_hash_code() -> None:
    body = TEMPLATES.render("sms", "fr", "Acme", "123456", 5,
                            webotp_domain="login.example.com").body
    assert body.endswith(".\n\n@login.example.com #123456")
    assert body.splitlines()[-1] == "@login.example.com #123456"


def test_with_both_the_hash_comes_first_and_the_webotp_line_stays_last() -> None:
    body = TEMPLATES.render("sms", "en", "Acme", "123456", 5, app_hash=HASH,
                            webotp_domain="example.com").body
    assert body == ("Your Acme code is 123456. It expires in 5 minutes. Don't share it.\n\n"
                    f"{HASH}\n@example.com #123456")


@pytest.mark.parametrize("channel", ["email", "voice", "whatsapp"])
def test_autofill_lines_are_for_sms_alone(channel: str) -> None:
    plain = TEMPLATES.render(channel, "en", "Acme", "123456", 5)
    asked = TEMPLATES.render(channel, "en", "Acme", "123456", 5, app_hash=HASH,
                             webotp_domain="example.com")
    assert asked == plain


@pytest.mark.parametrize("value", ["FA+9qCX9VSu", "abcdefghijk", "01234567890", "+/+/+/+/+/+"])
def test_an_app_hash_of_eleven_base64_characters_is_accepted(value: str) -> None:
    assert autofill.parse_app_hash(value) == value


@pytest.mark.parametrize("value", [
    "FA+9qCX9VS", "FA+9qCX9VSuX", "FA-9qCX9VSu", "FA_9qCX9VSu", "FA+9qCX9VS=", " A+9qCX9VSu",
    "FA+9qCX9VSu\n", "FA+9qCX9VSü", "", 12345678901,
])
def test_a_malformed_app_hash_is_refused(value: object) -> None:
    with pytest.raises(InvalidRequest) as caught:
        autofill.parse_app_hash(value)
    assert caught.value.field == "app_hash"


@pytest.mark.parametrize("value", [
    "example.com", "login.example.co.uk", "localhost", "xn--bcher-kva.example",
    "a-b.example", "x.io", "app1.example.com", "a" * 63 + ".com",
])
def test_a_host_name_is_a_webotp_domain(value: str) -> None:
    assert autofill.parse_webotp_domain(value) == value


@pytest.mark.parametrize("value", [
    "https://example.com", "example.com:443", "example.com/login", "@example.com",
    "Example.com", "example.com.", ".example.com", "exa mple.com", "-example.com",
    "example-.com", "example..com", "bücher.example", "192.168.0.1", "a" * 64 + ".com",
    ("a" * 62 + ".") * 4 + "com", "example.com\n", "", 42,
])
def test_a_malformed_webotp_domain_is_refused(value: object) -> None:
    with pytest.raises(InvalidRequest) as caught:
        autofill.parse_webotp_domain(value)
    assert caught.value.field == "webotp_domain"


@asynccontextmanager
async def api(tmp_path: Path, **changes: Any) -> AsyncIterator[Client]:
    app = create_app(settings(tmp_path, **changes), clock=FrozenClock(START))
    async with AsyncTestClient(app, base_url=BASE_URL) as client:
        yield client


async def _sms(client: Client, to: str, **fields: Any) -> str:
    await request_code(client, to, **fields)
    [message] = await wait_for_messages(client, to)
    body: str = message["body"]
    return body


async def test_the_sms_in_the_dev_inbox_ends_with_the_app_hash_line(tmp_path: Path) -> None:
    async with api(tmp_path) as client:
        body = await _sms(client, "+14155550123", app_hash=HASH, code_length=8)
    text, blank, last = body.splitlines()[-3:]
    assert (blank, last) == ("", HASH)
    assert text.startswith("Your otpgate code is ")
    assert body.endswith(f"Don't share it.\n\n{HASH}")


async def test_the_sms_in_the_dev_inbox_ends_with_the_webotp_line(tmp_path: Path) -> None:
    async with api(tmp_path) as client:
        body = await _sms(client, "+14155550123", webotp_domain="example.com")
    code = body.split("code is ", 1)[1][:6]
    assert body.endswith(f"Don't share it.\n\n@example.com #{code}")


async def test_with_both_the_dev_inbox_shows_the_hash_then_the_webotp_line_last(
    tmp_path: Path,
) -> None:
    async with api(tmp_path) as client:
        body = await _sms(client, _example("FR"), app_hash=HASH, webotp_domain="example.com")
    code = body.split("code otpgate est ", 1)[1][:6]
    assert body == (f"Votre code otpgate est {code}. Il expire dans 5 minutes. "
                    f"Ne le communiquez à personne.\n\n{HASH}\n@example.com #{code}")


async def test_the_webotp_setting_applies_to_requests_that_name_no_domain(
    tmp_path: Path,
) -> None:
    async with api(tmp_path, webotp_domain="login.example.com") as client:
        mine = await _sms(client, "+14155550123")
        theirs = await _sms(client, "+14155550199", webotp_domain="shop.example.com")
    assert mine.splitlines()[-1].startswith("@login.example.com #")
    assert theirs.splitlines()[-1].startswith("@shop.example.com #")
    assert "login.example.com" not in theirs


async def test_a_number_of_another_country_gets_its_language_in_the_dev_inbox(
    tmp_path: Path,
) -> None:
    async with api(tmp_path) as client:
        german = await _sms(client, _example("DE"))
        japanese = await _sms(client, _example("JP"))
        english = await _sms(client, _example("FR"), locale="en")
    assert german.startswith("Ihr otpgate-Code lautet ")
    assert japanese.startswith("otpgateの認証コードは")
    assert english.startswith("Your otpgate code is ")


async def test_an_sms_retriever_message_past_one_segment_is_sent_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "otpgate.dispatch")
    async with api(tmp_path) as client:
        english = await _sms(client, "+14155550123", app_hash=HASH)
        russian = await _sms(client, _example("RU"), app_hash=HASH)
    assert segments(english).parts == 1
    assert segments(russian).parts == 2
    assert russian.endswith(HASH)
    [record] = [r for r in caplog.records if "SMS Retriever" in r.getMessage()]
    assert "140 bytes" in record.getMessage()
    assert HASH not in caplog.text


@pytest.mark.parametrize(("field", "value"), [
    ("app_hash", "FA+9qCX9VS"), ("app_hash", "FA_9qCX9VSu"),
    ("webotp_domain", "https://example.com"), ("webotp_domain", "example.com:8443"),
])
async def test_a_malformed_app_hash_or_webotp_domain_is_422(
    tmp_path: Path, field: str, value: str,
) -> None:
    async with api(tmp_path) as client:
        response = await client.post("/v1/otp", json={"to": "+14155550123", field: value})
        assert_problem(response, 422, "invalid-request", field=field)
        assert (await client.get("/v1/dev/messages")).json() == []


async def test_an_app_hash_of_the_wrong_type_is_422(tmp_path: Path) -> None:
    async with api(tmp_path) as client:
        response = await client.post("/v1/otp", json={"to": "+14155550123", "app_hash": 11})
    assert_problem(response, 422, "invalid-request", field="app_hash")


def test_a_malformed_webotp_setting_stops_the_start() -> None:
    with pytest.raises(ConfigurationError, match="OTPGATE_WEBOTP_DOMAIN must be a lowercase"):
        load_templates(build({"webotp_domain": "https://example.com"}))


# -- operators' template folders --------------------------------------------------------

def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_without_a_folder_the_shipped_texts_are_in_effect() -> None:
    assert templates.load(None).render("sms", "fr", "Acme", "1234", 5) == TEMPLATES.render(
        "sms", "fr", "Acme", "1234", 5)


def test_a_partial_file_overrides_its_keys_and_keeps_the_shipped_texts_for_the_rest(
    tmp_path: Path,
) -> None:
    write(tmp_path, "fr.toml", 'sms = "{code} est votre code {brand} ({minutes})."\n')
    found = templates.load(tmp_path)
    assert found.render("sms", "fr", "Acme", "1234", 2).body == (
        "1234 est votre code Acme (2 minutes).")
    assert found.render("email", "fr", "Acme", "1234", 2) == TEMPLATES.render(
        "email", "fr", "Acme", "1234", 2)
    assert found.render("sms", "fr-CA", "Acme", "1234", 2).body.startswith("1234 est")
    assert found.render("sms", "de", "Acme", "1234", 2) == TEMPLATES.render(
        "sms", "de", "Acme", "1234", 2)


def test_a_regional_file_falls_back_on_its_languages_overridden_texts(tmp_path: Path) -> None:
    write(tmp_path, "es.toml", 'voice = "Tu código es {code}."\n')
    write(tmp_path, "es-MX.toml", 'sms = "Tu código de {brand} es {code}."\n')
    found = templates.load(tmp_path)
    assert found.render("sms", "es-MX", "Acme", "1234", 2).body == "Tu código de Acme es 1234."
    assert found.render("voice", "es-MX", "Acme", "1234", 2).body == "Tu código es 1 2 3 4."
    assert found.render("sms", "es", "Acme", "1234", 2) == TEMPLATES.render(
        "sms", "es", "Acme", "1234", 2)


def test_a_file_for_a_new_locale_serves_it_to_that_countrys_numbers(tmp_path: Path) -> None:
    write(tmp_path, "it.toml", """\
sms = "Il tuo codice {brand} è {code}. Scade tra {minutes}. Non condividerlo."
voice = "Il tuo codice {brand} è {code}."
email_subject = "Il tuo codice di verifica {brand}"
email_body = "Il tuo codice di verifica {brand} è {code}. Scade tra {minutes}."
minutes = { one = "{n} minuto", other = "{n} minuti" }
""")
    found = templates.load(tmp_path)
    locale = _locale(_example("IT"))
    assert found.render("sms", locale, "Acme", "1234", 1).body == (
        "Il tuo codice Acme è 1234. Scade tra 1 minuto. Non condividerlo.")
    assert "Scade tra 3 minuti." in found.render("email", locale, "Acme", "1234", 3).body


def test_an_html_override_gets_its_placeholders_escaped(tmp_path: Path) -> None:
    write(tmp_path, "en.toml",
          'email_html = "<html><body><h1>{brand}</h1><b>{code}</b> {minutes}</body></html>"\n')
    email = templates.load(tmp_path).render("email", "en", "<Acme & Co>", "1234", 5)
    assert email.html == ("<html><body><h1>&lt;Acme &amp; Co&gt;</h1><b>1234</b> 5 minutes"
                          "</body></html>")
    assert email.body == TEMPLATES.render("email", "en", "<Acme & Co>", "1234", 5).body


def test_a_folder_of_other_files_is_read_for_its_toml_files_alone(tmp_path: Path) -> None:
    write(tmp_path, "README.md", "{kode}")
    write(tmp_path, "de.toml.orig", "not toml")
    assert templates.load(tmp_path).render("sms", "de", "Acme", "1", 1) == TEMPLATES.render(
        "sms", "de", "Acme", "1", 1)


@pytest.mark.parametrize(("name", "text", "problem"), [
    ("fr.toml", 'body = "{code}"', "unknown key 'body'; the keys are email_body, email_html"),
    ("fr.toml", 'sms = "Votre code {kode}"', r"sms: unknown placeholder \{kode\}"),
    ("fr.toml", 'sms = "Code {code} pour {name}"', r"sms: unknown placeholder \{name\}"),
    ("fr.toml", 'sms = "Code {0}"', r"sms: unknown placeholder \{0\}"),
    ("fr.toml", 'voice = "Code {code.real}"', r"voice: unknown placeholder \{code.real\}"),
    ("fr.toml", 'sms = "Code {code!r}"', r"sms: write \{code\} without a format"),
    ("fr.toml", 'sms = "Code {code:>12}"', r"sms: write \{code\} without a format"),
    ("fr.toml", 'sms = "Votre code {brand}"', r"sms: must contain \{code\}"),
    ("fr.toml", 'email_body = "Bonjour"', r"email_body: must contain \{code\}"),
    ("fr.toml", 'email_html = "<p>{brand}</p>"', r"email_html: must contain \{code\}"),
    ("fr.toml", 'sms = "Code {code"', "sms: does not render"),
    ("fr.toml", 'sms = "Code {code} }"', "sms: does not render"),
    ("fr.toml", "sms = 42", "sms: must be a non-empty string"),
    ("fr.toml", 'sms = "  "', "sms: must be a non-empty string"),
    ("ru.toml", 'minutes = { one = "{n} минуту", other = "{n} минут" }',
     "minutes: ru needs the plural forms few, many, one"),
    ("fr.toml", 'minutes = { one = "{n} minute", lots = "{n} minutes" }',
     "minutes: unknown plural category 'lots'"),
    ("fr.toml", 'minutes = { one = "{m} minute", other = "{n} minutes" }',
     r"minutes.one: the only placeholder is \{n\}"),
    ("fr.toml", 'minutes = { one = "{n} minute", other = "{n:>3} minutes" }',
     r"minutes.other: the only placeholder is \{n\}, without a format"),
    ("fr.toml", 'minutes = { one = "{n minute", other = "{n} minutes" }',
     "minutes.one: does not render"),
    ("fr.toml", 'minutes = "5 minutes"', "minutes: must be a table"),
    ("it.toml", 'sms = "Codice {code}"',
     "no it texts to fall back on, so the file must give email_body, email_subject, "
     "minutes, voice"),
    ("french.toml", 'sms = "{code}"', "named after its locale"),
    ("fr.toml", 'sms = "unterminated', "cannot read"),
])
def test_a_bad_template_file_is_a_configuration_error_naming_the_file_and_the_key(
    tmp_path: Path, name: str, text: str, problem: str,
) -> None:
    path = write(tmp_path, name, text + "\n")
    with pytest.raises(ConfigurationError, match=problem) as caught:
        templates.load(tmp_path)
    assert str(path) in caught.value.detail


def test_a_templates_dir_that_is_not_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is not a folder"):
        templates.load(tmp_path / "missing")


async def test_a_bad_template_folder_stops_the_server_before_it_listens(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    write(folder, "de.toml", 'sms = "Ihr Code: {Code}"\n')
    with pytest.raises(ConfigurationError, match=r"de.toml: sms: unknown placeholder \{Code\}"):
        await check_drivers(settings(tmp_path, templates_dir=folder))


def test_the_templates_dir_is_read_from_the_environment(tmp_path: Path) -> None:
    from otpgate.config import from_env

    write(tmp_path, "en.toml", 'sms = "{brand}: {code}"\n')
    found = load_templates(from_env({"OTPGATE_TEMPLATES_DIR": str(tmp_path),
                                     "OTPGATE_WEBOTP_DOMAIN": "example.com"}))
    assert found.render("sms", "en", "Acme", "1234", 5).body == "Acme: 1234"


async def test_an_overridden_template_reaches_the_dev_inbox(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    write(folder, "en.toml", 'sms = "{code} is your {brand} code."\n')
    async with api(tmp_path, templates_dir=folder, brand="Acme") as client:
        body = await _sms(client, "+14155550123", app_hash=HASH)
    assert body.endswith(f" is your Acme code.\n\n{HASH}")


# -- the start-up warning ---------------------------------------------------------------

def test_the_shipped_templates_and_the_default_brand_warn_of_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "otpgate.runtime")
    warn_long_sms(build({}), TEMPLATES)
    assert caplog.records == []


def test_a_long_brand_is_reported_for_every_locale_it_pushes_past_one_segment(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "otpgate.runtime")
    warn_long_sms(build({"brand": "Banco Santander"}), TEMPLATES)
    [record] = caplog.records
    message = record.getMessage()
    assert record.levelno == logging.WARNING
    assert "'Banco Santander'" in message
    for locale in ("es", "pt", "pt-PT", "ru", "hi", "ar"):
        assert f"({locale}, sms): 2 ucs-2 segments" in message
    for locale in ("en", "fr", "de", "ja", "zh"):
        assert f"({locale}, sms)" not in message


def test_the_warning_counts_the_webotp_line_of_every_sms(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "otpgate.runtime")
    warn_long_sms(build({"webotp_domain": "accounts.example.com"}), TEMPLATES)
    message = caplog.records[0].getMessage()
    assert "(ru, sms): 2 ucs-2 segments" in message
    assert "(zh, sms): 2 ucs-2 segments" in message, "a UCS-2 text has room for little"
    assert "(en, sms)" not in message
    assert "(de, sms)" not in message


async def test_the_server_warns_at_start_up_of_an_overridden_sms_too_long(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "otpgate.runtime")
    folder = tmp_path / "templates"
    write(folder, "fr.toml", f'sms = "Votre code est {{code}}. {"Lisez ceci. " * 13}"\n')
    async with api(tmp_path, templates_dir=folder):
        pass
    [record] = [r for r in caplog.records if "segment" in r.getMessage()]
    assert "(fr, sms): 2 gsm-7 segments" in record.getMessage()
    assert "(en, sms)" not in record.getMessage()
