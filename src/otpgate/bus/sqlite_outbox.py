"""The transactional outbox: a ``Bus`` kept in the store's own SQLite file.

Fan-out happens at write time: ``append`` runs inside the store's transaction and adds the
event to ``outbox`` with one ``deliveries`` row per durable subscription whose filter
matches, so an accepted change can never lose its events. Consumers lease due rows through
the writer (``UPDATE … RETURNING``), in batches, keeping up to ``Limits.concurrency``
handlers running; then delete (ack), reschedule with backoff, or move the event to
``dead_letters``. A handler's final store write may ack its delivery in its own transaction
(``bus.base.Ack``). A consumer that dies leaves only leases behind: they run out and any
process on the file delivers the rows again — at once where the dead consumer is proven
dead (``otpgate.sqlite.owners``: its lock is free), together with the store's send claims
it held (``on_release``). A consumer that stops hands its unfinished leases back.

Events that match no subscription are not kept. Outbox rows go once no delivery
references them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from otpgate import events
from otpgate.bus.base import (
    Ack,
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
from otpgate.bus.sqlite_handover import Handover, Release
from otpgate.clock import Clock
from otpgate.errors import BusError
from otpgate.events import CloudEvent, Filter
from otpgate.sqlite.db import Database
from otpgate.sqlite.lanes import background

log = logging.getLogger(__name__)

_filter_json = msgspec.json.Encoder()
_filter_of = msgspec.json.Decoder(Filter)

_CLAIM = """
UPDATE deliveries SET lease_until = ?1, lease_owner = ?2, deliveries = deliveries + 1
WHERE subscription = ?3 AND seq IN (
    SELECT seq FROM deliveries
    WHERE subscription = ?3 AND available_at <= ?4 AND lease_until <= ?4
      AND deliveries < ?6
    ORDER BY seq LIMIT ?5)
RETURNING seq, deliveries"""
_SPENT = """
SELECT d.seq, d.deliveries, o.event FROM deliveries d JOIN outbox o ON o.seq = d.seq
WHERE d.subscription = ?1 AND d.deliveries >= ?2 AND d.lease_until > 0
  AND d.lease_until <= ?3 AND d.available_at <= ?3
