"""The ``Bus`` port: at-least-once delivery of CloudEvents to named, filtered subscriptions.

A subscription is a durable queue fed with the events that match its ``Filter`` (the idea
of an SNS subscription with a filter policy). It is *declared* once, by every process that
writes events it should get (``declare``: durable, a no-op where infrastructure declares
queues, as on SNS/SQS), and *consumed* by the processes that handle it (``consume``, with
its ``Limits``). A handler that returns acknowledges; one that raises is retried with
exponential backoff and jitter, and after ``max_deliveries`` the event is moved to the
dead-letter queue with the error. A delivery is leased: if its consumer dies, the event is
delivered again once the lease runs out (sooner where a backend can prove the consumer
dead). A handler that raises ``otpgate.errors.Deferred`` (its event is not due yet) is
not failing: the bus puts the delivery back for the wait it names (at most
``Limits.backoff_cap``, when the handler is asked again) without counting it, so waiting
can never dead-letter an event, and logs it at debug level only.

Where a store and its bus share one database (the SQLite outbox), the write that records a
handler's final outcome may acknowledge the delivery in the same transaction: the handler
wraps that write in ``acknowledging()``, and the store takes the delivery's ``Ack`` with
``take_ack`` (see ``Ack``). Elsewhere both are no-ops and the bus acknowledges as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from otpgate.errors import BusError, Deferred, TemporaryDeliveryError
from otpgate.events import CloudEvent, Filter
from otpgate.observe import metrics
from otpgate.redact import scrub

Handler = Callable[[CloudEvent], Awaitable[None]]
Redact = Callable[[CloudEvent], CloudEvent]

delivery_number: ContextVar[int] = ContextVar("otpgate_delivery_number", default=1)
"""Which delivery of its event a handler is running (1 for the first); set by the bus, so
that a handler can tell its last chance (``>= max_deliveries``) from the others."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """A durable, filtered queue, as every process that feeds it declares it."""

    name: str
    filter: Filter
    redact: Redact | None = None
    """Applied to an event before it is kept as a dead letter (to drop secrets)."""


DEFAULT_CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class Limits:
    """How a consumer takes a subscription's deliveries."""

    max_deliveries: int = 8
    lease: float = 30.0
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    concurrency: int = DEFAULT_CONCURRENCY
    """Deliveries of this subscription handled at once by one process."""


@dataclass(frozen=True, slots=True)
class Consumer:
    """A subscription with the handler and limits this process consumes it with."""

    sub: Subscription
    handler: Handler
    limits: Limits

    @property
    def name(self) -> str:
        return self.sub.name


@dataclass(slots=True)
class Ack:
    """The acknowledgement of the delivery a handler is running, which the store write that
    records the handler's final outcome may make in its own transaction — one transaction a
    delivery instead of two, and nothing left between the outcome and the ack for a crash
    to fall into. Offered by a bus whose deliveries live in the store's database; the
    handler arms it around that write (``acknowledging``), the store takes it there
    (``take_ack``) and sets ``done`` once its transaction committed. A handler that raises
    after its delivery was acknowledged this way is not retried."""

    owner: object
    """The bus that can run ``run``: a store takes only its own bus's acks."""
    run: Callable[[Any], None]
    """Acknowledge inside the caller's transaction (given its connection)."""
    armed: bool = False
    done: bool = False


_ack: ContextVar[Ack | None] = ContextVar("otpgate_ack", default=None)


async def deliver(consumer: Consumer, event: CloudEvent, number: int,
                  ack: Ack | None = None) -> None:
    """Run ``consumer``'s handler on delivery ``number`` of ``event`` (offering ``ack``)."""
    delivery_number.set(number)
    _ack.set(ack)
    await consumer.handler(event)


@contextlib.contextmanager
def acknowledging() -> Iterator[None]:
    """Around a handler's write of its final outcome: that write may acknowledge the
    delivery too (see ``Ack``)."""
    ack = _ack.get()
    if ack is None:
        yield
        return
    ack.armed = True
    try:
        yield
    finally:
        ack.armed = False


def take_ack(owner: object) -> Ack | None:
    """For a store about to write: the armed, unused ``Ack`` of the delivery being handled,
    if ``owner`` (the store's own bus) can run it."""
    ack = _ack.get()
    if ack is None or not ack.armed or ack.done or ack.owner is not owner:
        return None
    return ack


def redacted(sub: Subscription, event: CloudEvent) -> CloudEvent:
    """The event as ``sub``'s dead-letter queue shows it (without its secrets)."""
    return sub.redact(event) if sub.redact is not None else event


def dead_letter_event(sub: Subscription, event: CloudEvent) -> CloudEvent:
    """The event as ``sub``'s dead-letter queue keeps it. Every bus calls this once for each
    event it dead-letters, which is where ``otpgate_dead_letters_total`` counts them."""
    metrics.DEAD_LETTERS.labels(sub.name).inc()
    return redacted(sub, event)


def consumer_of(declared: dict[str, Subscription], name: str, handler: Handler,
                limits: Limits) -> Consumer:
    """The consumer of the declared subscription ``name``; ``BusError`` if undeclared."""
    sub = declared.get(name)
    if sub is None:
        raise BusError(f"subscription {name!r} is consumed before it is declared")
    return Consumer(sub, handler, limits)


class Backlog(msgspec.Struct, frozen=True, kw_only=True):
    """What waits in one subscription: for readiness, metrics and the dashboard."""

    subscription: str
    depth: int
    """Deliveries not yet acknowledged (due, waiting for a retry, or in flight)."""
    due: int
    """Of those, deliveries that could be handled now and are not in flight."""
    oldest_due_age: float
    """Seconds since the oldest due delivery became due (0 when none is due)."""


class DeadLetter(msgspec.Struct, frozen=True):
    subscription: str
    event: CloudEvent
    error: str
    deliveries: int
    failed_at: float


def deferral(error: BaseException | None) -> float | None:
    """Seconds until a deferred event is due (see ``Deferred``); ``None`` for a failure."""
    return error.wait if isinstance(error, Deferred) else None


def backoff(limits: Limits, deliveries: int, error: BaseException | None = None) -> float:
    """Seconds before the next delivery: full-jitter exponential, or the error's own hint
    (a deferred event's wait, where a bus cannot leave it uncounted)."""
    if (wait := deferral(error)) is not None:
        return min(limits.backoff_cap, wait)
    if isinstance(error, TemporaryDeliveryError) and error.retry_after is not None:
        return min(limits.backoff_cap, max(0.0, error.retry_after))
    ceiling = min(limits.backoff_cap, limits.backoff_base * 2 ** max(0, deliveries - 1))
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
    """A one-line description of a handler failure, safe to keep at rest: numbers,
    addresses and anything shaped like a code are masked (``otpgate.redact``)."""
    return scrub(f"{type(error).__name__}: {error}")[:500]


class Bus(Protocol):
    async def declare(self, sub: Subscription) -> None:
        """Make ``sub`` durable: once this returns, events published (by any process) that
        match it are queued for it. Declaring again updates its filter."""
        ...

    def consume(self, name: str, handler: Handler, limits: Limits) -> None:
        """Handle the declared subscription ``name`` in this process once started."""
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

    async def replay(self, subscription: str, event_id: str) -> bool:
        """Put the dead letter of ``event_id`` on ``subscription`` back on it as a new
        delivery (counted from one again); False if there is no such dead letter."""
        ...

    async def backlog(self) -> list[Backlog]:
        """One entry per declared subscription, at this moment."""
        ...

    async def ping(self) -> None: ...
