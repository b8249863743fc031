"""Settings, read once at the edge from ``OTPGATE_*`` variables and an optional TOML file.

Environment variables win over the file (``OTPGATE_CONFIG=path/to/otpgate.toml``), which
wins over the defaults. Both are decoded alike, with msgspec, into typed sections
(``server``, ``store``, ``bus``, ``policy``, ``drivers``); a TOML file may write a section as
a table (``[server] port = 9000``) or use the flat names the variables use (``port =
9000``). Secrets (``Secret``, and driver and store URLs as ``SecretUrl``) never show in a
``repr``. Nothing below the edge reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from otpgate import routing
from otpgate.abuse import testnumbers
from otpgate.abuse.settings import AbuseSettings
from otpgate.core.policy import Policy
from otpgate.errors import ConfigurationError
from otpgate.urls import mask

DEV_DRIVERS: dict[str, tuple[str, ...]] = dict.fromkeys(
    ("sms", "email", "whatsapp", "voice"), ("capture://",))
"""Dev mode captures every channel for the dev inbox."""


class Secret(str):
    """A secret string: usable as the string it is, masked in every ``repr``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('***')"


class SecretUrl(str):
    """A URL that may carry credentials: its ``repr`` shows it masked."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"SecretUrl({mask(str(self))!r})"


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    api_only: bool = False
    """Serve the HTTP API without dispatchers; ``otpgate worker`` processes send."""
    max_body_bytes: int = 16 * 1024
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"
    """``text`` or ``json`` (one object per line): see ``otpgate.observe.logs``."""
    max_header_bytes: int = 8 * 1024
    """The request line and headers of one request, together (431 beyond)."""
    max_headers: int = 64
    """Header lines in one request (431 beyond)."""
    request_timeout: float = 10.0
    """Seconds a client has to send a whole request, head and body (408 and closed
    beyond); idle keep-alive connections are closed after 5 s."""
    allowed_origins: tuple[str, ...] = ()
    """Browser origins besides the server's own that may call it (``https://app.example``)."""
    shutdown_grace: float = 10.0
    """Seconds a stopping process (SIGTERM) gives in-flight requests, and then the sends
    in flight, to finish before it exits."""
    ready_max_due_age: float = 30.0
    """``/readyz`` is 503 once a due send has waited longer than this (0: never)."""


class StoreSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: SecretUrl | None = None
    """Backend URL: ``sqlite:///var/otpgate.db`` (default), ``memory://``, ``redis://…``."""
    timeout: float = 2.0
    """Seconds a call to a store server (Redis) may take before it counts as unavailable
    (the API answers 503)."""


class BusSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    lease: float = 30.0
    max_deliveries: int = 8
    poll_interval: float = 0.2
    sweep_interval: float = 5.0


class BreakerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every driver's circuit breaker (``otpgate.breaker``)."""

    window: float = 30.0
    """Seconds of calls the failure rate is taken over."""
    min_calls: int = 10
    """Calls in the window before the rate counts."""
    failure_rate: float = 0.5
    open_for: float = 15.0
    """Seconds an open circuit waits before a probe."""
    consecutive: int = 5
    """Failures in a row that open the circuit whatever the window holds."""


class WebhookSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Outgoing webhooks to the app (``otpgate.webhooks``): off until ``url`` is set."""

    url: SecretUrl | None = None
    secret: Secret | None = None
    """``whsec_`` and base64 of at least 16 bytes: signs every delivery."""
    timeout: float = 10.0
    retry_for: float = 24 * 3600.0
    """Seconds a failing delivery is retried before it is dead-lettered."""
    backoff: float = 1.0
    """The first retry's delay in seconds; each next one doubles, up to an hour."""


class RouteSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[[routes]]``: a channel and a destination (``prefix`` or ``country``, neither for
    the channel's default) → driver names, first tried first."""

    channel: str
    drivers: tuple[str, ...]
    prefix: str | None = None
    country: str | None = None
    strategy: Literal["order", "cost"] = "order"
    """``cost``: the cheapest healthy driver first (``[prices.<driver>]``)."""


class ServiceSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[services.VA…]``: a Twilio Verify service sid and what its codes get (see
    ``otpgate.services``); unset values are the policy's and the brand's."""

    name: str | None = None
    """The service's friendly name (Twilio's ``friendly_name``)."""
    purpose: str | None = None
    """The purpose its codes are kept under (default: the sid, lowercased)."""
    brand: str | None = None
    """The name its messages give (default: ``OTPGATE_BRAND``)."""
    code_length: int | None = None
    ttl: int | None = None
    """Seconds its codes live."""
    custom_code: bool = False
    """Whether a verification may bring its own code (Twilio's ``CustomCode``)."""


class AwsSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The AWS runtime's topics, and which driver a dispatch function sends with."""

    topic_arn: str | None = None
    """The SNS topic of dispatch events (``OTPGATE_TOPIC_ARN``)."""
    events_topic_arn: str | None = None
    """The SNS topic of every other event, for the app (``OTPGATE_EVENTS_TOPIC_ARN``)."""
    driver: str | None = None
    """The driver a dispatch function sends with (``OTPGATE_DRIVER``)."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything otpgate is told; built by ``from_env`` and passed down."""

    data_dir: Path = Path("var")
    dev: bool = False
    dev_public: bool = False
    """Let dev mode (no API key) listen on an address other than loopback."""
    allow_capture: bool = False
    """Allow the capture driver and dev routes outside dev mode (never by default)."""
    secret_key: Secret | None = None
    brand: str = "otpgate"
    templates_dir: Path | None = None
    """A folder of message templates per locale over the shipped ones (``fr.toml``, ...)."""
    webotp_domain: str | None = None
    """The domain of the WebOTP line (``@domain #code``) of every SMS whose request names
    none; unset, only requests that ask for one get it."""
    public_url: str | None = None
    """The origin otpgate is reached at from outside (``https://otp.example.com``): the
    base of the receipt callbacks given to providers, and the origin they sign."""
    token_ttl: float = 300.0
    """Seconds a verification token (the ``token`` of an approved answer) is valid: 60 to
    600 (``otpgate.tokens``)."""
    retention: float = 7 * 24 * 3600.0
    """Seconds a finished OTP stays readable (``GET /v1/otp/{id}``) before it is purged."""
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    bus: BusSettings = msgspec.field(default_factory=BusSettings)
    webhook: WebhookSettings = msgspec.field(default_factory=WebhookSettings)
    breaker: BreakerSettings = msgspec.field(default_factory=BreakerSettings)
    policy: Policy = msgspec.field(default_factory=Policy)
    aws: AwsSettings = msgspec.field(default_factory=AwsSettings)
    drivers: dict[str, tuple[SecretUrl, ...]] = {}
    """Driver URLs per channel, first tried first; empty means the dev capture driver."""
    routes: tuple[RouteSettings, ...] = ()
    """Routes by destination over the drivers' names (see ``otpgate.routing``)."""
    prices: dict[str, dict[str, float]] = {}
    """``[prices.<driver>]``: the price of one message by ISO country (``"*"`` for every
    other), for least-cost routes."""
    services: dict[str, ServiceSettings] = {}
    """Twilio Verify service sids (``VA…``) and their settings (``[services.VA…]``)."""
    abuse: AbuseSettings = msgspec.field(default_factory=AbuseSettings)
    """Rate limits, pumping guard, budgets, geo, number types, test numbers
    (``otpgate.abuse.settings``)."""
    supabase_hook_secret: Secret | None = None
    """Supabase Auth's Send-SMS hook secret(s): ``v1,whsec_…``, several comma-separated
    while rotating."""

    @property
    def store_url(self) -> str:
        """The backend's URL (the embedded database in ``data_dir`` unless one is set)."""
        return self.store.url or f"sqlite:///{self.data_dir / 'otpgate.db'}"

    @property
    def driver_urls(self) -> dict[str, tuple[str, ...]]:
        urls = {channel: tuple(str(u) for u in chain) for channel, chain in self.drivers.items()}
        return urls or DEV_DRIVERS

    @property
    def captures(self) -> bool:
        """Whether the capture driver (and with it the dev inbox) may be used."""
        return self.dev or self.allow_capture

    def replace(self, **changes: Any) -> Settings:
        """These settings with ``changes``, given by flat name (``port=9000``,
        ``store_url=…``) or by section (``server={...}``)."""
        return build({**to_values(self), **changes})

    def encode(self) -> bytes:
        """JSON that ``decode`` turns back into these settings (for child processes)."""
        return msgspec.json.encode(self, enc_hook=_encode_hook)

    @classmethod
    def decode(cls, raw: bytes) -> Settings:
        return _convert(msgspec.json.decode(raw))


FLAT: dict[str, tuple[str | None, str]] = {
    "host": ("server", "host"), "port": ("server", "port"),
    "workers": ("server", "workers"), "api_only": ("server", "api_only"),
    "max_body_bytes": ("server", "max_body_bytes"), "log_level": ("server", "log_level"),
    "max_header_bytes": ("server", "max_header_bytes"), "max_headers": ("server", "max_headers"),
    "request_timeout": ("server", "request_timeout"),
    "allowed_origins": ("server", "allowed_origins"),
    "shutdown_grace": ("server", "shutdown_grace"),
    "ready_max_due_age": ("server", "ready_max_due_age"),
    "store_url": ("store", "url"), "store_timeout": ("store", "timeout"),
    "bus_lease": ("bus", "lease"), "bus_max_deliveries": ("bus", "max_deliveries"),
    "poll_interval": ("bus", "poll_interval"), "sweep_interval": ("bus", "sweep_interval"),
    "data_dir": (None, "data_dir"), "dev": (None, "dev"), "dev_public": (None, "dev_public"),
    "allow_capture": (None, "allow_capture"), "secret_key": (None, "secret_key"),
    "brand": (None, "brand"), "retention": (None, "retention"),
    "public_url": (None, "public_url"), "token_ttl": (None, "token_ttl"),
    "topic_arn": ("aws", "topic_arn"), "events_topic_arn": ("aws", "events_topic_arn"),
    "driver": ("aws", "driver"),
    "templates_dir": (None, "templates_dir"), "webotp_domain": (None, "webotp_domain"),
    "webhook_url": ("webhook", "url"), "webhook_secret": ("webhook", "secret"),
    "webhook_timeout": ("webhook", "timeout"), "webhook_retry_for": ("webhook", "retry_for"),
    "webhook_backoff": ("webhook", "backoff"),
    "log_format": ("server", "log_format"),
    "supabase_hook_secret": (None, "supabase_hook_secret"),
    "breaker_window": ("breaker", "window"), "breaker_min_calls": ("breaker", "min_calls"),
    "breaker_failure_rate": ("breaker", "failure_rate"),
    "breaker_open_for": ("breaker", "open_for"),
    "breaker_consecutive": ("breaker", "consecutive"),
    **{name: ("abuse", name) for name in (
        "rules_mode", "rate_limits", "established", "pumping_mode", "pumping_min_sends",
        "pumping_min_verified", "pumping_window", "pumping_block_for", "geo_allow",
        "geo_block", "geo_mode", "number_types_allow", "number_types_block",
        "number_types_mode", "test_numbers", "trusted_proxies")},
}
"""Flat setting names (``OTPGATE_<NAME>``, or top-level keys in TOML) → (section, field)."""
_SECTIONS = {"server": ServerSettings, "store": StoreSettings, "bus": BusSettings,
             "aws": AwsSettings, "webhook": WebhookSettings, "breaker": BreakerSettings,
             "abuse": AbuseSettings}


def from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``env`` (default ``os.environ``), its TOML file, then ``overrides``
    (command-line flags, by flat name) on top."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if path := env.get("OTPGATE_CONFIG"):
        values = _merge(values, _from_toml(Path(path)))
    values = _merge(values, _from_vars(env))
    return build(_merge(values, _nest({k: v for k, v in overrides.items() if v is not None})))


def build(values: Mapping[str, Any]) -> Settings:
    """Settings from flat names and sections alike (as ``from_env`` reads them); values
    may be given as plain data or as the typed values themselves (``Path``, ``Policy``)."""
    plain = msgspec.to_builtins(dict(values), enc_hook=_encode_hook)
    return _convert(_nest(plain))


def to_values(settings: Settings) -> dict[str, Any]:
    """The settings as sections of plain values (``build`` of this gives them back)."""
    values: dict[str, Any] = msgspec.to_builtins(settings, enc_hook=_encode_hook)
    return values


def _nest(values: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for name, value in values.items():
        section, key = FLAT.get(name, (None, name))
        if section is None:
            if isinstance(value, Mapping) and isinstance(nested.get(key), dict):
                nested[key] = {**nested[key], **value}
            else:
                nested[key] = value
        else:
            nested.setdefault(section, {})[key] = value
    return nested


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in _nest(top).items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = {**merged[name], **value}
        else:
            merged[name] = value
    return merged


def _decode_hook(kind: type, value: Any) -> Any:
    if kind in (Secret, SecretUrl, Path) and isinstance(value, str):
        return kind(value)
    raise NotImplementedError(f"cannot read {kind.__name__} from {type(value).__name__}")


def _encode_hook(value: Any) -> Any:
    if isinstance(value, Path | Secret | SecretUrl):
        return str(value)
    raise NotImplementedError(f"cannot write {type(value).__name__}")


def _convert(values: Mapping[str, Any]) -> Settings:
    try:
        return msgspec.convert(values, Settings, dec_hook=_decode_hook)
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"bad setting: {exc}") from None


def _kind(name: str) -> Any:
    """The type of the setting a flat name stands for."""
    section, key = FLAT[name]
    owner: Any = Settings if section is None else _SECTIONS[section]
    return {f.name: f.type for f in msgspec.structs.fields(owner)}[key]


def _scalar(name: str, kind: Any, raw: str) -> Any:
    """A variable's text as the setting's type (booleans take the usual spellings)."""
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            raise ConfigurationError(f"{name} must be true or false, not {raw!r}")
        return lowered in {"1", "true", "yes", "on"}
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ConfigurationError(
                f"{name} must be a {kind.__name__}, not {raw!r}") from None
    return raw


def _from_vars(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in FLAT:
        if (raw := env.get(f"OTPGATE_{name.upper()}")) is not None:
            kind = _kind(name)
            if typing.get_origin(kind) is tuple:  # a comma-separated list
                values[name] = [s for part in raw.split(",") if (s := part.strip())]
                continue
            if typing.get_origin(kind) is dict:  # comma-separated name=value pairs
                values[name] = testnumbers.parse_pairs(raw)
                continue
            values[name] = _scalar(name, bool if kind is bool else int if kind is int
                                   else float if kind is float else str, raw)
    drivers = {
        key[len("OTPGATE_DRIVERS_"):].lower(): [s for u in raw.split(",") if (s := u.strip())]
        for key, raw in env.items() if key.startswith("OTPGATE_DRIVERS_")
    }
    if drivers:
        values["drivers"] = drivers
    if (raw_routes := env.get("OTPGATE_ROUTES")) is not None:
        values["routes"] = [
            {"channel": r.channel, "drivers": list(r.drivers), "prefix": r.prefix,
             "country": r.country} for r in routing.parse_compact(raw_routes)]
    policy = {
        key[len("OTPGATE_POLICY_"):].lower(): _scalar(key, int, raw)
        for key, raw in env.items() if key.startswith("OTPGATE_POLICY_")
    }
    _check_policy(policy)
    if policy:
        values["policy"] = policy
    return values


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from None
    known = set(FLAT) | {"policy", "drivers", "routes", "services", "prices", *_SECTIONS}
    if unknown := sorted(set(data) - known):
        raise ConfigurationError(f"unknown setting {unknown[0]!r} in {path}")
    if isinstance(data.get("policy"), dict):
        _check_policy(data["policy"])
    return data


def _check_policy(values: Mapping[str, Any]) -> None:
    if unknown := set(values) - {f.name for f in dataclasses.fields(Policy)}:
        raise ConfigurationError(f"unknown policy settings: {sorted(unknown)}")
