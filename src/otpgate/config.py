"""Settings, read once at the edge from ``OTPGATE_*`` variables and an optional TOML file.

Environment variables win over the file (``OTPGATE_CONFIG=path/to/otpgate.toml``), which
wins over the defaults. Nothing below the edge reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otpgate.core.policy import Policy
from otpgate.errors import ConfigurationError

DEV_DRIVERS: dict[str, tuple[str, ...]] = {"sms": ("capture://",), "email": ("capture://",)}
_POLICY_FIELDS = {f.name for f in dataclasses.fields(Policy)}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything otpgate is told; built by ``from_env`` and passed down."""

    data_dir: Path = Path("var")
    store_url: str | None = None
    """Backend URL: ``sqlite:///var/otpgate.db`` (default), ``memory://``, ``redis://…``."""
    drivers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Driver URLs per channel, first tried first; empty means the dev capture driver."""
    dev: bool = False
    api_only: bool = False
    """Serve the HTTP API without dispatchers; ``otpgate worker`` processes send."""
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    secret_key: str | None = None
    brand: str = "otpgate"
    policy: Policy = field(default_factory=Policy)
    max_body_bytes: int = 16 * 1024
    log_level: str = "info"
    bus_lease: float = 30.0
    bus_max_deliveries: int = 8
    poll_interval: float = 0.2
    sweep_interval: float = 5.0
    retention: float = 7 * 24 * 3600.0
    """Seconds a finished OTP stays readable (``GET /v1/otp/{id}``) before it is purged."""
    allow_capture: bool = False
    """Allow the capture driver and dev routes outside dev mode (never by default)."""

    @property
    def backend_url(self) -> str:
        return self.store_url or f"sqlite:///{self.data_dir / 'otpgate.db'}"

    @property
    def driver_urls(self) -> dict[str, tuple[str, ...]]:
        return self.drivers or DEV_DRIVERS

    @property
    def captures(self) -> bool:
        """Whether the capture driver (and with it the dev inbox) may be used."""
        return self.dev or self.allow_capture

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``env`` (default ``os.environ``), its TOML file, then ``overrides``
    (command-line flags) on top."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if path := env.get("OTPGATE_CONFIG"):
        values.update(_from_toml(Path(path)))
    for name, value in _from_vars(env).items():
        if name in {"policy", "drivers"}:
            values[name] = {**values.get(name, {}), **value}
        else:
            values[name] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    policy = values.pop("policy", {})
    try:
        return Settings(policy=Policy(**policy), **values)
    except TypeError as exc:
        raise ConfigurationError(f"unknown setting: {exc}") from None


_SCALARS: dict[str, type] = {
    "data_dir": Path, "store_url": str, "dev": bool, "api_only": bool, "host": str,
    "port": int,
    "workers": int, "secret_key": str, "brand": str, "max_body_bytes": int,
    "log_level": str, "bus_lease": float, "bus_max_deliveries": int,
    "poll_interval": float, "sweep_interval": float, "allow_capture": bool,
    "retention": float,
}


def _convert(name: str, kind: type, raw: Any) -> Any:
    if kind is bool and isinstance(raw, str):
        lowered = raw.strip().lower()
        if lowered not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            raise ConfigurationError(f"{name} must be true or false, not {raw!r}")
        return lowered in {"1", "true", "yes", "on"}
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a {kind.__name__}, not {raw!r}") from None


def _from_vars(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, kind in _SCALARS.items():
        if (raw := env.get(f"OTPGATE_{name.upper()}")) is not None:
            values[name] = _convert(name, kind, raw)
    drivers = {
        key[len("OTPGATE_DRIVERS_"):].lower(): tuple(s for u in raw.split(",") if (s := u.strip()))
        for key, raw in env.items() if key.startswith("OTPGATE_DRIVERS_")
    }
    if drivers:
        values["drivers"] = drivers
    policy = {
        key[len("OTPGATE_POLICY_"):].lower(): _convert(key, int, raw)
        for key, raw in env.items() if key.startswith("OTPGATE_POLICY_")
    }
    if unknown := set(policy) - _POLICY_FIELDS:
        raise ConfigurationError(f"unknown policy settings: {sorted(unknown)}")
    if policy:
        values["policy"] = policy
    return values


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from None
    values: dict[str, Any] = {}
    for name, raw in data.items():
        if name == "drivers":
            values["drivers"] = {ch: tuple(urls) for ch, urls in raw.items()}
        elif name == "policy":
            values["policy"] = dict(raw)
        elif name in _SCALARS:
            values[name] = _convert(name, _SCALARS[name], raw)
        else:
            raise ConfigurationError(f"unknown setting {name!r} in {path}")
    return values
