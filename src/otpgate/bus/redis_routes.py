"""Which subscription streams an event goes to, as every Redis writer works it out.

Fan-out happens at write time, as in the SQLite outbox: the script that writes a change
appends each of its events to the stream of every declared subscription whose filter
matches. The subscriptions of a shard live in its ``subs`` hash with a version that every
declaration that changes them bumps; writers keep a copy, route with it, and pass its
version to the script, which refuses a stale one — the writer then reloads and tries
again. So an event written after ``declare`` returns (in any process) reaches the new
subscription, and a writer pays one ``HGETALL`` per shard and declaration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from otpgate import events as cloudevents
from otpgate.errors import OtpgateError, StoreError
from otpgate.events import CloudEvent, Filter
from otpgate.redisio.conn import RedisConn
from otpgate.redisio.keys import VERSION_FIELD
from otpgate.redisio.records import lua

_filter_of = msgspec.json.Decoder(Filter)
STALE = -1
"""What a publishing script answers when its caller routed with stale subscriptions."""
MAX_RELOADS = 5


@dataclass(slots=True)
class Plan:
    """A routing: the subscriptions' version (``""`` when there was nothing to route; a
    script checks it whenever there were events, routed or not: an event that no
    subscription this process knows of takes may be one a newer subscription takes), and,
    per routed event, its JSON and the subscriptions it goes to (``emit`` in
    ``lua/prelude.lua``)."""

    version: str
    events: list[tuple[msgspec.Raw, list[str]]] = field(default_factory=list)
    deliveries: int = 0


class Routes:
    """The declared subscriptions of each shard, as this process last read them."""

    def __init__(self, conn: RedisConn) -> None:
        self._conn = conn
        self._keys = conn.keys
        self._known: dict[int, tuple[str, list[tuple[str, Filter]]]] = {}

    async def subscriptions(self, shard: int,
                            error: type[OtpgateError] = StoreError) -> list[str]:
        return [name for name, _ in (await self._load(shard, error))[1]]

    def forget(self, shard: int) -> None:
        """Read the shard's subscriptions again before the next routing."""
        self._known.pop(shard, None)

    async def plan(self, shard: int, batch: Sequence[CloudEvent],
                   error: type[OtpgateError] = StoreError) -> Plan:
        """Route ``batch`` with the shard's subscriptions as this process knows them."""
        if not batch:
            return Plan(version="")
        version, subs = await self._load(shard, error)
        plan = Plan(version=version)
        for event in batch:
            names = [name for name, flt in subs if flt.matches(event)]
            if names:
                plan.events.append((lua(cloudevents.encode(event)), names))
                plan.deliveries += len(names)
        return plan

    async def _load(self, shard: int,
                    error: type[OtpgateError]) -> tuple[str, list[tuple[str, Filter]]]:
        known = self._known.get(shard)
        if known is None:
            raw: dict[bytes, bytes] = await self._conn.command(
                "HGETALL", self._keys.subs(shard), error=error)
            version = raw.pop(VERSION_FIELD.encode(), b"0").decode()
            subs = sorted(((name.decode(), _filter_of.decode(value))
                           for name, value in raw.items()), key=lambda sub: sub[0])
            known = self._known[shard] = (version, subs)
        return known
