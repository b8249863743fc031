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
from collections.abc import Sequence

import msgspec

from otpgate import events
from otpgate.bus.base import (
    Backlog,
    Consumer,
    DeadLetter,
    Handler,
    Limits,
    Subscription,
    consumer_of,
    describe,
)
from otpgate.bus.redis_deliveries import Deliveries, Outcome, Taken, run
from otpgate.bus.redis_routes import STALE, Routes
from otpgate.clock import Clock
from otpgate.errors import BusError, OtpgateError
from otpgate.events import CloudEvent
from otpgate.redisio.conn import RedisConn
from otpgate.redisio.keys import GROUP
from otpgate.redisio.records import encode, number

log = logging.getLogger(__name__)

_filter_json = msgspec.json.Encoder()
_MAX_PAUSE = 2.0
"""Seconds at most between two tries of a consumer that cannot reach Redis."""


class RedisStreamsBus:
    """At-least-once, leased, retried and dead-lettered delivery over Redis Streams."""

    def __init__(self, conn: RedisConn, routes: Routes, clock: Clock, *,
                 poll_interval: float = 0.2, drain_timeout: float = 8.0) -> None:
        self._conn = conn
        self._keys = conn.keys
        self._routes = routes
        self._clock = clock
        self._poll = poll_interval
        self._drain = drain_timeout
        self._me = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._subs: dict[str, Subscription] = {}
        self._consumers: dict[str, Consumer] = {}
        self._inflight: dict[str, dict[asyncio.Task[None], Taken]] = {}
        self._freed: dict[str, asyncio.Event] = {}
        self._deliveries = Deliveries(conn, clock, self._me, self._redeclare)
        self._settling: dict[tuple[str, int], list[Outcome]] = {}
        self._readers: list[asyncio.Task[None]] = []
        self._running = False

    # -- producing ----------------------------------------------------------------------

    async def declare(self, sub: Subscription) -> None:
        self._subs[sub.name] = sub
        for shard in range(self._keys.shards):
            await self._declare(sub, shard)

    async def _redeclare(self, consumer: Consumer, shard: int) -> None:
        await self._declare(consumer.sub, shard)

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
            shards, ours = range(self._keys.shards), self._deliveries
            replies = await self._conn.scripts(
                "take", [ours.take_call(consumer, shard, room) for shard in shards],
                error=BusError)
            batch = [t for shard, reply in zip(shards, replies, strict=True)
                     for t in (await ours.took(consumer, shard, reply))[0]]
            done += len(batch)
            outcomes = await asyncio.gather(*(run(consumer, t) for t in batch))
            by_shard: dict[int, list[Outcome]] = {}
            for outcome in outcomes:
                by_shard.setdefault(outcome[0].shard, []).append(outcome)
            await self._conn.scripts("settle_deliveries", [
                ours.settle_call(consumer, shard, found) for shard, found in by_shard.items()],
                error=BusError)
        return done

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
                batch, next_retry = await self._deliveries.take(consumer, shard, room)
                if not batch:
                    wait = min(self._poll, self._conn.timeout / 2)
                    if next_retry is not None:
                        wait = min(wait, max(0.001, next_retry - self._clock.now()))
                    batch = await self._deliveries.wait(consumer, shard, room, wait)
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

    def _spawn(self, consumer: Consumer, taken: Taken) -> None:
        task = asyncio.create_task(self._handle(consumer, taken))
        self._inflight[consumer.name][task] = taken

    async def _handle(self, consumer: Consumer, taken: Taken) -> None:
        try:
            await self._settle_soon(consumer, taken.shard, await run(consumer, taken))
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
            await self._deliveries.settle(consumer, shard, batch)
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
        back: dict[tuple[str, int], list[Taken]] = {}
        for task in late:
            name, taken = held[task]
            back.setdefault((name, taken.shard), []).append(taken)
        for (name, shard), takens in back.items():
            with contextlib.suppress(BusError):
                await self._deliveries.hand_back(name, shard, takens)
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

    async def replay(self, subscription: str, event_id: str) -> bool:
        for shard in range(self._keys.shards):
            rows = await self._conn.command("XRANGE", self._keys.dead(shard, subscription),
                                            "-", "+", error=BusError)
            for entry_id, fields in rows:
                if events.decode(fields[b"e"]).id != event_id:
                    continue
                done = await self._conn.script(
                    "replay", [self._keys.tag(shard)],
                    [subscription, bytes(entry_id).decode(), number(self._clock.now())],
                    error=BusError)
                return bool(done == 1)
        return False

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
