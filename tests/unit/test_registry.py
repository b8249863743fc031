"""The URL registry: masked URLs and unknown schemes."""

from __future__ import annotations

import pytest

from otpgate.clock import FrozenClock
from otpgate.errors import ConfigurationError
from otpgate.registry import BACKENDS, DRIVERS, DriverContext, mask, open_backend, open_driver


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
    assert "known: memory, sqlite" in text


def test_an_unknown_driver_scheme_lists_the_known_ones() -> None:
    from otpgate.drivers.memory_sink import MemoryCaptureSink

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
