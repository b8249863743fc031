"""Openers for the backends the registry names: each returns a ``registry.Backend``."""

from __future__ import annotations

from typing import Any

from otpgate.bus.memory import MemoryBus
from otpgate.clock import Clock
from otpgate.drivers.memory_sink import MemoryCaptureSink
from otpgate.registry import Backend
from otpgate.store.memory import MemoryStore


async def open_memory(url: str, clock: Clock, **options: Any) -> Backend:
    """``memory://``: everything in this process, gone when it exits."""
    bus = MemoryBus(clock, poll_interval=options.get("poll_interval", 0.05))
    store = MemoryStore(bus, clock)

    async def close() -> None:
        await bus.stop()

    return Backend(store=store, bus=bus, capture=MemoryCaptureSink(), close=close)


async def open_sqlite(url: str, clock: Clock, **options: Any) -> Backend:
    """``sqlite:///path/to/otpgate.db``: one file, WAL, the outbox in the same database."""
    from otpgate.store.sqlite import open_sqlite_backend

    return await open_sqlite_backend(url, clock, **options)
