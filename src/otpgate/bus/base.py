"""The ``Bus`` port: at-least-once delivery of CloudEvents to named, filtered subscriptions.

A subscription is a durable queue fed with the events that match its ``Filter`` (the idea
of an SNS subscription with a filter policy). A handler that returns acknowledges; one that
raises is retried with exponential backoff and jitter, and after ``max_deliveries`` the
event is moved to the dead-letter table with the error. A delivery is leased: if its
consumer dies, the event is delivered again once the lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

import msgspec

from otpgate.errors import TemporaryDeliveryError
from otpgate.events import CloudEvent, Filter

Handler = Callable[[CloudEvent], Awaitable[None]]
Redact = Callable[[CloudEvent], CloudEvent]

delivery_number: ContextVar[int] = ContextVar("otpgate_delivery_number", default=1)
"""Which delivery of its event a handler is running (1 for the first); set by the bus, so
that a handler can tell its last chance (``>= max_deliveries``) from the others."""


@dataclass(frozen=True, slots=True)
class Subscription:
    name: str
    filter: Filter
    handler: Handler
    max_deliveries: int = 8
    lease: float = 30.0
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    concurrency: int = 16
    redact: Redact | None = None
    """Applied to an event before it is kept as a dead letter (to drop secrets)."""


async def deliver(sub: Subscription, event: CloudEvent, number: int) -> None:
    """Run ``sub``'s handler on delivery ``number`` of ``event``."""
    delivery_number.set(number)
    await sub.handler(event)


def dead_letter_event(sub: Subscription, event: CloudEvent) -> CloudEvent:
    return sub.redact(event) if sub.redact is not None else event


class DeadLetter(msgspec.Struct, frozen=True):
    subscription: str
    event: CloudEvent
    error: str
    deliveries: int
    failed_at: float


def backoff(sub: Subscription, deliveries: int, error: BaseException | None = None) -> float:
    """Seconds before the next delivery: full-jitter exponential, or the error's own hint."""
    if isinstance(error, TemporaryDeliveryError) and error.retry_after is not None:
        return min(sub.backoff_cap, max(0.0, error.retry_after))
    ceiling = min(sub.backoff_cap, sub.backoff_base * 2 ** max(0, deliveries - 1))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret


async def wait_briefly(wake: asyncio.Event, seconds: float) -> None:
    """Wait until ``wake`` is set or ``seconds`` pass, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wake.wait()


async def finish(task: asyncio.Task[None], wake: asyncio.Event, grace: float = 1.0) -> None:
    """Stop a consumer loop that checks its own flag: wake it, let it end, cancel it if it
    does not (cancellation alone can be lost in ``wait_for`` on Python 3.11)."""
    wake.set()
    done, _ = await asyncio.wait({task}, timeout=grace)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def describe(error: BaseException) -> str:
    """A one-line description of a handler failure, safe to keep at rest."""
    return f"{type(error).__name__}: {error}"[:500]


class Bus(Protocol):
    def subscribe(self, sub: Subscription) -> None:
        """Register a subscription; events published from now on that match are queued."""
        ...

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        """Publish outside a store transaction (a store's ``transact`` publishes its own)."""
        ...

    async def pump(self, limit: int = 100) -> int:
        """Deliver what is due once, without waiting; return how many were handled."""
        ...

    async def start(self) -> None:
        """Start consuming in the background."""
        ...

    async def stop(self) -> None: ...

    async def dead_letters(self, subscription: str | None = None) -> list[DeadLetter]: ...

    async def ping(self) -> None: ...
