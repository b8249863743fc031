"""Assembly: from ``Settings`` to a running gateway (store, bus, drivers, dispatchers).

Used by the ASGI lifespan, the CLI and the tests; the only place that wires ports to
backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from otpgate import backends, codekeys, templates, urls
from otpgate.abuse.guard import Guard
from otpgate.audit import Audit
from otpgate.backends import Backend
from otpgate.breaker import BreakerPolicy, Breakers
from otpgate.bus.base import Limits
from otpgate.capture.memory import MemoryCaptureSink
from otpgate.clock import Clock, SystemClock
from otpgate.config import Settings
from otpgate.core import autofill, codes
from otpgate.core.lifecycle import Change
from otpgate.core.messages import Templates
from otpgate.crypto import Keyring, create_secret, parse_secret, read_secret
from otpgate.dispatch import DEFAULT_CONCURRENCY, Dispatcher, subscription_for
from otpgate.drivers import open_driver
from otpgate.drivers.base import (
    Driver,
    DriverContext,
    ReceiptReader,
    driver_concurrency,
    driver_name,
    driver_pace,
)
from otpgate.drivers.capture import CaptureDriver
from otpgate.drivers.wrappers import Sleep, innermost
from otpgate.errors import ConfigurationError, InvalidRequest
from otpgate.events import CloudEvent
from otpgate.housekeeping import FailureWatcher, Housekeeping
from otpgate.observe.instrument import metered, observed, traced
from otpgate.ratelimit.pace import LocalPace, Pace
from otpgate.receipts import ReceiptDesk
from otpgate.routing import Route, RouteTable, table_of
from otpgate.service import OtpService
from otpgate.store.base import Store
from otpgate.tokens import Tokens
from otpgate.webhooks import SUBSCRIPTION as WEBHOOKS
from otpgate.webhooks import WebhookSender, check_url, signer
from otpgate.webhooks import limits as webhook_limits

log = logging.getLogger(__name__)

_PURGE_EVERY = 60
"""Sweeps between two purges (five minutes with the default sweep interval)."""


def secret_file(settings: Settings) -> Path:
    return settings.data_dir / "secret.key"


def load_keyring(settings: Settings, embedded: bool) -> Keyring:
    """The keyring of ``OTPGATE_SECRET_KEY``, or (embedded only) of the key file, made on
    first use; prefer ``open_keyring``, which also checks it against the store."""
    if settings.secret_key:
        try:
            return Keyring.from_secret(parse_secret(settings.secret_key))
        except ConfigurationError as exc:
            raise ConfigurationError(f"OTPGATE_SECRET_KEY: {exc.detail}") from None
    if not embedded:
        raise ConfigurationError("OTPGATE_SECRET_KEY is required outside embedded mode")
    path = secret_file(settings)
    found = read_secret(path)
    return Keyring.from_secret(found if found is not None else create_secret(path))


async def open_keyring(settings: Settings, backend: Backend) -> tuple[Keyring, Path | None]:
    """The keyring, checked against the key check value the store keeps (kept now if the
    store has none), and the key file it came from (``None``: from the environment).

    Refuses — ``ConfigurationError`` saying what happened and what to do — a key other
    than the one the store was made with; and never leaves a new key file behind for a
    store made with another key (a deleted ``secret.key`` is not silently replaced)."""
    path = None if settings.secret_key else secret_file(settings)
    existed = path is not None and path.exists()
    keyring = load_keyring(settings, backend.embedded)
    if await backend.store.keep_key_check(keyring.check) == keyring.check:
        return keyring, path
    store = urls.mask(settings.store_url)
    if path is not None and not existed:
        with contextlib.suppress(OSError):
            path.unlink()
        raise ConfigurationError(
            f"the secret key file {path} is missing, but the database {store} was made "
            f"with a key: restore {path} from your backup (or set OTPGATE_SECRET_KEY to the "
            "key it held). No new key was kept: with one, no pending code could be verified "
            "and every recipient's limits and locks would be lost.")
    source = "OTPGATE_SECRET_KEY" if path is None else str(path)
    raise ConfigurationError(
        f"the secret key in {source} is not the one the database {store} was made with: "
        "start with the original key, or point OTPGATE_DATA_DIR (or OTPGATE_STORE_URL) at "
        "a new database to start afresh.")


def name_drivers(chains: dict[str, tuple[str, ...]]) -> tuple[dict[str, str],
                                                               dict[str, tuple[str, ...]]]:
    """Driver name → URL, and the chain of names per channel. A URL's name is its
    ``name=`` (default: its scheme); one name for two URLs is a configuration error."""
    by_name: dict[str, str] = {}
    routes: dict[str, tuple[str, ...]] = {}
    for channel, chain in chains.items():
        names = []
        for url in chain:
            parsed = urls.parse(url)
            name = driver_name(parsed)
            driver_concurrency(parsed)  # a bad concurrency= or mps= stops the start, too
            driver_pace(parsed)
            if by_name.setdefault(name, url) != url:
                raise ConfigurationError(
                    f"two drivers are named {name!r} ({urls.mask(by_name[name])} and "
                    f"{urls.mask(url)}); give one a name= of its own")
            names.append(name)
        if len(set(names)) != len(names):
            raise ConfigurationError(f"the {channel} route names a driver twice")
        routes[channel] = tuple(names)
    return by_name, routes


def route_table(settings: Settings) -> RouteTable:
    """The routes in effect: the configured ones over the drivers' default chains."""
    by_name, chains = name_drivers(settings.driver_urls)
    table = table_of(chains, (Route(r.channel, tuple(r.drivers), r.prefix, r.country,
                                    r.strategy) for r in settings.routes), settings.prices)
    table.check_prices(by_name)
    return table


