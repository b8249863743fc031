"""How the abuse rules are set: flat settings (``OTPGATE_PUMPING_MODE``, ...) and the
``[abuse]`` table of the TOML file for what needs a table (limits per rule, caller keys,
prices, budgets, geo per channel, test number patterns).

```toml
[abuse.rules.prefix]          # any of the RULES below
limit = 60
window = 3600
mode = "monitor"              # enforce (default) | monitor | off
[abuse.rate_keys.user_id]     # "rate_keys": {"user_id": "…"} in a request
limit = 5
window = 3600
[abuse.prices]                # per message, by ISO country; "*" for every other
US = 0.0079
"*" = 0.05
[abuse.budgets]               # daily caps, in the prices' unit
countries = {"*" = 50.0, US = 500.0}
keys = {"*" = 200.0}
[abuse.geo.sms]
block = ["XK"]
[abuse.test_numbers]
"+15005550006" = "123456"
"+1500555*" = "000000"
```
"""

from __future__ import annotations

import ipaddress
from typing import Literal

import msgspec

from otpgate.errors import ConfigurationError

Mode = Literal["enforce", "monitor", "off"]
MODES = ("enforce", "monitor", "off")


class Limit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """At most ``limit`` requests in any ``window`` seconds."""

    limit: int
    window: float
    mode: Mode = "enforce"

    def __post_init__(self) -> None:
        if self.limit < 1 or not self.window > 0:
            raise ConfigurationError("a rate limit needs limit >= 1 and window > 0")


RULES: dict[str, Limit] = {
    "recipient": Limit(20, 86400, "off"),
    "ip": Limit(10, 60),
    "ip-verify": Limit(30, 60),
    "key": Limit(6000, 60),
    "prefix": Limit(100, 3600),
    "country": Limit(100_000, 3600, "off"),
    "global": Limit(1_000_000, 3600, "off"),
    "purpose": Limit(100_000, 3600, "off"),
    "new-country": Limit(20, 3600, "monitor"),
    "new-prefix": Limit(30, 3600, "monitor"),
}
"""Every rate rule and its default. ``ip``/``ip-verify``: per caller address, on
``/v1/otp`` and on verify, for client keys and for server keys that pass ``client_ip``;
``new-country``/``new-prefix``: codes an hour to a country (prefix) that has not yet had
``established`` codes in 30 days."""


class Budgets(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    countries: dict[str, float] = {}
    keys: dict[str, float] = {}
    mode: Mode = "enforce"


class Geo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    allow: tuple[str, ...] = ()
    block: tuple[str, ...] = ()


class AbuseSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    rules_mode: Mode | None = None
    """Every rate rule in this mode (``monitor`` to watch them all before enforcing)."""
    rules: dict[str, Limit] = {}
    rate_keys: dict[str, Limit] = {}
    rate_limits: str = ""
    """Compact rules (``OTPGATE_RATE_LIMITS="prefix=60/3600,ip=20/60:monitor"``)."""
    established: int = 50
    pumping_mode: Mode = "enforce"
    pumping_min_sends: int = 20
    pumping_min_verified: float = 0.1
    pumping_window: float = 3600.0
    pumping_block_for: float = 12 * 3600.0
    prices: dict[str, float] = {}
    budgets: Budgets = msgspec.field(default_factory=Budgets)
    geo_allow: tuple[str, ...] = ()
    geo_block: tuple[str, ...] = ()
    geo: dict[str, Geo] = {}
    geo_mode: Mode = "enforce"
    number_types_mode: Mode = "enforce"
    number_types_allow: tuple[str, ...] = ()
    """Types refused by default to allow anyway (``fixed_line``, ``pager``, ...)."""
    number_types_block: tuple[str, ...] = ()
    """Types allowed by default to refuse (``voip``, ``fixed_line_or_mobile``, ...)."""
    test_numbers: dict[str, str] = {}
    trusted_proxies: tuple[str, ...] = ()
    """Addresses or networks of proxies whose ``X-Forwarded-For`` is believed."""

    def __post_init__(self) -> None:
        for name in self.rules:
            if name not in RULES:
                raise ConfigurationError(f"unknown rate rule {name!r} (known: "
                                         f"{', '.join(RULES)})")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ConfigurationError(f"trusted proxy {proxy!r} is not an address or "
                                         "network") from None
        if self.pumping_min_sends < 1 or not 0 <= self.pumping_min_verified <= 1:
            raise ConfigurationError("pumping_min_sends must be >= 1 and "
                                     "pumping_min_verified between 0 and 1")
        self.limits()

    def limits(self) -> dict[str, Limit]:
        """Every rate rule as configured: defaults, the compact form, then the table, and
        ``rules_mode`` over all."""
        found = dict(RULES)
        found.update(parse_compact(self.rate_limits))
        found.update(self.rules)
        if self.rules_mode is not None:
            found = {name: msgspec.structs.replace(limit, mode=self.rules_mode)
                     if limit.mode != "off" else limit for name, limit in found.items()}
        return found


def parse_compact(text: str) -> dict[str, Limit]:
    """``name=LIMIT/WINDOW[:mode],…`` (``off`` alone turns a rule off)."""
    found: dict[str, Limit] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, spec = part.partition("=")
        name = name.strip()
        if name not in RULES:
            raise ConfigurationError(f"unknown rate rule {name!r} in OTPGATE_RATE_LIMITS")
        if spec.strip() == "off":
            found[name] = msgspec.structs.replace(RULES[name], mode="off")
            continue
        amount, _, mode = spec.partition(":")
        limit, _, window = amount.partition("/")
        mode = mode.strip() or "enforce"
        if mode not in MODES:
            raise ConfigurationError(f"rate rule {name}: mode must be one of {MODES}")
        try:
            found[name] = Limit(int(limit), float(window), mode)  # type: ignore[arg-type]
        except ValueError:
            raise ConfigurationError(f"rate rule {name}: write LIMIT/WINDOW_SECONDS, "
                                     f"not {spec!r}") from None
    return found
