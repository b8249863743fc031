"""Policy: the limits every OTP lives by, and how they refuse bad values."""

from __future__ import annotations

import pytest

from otpgate.core.policy import Policy
from otpgate.errors import ConfigurationError, InvalidRequest, OtpgateError


def test_the_defaults_follow_common_practice_for_sms_codes() -> None:
    policy = Policy()
    assert (policy.default_ttl, policy.min_ttl, policy.max_ttl) == (300, 30, 600)
    assert policy.max_attempts == 5
    assert (policy.max_sends, policy.send_window) == (5, 600)
    assert policy.default_code_length == 6


def test_no_ttl_requested_means_the_default_ttl() -> None:
    assert Policy().ttl(None) == 300
    assert Policy(default_ttl=120).ttl(None) == 120


@pytest.mark.parametrize("ttl", [30, 31, 300, 599, 600])
def test_ttls_within_the_bounds_are_used_as_given(ttl: int) -> None:
    assert Policy().ttl(ttl) == ttl


@pytest.mark.parametrize("ttl", [29, 601, 0, -1, 10**9])
def test_ttls_outside_the_bounds_are_refused(ttl: int) -> None:
    with pytest.raises(InvalidRequest, match="between 30 and 600") as err:
        Policy().ttl(ttl)
    assert err.value.field == "ttl_seconds"


@pytest.mark.parametrize("ttl", [True, False, 300.0, "300", [300]])
def test_ttls_that_are_not_integers_are_refused(ttl: object) -> None:
    with pytest.raises(InvalidRequest) as err:
        Policy().ttl(ttl)  # type: ignore[arg-type]
    assert err.value.field == "ttl_seconds"


@pytest.mark.parametrize(
    "fields",
    [
        {"min_ttl": 0},
        {"min_ttl": -5, "default_ttl": 10},
        {"min_ttl": 400},
        {"default_ttl": 700},
        {"max_ttl": 200},
        {"max_attempts": 0},
        {"max_sends": 0},
        {"send_window": 0},
        {"recipient_max_sends": 0},
        {"recipient_send_window": 0},
        {"delay_after": 0},
        {"delay_base": 0},
        {"delay_base": 60, "delay_cap": 59},
        {"lock_after": 0},
        {"lock_time": -1},
        {"min_code_length": 3},
        {"min_code_length": 11},
        {"resend_cooldown": -1},
    ],
)
def test_inconsistent_policies_are_configuration_errors(fields: dict[str, int]) -> None:
    with pytest.raises(ConfigurationError):
        Policy(**fields)


@pytest.mark.parametrize("length", [3, 5, 11, True])
def test_a_default_code_length_outside_six_to_ten_is_a_configuration_error(
    length: int,
) -> None:
    # A bad policy is a mistake in the settings, not in a caller's request: it must not
    # surface as a 422-shaped InvalidRequest about a ``code_length`` field.
    with pytest.raises(OtpgateError) as err:
        Policy(default_code_length=length)
    assert isinstance(err.value, ConfigurationError), (
        f"BUG: Policy(default_code_length={length!r}) raised "
        f"{type(err.value).__name__}, not ConfigurationError"
    )


def test_edge_values_make_a_valid_policy() -> None:
    policy = Policy(min_ttl=1, default_ttl=1, max_ttl=1, resend_cooldown=0, max_attempts=1,
                    max_sends=1, send_window=1, recipient_max_sends=1,
                    recipient_send_window=1, delay_after=1, delay_base=1, delay_cap=1,
                    lock_after=1, lock_time=1, default_code_length=4, min_code_length=4)
    assert policy.ttl(None) == 1


def test_a_policy_cannot_be_changed_once_made() -> None:
    policy = Policy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 99  # type: ignore[misc]


def test_the_failure_defaults_follow_nist_and_the_readme() -> None:
    policy = Policy()
    assert (policy.delay_after, policy.delay_base, policy.delay_cap) == (10, 60, 3600)
    assert (policy.lock_after, policy.lock_time) == (100, 86400)
    assert (policy.recipient_max_sends, policy.recipient_send_window) == (10, 3600)
    assert policy.min_code_length == 6


@pytest.mark.parametrize(("streak", "delay"), [
    (0, 0), (9, 0), (10, 60), (11, 120), (12, 240), (13, 480), (14, 960), (15, 1920),
    (16, 3600), (17, 3600), (99, 3600), (10**6, 3600)])
def test_the_send_delay_doubles_from_ten_failures_and_stops_at_an_hour(
    streak: int, delay: int,
) -> None:
    assert Policy().send_delay(streak) == delay


@pytest.mark.parametrize(("minimum", "allowed", "refused"), [
    (6, [6, 8, 10], [4, 5, 11]), (4, [4, 5, 6, 10], [3, 11])])
def test_code_lengths_run_from_the_policys_minimum_to_ten(
    minimum: int, allowed: list[int], refused: list[int],
) -> None:
    policy = Policy(min_code_length=minimum, default_code_length=6)
    assert [policy.code_length(n) for n in allowed] == allowed
    assert policy.code_length(None) == 6
    for length in refused:
        with pytest.raises(InvalidRequest) as err:
            policy.code_length(length)
        assert err.value.field == "code_length"


def test_a_default_code_length_below_the_minimum_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        Policy(default_code_length=4)
    assert Policy(default_code_length=4, min_code_length=4).code_length(None) == 4
