"""Which drivers send a code: the chain per (recipient, channel), and the next driver when
one gives up on a send.

A chain is an ordered tuple of driver names: the first is tried, the rest are failovers.
The chain chosen for a code is kept on the OTP and travels in its dispatch events, so a
send fails over along the chain it started with even if the routes change meanwhile.

Routes (``RouteTable``) map a channel and a destination — a number prefix (``+44``,
``+1415``) or an ISO country (``GB``) — to a chain; the most specific match wins: a longer
prefix beats a shorter one, and a country counts as its calling code plus a little (so
``GB`` beats ``+44``, and ``+447`` beats ``GB``). A route without a destination is the
channel's default; without one, a channel's default is its driver list's order.

A route with ``strategy = "cost"`` orders its drivers for each code (least-cost routing):
those whose breaker is not open first, cheapest first by the price table (per driver, by
the recipient's ISO country, ``"*"`` for every other), ties by recent delivery rate (the
share of calls that succeeded in the breaker's window), then as listed; a driver whose
breaker is open goes last, kept as a failover of last resort.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import phonenumbers

from otpgate.core.recipients import Kind, Recipient
from otpgate.errors import ConfigurationError, InvalidRequest

Chain = tuple[str, ...]
Strategy = Literal["order", "cost"]
Prices = Mapping[str, Mapping[str, float]]
"""Driver name → ISO country (or ``"*"``) → the price of one message."""


class Health(Protocol):
    def healthy(self, driver: str) -> bool:
        """Whether the driver's breaker is not open."""
        ...

    def delivery_rate(self, driver: str) -> float:
        """The share of its recent calls that succeeded (1.0 with none)."""
        ...


class AllHealthy:
    """Health where no breaker is known (``otpgate routes``)."""

    def healthy(self, driver: str) -> bool:
        return True

    def delivery_rate(self, driver: str) -> float:
        return 1.0


class Router(Protocol):
    def channels(self) -> frozenset[str]:
        """Channels some route serves."""
        ...

    def route(self, recipient: Recipient, channel: str) -> Chain:
        """The driver chain for ``recipient`` on ``channel``; ``InvalidRequest`` when no
        driver is configured for it."""
        ...


@dataclass(frozen=True, slots=True)
class Route:
    """One line of the table: ``channel`` (and ``prefix`` or ``country``) → ``drivers``."""

    channel: str
    drivers: Chain
    prefix: str | None = None
    country: str | None = None
    strategy: Strategy = "order"

    @property
    def destination(self) -> str:
        return self.prefix or self.country or "default"

    def specificity(self) -> float:
        """How specific the destination is (higher wins); -1 for a default route."""
        if self.prefix is not None:
            return float(len(self.prefix))
        if self.country is not None:
            code = phonenumbers.country_code_for_region(self.country)
            return len(f"+{code}") + 0.5
        return -1.0

    def matches(self, recipient: Recipient) -> bool:
        if self.prefix is not None:
            return recipient.kind is Kind.PHONE and recipient.address.startswith(self.prefix)
        if self.country is not None:
            return recipient.country == self.country
        return True


