"""The Redis Streams bus: a stream per subscription (and shard), one consumer group on it.

Why one stream per subscription rather than one per topic with a group per subscription:
fan-out happens when an event is written, in the very script that writes the state
change (``redis_routes``), so a subscription's stream holds exactly its own deliveries. A
consumer never reads, filters out and acknowledges other subscriptions' events; a
subscription's depth is its stream's length; an acknowledged entry is needed by no other
group and is deleted at once; retries and dead letters are per subscription. On Cluster a
subscription has one stream per shard, in the slot of the states whose events it carries —
the write and the append stay one script — and a consumer reads every shard's stream.

Deliveries are leased by the domain clock, like every expiry in otpgate: a sorted set per
stream holds each delivery's lease end, and a delivery whose lease ran out is claimed
(``XCLAIM``) by the next consumer to look, or dead-lettered when that was its last
delivery. An entry a consumer read (``XREADGROUP`` blocking) but died before recording its
lease is taken over with ``XAUTOCLAIM`` once Redis has seen it idle for a lease. A failure
is acknowledged into a retry set with its due time (backoff with jitter); once due the
event goes back into the stream with its count of deliveries. Acknowledged entries are
deleted (``XACK`` + ``XDEL`` in one script): streams are never trimmed by length, so no
unacknowledged entry is ever dropped. See ``redisio/lua/take.lua`` and
``settle_deliveries.lua``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from otpgate import events
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
    deliver,
    describe,
)
from otpgate.bus.redis_routes import STALE, Routes
from otpgate.clock import Clock
from otpgate.errors import BusError, OtpgateError
from otpgate.events import CloudEvent
from otpgate.redisio.conn import RedisConn
from otpgate.redisio.pipeline import Arg
from otpgate.store.redis_keys import GROUP
from otpgate.store.redis_records import encode, lua, number

log = logging.getLogger(__name__)

_filter_json = msgspec.json.Encoder()
_LAST_LEASE_RAN_OUT = "the lease of the last delivery ran out"
_MAX_PAUSE = 2.0
_PRUNE_EVERY = 600.0
"""Seconds between two looks for consumers of dead processes in a group (per stream)."""
_IDLE_CONSUMER = 3600.0
"""Seconds a consumer holding nothing may be idle (Redis' own clock) before it goes."""


@dataclass(slots=True)
class _Taken:
    """One delivery this process holds: where, which entry, which delivery of its event."""

    shard: int
    entry: bytes
    event: CloudEvent
    number: int
    times: int
    """How often the group has delivered this entry (the settle scripts check it)."""


Outcome = tuple[_Taken, Exception | None]


class RedisStreamsBus:
    """At-least-once, leased, retried and dead-lettered delivery over Redis Streams."""

    def __init__(self, conn: RedisConn, routes: Routes, clock: Clock, *,
                 poll_interval: float = 0.2, drain_timeout: float = 10.0) -> None:
        self._conn = conn
        self._keys = conn.keys
        self._routes = routes
        self._clock = clock
        self._poll = poll_interval
        self._drain = drain_timeout
        self._me = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._subs: dict[str, Subscription] = {}
        self._consumers: dict[str, Consumer] = {}
        self._inflight: dict[str, dict[asyncio.Task[None], _Taken]] = {}
        self._freed: dict[str, asyncio.Event] = {}
        self._orphans_checked: dict[tuple[str, int], float] = {}
        self._pruned: dict[tuple[str, int], float] = {}
        self._settling: dict[tuple[str, int], list[Outcome]] = {}
        self._readers: list[asyncio.Task[None]] = []
        self._running = False

    # -- producing ----------------------------------------------------------------------

    async def declare(self, sub: Subscription) -> None:
        self._subs[sub.name] = sub
        for shard in range(self._keys.shards):
            await self._declare(sub, shard)

    async def _declare(self, sub: Subscription, shard: int) -> None:
        await self._conn.script(
            "declare", [self._keys.tag(shard)],
            [sub.name, _filter_json.encode(sub.filter), GROUP, secrets.token_hex(8)],
            error=BusError)
        self._routes.forget(shard)

    def consume(self, name: str, handler: Handler, limits: Limits) -> None:
        self._consumers[name] = consumer_of(self._subs, name, handler, limits)
        self._inflight.setdefault(name, {})
        self._freed.setdefault(name, asyncio.Event())

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        by_shard: dict[int, list[CloudEvent]] = {}
        for event in events:
            by_shard.setdefault(self._keys.shard(event.subject), []).append(event)
        for shard, batch in by_shard.items():
            for _ in range(8):
                plan = await self._routes.plan(shard, batch, BusError)
                done = await self._conn.script(
                    "emit", [self._keys.tag(shard)],
                    [encode([plan.version, number(self._clock.now()), plan.events])],
                    error=BusError)
                if done != STALE:
                    break
                self._routes.forget(shard)

    # -- consuming: one step ------------------------------------------------------------

    async def pump(self, limit: int = 100) -> int:
        """Handle what is due once. Every shard of a subscription is taken at once (one
        round trip per server), each up to the room left, so with several shards a pump
        may handle more than ``limit``."""
        done = 0
        for consumer in list(self._consumers.values()):
            room = min(limit - done, consumer.limits.concurrency)
            if room <= 0:
                break
            shards = range(self._keys.shards)
            replies = await self._conn.scripts(
                "take", [self._take_call(consumer, shard, room) for shard in shards],
                error=BusError)
            batch = [t for shard, reply in zip(shards, replies, strict=True)
                     for t in (await self._took(consumer, shard, reply))[0]]
            done += len(batch)
            outcomes = await asyncio.gather(*(self._run(consumer, t) for t in batch))
            by_shard: dict[int, list[Outcome]] = {}
            for outcome in outcomes:
                by_shard.setdefault(outcome[0].shard, []).append(outcome)
            await self._conn.scripts("settle_deliveries", [
                self._settle_call(consumer, shard, found) for shard, found in by_shard.items()],
                error=BusError)
        return done

    async def _take(self, consumer: Consumer, shard: int,
                    room: int) -> tuple[list[_Taken], float | None]:
        """Deliveries to handle now (and when the next retry is due)."""
        keys, args = self._take_call(consumer, shard, room)
        reply = await self._conn.script("take", keys, args, error=BusError)
        return await self._took(consumer, shard, reply)

    def _take_call(self, consumer: Consumer, shard: int,
                   room: int) -> tuple[list[str], list[Arg]]:
        now, limits, name = self._clock.now(), consumer.limits, consumer.name
        clock = time.monotonic()
        orphans = clock - self._orphans_checked.get((name, shard), 0.0) >= limits.lease / 2
        if orphans:
            self._orphans_checked[(name, shard)] = clock
        prune = clock - self._pruned.get((name, shard), 0.0) >= _PRUNE_EVERY
        if prune:
            self._pruned[(name, shard)] = clock
        return ([self._keys.tag(shard)],
                [name, GROUP, self._me, number(now), number(now + limits.lease), room,
                 limits.max_deliveries, int(limits.lease * 1000) if orphans else 0, 1,
                 int(_IDLE_CONSUMER * 1000) if prune else 0])

    async def _took(self, consumer: Consumer, shard: int,
                    reply: list[Any]) -> tuple[list[_Taken], float | None]:
        if not reply:
            log.warning("the stream of %s is gone (Redis lost its data?); declaring it again",
                        consumer.name)
            await self._declare(consumer.sub, shard)
            return [], None
        taken, spent, next_retry = reply
        if spent:
            await self._bury(consumer, shard, [self._taken(shard, s) for s in spent],
                             self._clock.now())
        return [self._taken(shard, t) for t in taken], float(next_retry) if next_retry else None

    @staticmethod
    def _taken(shard: int, row: list[Any]) -> _Taken:
        entry, raw, number, times = row
        return _Taken(shard, bytes(entry), events.decode(raw), int(number), int(times))

    @staticmethod
    async def _run(consumer: Consumer, taken: _Taken) -> Outcome:
        try:
            await deliver(consumer, taken.event, taken.number)
        except Exception as exc:  # any failure is retried, then dead-lettered
            return taken, exc
        return taken, None

    async def _settle(self, consumer: Consumer, shard: int,
                      outcomes: Sequence[Outcome]) -> None:
        keys, args = self._settle_call(consumer, shard, outcomes)
        await self._conn.script("settle_deliveries", keys, args, error=BusError)

    def _settle_call(self, consumer: Consumer, shard: int,
                     outcomes: Sequence[Outcome]) -> tuple[list[str], list[Arg]]:
        """Acknowledge, retry later or dead-letter, each only while still ours."""
        now, limits, name = self._clock.now(), consumer.limits, consumer.name
        items: list[list[Any]] = []
        for taken, error in outcomes:
            if error is None:
                items.append(["a", taken.entry.decode(), taken.times])
            elif taken.number >= limits.max_deliveries:
                log.error("dead-lettered %s on %s after %d deliveries: %s", taken.event.id,
                          name, taken.number, describe(error))
                kept = events.encode(dead_letter_event(consumer.sub, taken.event))
                items.append(["d", taken.entry.decode(), taken.times, lua(kept),
                              describe(error), taken.number])
            else:
                log.warning("retrying %s on %s: %s", taken.event.id, name, describe(error))
                due = now + backoff(limits, taken.number, error)
                member = (f"{taken.number}:{taken.entry.decode()}:".encode()
                          + events.encode(taken.event))
                items.append(["r", taken.entry.decode(), taken.times, number(due),
                              lua(member)])
        return self._settlement(consumer.name, shard, items, now)

    def _settlement(self, name: str, shard: int, items: list[list[Any]],
                    now: float) -> tuple[list[str], list[Arg]]:
        return [self._keys.tag(shard)], [encode([name, GROUP, self._me, number(now), items])]

    async def _bury(self, consumer: Consumer, shard: int, spent: Sequence[_Taken],
                    now: float) -> None:
        """Dead-letter deliveries whose last lease ran out without an answer."""
        items: list[list[Any]] = []
        for taken in spent:
            log.error("dead-lettered %s on %s: its last delivery never answered",
                      taken.event.id, consumer.name)
            kept = events.encode(dead_letter_event(consumer.sub, taken.event))
            items.append(["b", taken.entry.decode(), taken.times, lua(kept),
                          _LAST_LEASE_RAN_OUT, taken.number])
        keys, args = self._settlement(consumer.name, shard, items, now)
        await self._conn.script("settle_deliveries", keys, args, error=BusError)

    # -- consuming in the background ----------------------------------------------------

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        for consumer in self._consumers.values():
            for shard in range(self._keys.shards):
                self._readers.append(asyncio.create_task(
                    self._read(consumer, shard), name=f"otpgate-redis-{consumer.name}"))

    async def _read(self, consumer: Consumer, shard: int) -> None:
        """Take what is due, else wait on the stream (``XREADGROUP … BLOCK``); on errors,
        back off and try again for as long as the bus runs."""
        pause = 0.0
        while self._running:
            try:
                room = await self._room(consumer)
                if room == 0:
                    continue
                batch, next_retry = await self._take(consumer, shard, room)
                if not batch:
                    batch = await self._wait(consumer, shard, room, next_retry)
                for taken in batch:
                    self._spawn(consumer, taken)
                if pause:
                    log.info("redis is reachable again: %s consumes", consumer.name)
                pause = 0.0
            except Exception as exc:  # the loop lives as long as the bus: back off, retry
                if not pause:
                    reason = exc.detail if isinstance(exc, OtpgateError) else describe(exc)
                    log.warning("%s cannot consume: %s; retrying with backoff",
                                consumer.name, reason)
                pause = min(_MAX_PAUSE, max(0.1, pause * 2))
                await asyncio.sleep(pause)

    async def _room(self, consumer: Consumer) -> int:
        """How many deliveries this reader may take: wait for free slots first — a
        quarter of them while others are in flight, so that one take brings several."""
        running, freed = self._inflight[consumer.name], self._freed[consumer.name]
        limit = consumer.limits.concurrency
        while self._running and limit - len(running) < (max(1, limit // 4) if running else 1):
            freed.clear()
            await freed.wait()
        if not self._running:
            return 0
        free = consumer.limits.concurrency - len(running)
        return max(1, free // self._keys.shards)

    async def _wait(self, consumer: Consumer, shard: int, room: int,
                    next_retry: float | None) -> list[_Taken]:
        """Block on the stream until entries come (or the next retry is due)."""
        wait = min(self._poll, self._conn.timeout / 2)
        if next_retry is not None:
            wait = min(wait, max(0.001, next_retry - self._clock.now()))
        stream = self._keys.queue(shard, consumer.name)
        reply = await self._conn.blocking_read(stream, GROUP, self._me, room,
                                               max(1, int(wait * 1000)), error=BusError)
        if not reply:
            return []
        entries = reply[0][1]
        until = self._clock.now() + consumer.limits.lease
        leases: list[Arg] = []
        for entry, _ in entries:
            leases += [until, entry]
        await self._conn.command("ZADD", self._keys.leases(shard, consumer.name), *leases,
                                 error=BusError)
        return [_Taken(shard, bytes(entry), events.decode(fields[b"e"]),
                       int(fields[b"n"]) + 1, 1) for entry, fields in entries]

    def _spawn(self, consumer: Consumer, taken: _Taken) -> None:
        task = asyncio.create_task(self._handle(consumer, taken))
        self._inflight[consumer.name][task] = taken

    async def _handle(self, consumer: Consumer, taken: _Taken) -> None:
        try:
            await self._settle_soon(consumer, taken.shard, await self._run(consumer, taken))
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._inflight[consumer.name].pop(task, None)
            self._freed[consumer.name].set()

    async def _settle_soon(self, consumer: Consumer, shard: int, outcome: Outcome) -> None:
        """Settle with the other deliveries of this subscription and shard that end in the
        same turn of the loop: one script for all of them (its first caller sends it)."""
        key = (consumer.name, shard)
        batch = self._settling.get(key)
        if batch is not None:
            batch.append(outcome)
            return
        batch = self._settling[key] = [outcome]
        try:
            await asyncio.sleep(0)
        finally:
            del self._settling[key]
        try:
            await self._settle(consumer, shard, batch)
        except BusError as exc:
            log.warning("settling %d deliveries on %s failed (%s); their leases will run out",
                        len(batch), consumer.name, exc.detail)

    async def stop(self) -> None:
        """Stop reading; let in-flight deliveries finish for up to ``drain_timeout`` (and
        half their lease at most), then hand the rest back: they are due again at once."""
        if not self._running:
            return
        self._running = False
        for freed in self._freed.values():
            freed.set()
        readers, self._readers = self._readers, []
        if readers:
            _, late = await asyncio.wait(readers, timeout=self._conn.timeout + self._poll + 1)
            for task in late:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
        await self._drain_inflight()

    async def _drain_inflight(self) -> None:
        held = {task: (name, taken) for name, tasks in self._inflight.items()
                for task, taken in tasks.items()}
        if not held:
            return
        leases = [self._consumers[name].limits.lease for name, _ in held.values()]
        _, late = await asyncio.wait(set(held), timeout=min(self._drain, min(leases) / 2))
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        back: dict[tuple[str, int], list[list[Any]]] = {}
        for task in late:
            name, taken = held[task]
            back.setdefault((name, taken.shard), []).append(
                ["h", taken.entry.decode(), taken.times])
        for (name, shard), items in back.items():
            keys, args = self._settlement(name, shard, items, self._clock.now())
            with contextlib.suppress(BusError):
                await self._conn.script("settle_deliveries", keys, args, error=BusError)
        if back:
            log.warning("handed back %d unfinished deliveries", len(late))

    # -- looking ------------------------------------------------------------------------

    async def dead_letters(self, subscription: str | None = None) -> list[DeadLetter]:
        names = [subscription] if subscription is not None else sorted(
            set(self._subs) | set(await self._routes.subscriptions(0, BusError)))
        found: list[tuple[float, int, DeadLetter]] = []
        for name in names:
            for shard in range(self._keys.shards):
                rows = await self._conn.command("XRANGE", self._keys.dead(shard, name),
                                                "-", "+", error=BusError)
                for _, fields in rows:
                    letter = DeadLetter(name, events.decode(fields[b"e"]),
                                        fields[b"err"].decode(), int(fields[b"n"]),
                                        float(fields[b"at"]))
                    found.append((letter.failed_at, len(found), letter))
        return [letter for _, _, letter in sorted(found, key=lambda f: (f[0], f[1]))]

    async def backlog(self) -> list[Backlog]:
        now = self._clock.now()
        totals: dict[str, list[float]] = {}
        for shard in range(self._keys.shards):
            flat = await self._conn.script("backlog", [self._keys.tag(shard)],
                                           [number(now), GROUP], error=BusError)
            for i in range(0, len(flat), 4):
                name, depth, due, since = bytes(flat[i]).decode(), flat[i + 1], flat[i + 2], \
                    flat[i + 3]
                total = totals.setdefault(name, [0, 0, now])
                total[0] += int(depth)
                total[1] += int(due)
                if since:
                    total[2] = min(total[2], float(since))
        return [Backlog(subscription=name, depth=int(depth), due=int(due),
                        oldest_due_age=max(0.0, now - oldest))
                for name, (depth, due, oldest) in sorted(totals.items())]

    async def ping(self) -> None:
        await self._conn.ping(BusError)
