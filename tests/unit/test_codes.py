"""Codes: generation, shape of submitted codes, digests bound to their OTP."""

from __future__ import annotations

import collections
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpgate.core import codes
from otpgate.errors import InvalidRequest

KEY = b"k" * 32


@pytest.mark.parametrize("length", range(codes.MIN_LENGTH, codes.MAX_LENGTH + 1))
def test_every_allowed_length_yields_exactly_that_many_ascii_digits(length: int) -> None:
    for _ in range(200):
        code = codes.generate_code(length)
        assert len(code) == length
        assert code.isascii()
        assert code.isdigit()


@pytest.mark.parametrize("length", [3, 11, 0, -6, True, False, 6.0, "6", None])
def test_lengths_outside_four_to_ten_or_not_integers_are_refused(length: object) -> None:
    with pytest.raises(InvalidRequest) as err:
        codes.generate_code(length)  # type: ignore[arg-type]
    assert err.value.field == "code_length"


def test_the_default_length_is_six() -> None:
    assert len(codes.generate_code()) == 6 == codes.DEFAULT_LENGTH


def test_leading_zeros_are_kept_when_the_random_number_is_small(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(secrets, "randbelow", lambda bound: 42)
    assert codes.generate_code(6) == "000042"
    monkeypatch.setattr(secrets, "randbelow", lambda bound: 0)
    assert codes.generate_code(4) == "0000"


def test_the_random_number_is_drawn_below_ten_to_the_length(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bounds: list[int] = []

    def fake(bound: int) -> int:
        bounds.append(bound)
        return bound - 1

    monkeypatch.setattr(secrets, "randbelow", fake)
    assert codes.generate_code(8) == "99999999"
    assert bounds == [10**8]


def test_codes_starting_with_zero_occur_among_real_draws() -> None:
    draws = [codes.generate_code(4) for _ in range(2000)]
    # About one in ten starts with 0; 2000 draws make missing them all astronomically unlikely.
    assert any(code.startswith("0") for code in draws)
    assert all(len(code) == 4 for code in draws)


def test_digits_are_spread_evenly_over_many_draws() -> None:
    counts = collections.Counter("".join(codes.generate_code(10) for _ in range(2000)))
    assert set(counts) == set("0123456789")
    # 20 000 digits, 2 000 expected per digit; 1 700..2 300 is about seven sigma either way.
    assert all(1700 <= n <= 2300 for n in counts.values()), counts


def test_first_digits_are_spread_evenly_too() -> None:
    counts = collections.Counter(codes.generate_code(6)[0] for _ in range(5000))
    assert all(380 <= n <= 620 for n in counts.values()), counts


def test_the_digest_is_bound_to_the_otp_id() -> None:
    one = codes.digest(KEY, "otp_a", "123456")
    assert one == codes.digest(KEY, "otp_a", "123456")
    assert one != codes.digest(KEY, "otp_b", "123456")
    assert one != codes.digest(KEY, "otp_a", "123457")
    assert one != codes.digest(b"o" * 32, "otp_a", "123456")
    assert len(one) == 32


def test_the_digest_does_not_contain_the_code() -> None:
    assert b"123456" not in codes.digest(KEY, "otp_a", "123456")


def test_id_and_code_cannot_be_shifted_into_each_other() -> None:
    assert codes.digest(KEY, "otp_a1", "23456") != codes.digest(KEY, "otp_a", "123456")


def test_matches_accepts_the_right_code_and_refuses_any_other() -> None:
    stored = codes.digest(KEY, "otp_a", "012345")
    assert codes.matches(KEY, "otp_a", "012345", stored) is True
    assert codes.matches(KEY, "otp_a", "12345", stored) is False
    assert codes.matches(KEY, "otp_a", "012346", stored) is False
    assert codes.matches(KEY, "otp_b", "012345", stored) is False
    assert codes.matches(KEY, "otp_a", "012345", b"") is False


def test_matches_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = codes.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(codes.hmac, "compare_digest", spy)
    stored = codes.digest(KEY, "otp_a", "123456")
    assert codes.matches(KEY, "otp_a", "123456", stored)
    assert not codes.matches(KEY, "otp_a", "654321", stored)
    assert len(calls) == 2


@pytest.mark.parametrize("code", ["1234", "000000", "0123456789"])
def test_submitted_ascii_digit_codes_are_returned_unchanged(code: str) -> None:
    assert codes.check_submitted(code) == code


@pytest.mark.parametrize(
    "code",
    [
        "١٢٣٤٥٦",  # Arabic-Indic digits
        "１２３４５６",  # fullwidth digits
        "۱۲۳۴۵۶",  # Extended Arabic-Indic digits
        "१२३४५६",  # Devanagari digits
        "123 456",
        " 123456",
        "123456 ",
        "123456\n",
        "\t123456",
        "123\u200b456",  # zero-width space
        "\u200d123456",  # zero-width joiner
        "123456\ufeff",  # byte order mark
        "12345a",
        "-12345",
        "+123456",
        "12.456",
        "123",
        "12345678901",
        "",
        "²³⁴⁵",  # superscripts are digits to str.isdigit
    ],
)
def test_submitted_codes_that_are_not_plain_ascii_digits_are_refused(code: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        codes.check_submitted(code)
    assert err.value.field == "code"


@pytest.mark.parametrize("code", [123456, 123456.0, None, b"123456", ["123456"], True])
def test_submitted_codes_that_are_not_strings_are_refused(code: object) -> None:
    with pytest.raises(InvalidRequest):
        codes.check_submitted(code)


@given(st.text(max_size=12))
def test_a_submitted_code_is_accepted_exactly_when_it_is_four_to_ten_ascii_digits(
    text: str,
) -> None:
    shaped = 4 <= len(text) <= 10 and all(c in "0123456789" for c in text)
    try:
        assert codes.check_submitted(text) == text
    except InvalidRequest:
        assert not shaped
    else:
        assert shaped
