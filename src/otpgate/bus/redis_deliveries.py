"""Taking and settling deliveries of one subscription stream, for one consumer process:
the Python side of ``redisio/lua/take.lua`` and ``settle_deliveries.lua``.

Every settlement names the delivery it settles by its entry and by how often the group has
delivered it, so a consumer whose lease was taken over cannot settle its successor's
delivery; a spent delivery (its last lease ran out unanswered) may be buried by anyone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from otpgate import events
from otpgate.bus.base import (
    Consumer,
    backoff,
    dead_letter_event,
    deferral,
    deliver,
    describe,
)
from otpgate.clock import Clock
from otpgate.errors import BusError
from otpgate.events import CloudEvent
from otpgate.redisio.conn import RedisConn
from otpgate.redisio.keys import GROUP
from otpgate.redisio.pipeline import Arg
from otpgate.redisio.records import encode, lua, number

log = logging.getLogger(__name__)

LAST_LEASE_RAN_OUT = "the lease of the last delivery ran out"
PRUNE_EVERY = 600.0
"""Seconds between two looks for consumers of dead processes in a group (per stream)."""
IDLE_CONSUMER = 3600.0
"""Seconds a consumer holding nothing may be idle (Redis' own clock) before it goes."""

Call = tuple[list[str], list[Arg]]


@dataclass(slots=True)
class Taken:
    """One delivery this process holds: where, which entry, which delivery of its event."""

    shard: int
    entry: bytes
    event: CloudEvent
    number: int
    times: int
    """How often the group has delivered this entry (the settle scripts check it)."""


Outcome = tuple[Taken, Exception | None]


async def run(consumer: Consumer, taken: Taken) -> Outcome:
    """The handler's outcome for one delivery: ``None``, or what it raised."""
    try:
        await deliver(consumer, taken.event, taken.number)
    except Exception as exc:  # any failure is retried, then dead-lettered
        return taken, exc
    return taken, None


class Deliveries:
    """This process's takes and settlements (its consumer name is ``me``)."""

    def __init__(self, conn: RedisConn, clock: Clock, me: str,
                 redeclare: Callable[[Consumer, int], Awaitable[None]]) -> None:
        self._conn = conn
        self._keys = conn.keys
        self._clock = clock
        self.me = me
        self._redeclare = redeclare
        self._orphans_checked: dict[tuple[str, int], float] = {}
        self._pruned: dict[tuple[str, int], float] = {}

    async def take(self, consumer: Consumer, shard: int,
                   room: int) -> tuple[list[Taken], float | None]:
        """Deliveries to handle now, and when the next retry is due."""
        keys, args = self.take_call(consumer, shard, room)
        return await self.took(consumer, shard,
                               await self._conn.script("take", keys, args, error=BusError))

    def take_call(self, consumer: Consumer, shard: int, room: int) -> Call:
        now, limits, name = self._clock.now(), consumer.limits, consumer.name
        clock = time.monotonic()
        orphans = clock - self._orphans_checked.get((name, shard), 0.0) >= limits.lease / 2
        if orphans:
            self._orphans_checked[(name, shard)] = clock
        prune = clock - self._pruned.get((name, shard), 0.0) >= PRUNE_EVERY
        if prune:
            self._pruned[(name, shard)] = clock
        return ([self._keys.tag(shard)],
                [name, GROUP, self.me, number(now), number(now + limits.lease), room,
                 limits.max_deliveries, int(limits.lease * 1000) if orphans else 0, 1,
                 int(IDLE_CONSUMER * 1000) if prune else 0])

    async def took(self, consumer: Consumer, shard: int,
                   reply: list[Any]) -> tuple[list[Taken], float | None]:
        """Read ``take.lua``'s reply; bury what it found spent."""
        if not reply:
            log.warning("the stream of %s is gone (Redis lost its data?); declaring it again",
                        consumer.name)
            await self._redeclare(consumer, shard)
            return [], None
        taken, spent, next_retry = reply
        if spent:
            await self.bury(consumer, shard, [_taken(shard, s) for s in spent])
        return [_taken(shard, t) for t in taken], float(next_retry) if next_retry else None

    async def wait(self, consumer: Consumer, shard: int, room: int,
                   seconds: float) -> list[Taken]:
        """New entries, blocking on the stream (``XREADGROUP … BLOCK``) up to ``seconds``;
        their leases are recorded right after (a death in between leaves entries that
        ``XAUTOCLAIM`` takes over once Redis has seen them idle for a lease)."""
        stream = self._keys.queue(shard, consumer.name)
        reply = await self._conn.blocking_read(stream, GROUP, self.me, room,
                                               max(1, int(seconds * 1000)), error=BusError)
        if not reply:
            return []
        entries = reply[0][1]
        until = self._clock.now() + consumer.limits.lease
        leases: list[Arg] = []
        for entry, _ in entries:
            leases += [number(until), entry]
        await self._conn.command("ZADD", self._keys.leases(shard, consumer.name), *leases,
                                 error=BusError)
        return [Taken(shard, bytes(entry), events.decode(fields[b"e"]),
                      int(fields[b"n"]) + 1, 1) for entry, fields in entries]

    async def settle(self, consumer: Consumer, shard: int,
                     outcomes: Sequence[Outcome]) -> None:
        keys, args = self.settle_call(consumer, shard, outcomes)
        await self._conn.script("settle_deliveries", keys, args, error=BusError)

    def settle_call(self, consumer: Consumer, shard: int,
                    outcomes: Sequence[Outcome]) -> Call:
        """Acknowledge, retry later (with backoff) or dead-letter, each only while ours."""
        now, limits, name = self._clock.now(), consumer.limits, consumer.name
        items: list[list[Any]] = []
        for taken, error in outcomes:
            if error is None:
                items.append(["a", taken.entry.decode(), taken.times])
            elif deferral(error) is not None:  # not due yet: back, this one uncounted
                wait = backoff(limits, taken.number, error)
                log.debug("deferred %s on %s for %.0f s", taken.event.id, name, wait)
                items.append(self._retry(taken, now + wait, taken.number - 1))
            elif taken.number >= limits.max_deliveries:
                log.error("dead-lettered %s on %s after %d deliveries: %s", taken.event.id,
                          name, taken.number, describe(error))
                kept = events.encode(dead_letter_event(consumer.sub, taken.event))
                items.append(["d", taken.entry.decode(), taken.times, lua(kept),
                              describe(error), taken.number])
            else:
                log.warning("retrying %s on %s: %s", taken.event.id, name, describe(error))
                items.append(self._retry(taken, now + backoff(limits, taken.number, error),
                                         taken.number))
        return self._call(name, shard, items)

    @staticmethod
    def _retry(taken: Taken, due: float, counted: int) -> list[Any]:
        """Deliver ``taken`` again at ``due``, as the delivery after ``counted`` ones."""
        member = f"{counted}:{taken.entry.decode()}:".encode() + events.encode(taken.event)
        return ["r", taken.entry.decode(), taken.times, number(due), lua(member)]

    async def bury(self, consumer: Consumer, shard: int, spent: Sequence[Taken]) -> None:
        """Dead-letter deliveries whose last lease ran out without an answer."""
        items: list[list[Any]] = []
        for taken in spent:
            log.error("dead-lettered %s on %s: its last delivery never answered",
                      taken.event.id, consumer.name)
            kept = events.encode(dead_letter_event(consumer.sub, taken.event))
            items.append(["b", taken.entry.decode(), taken.times, lua(kept),
                          LAST_LEASE_RAN_OUT, taken.number])
        await self._conn.script("settle_deliveries", *self._call(consumer.name, shard, items),
                                error=BusError)

    async def hand_back(self, name: str, shard: int, held: Sequence[Taken]) -> None:
        """Make deliveries this process will not finish due again at once."""
        items = [["h", taken.entry.decode(), taken.times] for taken in held]
        await self._conn.script("settle_deliveries", *self._call(name, shard, items),
                                error=BusError)

    def _call(self, name: str, shard: int, items: list[list[Any]]) -> Call:
        return ([self._keys.tag(shard)],
                [encode([name, GROUP, self.me, number(self._clock.now()), items])])


def _taken(shard: int, row: list[Any]) -> Taken:
    entry, raw, delivery, times = row
    return Taken(shard, bytes(entry), events.decode(raw), int(delivery), int(times))