class RouteTable:
    """Routes per channel, most specific first (see the module docstring)."""

    def __init__(self, routes: Iterable[Route], prices: Prices | None = None,
                 health: Health | None = None) -> None:
        self.prices: Prices = prices or {}
        self.health: Health = health or AllHealthy()
        by_channel: dict[str, list[Route]] = {}
        seen: set[tuple[str, str]] = set()
        for route in routes:
            _check(route)
            key = (route.channel, route.destination)
            if key in seen:
                raise ConfigurationError(
                    f"two routes for {route.channel} to {route.destination}")
            seen.add(key)
            by_channel.setdefault(route.channel, []).append(route)
        self._routes = {channel: sorted(found, key=lambda r: -r.specificity())
                        for channel, found in by_channel.items()}

    def channels(self) -> frozenset[str]:
        return frozenset(self._routes)

    def route(self, recipient: Recipient, channel: str) -> Chain:
        found = self.match(recipient, channel)
        if found.strategy == "cost":
            return self.cheapest(found.drivers, recipient.country)
        return found.drivers

    def cheapest(self, drivers: Chain, country: str | None) -> Chain:
        """``drivers`` in least-cost order for ``country`` (see the module docstring)."""
        def key(item: tuple[int, str]) -> tuple[bool, float, float, int]:
            index, name = item
            return (not self.health.healthy(name), self.price(name, country),
                    -self.health.delivery_rate(name), index)

        return tuple(name for _, name in sorted(enumerate(drivers), key=key))

    def price(self, driver: str, country: str | None) -> float:
        table = self.prices.get(driver, {})
        found = table.get(country or "*", table.get("*"))
        return math.inf if found is None else found

    def match(self, recipient: Recipient, channel: str) -> Route:
        """The most specific route of ``channel`` for ``recipient``."""
        for route in self._routes.get(channel, ()):
            if route.matches(recipient):
                return route
        if channel in self._routes:
            raise InvalidRequest(f"no route serves channel {channel!r} for this recipient",
                                 "to")
        raise InvalidRequest(f"no driver is configured for channel {channel!r}", "channel")

    def table(self) -> list[Route]:
        """Every route, by channel, most specific first."""
        return [r for channel in sorted(self._routes) for r in self._routes[channel]]

    def check(self, channels_of: Mapping[str, frozenset[str]]) -> None:
        """Refuse a table naming a driver that is not configured (``channels_of`` maps each
        configured driver's name to its channels) or that cannot carry the route's
        channel."""
        for route in self.table():
            for name in route.drivers:
                if name not in channels_of:
                    known = ", ".join(sorted(channels_of)) or "none"
                    raise ConfigurationError(
                        f"the {route.channel} route to {route.destination} names driver "
                        f"{name!r}, which is not configured (drivers: {known})")
                if route.channel not in channels_of[name]:
                    raise ConfigurationError(
                        f"the {route.channel} route to {route.destination} names driver "
                        f"{name!r}, which cannot send on {route.channel}")
        self.check_prices(channels_of)

    def check_prices(self, channels_of: Mapping[str, object]) -> None:
        """Refuse prices for a driver that is not configured, a price that is not a
        non-negative number, or a least-cost route naming a driver without prices."""
        for name, table in self.prices.items():
            if name not in channels_of:
                raise ConfigurationError(f"prices are given for driver {name!r}, which is "
                                         "not configured")
            for where, price in table.items():
                if not (where == "*" or where in phonenumbers.SUPPORTED_REGIONS):
                    raise ConfigurationError(f"the prices of {name!r} name {where!r}: an ISO "
                                             "country code or \"*\"")
                if not (isinstance(price, int | float) and math.isfinite(price)
                        and price >= 0):
                    raise ConfigurationError(f"the price of {name!r} for {where} must be a "
                                             "number >= 0")
        for route in self.table():
            if route.strategy != "cost":
                continue
            for name in route.drivers:
                if name not in self.prices:
                    raise ConfigurationError(
                        f"the {route.channel} route to {route.destination} is least-cost, "
                        f"but driver {name!r} has no prices ([prices.{name}])")


class StaticRouter(RouteTable):
    """One chain per channel, whoever the recipient."""

    def __init__(self, chains: Mapping[str, Sequence[str]]) -> None:
        super().__init__(Route(channel, tuple(chain)) for channel, chain in chains.items())


def _check(route: Route) -> None:
    if not route.drivers:
        raise ConfigurationError(f"the {route.channel} route to {route.destination} names "
                                 "no driver")
    if len(set(route.drivers)) != len(route.drivers):
        raise ConfigurationError(f"the {route.channel} route to {route.destination} names "
                                 "a driver twice")
    if route.prefix is not None and route.country is not None:
        raise ConfigurationError("a route has a prefix or a country, not both")
    if route.channel == "email" and route.destination != "default":
        raise ConfigurationError("e-mail routes have no prefix or country")
    if route.prefix is not None and not (route.prefix.startswith("+")
                                         and route.prefix[1:].isascii()
                                         and route.prefix[1:].isdigit()
                                         and 2 <= len(route.prefix) <= 16):
        raise ConfigurationError(f"route prefix {route.prefix!r} must look like +44 or +1415")
    if route.country is not None and (
            route.country not in phonenumbers.SUPPORTED_REGIONS):
        raise ConfigurationError(f"route country {route.country!r} is not an ISO 3166-1 "
                                 "alpha-2 code libphonenumber knows")


def table_of(defaults: Mapping[str, Sequence[str]], routes: Iterable[Route],
             prices: Prices | None = None) -> RouteTable:
    """The effective table: ``routes``, plus a default route per channel of ``defaults``
    (the driver list order) where ``routes`` gives the channel none."""
    given = list(routes)
    have_default = {r.channel for r in given if r.prefix is None and r.country is None}
    extra = [Route(channel, tuple(chain)) for channel, chain in defaults.items()
             if channel not in have_default and chain]
    return RouteTable([*extra, *given], prices)


def parse_compact(text: str) -> list[Route]:
    """``OTPGATE_ROUTES``: ``sms:+44=vonage,twilio; sms:GB=twilio; voice=twilio``."""
    routes = []
    for entry in (e.strip() for e in text.split(";")):
        if not entry:
            continue
        target, eq, names = entry.partition("=")
        if not eq:
            raise ConfigurationError(f"a route looks like sms:+44=vonage,twilio, not {entry!r}")
        channel, _, destination = target.strip().partition(":")
        destination = destination.strip()
        drivers = tuple(n.strip() for n in names.split(",") if n.strip())
        prefix = destination if destination.startswith("+") else None
        country = destination.upper() if destination and prefix is None else None
        routes.append(Route(channel.strip(), drivers, prefix, country))
    return routes


def next_driver(fallbacks: Sequence[str]) -> tuple[str, list[str]] | None:
    """After a driver gave up: the driver to hand the send to, and what is left after it;
    ``None`` when the chain is spent."""
    if not fallbacks:
        return None
    return fallbacks[0], list(fallbacks[1:])
