"""Dev mode needs no API key: it captures only, and listens on loopback only unless told."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from otpgate import cli, devmode
from otpgate.api.app import create_app
from otpgate.config import Settings, build
from otpgate.errors import ConfigurationError


def _dev(**changes: Any) -> Settings:
    return build({"dev": True, "store_url": "memory://", **changes})


def test_dev_mode_with_the_capture_driver_on_loopback_starts_without_warnings() -> None:
    assert devmode.check(_dev()) == []
    assert devmode.check(_dev(host="::1")) == []
    assert devmode.check(_dev(host="localhost")) == []


@pytest.mark.parametrize("driver", ["console://", "capture://,console://?name=out"])
def test_dev_mode_with_any_other_driver_refuses_to_start(driver: str) -> None:
    settings = _dev(drivers={"sms": tuple(driver.split(","))})
    with pytest.raises(ConfigurationError, match="--no-dev and an API key"):
        devmode.check(settings)
    with pytest.raises(ConfigurationError, match="only captures messages"):
        create_app(settings)  # the ASGI app refuses too (uvicorn otpgate.api.app:from_env)


def test_dev_mode_on_a_public_address_needs_dev_public_and_then_warns() -> None:
    with pytest.raises(ConfigurationError, match="--dev-public"):
        devmode.check(_dev(host="0.0.0.0"))
    [warning] = devmode.check(_dev(host="0.0.0.0", dev_public=True))
    assert "DEV MODE IS PUBLIC" in warning


def test_production_mode_is_not_dev_mode_s_business() -> None:
    settings = build({"store_url": "memory://", "host": "0.0.0.0",
                      "drivers": {"sms": ("console://",)}})
    assert devmode.check(settings) == []


def _serve(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str,
           env: dict[str, str] | None = None) -> tuple[int, str, list[Settings]]:
    started: list[Settings] = []
    monkeypatch.setattr(cli, "_run_server", started.append)
    result = CliRunner().invoke(cli.main, ["serve", "--data-dir", str(tmp_path), *args],
                                env={"OTPGATE_LOG_LEVEL": "warning", **(env or {})})
    return result.exit_code, result.output, started


def test_serve_dev_with_a_real_driver_refuses_before_listening(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    code, out, started = _serve(monkeypatch, tmp_path, "--dev",
                                env={"OTPGATE_DRIVERS_SMS": "console://"})
    assert (code, started) == (1, [])
    assert "never sends them" in out and "console://" in out


def test_serve_dev_says_what_it_does_and_binds_public_only_with_dev_public(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    code, out, started = _serve(monkeypatch, tmp_path, "--dev")
    assert code == 0 and len(started) == 1
    assert "DEV MODE: no API key is required, and messages are captured, not sent" in out
    code, out, started = _serve(monkeypatch, tmp_path, "--dev", "--host", "0.0.0.0")
    assert (code, started) == (1, []) and "--dev-public" in out
    code, out, started = _serve(monkeypatch, tmp_path, "--dev", "--dev-public",
                                "--host", "0.0.0.0")
    assert code == 0 and started[0].dev_public
    assert "DEV MODE IS PUBLIC" in out
