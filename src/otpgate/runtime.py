"""Assembly: from ``Settings`` to a running gateway (store, bus, drivers, dispatchers).

Used by the ASGI lifespan, the CLI and the tests; the only place that wires ports to
backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from otpgate import registry
from otpgate.clock import Clock, SystemClock
from otpgate.config import Settings
from otpgate.core.messages import Templates
from otpgate.crypto import Keyring, load_or_create_secret, parse_secret
from otpgate.dispatch import Dispatcher, subscription_for
from otpgate.drivers.base import Driver
from otpgate.drivers.memory_sink import MemoryCaptureSink
from otpgate.errors import BusError, ConfigurationError
from otpgate.events import CloudEvent
from otpgate.outcomes import FailureWatcher
from otpgate.service import Gateway

log = logging.getLogger(__name__)

_PURGE_EVERY = 60
"""Sweeps between two purges (five minutes with the default sweep interval)."""


async def _sent_elsewhere(event: CloudEvent) -> None:
    """Stands in for a dispatcher in a process that does not consume (it never starts)."""
    raise BusError(f"event {event.id} reached a process that does not dispatch")


def load_keyring(settings: Settings) -> Keyring:
    if settings.secret_key:
        return Keyring.from_secret(parse_secret(settings.secret_key))
    if not settings.backend_url.startswith(("sqlite:", "memory:")):
        raise ConfigurationError("OTPGATE_SECRET_KEY is required outside embedded mode")
    return Keyring.from_secret(load_or_create_secret(settings.data_dir / "secret.key"))


def _driver_names(urls: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """A name per distinct driver URL: its scheme, numbered when a scheme repeats."""
    names: dict[str, str] = {}
    for chain in urls.values():
        for url in chain:
            if url in names:
                continue
            scheme = urlsplit(url).scheme
            taken = sum(1 for n in names.values() if n.split("-")[0] == scheme)
            names[url] = scheme if taken == 0 else f"{scheme}-{taken + 1}"
    return names


async def check_drivers(settings: Settings) -> None:
    """Open and close every configured driver once, so that a bad driver URL (or the
    capture driver outside dev mode) stops a server before it starts listening."""
    ctx = registry.DriverContext(SystemClock(), MemoryCaptureSink(), settings.captures)
    for url in {u for chain in settings.driver_urls.values() for u in chain}:
        await registry.open_driver(url, ctx).close()


@dataclass(slots=True)
class Runtime:
    settings: Settings
    clock: Clock
    keyring: Keyring
    backend: registry.Backend
    gateway: Gateway
    driver_urls: dict[str, str]
    """Driver name -> URL; drivers themselves are opened only where codes are sent."""
    drivers: dict[str, Driver] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def open(cls, settings: Settings, clock: Clock | None = None) -> Runtime:
        clock = clock or SystemClock()
        keyring = load_keyring(settings)
        names = _driver_names(settings.driver_urls)
        routes = {ch: tuple(names[u] for u in chain)
                  for ch, chain in settings.driver_urls.items()}
        backend = await registry.open_backend(
            settings.backend_url, clock, poll_interval=settings.poll_interval)
        gateway = Gateway(backend.store, clock, keyring, settings.policy, routes)
        runtime = cls(settings, clock, keyring, backend, gateway,
                      {name: url for url, name in names.items()})
        runtime._declare_subscriptions()
        return runtime

    def _declare_subscriptions(self) -> None:
        """Make every subscription durable before this process writes anything, so that
        its events are kept for the processes that send them — even when this one only
        writes (``otpgate send``) and no sender has run yet."""
        tries, lease = self.settings.bus_max_deliveries, self.settings.bus_lease
        for name in self.driver_urls:
            self.backend.bus.subscribe(subscription_for(name, _sent_elsewhere, tries, lease))
        self.backend.bus.subscribe(FailureWatcher(self.gateway).subscription(tries, lease))

    def open_drivers(self) -> dict[str, Driver]:
        """Open every configured driver (refusing ``capture`` outside dev mode)."""
        if not self.drivers:
            ctx = registry.DriverContext(self.clock, self.backend.capture,
                                         self.settings.captures)
            self.drivers = {name: registry.open_driver(url, ctx)
                            for name, url in self.driver_urls.items()}
        return self.drivers

    def dispatchers(self) -> list[Dispatcher]:
        templates = Templates.default()
        return [
            Dispatcher(store=self.backend.store, driver=driver, driver_name=name,
                       keyring=self.keyring, clock=self.clock, templates=templates,
                       brand=self.settings.brand)
            for name, driver in self.open_drivers().items()
        ]

    async def start_workers(self) -> None:
        """Subscribe a dispatcher per driver, start consuming, and sweep expired codes."""
        tries, lease = self.settings.bus_max_deliveries, self.settings.bus_lease
        for dispatcher in self.dispatchers():
            self.backend.bus.subscribe(dispatcher.subscription(tries, lease))
        self.backend.bus.subscribe(FailureWatcher(self.gateway).subscription(tries, lease))
        await self.backend.bus.start()
        self._tasks.append(asyncio.create_task(self._sweep(), name="otpgate-sweeper"))

    async def _sweep(self) -> None:
        """Expire due codes, and now and then forget what retention allows."""
        rounds = 0
        while True:
            try:
                await self.gateway.expire_due()
                if rounds % _PURGE_EVERY == 0:
                    await self.gateway.purge(self.settings.retention)
            except Exception:
                log.exception("expiry sweep failed; trying again")
            rounds += 1
            await asyncio.sleep(self.settings.sweep_interval)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.backend.bus.stop()
        for driver in self.drivers.values():
            await driver.close()
        await self.backend.close()
