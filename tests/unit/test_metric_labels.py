"""The country label of the OTP counters, from the masked recipient events hold."""

from __future__ import annotations

import pytest

from otpgate.observe import metrics


@pytest.mark.parametrize(("masked", "country"), [
    ("+1415•••0123", "US"), ("+4479•••3456", "GB"), ("+33•••12", "FR"),
    ("j•••@example.com", "email"), ("", "unknown"), ("+91•••x", "unknown"),
])
def test_a_masked_recipient_is_labelled_with_its_country(masked: str, country: str) -> None:
    assert metrics.country_of(masked) == country


def test_numbers_that_differ_in_their_last_digits_share_one_parse() -> None:
    """Every new number of a busy day must not cost a libphonenumber parse on the request
    path: only the leading digits the mask keeps go into the cache's key."""
    metrics._country_of.cache_clear()
    for last in range(100):
        assert metrics.country_of(f"+1212•••{last:04d}") == "US"
    info = metrics._country_of.cache_info()
    assert (info.misses, info.hits) == (1, 99)