LIMIT 100"""
_DROP = "DELETE FROM deliveries WHERE subscription = ? AND seq = ?"
_BURY = ("INSERT INTO dead_letters (subscription, seq, event, error, deliveries, failed_at) "
         "VALUES (?, ?, ?, ?, ?, ?)")
_ENQUEUE = "INSERT INTO deliveries (subscription, seq, available_at) VALUES (?, ?, ?)"
_ACK = ("DELETE FROM deliveries "
        "WHERE subscription = ?1 AND seq = ?2 AND lease_owner = ?3 AND deliveries = ?4")
_RETRY = ("UPDATE deliveries SET available_at = ?5, lease_until = 0, lease_owner = NULL "
          "WHERE subscription = ?1 AND seq = ?2 AND lease_owner = ?3 AND deliveries = ?4")
_DEFER = ("UPDATE deliveries SET available_at = ?5, lease_until = 0, lease_owner = NULL, "
          "deliveries = deliveries - 1 "
          "WHERE subscription = ?1 AND seq = ?2 AND lease_owner = ?3 AND deliveries = ?4")
_DEAD = ("INSERT INTO dead_letters (subscription, seq, event, error, deliveries, failed_at) "
         "SELECT ?1, ?2, ?5, ?6, ?4, ?7 FROM deliveries "
         "WHERE subscription = ?1 AND seq = ?2 AND lease_owner = ?3 AND deliveries = ?4")
_GC = """DELETE FROM outbox WHERE seq = ?
         AND NOT EXISTS (SELECT 1 FROM deliveries WHERE deliveries.seq = ?)"""
_BURY_EVERY = 1.0
"""Seconds between two looks for spent leases (a scan of the subscription's rows)."""
_REAP_EVERY = 2.0
"""Seconds between two looks for dead consumers (a directory listing)."""


@dataclass(slots=True)
class _Leased:
    seq: int
    deliveries: int
    event: CloudEvent


@dataclass(slots=True)
class _Outcome:
    leased: _Leased
    error: Exception | None
    acked: bool = False
    """The handler's own store write acknowledged the delivery already."""


class SqliteOutboxBus:
    """At-least-once, leased, retried, dead-lettered delivery over the outbox tables."""

    def __init__(self, db: Database, clock: Clock, poll_interval: float = 0.2,
                 drain_timeout: float = 5.0) -> None:
        self._db = db
        self._clock = clock
        self._poll = poll_interval
        self._drain = drain_timeout
        self._owner = uuid.uuid4().hex
        self._handover = Handover(db, clock, self._owner)
        self._subs: dict[str, Subscription] = {}
        self._consumers: dict[str, Consumer] = {}
        self._cache: tuple[int, list[tuple[str, Filter]]] | None = None
        self._wake = asyncio.Event()
        self._fresh = False
        """Deliveries were queued (or may have come due) since the last claims."""
        self._due: dict[str, bool] = {}
        """Per subscription: whether a claim may find something (else wait for news)."""
        self._buried_at: dict[str, float] = {}
        self._reaped_at = -_REAP_EVERY
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[str, set[asyncio.Task[None]]] = {}

    @property
    def owner(self) -> str:
        """The id this process's leases carry; a store sharing the file marks its own send
        claims with it, so that they are handed on with the leases (``on_release``)."""
        return self._owner

    def on_release(self, release: Release) -> None:
        """Also run ``release`` in every transaction that hands a consumer's leases on
        (the consumer proven dead, or this one stopping with handlers unfinished)."""
        self._handover.on_release(release)

    # -- producing ----------------------------------------------------------------------

    async def declare(self, sub: Subscription) -> None:
        """Record ``sub`` durably; every write committed after this fans out to it."""
        self._subs[sub.name] = sub
        raw = _filter_json.encode(sub.filter).decode()
        now = self._clock.now()

        def record(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO subscriptions (name, filter, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET filter = excluded.filter, "
                "updated_at = excluded.updated_at", (sub.name, raw, now))
            self._cache = None

        await self._db.write(record, BusError)

    def consume(self, name: str, handler: Handler, limits: Limits) -> None:
        self._consumers[name] = consumer_of(self._subs, name, handler, limits)
        self._inflight.setdefault(name, set())
        self._due[name] = True

    def append(self, conn: sqlite3.Connection, batch: Sequence[CloudEvent]) -> int:
        """Fan ``batch`` out inside the caller's transaction (writer thread only); return
        how many deliveries were queued."""
        subs = self._subscriptions(conn)
        now = self._clock.now()
        queued = 0
        for event in batch:
            names = [name for name, flt in subs if flt.matches(event)]
            if not names:
                continue
            cur = conn.execute("INSERT INTO outbox (event, created_at) VALUES (?, ?)",
                               (events.encode(event), now))
            for name in names:
                conn.execute(_ENQUEUE, (name, cur.lastrowid, now))
            queued += len(names)
        return queued

    def _subscriptions(self, conn: sqlite3.Connection) -> list[tuple[str, Filter]]:
        batch_no = self._db.batch_no
        if self._cache is None or self._cache[0] != batch_no:
            rows = conn.execute("SELECT name, filter FROM subscriptions").fetchall()
            self._cache = (batch_no, [(name, _filter_of.decode(raw)) for name, raw in rows])
        return self._cache[1]

    def notify(self) -> None:
        """Wake this process's consumer: a write that queued deliveries has committed."""
        self._fresh = True
        self._wake.set()

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        def unit(conn: sqlite3.Connection) -> int:
            return self.append(conn, events)

        queued = await self._db.write(unit, BusError) if events else 0
        if queued:
            self.notify()

    # -- consuming ----------------------------------------------------------------------

    async def pump(self, limit: int = 100) -> int:
        done = 0
        for consumer in list(self._consumers.values()):
            if done >= limit:
                break
            leased = await self._claim(consumer, min(limit - done, consumer.limits.concurrency))
            done += len(leased)
            outcomes = await asyncio.gather(*(self._run(consumer, item) for item in leased))
            if outcomes:
                await self._settle(consumer, outcomes)
        return done

    async def _claim(self, consumer: Consumer, limit: int) -> list[_Leased]:
        if limit <= 0:
            return []
        self._handover.hold()  # before the first lease: its owner can be proven dead
        now, limits = self._clock.now(), consumer.limits
        params = (now + limits.lease, self._owner, consumer.name, now, limit,
                  limits.max_deliveries)
        bury = now - self._buried_at.get(consumer.name, -_BURY_EVERY) >= _BURY_EVERY
        if bury:
            self._buried_at[consumer.name] = now

        def claim(conn: sqlite3.Connection) -> list[_Leased]:
            if bury:
                self._bury_spent(conn, consumer, now)
            rows = conn.execute(_CLAIM, params).fetchall()
            if not rows:
                return []
            counts = dict(rows)
            marks = ",".join("?" * len(counts))
            found = conn.execute(f"SELECT seq, event FROM outbox WHERE seq IN ({marks})",  # noqa: S608
                                 list(counts)).fetchall()
            return sorted((_Leased(seq, counts[seq], events.decode(raw)) for seq, raw in found),
                          key=lambda item: item.seq)

        return await self._db.write(claim, BusError)

    @staticmethod
    def _bury_spent(conn: sqlite3.Connection, consumer: Consumer, now: float) -> None:
        """Dead-letter events whose last delivery ran out of lease without an answer (its
        consumer hung or died): they are not delivered again and again."""
        name = consumer.name
        for seq, count, raw in conn.execute(_SPENT, (name, consumer.limits.max_deliveries,
                                                     now)):
            kept = dead_letter_event(consumer.sub, events.decode(raw))
            conn.execute(_BURY, (name, seq, events.encode(kept),
                                 "the lease of the last delivery ran out", count, now))
            conn.execute(_DROP, (name, seq))
            conn.execute(_GC, (seq, seq))
            log.error("dead-lettered %s on %s: its last delivery never answered",
                      kept.id, name)

    async def _run(self, consumer: Consumer, item: _Leased) -> _Outcome:
        ack = Ack(self, functools.partial(self._ack, consumer.name, item))
        try:
            await deliver(consumer, item.event, item.deliveries, ack)
        except Exception as exc:  # any failure is retried, then dead-lettered
            return _Outcome(item, exc, ack.done)
        return _Outcome(item, None, ack.done)

    def _ack(self, name: str, item: _Leased, conn: sqlite3.Connection) -> None:
        """Acknowledge ``item`` inside the caller's transaction (while it is ours)."""
        conn.execute(_ACK, (name, item.seq, self._owner, item.deliveries))
        conn.execute(_GC, (item.seq, item.seq))

    async def _settle(self, consumer: Consumer, outcomes: Sequence[_Outcome]) -> None:
        """Ack, retry or dead-letter ``outcomes`` in one unit; only the current lease
        holder may settle a row (a stale consumer's answer is dropped)."""
        now = self._clock.now()
        plan = [(o.leased, o.error, self._fate(consumer, o.leased, o.error, now))
                for o in outcomes if not o.acked]
        if not plan:
            return

        def settle(conn: sqlite3.Connection) -> None:
            for item, error, retry_at in plan:
                mine = (consumer.name, item.seq, self._owner, item.deliveries)
                if retry_at is not None and deferral(error) is not None:  # uncounted
                    conn.execute(_DEFER, (*mine, retry_at))
                    continue
                if retry_at is not None:
                    conn.execute(_RETRY, (*mine, retry_at))
                    continue
                if error is not None:
                    kept = dead_letter_event(consumer.sub, item.event)
                    conn.execute(_DEAD, (*mine, events.encode(kept), describe(error), now))
                conn.execute(_ACK, mine)
                conn.execute(_GC, (item.seq, item.seq))

        await self._db.write(settle, BusError)

    @staticmethod
    def _fate(consumer: Consumer, item: _Leased, error: Exception | None,
              now: float) -> float | None:
        """When to deliver a failed event again; ``None`` to ack or dead-letter it."""
        if error is None:
            return None
        name = consumer.name
        if deferral(error) is not None:  # not due yet: not a failure
            wait = backoff(consumer.limits, item.deliveries, error)
            log.debug("deferred %s on %s for %.0f s", item.event.id, name, wait)
            return now + wait
        if item.deliveries >= consumer.limits.max_deliveries:
            log.error("dead-lettered %s on %s after %d deliveries: %s",
                      item.event.id, name, item.deliveries, describe(error))
            return None
        log.warning("retrying %s on %s: %s", item.event.id, name, describe(error))
        return now + backoff(consumer.limits, item.deliveries, error)

    async def start(self) -> None:
        """Hand on what dead consumers left, then consume in the background."""
        if self._task is None:
            try:
                await self._reap()
            except Exception:  # the consumer tries again every few seconds
                log.exception("looking for the leases of stopped consumers failed")
            self._task = asyncio.create_task(self._consume(), name="otpgate-sqlite-bus")

    async def _consume(self) -> None:
        with background():  # this loop's writes and its handlers' wait in the back lane
            await self._loop()

    async def _loop(self) -> None:
        while self._task is not None:
            self._wake.clear()
            if self._fresh:
                self._fresh = False
                self._due = dict.fromkeys(self._due, True)
            try:
                if time.monotonic() - self._reaped_at >= _REAP_EVERY:
                    await self._reap()
                claimed = await self._fill()
            except Exception:
                log.exception("claiming deliveries failed; trying again")
                claimed = 0
            if claimed == 0 and not self._wake.is_set():
                await wait_briefly(self._wake, self._poll)
                if not self._wake.is_set():  # a poll: other processes' events, retries
                    self._fresh = True

    async def _fill(self) -> int:
        """Claim for every consumer with room, in batches of at least an eighth of its
        concurrency (or whatever is due, when it has nothing running)."""
        claimed = 0
        for consumer in list(self._consumers.values()):
            name, running = consumer.name, self._inflight[consumer.name]
            room = consumer.limits.concurrency - len(running)
            if not self._due[name] or room <= 0 or \
                    (running and room < max(1, consumer.limits.concurrency // 8)):
                continue
            batch = await self._claim(consumer, room)
            if len(batch) < room:
                self._due[name] = False  # drained: wait for news or the next poll
            for item in batch:
                task = asyncio.create_task(self._handle(consumer, item))
                running.add(task)
                task.add_done_callback(running.discard)
            claimed += len(batch)
        return claimed

    async def _handle(self, consumer: Consumer, item: _Leased) -> None:
        outcome = await self._run(consumer, item)
        try:
            await self._settle(consumer, [outcome])
        except BusError:
            log.exception("settling %s on %s failed; its lease will run out", item.seq,
                          consumer.name)
        finally:
            # Free the slot before waking the consumer: a done-callback would come too late,
            # and the consumer would find every slot taken and sleep a whole poll interval.
            self._inflight[consumer.name].discard(asyncio.current_task())
            self._wake.set()

    async def _reap(self) -> None:
        """Hand on at once what consumers proven dead held: what a killed process had in
        flight goes out again now, not when its leases run out."""
        self._reaped_at = time.monotonic()
        if await self._handover.reap():
            self._fresh = True
            self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; give in-flight handlers ``drain_timeout`` seconds, then cancel
        them and hand their leases back, so that any process may deliver them at once."""
        task, self._task = self._task, None
        if task is not None:
            await finish(task, self._wake)
        running = {t for tasks in self._inflight.values() for t in tasks}
        late: set[asyncio.Task[None]] = set()
        if running:
            _, late = await asyncio.wait(running, timeout=self._drain)
            for handler in late:
                handler.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._handover.stop(unfinished=len(late))

    async def dead_letters(self, subscription: str | None = None) -> list[DeadLetter]:
        def load(conn: sqlite3.Connection) -> list[DeadLetter]:
            sql = "SELECT subscription, event, error, deliveries, failed_at FROM dead_letters"
            args: tuple[str, ...] = ()
            if subscription is not None:
                sql, args = sql + " WHERE subscription = ?", (subscription,)
            rows = conn.execute(sql + " ORDER BY id", args).fetchall()
            return [DeadLetter(name, events.decode(raw), error, count, at)
                    for name, raw, error, count, at in rows]

        return await self._db.read(load, BusError)

    async def replay(self, subscription: str, event_id: str) -> bool:
        now = self._clock.now()

        def unit(conn: sqlite3.Connection) -> bool:
            rows = conn.execute("SELECT id, event FROM dead_letters WHERE subscription = ? "
                                "ORDER BY id", (subscription,)).fetchall()
            for row_id, raw in rows:
                if events.decode(raw).id == event_id:
                    cur = conn.execute("INSERT INTO outbox (event, created_at) VALUES (?, ?)",
                                       (raw, now))
                    conn.execute(_ENQUEUE, (subscription, cur.lastrowid, now))
                    conn.execute("DELETE FROM dead_letters WHERE id = ?", (row_id,))
                    return True
            return False

        replayed: bool = await self._db.write(unit, BusError)
        if replayed:
            self.notify()
        return replayed

    async def backlog(self) -> list[Backlog]:
        now = self._clock.now()

        def load(conn: sqlite3.Connection) -> list[Backlog]:
            rows = conn.execute(
                "SELECT s.name, COUNT(d.seq), "
                "COALESCE(SUM(d.available_at <= ?1 AND d.lease_until <= ?1), 0), "
                "MIN(CASE WHEN d.available_at <= ?1 AND d.lease_until <= ?1 "
                "THEN d.available_at END) "
                "FROM subscriptions s LEFT JOIN deliveries d ON d.subscription = s.name "
                "GROUP BY s.name ORDER BY s.name", (now,)).fetchall()
            return [Backlog(subscription=name, depth=depth, due=due,
                            oldest_due_age=max(0.0, now - oldest) if oldest else 0.0)
                    for name, depth, due, oldest in rows]

        return await self._db.read(load, BusError)

    async def ping(self) -> None:
        if not self._db.alive():
            raise BusError("the outbox writer is not running")
        await self._db.read(lambda c: c.execute("SELECT 1 FROM outbox LIMIT 1").fetchall(),
                            BusError)
