"""Masking numbers, addresses and codes in text bound for logs and for rest."""

from __future__ import annotations

import logging

import pytest

from otpgate import redact
from otpgate.bus.base import describe
from otpgate.redact import scrub
from tests.leaky import CODE, NUMBER, leaky_error


@pytest.mark.parametrize(("text", "masked"), [
    ("to=%2B14155550123&text=Your+code+is+482913", "to=•••&text=Your+code+is•••"),
    ("to +14155550123, code 482913.", "to •••, code •••."),
    ("call (415) 555-0123 or 06 12 34 56 78 or 020 7946 0958", "call ••• or ••• or •••"),
    ("14155550123 without its plus", "••• without its plus"),
    ("jane.doe@example.com, to=jane%40example.com", "j•••@example.com, to=j•••%40example.com"),
    ('{"to":"+14155550123","code":"4829"}', '{"to":"•••","code":"•••"}'),
    ("codes 1234,5678 and 9876543210", "codes •••,••• and •••"),
])
def test_numbers_addresses_and_code_shaped_digits_are_masked(text: str, masked: str) -> None:
    assert scrub(text) == masked


@pytest.mark.parametrize("text", [
    "sent otp_Ejva-evfEPR-Rris-wpSAA#1/sms to +1415•••0123 via capture",
    "listening on http://127.0.0.1:8080 and [::1]:8080 and localhost:9000",
    "attempt 2 of 8, HTTP 503, digest 3f2a12345b, otp_abc1234",
])
def test_ids_machine_addresses_small_numbers_and_masked_text_are_left_alone(
    text: str,
) -> None:
    assert scrub(text) == text


def test_the_error_describer_masks_what_an_httpx_error_quotes() -> None:
    described = describe(leaky_error())
    assert described.startswith("HTTPStatusError: Server error '502 Bad Gateway'")
    assert CODE not in described
    assert NUMBER not in described and NUMBER[1:] not in described and "%2B1415" not in described


def test_installed_every_record_is_masked_message_arguments_and_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redact.install()
    redact.install()  # idempotent
    logger = logging.getLogger("some.library")
    with caplog.at_level(logging.INFO):
        logger.info("sending to %s", NUMBER)
        logger.info(f"code {CODE} for jane@example.com")
        try:
            raise leaky_error()
        except Exception:
            logger.exception("provider call failed")
    text = caplog.text
    assert "sending to •••" in text and "j•••@example.com" in text
    assert "HTTPStatusError" in text and "provider call failed" in text
    assert CODE not in text
    assert NUMBER not in text and NUMBER[1:] not in text
