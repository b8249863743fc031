"""The one registry of URL schemes: backends and drivers, imported lazily.

A scheme whose module needs an optional dependency says which extra brings it.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from otpgate.bus.base import Bus
from otpgate.clock import Clock
from otpgate.drivers.base import CaptureSink, Driver
from otpgate.errors import ConfigurationError
from otpgate.store.base import Store

# scheme -> ("module:callable", extra that brings its dependencies)
BACKENDS: dict[str, tuple[str, str | None]] = {
    "memory": ("otpgate.backends:open_memory", None),
    "sqlite": ("otpgate.backends:open_sqlite", None),
}
DRIVERS: dict[str, tuple[str, str | None]] = {
    "capture": ("otpgate.drivers.capture:from_url", None),
    "console": ("otpgate.drivers.console:from_url", None),
}


@dataclass(slots=True)
class Backend:
    """A store, the bus its outbox feeds, and where captured messages go."""

    store: Store
    bus: Bus
    capture: CaptureSink
    close: Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DriverContext:
    """What a driver may need besides its URL."""

    clock: Clock
    capture: CaptureSink
    allow_capture: bool


def _load(table: dict[str, tuple[str, str | None]], url: str, family: str) -> Any:
    scheme = urlsplit(url).scheme
    if scheme not in table:
        known = ", ".join(sorted(table))
        raise ConfigurationError(f"unknown {family} scheme in {mask(url)!r}; known: {known}")
    target, extra = table[scheme]
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"; pip install 'otpgate[{extra}]'" if extra else ""
        raise ConfigurationError(f"{family} {scheme!r} cannot be loaded: {exc}{hint}") from None
    return getattr(module, attr)


async def open_backend(url: str, clock: Clock, **options: Any) -> Backend:
    opener = _load(BACKENDS, url, "backend")
    backend: Backend = await opener(url, clock, **options)
    return backend


def open_driver(url: str, ctx: DriverContext) -> Driver:
    factory = _load(DRIVERS, url, "driver")
    driver: Driver = factory(url, ctx)
    return driver


_SECRET_PARAMS = ("token", "secret", "password", "pass", "key", "signature")


def mask(url: str) -> str:
    """The URL with its password and secret-looking query values replaced by ``***``."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        userinfo = f"{user}:***" if colon else "***"
    netloc = f"{userinfo}@{host}" if at else host
    query = "&".join(
        f"{name}=***" if any(s in name.lower() for s in _SECRET_PARAMS) else f"{name}={value}"
        for name, _, value in (pair.partition("=") for pair in parts.query.split("&") if pair)
    )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
