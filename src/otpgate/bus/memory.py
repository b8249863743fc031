"""In-memory bus: the twin of the SQLite outbox for unit tests and single-process use."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from otpgate.bus.base import (
    Backlog,
    Consumer,
    DeadLetter,
    Handler,
    Limits,
    Subscription,
    backoff,
    consumer_of,
    dead_letter_event,
    deferral,
    deliver,
    describe,
    finish,
    wait_briefly,
)
from otpgate.clock import Clock
from otpgate.events import CloudEvent

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Entry:
    seq: int
    event: CloudEvent
    deliveries: int = 0
    available_at: float = 0.0
    lease_until: float = 0.0


class MemoryBus:
    """At-least-once, leased, retried, dead-lettered — all in one process's memory."""

    def __init__(self, clock: Clock, poll_interval: float = 0.05,
                 drain_timeout: float = 1.0) -> None:
        self._clock = clock
        self._poll = poll_interval
        self._drain = drain_timeout
        self._subs: dict[str, Subscription] = {}
        self._consumers: dict[str, Consumer] = {}
        self._queues: dict[str, list[_Entry]] = {}
        self._dead: list[DeadLetter] = []
        self._seq = itertools.count(1)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.log: list[CloudEvent] = []
        """Every event ever published, in order (for tests and the dev inbox)."""

    async def declare(self, sub: Subscription) -> None:
        self._subs[sub.name] = sub
        self._queues.setdefault(sub.name, [])

    def consume(self, name: str, handler: Handler, limits: Limits) -> None:
        self._consumers[name] = consumer_of(self._subs, name, handler, limits)

    def enqueue(self, events: Sequence[CloudEvent]) -> None:
        """Queue events synchronously; a store calls this inside its atomic section."""
        now = self._clock.now()
        for event in events:
            self.log.append(event)
            for name, sub in self._subs.items():
                if sub.filter.matches(event):
                    self._queues[name].append(_Entry(next(self._seq), event, 0, now))
        if events:
            self._wake.set()

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        self.enqueue(events)

    async def pump(self, limit: int = 100) -> int:
        done = 0
        for consumer in list(self._consumers.values()):
            batch = self._lease(consumer, limit - done)
            done += len(batch)
            await asyncio.gather(*(self._deliver(consumer, e) for e in batch))
        return done

    def _lease(self, consumer: Consumer, limit: int) -> list[_Entry]:
        now, name, limits = self._clock.now(), consumer.name, consumer.limits
        batch: list[_Entry] = []
        for entry in list(self._queues[name]):
            if len(batch) >= min(limit, limits.concurrency):
                break
            spent = entry.deliveries >= limits.max_deliveries
            if spent and 0 < entry.lease_until <= now:  # its last delivery never answered
                self._queues[name].remove(entry)
                self._dead.append(DeadLetter(name, dead_letter_event(consumer.sub,
                                                                     entry.event),
                                             "the lease of the last delivery ran out",
                                             entry.deliveries, now))
                continue
            if not spent and entry.available_at <= now and entry.lease_until <= now:
                entry.lease_until = now + limits.lease
                entry.deliveries += 1
                batch.append(entry)
        return batch

    async def _deliver(self, consumer: Consumer, entry: _Entry) -> None:
        try:
            await deliver(consumer, entry.event, entry.deliveries)
        except Exception as exc:  # any failure is retried, then dead-lettered
            self._nack(consumer, entry, exc)
        else:
            with contextlib.suppress(ValueError):  # acked already by a later delivery
                self._queues[consumer.name].remove(entry)

    def _nack(self, consumer: Consumer, entry: _Entry, exc: Exception) -> None:
        now, name = self._clock.now(), consumer.name
        if deferral(exc) is not None:  # not due yet: back, this delivery uncounted
            entry.deliveries -= 1
            entry.lease_until = 0.0
            wait = backoff(consumer.limits, entry.deliveries, exc)
            entry.available_at = now + wait
            log.debug("deferred %s on %s for %.0f s", entry.event.id, name, wait)
            return
        if entry.deliveries >= consumer.limits.max_deliveries:
            with contextlib.suppress(ValueError):
                self._queues[name].remove(entry)
            self._dead.append(DeadLetter(name, dead_letter_event(consumer.sub, entry.event),
                                         describe(exc), entry.deliveries, now))
            log.error("dead-lettered %s on %s after %d deliveries: %s",
                      entry.event.id, name, entry.deliveries, describe(exc))
            return
        entry.lease_until = 0.0
        entry.available_at = now + backoff(consumer.limits, entry.deliveries, exc)
        log.warning("retrying %s on %s: %s", entry.event.id, name, describe(exc))

    def pending(self, subscription: str) -> int:
        return len(self._queues.get(subscription, []))

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="otpgate-memory-bus")

    async def _run(self) -> None:
        while self._task is not None:
            if await self.pump(256) == 0:
                self._wake.clear()
                await wait_briefly(self._wake, self._poll)

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            await finish(task, self._wake, self._drain)

    async def dead_letters(self, subscription: str | None = None) -> list[DeadLetter]:
        return [d for d in self._dead if subscription in (None, d.subscription)]

    async def replay(self, subscription: str, event_id: str) -> bool:
        for dead in self._dead:
            if dead.subscription == subscription and dead.event.id == event_id:
                self._dead.remove(dead)
                self._queues.setdefault(subscription, []).append(
                    _Entry(next(self._seq), dead.event, 0, self._clock.now()))
                self._wake.set()
                return True
        return False

    async def backlog(self) -> list[Backlog]:
        now = self._clock.now()
        found = []
        for name in self._subs:
            queue = self._queues.get(name, [])
            due = [e for e in queue if e.available_at <= now and e.lease_until <= now]
            oldest = min((e.available_at for e in due), default=now)
            found.append(Backlog(subscription=name, depth=len(queue), due=len(due),
                                 oldest_due_age=max(0.0, now - oldest)))
        return found

    async def ping(self) -> None:
        return None