async def check_drivers(settings: Settings) -> RouteTable:
    """Open and close every configured driver once, so that a bad driver URL (or the
    capture driver outside dev mode) stops a server before it starts listening, and check
    the routes against what the drivers can carry."""
    by_name, _ = name_drivers(settings.driver_urls)
    table = route_table(settings)
    load_templates(settings)
    ctx = DriverContext(SystemClock(), MemoryCaptureSink(), settings.captures)
    channels = {}
    for name, url in by_name.items():
        driver = open_driver(url, ctx)
        channels[name] = driver.channels
        await driver.close()
    table.check(channels)
    return table


def load_templates(settings: Settings) -> Templates:
    """The message templates in effect (``OTPGATE_TEMPLATES_DIR`` over the shipped ones),
    checked, and the WebOTP domain setting with them."""
    try:
        autofill.parse_webotp_domain(settings.webotp_domain, "OTPGATE_WEBOTP_DOMAIN")
    except InvalidRequest as exc:
        raise ConfigurationError(exc.detail) from None
    return templates.load(settings.templates_dir)


def breaker_policy(settings: Settings) -> BreakerPolicy:
    found = settings.breaker
    try:
        return BreakerPolicy(window=found.window, min_calls=found.min_calls,
                             failure_rate=found.failure_rate, open_for=found.open_for,
                             consecutive=found.consecutive)
    except ConfigurationError as exc:
        raise ConfigurationError(f"OTPGATE_BREAKER_*: {exc.detail}") from None


def warn_long_sms(settings: Settings, found: Templates) -> None:
    """Log, in one warning, every (locale, channel) whose SMS needs more than one segment
    with the brand, the longest code, the longest TTL's minutes and the WebOTP line set
    for every SMS (if any)."""
    most = math.ceil(settings.policy.max_ttl / 60)
    longest = found.longest_sms(settings.brand, codes.MAX_LENGTH, most, settings.webotp_domain)
    if longest:
        log.warning(
            "these SMS need more than one segment with the brand %r, a %d-digit code and "
            "up to %d minutes (each segment is billed; shorten the brand or override the "
            "template in OTPGATE_TEMPLATES_DIR): %s", settings.brand, codes.MAX_LENGTH, most,
            ", ".join(f"({one.locale}, {one.channel}): {one.segments.parts} "
                      f"{one.segments.encoding.value} segments" for one in longest))


def abuse_guard(settings: Settings, backend: Backend, keyring: Keyring, store: Store,
                audit: Audit) -> Guard:
    """The abuse rules over the backend's limiter; events of refused requests (a
    would-block, a prefix blocked for pumping) go out through the store's outbox."""

    async def publish(batch: list[CloudEvent]) -> None:
        await store.transact(ABUSE_EVENTS, lambda _: Change(result=None, events=batch))

    return Guard(settings.abuse, backend.limiter, keyring.digest_key, audit, publish)


ABUSE_EVENTS = "abuse.events"
"""The recipient key the abuse rules' own events are published under (no state)."""


