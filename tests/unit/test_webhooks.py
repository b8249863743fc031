"""The outgoing webhooks' schedule and settings."""

from __future__ import annotations

import pytest

from otpgate.config import WebhookSettings
from otpgate.errors import ConfigurationError
from otpgate.events import EventType
from otpgate.webhooks import SUBSCRIPTION, check_url, delays, limits, signer


def test_retries_start_within_seconds_and_last_a_day() -> None:
    plan = delays(WebhookSettings())
    assert plan[:3] == [1.0, 2.0, 4.0]
    assert max(plan) == 3600.0
    assert 24 * 3600 <= sum(plan) < 25 * 3600
    assert limits(WebhookSettings()).max_deliveries == len(plan) + 1


def test_every_lifecycle_event_but_dispatch_goes_out() -> None:
    allowed = set(SUBSCRIPTION.filter.rules["type"])
    assert EventType.DISPATCH.value not in allowed
    assert allowed == {t.value for t in EventType} - {EventType.DISPATCH.value}


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_c2hvcnQ=", "v1,abc", "whsec_!!"])
def test_a_secret_that_is_not_whsec_base64_of_16_bytes_is_refused(secret: str) -> None:
    with pytest.raises(ConfigurationError, match="whsec_"):
        signer(secret)


def test_plain_http_is_only_for_loopback() -> None:
    assert check_url("http://127.0.0.1:9000/hook")
    assert check_url("https://app.example.com/hooks/otpgate")
    with pytest.raises(ConfigurationError, match="loopback"):
        check_url("http://app.example.com/hook")
    with pytest.raises(ConfigurationError):
        check_url("ftp://app.example.com/hook")
