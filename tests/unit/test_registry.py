"""The URL registry and the URL parser: masked URLs, unknown schemes, driver names."""

from __future__ import annotations

import pytest

from otpgate.backends import open_backend
from otpgate.clock import FrozenClock
from otpgate.drivers import open_driver
from otpgate.drivers.base import DriverContext
from otpgate.errors import ConfigurationError
from otpgate.registry import BACKENDS, DRIVERS
from otpgate.urls import mask


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("twilio://SID:TOKEN@+15550001111", "twilio://SID:***@+15550001111"),
        ("redis://:hunter2@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("smtp://user:pass@host:587", "smtp://user:***@host:587"),
        ("telegram://BOTTOKEN@chat", "telegram://***@chat"),
    ],
)
def test_passwords_and_tokens_are_masked(url: str, masked: str) -> None:
    assert mask(url) == masked


@pytest.mark.parametrize("url", ["twilio://SID:TOKEN@+15550001111",
                                 "smtp://user:s3cr3t@host:587?from=no-reply@example.com",
                                 "redis://:hunter2@localhost/0"])
def test_a_masked_url_never_shows_the_secret(url: str) -> None:
    for secret in ("TOKEN", "s3cr3t", "hunter2"):
        assert secret not in mask(url)


@pytest.mark.parametrize("url", ["memory://", "sqlite:///var/otpgate.db", "capture://",
                                 "redis://127.0.0.1:6379/0"])
def test_urls_without_secrets_are_left_alone(url: str) -> None:
    assert mask(url) == url


def test_masking_keeps_the_query_of_a_url() -> None:
    masked = mask("smtp://user:pass@host:587?from=no-reply@example.com")
    assert masked == "smtp://user:***@host:587?from=no-reply@example.com", (
        f"BUG: mask() drops the query string: {masked!r}"
    )


def test_masking_keeps_an_ipv6_host_readable() -> None:
    masked = mask("redis://:pw@[::1]:6379/0")
    assert masked == "redis://:***@[::1]:6379/0", f"BUG: IPv6 brackets lost: {masked!r}"


async def test_an_unknown_backend_scheme_lists_the_known_ones_and_hides_secrets() -> None:
    with pytest.raises(ConfigurationError) as err:
        await open_backend("postgres://u:secretpw@db/otp", FrozenClock())
    text = str(err.value)
    assert "postgres" in text
    assert "secretpw" not in text
    for scheme in BACKENDS:
        assert scheme in text
    assert "known: " + ", ".join(sorted(BACKENDS)) in text


def test_an_unknown_driver_scheme_lists_the_known_ones() -> None:
    from otpgate.capture.memory import MemoryCaptureSink

    ctx = DriverContext(clock=FrozenClock(), capture=MemoryCaptureSink(), allow_capture=True)
    with pytest.raises(ConfigurationError) as err:
        open_driver("pigeon://KEY:SECRET@coop", ctx)
    text = str(err.value)
    assert "pigeon" in text
    assert "SECRET" not in text
    for scheme in DRIVERS:
        assert scheme in text


async def test_the_memory_scheme_opens_a_backend() -> None:
    backend = await open_backend("memory://", FrozenClock())
    try:
        await backend.store.ping()
        assert await backend.store.get("otp_" + "A" * 22) is None
    finally:
        await backend.close()


@pytest.mark.parametrize(("url", "name"), [
    ("console://", "console"),
    ("console://?name=backup", "backup"),
    ("capture://?name=inbox-2", "inbox-2"),
])
def test_a_driver_is_named_by_its_name_option_or_else_its_scheme(url: str, name: str) -> None:
    from otpgate.capture.memory import MemoryCaptureSink

    ctx = DriverContext(clock=FrozenClock(), capture=MemoryCaptureSink(), allow_capture=True)
    assert open_driver(url, ctx).name == name


def test_both_webhook_schemes_default_to_the_name_webhook() -> None:
    from otpgate.drivers.base import driver_name
    from otpgate.urls import parse

    assert driver_name(parse("webhook+https://hooks.example.com/otp?secret=x")) == "webhook"
    assert driver_name(parse("webhook+http://127.0.0.1:9/otp")) == "webhook"


@pytest.mark.parametrize("bad", ["Twilio", "a b", "x" * 33, "-lead", ""])
def test_a_driver_name_that_could_not_name_a_queue_is_refused(bad: str) -> None:
    from otpgate.drivers.base import driver_name
    from otpgate.urls import parse

    with pytest.raises(ConfigurationError, match="driver name"):
        driver_name(parse(f"console://?name={bad}"))


def test_two_driver_urls_with_one_name_are_a_configuration_error() -> None:
    from otpgate.runtime import name_drivers

    with pytest.raises(ConfigurationError, match=r"two drivers are named .console."):
        name_drivers({"sms": ("console://",), "email": ("console://?stream=stderr",)})
    with pytest.raises(ConfigurationError, match=r"two drivers are named .sms.") as err:
        name_drivers({"sms": ("console://?name=sms", "capture://?name=sms&token=SECRET")})
    assert "SECRET" not in str(err.value)


def test_one_driver_url_in_two_channels_is_one_driver_with_one_name() -> None:
    from otpgate.runtime import name_drivers

    by_name, routes = name_drivers({"sms": ("console://?name=main", "capture://"),
                                    "email": ("console://?name=main",)})
    assert by_name == {"main": "console://?name=main", "capture": "capture://"}
    assert routes == {"sms": ("main", "capture"), "email": ("main",)}