@dataclass(slots=True)
class Runtime:
    settings: Settings
    clock: Clock
    keyring: Keyring
    backend: Backend
    service: OtpService
    housekeeping: Housekeeping
    driver_urls: dict[str, str]
    """Driver name -> URL; drivers themselves are opened only where codes are sent."""
    audit: Audit = field(default_factory=Audit)
    secret_file: Path | None = None
    """The key file the secret came from (watched while running), if any."""
    drivers: dict[str, Driver] = field(default_factory=dict)
    breakers: Breakers = field(default_factory=lambda: Breakers(BreakerPolicy(), SystemClock()))
    """One circuit breaker per driver, shared by this process's dispatchers."""
    paces: dict[str, Pace] = field(default_factory=dict)
    """The pace of each driver with ``mps=``, shared by this process's dispatchers (and,
    on Redis, by every process's)."""
    sleep: Sleep = asyncio.sleep
    """How a paced send waits for its turn (tests inject one that does not)."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _receipts: ReceiptDesk | None = None
    _webhooks: WebhookSender | None = None
    _secret_gone: bool = False
    _tokens: Tokens | None = None

    @property
    def tokens(self) -> Tokens:
        """Signs the verification tokens of approved answers (``otpgate.tokens``)."""
        if self._tokens is None:
            self._tokens = Tokens(self.keyring, self.clock, issuer=self.settings.public_url,
                                  ttl=self.settings.token_ttl)
        return self._tokens

    @classmethod
    async def open(cls, settings: Settings, clock: Clock | None = None) -> Runtime:
        clock = clock or SystemClock()
        by_name, _ = name_drivers(settings.driver_urls)
        router = route_table(settings)
        backend = await backends.open_backend(
            settings.store_url, clock, poll_interval=settings.bus.poll_interval,
            topic_arn=settings.aws.topic_arn, events_topic_arn=settings.aws.events_topic_arn,
            max_deliveries=settings.bus.max_deliveries, retention=settings.retention,
            drain_timeout=settings.server.shutdown_grace,
            timeout=settings.store.timeout)
        try:
            keyring, path = await open_keyring(settings, backend)
            await codekeys.load(backend.store, keyring)
            audit = Audit()
            store = observed(backend.store)  # writes carry trace context, outcomes count
            service = OtpService(store, clock, keyring, settings.policy, router,
                                 audit=audit, guard=abuse_guard(settings, backend, keyring,
                                                                store, audit))
            breakers = Breakers(breaker_policy(settings), clock)
            router.health = breakers  # least-cost routes skip what is failing here
            runtime = cls(settings, clock, keyring, backend, service,
                          Housekeeping(store, clock, settings.policy), by_name,
                          breakers=breakers, audit=audit,
                          secret_file=path)
            _ = runtime.tokens  # a bad OTPGATE_TOKEN_TTL stops the start
            await runtime._declare_subscriptions()
            runtime._tasks.append(asyncio.create_task(runtime._refresh_code_keys(),
                                                      name="otpgate-code-keys"))
        except BaseException:
            await backend.close()
            raise
        return runtime

    async def _declare_subscriptions(self) -> None:
        """Make every subscription durable before this process writes anything, so that
        its events are kept for the processes that send them — even when this one only
        writes (``otpgate send``) and no sender has run yet."""
        for name in self.driver_urls:
            await self.backend.bus.declare(subscription_for(name))
        await self.backend.bus.declare(FailureWatcher.subscription)
        if self.settings.webhook.url:
            check_url(str(self.settings.webhook.url))
            signer(str(self.settings.webhook.secret or ""))
            await self.backend.bus.declare(WEBHOOKS)

    @property
    def limits(self) -> Limits:
        return Limits(max_deliveries=self.settings.bus.max_deliveries,
                      lease=self.settings.bus.lease)

    def open_drivers(self, names: Iterable[str] | None = None) -> dict[str, Driver]:
        """Open the configured drivers (``names``, default all; refusing ``capture``
        outside dev mode); each is opened once."""
        ctx = DriverContext(self.clock, self.backend.capture, self.settings.captures,
                            public_url=self.settings.public_url)
        for name in self.driver_urls if names is None else names:
            if name not in self.drivers:
                self.drivers[name] = open_driver(self.driver_urls[name], ctx)
        return self.drivers

    def receipt_reader(self, name: str) -> ReceiptReader | None:
        """The driver ``name`` if it reads delivery receipts (opening the drivers here if
        this process has not yet: an API-only process takes receipts too)."""
        if name not in self.driver_urls:
            return None
        driver = innermost(self.open_drivers()[name])
        if isinstance(driver, CaptureDriver) and not self.settings.dev:
            return None  # played receipts carry no signature: dev mode only
        return driver if isinstance(driver, ReceiptReader) else None

    @property
    def receipts(self) -> ReceiptDesk:
        if self._receipts is None:
            self._receipts = ReceiptDesk(self.service.store, self.clock, self.receipt_reader)
        return self._receipts

    def pace(self, name: str) -> Pace | None:
        """The pace driver ``name`` keeps (``mps=``, ``burst=``), made on first use."""
        if name not in self.paces:
            found = driver_pace(urls.parse(self.driver_urls[name]))
            if found is None:
                return None
            rate, burst = found
            make = self.backend.pace
            if make is not None:
                self.paces[name] = make(name, rate, burst)
            else:
                # ``serve --workers N`` on the embedded runtime: N processes send, each
                # with a bucket of its own, so each takes its share of the rate.
                share = max(1, self.settings.server.workers)
                self.paces[name] = LocalPace(rate / share, max(1, burst // share))
        return self.paces[name]

    def dispatchers(self, names: Iterable[str] | None = None) -> list[Dispatcher]:
        """A dispatcher for each driver of ``names`` (default: every configured one) —
        the one assembly ``serve``, ``worker`` and the AWS dispatch function share: the
        driver metered and traced, behind its breaker and its pace, with the templates,
        brand and WebOTP domain of the settings and the receipt callbacks of
        ``OTPGATE_PUBLIC_URL``."""
        found = load_templates(self.settings)
        warn_long_sms(self.settings, found)
        bus = self.settings.bus
        opened = self.open_drivers(names)
        return [
            Dispatcher(store=self.service.store, driver=metered(opened[name]),
                       keyring=self.keyring, clock=self.clock, templates=found,
                       brand=self.settings.brand, max_deliveries=bus.max_deliveries,
                       lease=bus.lease, webotp_domain=self.settings.webotp_domain,
                       breaker=self.breakers.of(name), pace=self.pace(name),
                       sleep=self.sleep)
            for name in (self.driver_urls if names is None else names)
        ]

    async def start_workers(self) -> None:
        """Consume with a dispatcher per driver, start the bus, and sweep expired codes."""
        bus = self.backend.bus
        for dispatcher in self.dispatchers():
            in_flight = driver_concurrency(urls.parse(self.driver_urls[dispatcher.name]))
            name = dispatcher.subscription().name
            bus.consume(name, traced(name, dispatcher.handle),
                        dispatcher.limits(in_flight or DEFAULT_CONCURRENCY))
        watcher = FailureWatcher(self.housekeeping)
        bus.consume(watcher.subscription.name,
                    traced(watcher.subscription.name, watcher.handle), self.limits)
        hooks = self.settings.webhook
        if hooks.url:
            self._webhooks = WebhookSender(hooks, self.clock)
            bus.consume(WEBHOOKS.name, traced(WEBHOOKS.name, self._webhooks.handle),
                        webhook_limits(hooks))
        await bus.start()
        self._tasks.append(asyncio.create_task(self._sweep(), name="otpgate-sweeper"))

    async def _sweep(self) -> None:
        """Expire due codes, and now and then forget what retention allows."""
        rounds = 0
        while True:
            self.watch_secret_file()
            try:
                await self.housekeeping.expire_due()
                if rounds % _PURGE_EVERY == 0:
                    await self.housekeeping.purge(self.settings.retention)
            except Exception:
                log.exception("expiry sweep failed; trying again")
            rounds += 1
            await asyncio.sleep(self.settings.bus.sweep_interval)

    async def _refresh_code_keys(self) -> None:
        """Adopt code-key rotations made elsewhere (``otpgate secrets rotate``)."""
        while True:
            await asyncio.sleep(codekeys.REFRESH)
            try:
                await codekeys.load(self.backend.store, self.keyring)
            except Exception:
                log.exception("reading the code keys failed; trying again")

    def watch_secret_file(self) -> None:
        """Say loudly, once, that the key file this process was started with is gone."""
        if self.secret_file is None or self._secret_gone or self.secret_file.exists():
            return
        self._secret_gone = True
        log.error("the secret key file %s was deleted while otpgate runs: restore it from "
                  "your backup now; until then no otpgate process can start on this database",
                  self.secret_file)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.backend.bus.stop()
        for driver in self.drivers.values():
            await driver.close()
        if self._webhooks is not None:
            await self._webhooks.close()
        await self.backend.close()
