"""Recipients: E.164 numbers and e-mail addresses, refused rather than cleaned."""

from __future__ import annotations

import pytest

from otpgate.core import recipients
from otpgate.core.recipients import Kind, Recipient
from otpgate.errors import InvalidRecipient, InvalidRequest


@pytest.mark.parametrize(
    "raw",
    ["+14155550123", "+1 415 555 0123", "+1 (415) 555-0123", "+1-415-555-0123",
     "+1.415.555.0123"],
)
def test_international_numbers_are_accepted_and_normalised_to_e164(raw: str) -> None:
    assert recipients.parse(raw) == Recipient(Kind.PHONE, "+14155550123")


@pytest.mark.parametrize(
    ("raw", "e164"),
    [("+44 20 7946 0958", "+442079460958"), ("+49 30 901820", "+4930901820"),
     ("+33 6 12 34 56 78", "+33612345678")],
)
def test_numbers_of_other_countries_are_normalised_too(raw: str, e164: str) -> None:
    assert recipients.parse(raw).address == e164


@pytest.mark.parametrize("raw", ["4155550123", "(415) 555-0123", "415 555 0123"])
def test_national_formats_are_refused_without_a_country_hint(raw: str) -> None:
    with pytest.raises(InvalidRecipient) as err:
        recipients.parse(raw)
    assert err.value.field == "to"


@pytest.mark.parametrize("raw", ["4155550123", "(415) 555-0123", "415 555 0123"])
def test_national_formats_are_accepted_with_a_country_hint(raw: str) -> None:
    assert recipients.parse(raw, country="US").address == "+14155550123"


def test_a_national_number_is_read_in_the_hinted_country() -> None:
    assert recipients.parse("020 7946 0958", country="GB").address == "+442079460958"


@pytest.mark.parametrize("country", ["us", "USA", "U", "1", ""])
def test_a_country_hint_must_be_an_alpha2_code(country: str) -> None:
    with pytest.raises(InvalidRecipient) as err:
        recipients.parse("4155550123", country=country)
    assert err.value.field == "country"


@pytest.mark.parametrize(
    "raw",
    ["+1 415 555 012", "+1415555012345", "+999 1234 5678", "+1 000 555 0123", "+44 12",
     "+0 415 555 0123", "+", "+++14155550123", "123"],
)
def test_invalid_or_impossible_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidRecipient):
        recipients.parse(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "+١٤١٥٥٥٥٠١٢٣",  # Arabic-Indic digits
        "+１４１５５５５０１２３",  # fullwidth digits
        "+1415555\u200b0123",  # zero-width space
        "+1415555\u200d0123",  # zero-width joiner
        "\ufeff+14155550123",  # byte order mark
        "+1415555\t0123",
        "+1415555\n0123",
        "+1415555\x000123",
        "+1415555\x7f0123",
        "+1415555CALL",
        "+1 415 JKL 0123",
        "tel:+14155550123",
        "+1\u00a0415\u00a0555\u00a00123",  # no-break spaces
        "+1/415/555/0123",
    ],
)
def test_numbers_with_unicode_digits_invisible_or_control_chars_or_letters_are_refused(
    raw: str,
) -> None:
    with pytest.raises(InvalidRecipient) as err:
        recipients.parse(raw)
    assert err.value.field == "to"


def test_an_invalid_recipient_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        recipients.parse("nope")


@pytest.mark.parametrize("raw", [None, 14155550123, b"+14155550123", "", ["+14155550123"]])
def test_recipients_that_are_not_non_empty_strings_are_refused(raw: object) -> None:
    with pytest.raises(InvalidRecipient):
        recipients.parse(raw)


def test_overlong_recipients_are_refused_before_parsing() -> None:
    with pytest.raises(InvalidRecipient, match="at most"):
        recipients.parse("a" * 250 + "@example.com")


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [("jane@example.com", "jane@example.com"), ("jane@EXAMPLE.COM", "jane@example.com"),
     ("jane.doe+otp@mail.example.org", "jane.doe+otp@mail.example.org")],
)
def test_email_addresses_are_accepted_and_normalised(raw: str, normalised: str) -> None:
    assert recipients.parse(raw) == Recipient(Kind.EMAIL, normalised)


@pytest.mark.parametrize(
    "raw",
    ["@example.com", "jane@", "jane@@example.com", "jane@example", "jane@exa mple.com",
     "ja ne@example.com", "jane@example.com.", ".jane@example.com", "jane..doe@example.com",
     "jane@example.com\n", "jane\u200b@example.com", "jane@exam\u200bple.com",
     "\x00jane@example.com", "jane@-example.com", "jane@example.com\r\nBcc: x@y.com"],
)
def test_malformed_email_addresses_are_refused(raw: str) -> None:
    with pytest.raises(InvalidRecipient):
        recipients.parse(raw)


def test_phones_default_to_sms_and_addresses_to_email() -> None:
    assert recipients.parse("+14155550123").default_channel() == "sms"
    assert recipients.parse("jane@example.com").default_channel() == "email"


def test_numbers_are_masked_keeping_country_area_and_last_four_digits() -> None:
    assert recipients.parse("+14155550123").masked == "+1415•••0123"
    assert recipients.mask("+14155550123") == "+1415•••0123"


def test_addresses_are_masked_keeping_the_first_letter_and_the_domain() -> None:
    assert recipients.parse("jane@example.com").masked == "j•••@example.com"


def test_short_numbers_are_masked_without_revealing_them_whole() -> None:
    masked = recipients.mask("+4930901")
    assert "30901" not in masked
    assert recipients.MASK in masked


def test_the_mask_never_shows_the_middle_digits_of_a_number() -> None:
    masked = recipients.parse("+442079460958").masked
    assert "7946" not in masked
    assert masked.startswith("+4420")
    assert masked.endswith("0958")


def test_the_recipient_key_depends_on_the_secret() -> None:
    rcpt = recipients.parse("+14155550123")
    assert rcpt.key(b"a" * 32) == rcpt.key(b"a" * 32)
    assert rcpt.key(b"a" * 32) != rcpt.key(b"b" * 32)


def test_the_recipient_key_is_the_same_for_every_way_of_writing_a_number() -> None:
    secret = b"s" * 32
    keys = {recipients.parse(raw).key(secret) for raw in ("+14155550123", "+1 (415) 555-0123")}
    keys.add(recipients.parse("415 555 0123", country="US").key(secret))
    assert len(keys) == 1


def test_the_recipient_key_never_contains_the_number_or_address() -> None:
    for raw in ("+14155550123", "jane@example.com"):
        key = recipients.parse(raw).key(b"s" * 32)
        assert "4155550123" not in key
        assert "jane" not in key
        assert "example" not in key
        assert len(key) == 40
        assert all(c in "0123456789abcdef" for c in key)


def test_different_recipients_have_different_keys() -> None:
    secret = b"s" * 32
    assert recipients.parse("+14155550123").key(secret) != recipients.parse(
        "+14155550124").key(secret)


@pytest.mark.parametrize(("address", "masked"), [
    ("+14155550123", "+1415•••0123"),
    ("+447911123456", "+4479•••3456"),
    ("+3312345678", "+331•••78"),
    ("+50031234", "+5•••34"),
    ("+29022345", "+2•••45"),
])
def test_a_masked_number_hides_enough_digits_even_when_it_is_short(address: str,
                                                                   masked: str) -> None:
    assert recipients.mask(address) == masked
    shown = sum(ch.isdigit() for ch in masked)
    assert len(address) - 1 - shown >= 3
