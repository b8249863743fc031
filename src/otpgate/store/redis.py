"""The Redis store: recipients, OTPs, the send ledger, idempotent answers and API keys.

``transact`` reads the recipient's state (with its version), runs the pure decision in
Python, and hands the change to one script (``lua/commit.lua``) that writes it — the new
state, the OTP records, and the events, appended to the streams of the subscriptions they
match — only if the version is still the one decided on. On a conflict the script returns
the current state, and the decision runs again over it (``decide`` may run more than
once): two round trips for a change, one for a decision that changes nothing. Within one
process, changes to one recipient take turns, so they do not conflict with each other.

A pending OTP is stored once: inside its recipient's state, which ``decide`` needs
anyway; its record key holds a reference to that state until the OTP ends and its own
record is written, in the same script. Expiry is always the domain clock's: Redis key
TTLs only clean up.

With more than one shard (Redis Cluster), an OTP id, an idempotency slot and a provider's
message id are found through a pointer written before what it points to (a pointer to
nothing is harmless; nothing is written without its pointer), and cached.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, cast

import msgspec

from otpgate.bus.redis_routes import STALE, Routes
from otpgate.clock import Clock
from otpgate.core.otp import Delivery, Otp, SendKey
from otpgate.errors import StoreError
from otpgate.events import CloudEvent
from otpgate.redisio.conn import RedisConn
from otpgate.redisio.records import (
    Lru,
    Record,
    answer_of,
    api_key_of,
    encode,
    found,
    lua,
    number,
    records,
    state_of,
)
from otpgate.store.base import (
    ApiKey,
    Claim,
    Decide,
    Keep,
    Kept,
    ReceiptDecision,
    Remembered,
    T,
)
from otpgate.store.redis_ledger import RedisLedger

MAX_CONFLICTS = 64
_PURGE_BATCH = 1000
_DUE_SCAN = 10
"""``due`` reads up to this many times ``limit`` expired codes per shard."""
_CLEANUP_MARGIN = 3600.0
"""Seconds a kept answer's key outlives the answer (its TTL only cleans up)."""


class KeyLocks:
    """One asyncio lock per key in use: changes to one recipient take turns here."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._held.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._held[key]


class RedisStore:
    """The ``Store`` port over Redis (see the module docstring)."""

    def __init__(self, conn: RedisConn, routes: Routes, clock: Clock) -> None:
        self._conn = conn
        self._keys = conn.keys
        self._routes = routes
        self._clock = clock
        self._locks = KeyLocks()
        self._seen: Lru[str, tuple[bytes, bytes]] = Lru(4096)
        """States ``get`` read, by recipient: a ``transact`` that follows starts there."""
        self._shards: Lru[str, int] = Lru(65536)
        self._ledger = RedisLedger(conn, routes, clock, self.locate)

    # -- recipients -------------------------------------------------------------------

    async def transact(self, key: str, decide: Decide[T]) -> T:
        async with self._locks.hold(key):
            result = await self._run(key, decide, None)
        return cast(T, result)

    async def transact_kept(self, key: str, decide: Decide[T], keep: Keep[T]) -> Kept[T]:
        async with self._locks.hold(key):
            result = await self._run(key, decide, keep)
        return cast(Kept[T], result)

    async def _run(self, key: str, decide: Decide[T], keep: Keep[T] | None) -> Any:
        shard = self._keys.shard(key)
        version, blob, kept = await self._read(shard, key, keep)
        for _ in range(MAX_CONFLICTS):
            if kept is not None:
                return Kept(answer=answer_of(kept), replayed=True)
            change = decide(state_of(blob) if blob else None)
            if keep is None and change.state is None and not change.otps \
                    and not change.events:
                return change.result
            answer = keep.answer(change.result) if keep is not None else None
            reply = await self._commit(shard, key, version, blob, change, keep, answer)
            if reply[0] == 1:
                self._shards_known(shard, change.otps)
                if keep is None:
                    return change.result
                return Kept(answer=cast(Remembered, answer), result=change.result)
            if reply[0] == 2:
                kept = bytes(reply[1])
            else:
                version, blob = bytes(reply[1]), _bytes(reply[2])
                kept = _bytes(reply[3])
        raise StoreError(f"too many conflicting writes to one recipient ({MAX_CONFLICTS})")

    async def _read(self, shard: int, key: str,
                    keep: Keep[Any] | None) -> tuple[bytes, bytes | None, bytes | None]:
        """The state's version and value (the one ``get`` read lately, if it did), and the
        live answer kept for ``keep``."""
        if keep is None:
            seen = self._seen.pop(key)
            if seen is not None:
                return seen[0], seen[1], None
            version, blob = await self._conn.command(
                "HMGET", self._keys.state(shard, key), "v", "b")
            return bytes(version or b"0"), _bytes(blob), None
        now = self._clock.now()
        if self._keys.shards > 1:
            elsewhere = await self._answer_shard(keep.slot)
            if elsewhere is not None and elsewhere != shard:
                hit = await self._live_answer(elsewhere, keep.slot, now)
                if hit is not None:
                    return b"0", None, hit
        version, blob, kept = await self._conn.script(
            "read_kept", [self._keys.tag(shard)], [key, keep.slot, number(now)])
        return bytes(version), _bytes(blob), _bytes(kept)

    async def _commit(self, shard: int, key: str, version: bytes, before: bytes | None,
                      change: Any, keep: Keep[Any] | None,
                      answer: Remembered | None) -> list[Any]:
        written = list(records(key, change, before))
        await self._point_ahead(shard, written, before, keep)
        state = change.state
        now = self._clock.now()
        kept: list[Any] = ["", "", "", 0]
        if keep is not None and answer is not None:
            until = answer.created_at + keep.ttl
            ttl_ms = int(max(1.0, until - now + _CLEANUP_MARGIN) * 1000)
            kept = [keep.slot, lua(encode(answer)), number(until), ttl_ms]
        rows = [[r.otp_id, lua(r.value), r.due_member, number(r.expires_at), r.pending]
                for r in written]
        for _ in range(MAX_CONFLICTS):
            plan = await self._routes.plan(shard, change.events)
            args = [version.decode(), lua(encode(state)) if state is not None else "",
                    len(state.pending) if state is not None else 0, number(now), key,
                    plan.version, *kept, rows, plan.events]
            reply: list[Any] = await self._conn.script("commit", [self._keys.tag(shard)],
                                                       [encode(args)])
            if reply[0] != STALE:
                return reply
            self._routes.forget(shard)
        raise StoreError("the subscriptions keep changing")

    async def _point_ahead(self, shard: int, written: Sequence[Record], before: bytes | None,
                           keep: Keep[Any] | None) -> None:
        """With several shards: the pointers to what a commit will write, first (an OTP
        the state held already has one)."""
        if self._keys.shards == 1:
            return
        held = {otp.id for otp in state_of(before).pending.values()} if before else set()
        for r in written:
            if r.otp_id not in held and self._shards.get(r.otp_id) is None:
                await self._conn.command("SET", self._keys.where_otp(r.otp_id), shard)
        if keep is not None:
            ttl = int((keep.ttl + _CLEANUP_MARGIN) * 1000)  # it outlives its answer
            await self._conn.command("SET", self._keys.where_answer(keep.slot), shard,
                                     "PX", ttl)

    def _shards_known(self, shard: int, otps: Sequence[Otp]) -> None:
        if self._keys.shards > 1:
            for otp in otps:
                self._shards.put(otp.id, shard)

    async def locate(self, otp_id: str) -> int | None:
        """The shard of OTP ``otp_id``; ``None`` when there is no such OTP."""
        if self._keys.shards == 1:
            return 0
        known = self._shards.get(otp_id)
        if known is None:
            raw = await self._conn.command("GET", self._keys.where_otp(otp_id))
            if raw is None:
                return None
            known = int(raw)
            self._shards.put(otp_id, known)
        return known

    async def get(self, otp_id: str) -> Otp | None:
        shard = await self.locate(otp_id)
        if shard is None:
            return None
        reply = await self._conn.script("get_otp", [self._keys.tag(shard)], [otp_id])
        hit = found(reply, otp_id)
        if hit.holder is not None and hit.state is not None:
            self._seen.put(hit.holder, (hit.version, hit.state))
        return hit.otp

    async def due(self, now: float, limit: int) -> list[str]:
        replies = await asyncio.gather(*(
            self._conn.command("ZRANGEBYSCORE", self._keys.due(shard), "-inf", now,
                               "LIMIT", 0, limit * _DUE_SCAN)
            for shard in range(self._keys.shards)))
        due = {bytes(member).split(b" ", 1)[1].decode() for reply in replies
               for member in reply}
        return sorted(due)[:limit]

    async def purge(self, otps_before: float, recipients_before: float) -> int:
        gone = 0
        for shard in range(self._keys.shards):
            ids, sent, idle = await self._conn.script(
                "purge", [self._keys.tag(shard)],
                [number(otps_before), number(recipients_before), _PURGE_BATCH])
            pointers = [self._keys.sent_as(sent[i].decode(), sent[i + 1].decode())
                        for i in range(0, len(sent), 2)]
            if self._keys.shards > 1:
                pointers += [self._keys.where_otp(bytes(i).decode()) for i in ids]
            for pointer in pointers:  # one by one: on Cluster they live in other slots
                await self._conn.command("DEL", pointer)
            gone += len(ids) + int(idle)
        return gone

    # -- the send ledger ----------------------------------------------------------------

    async def claim(self, key: SendKey, driver: str, now: float, lease: float) -> Claim:
        return await self._ledger.claim(key, driver, now, lease)

    async def settle(self, delivery: Delivery, events: Sequence[CloudEvent], *,
                     claimed: int) -> bool:
        return await self._ledger.settle(delivery, events, claimed=claimed)

    async def deliveries(self, otp_id: str) -> list[Delivery]:
        return await self._ledger.deliveries(otp_id)

    async def record_receipt(self, driver: str, provider_id: str,
                             decide: ReceiptDecision) -> Delivery | None:
        return await self._ledger.record_receipt(driver, provider_id, decide, self.get)

    # -- idempotent answers, API keys, the key check ------------------------------------

    async def recall(self, slot: str, now: float) -> Remembered | None:
        shard = 0 if self._keys.shards == 1 else await self._answer_shard(slot)
        if shard is None:
            return None
        kept = await self._live_answer(shard, slot, now)
        return answer_of(kept) if kept is not None else None

    async def _answer_shard(self, slot: str) -> int | None:
        raw = await self._conn.command("GET", self._keys.where_answer(slot))
        return int(raw) if raw is not None else None

    async def _live_answer(self, shard: int, slot: str, now: float) -> bytes | None:
        until, answer = await self._conn.command("HMGET", self._keys.answer(shard, slot),
                                                 "x", "a")
        if until is None or float(until) <= now:
            return None
        return _bytes(answer)

    async def put_api_key(self, key: ApiKey) -> None:
        await self._conn.script("put_indexed", [self._keys.api_key(key.id),
                                                self._keys.api_keys()],
                                [encode(key), key.created_at, key.id])

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        raw = await self._conn.command("GET", self._keys.api_key(key_id))
        return api_key_of(raw) if raw is not None else None

    async def list_api_keys(self) -> list[ApiKey]:
        ids = await self._conn.command("ZRANGE", self._keys.api_keys(), 0, -1)
        if not ids:
            return []
        raws = await self._conn.command("MGET", *(self._keys.api_key(bytes(i).decode())
                                                  for i in ids))
        return [api_key_of(raw) for raw in raws if raw is not None]

    async def change_api_key(self, key_id: str,
                             change: Callable[[ApiKey], ApiKey | None]) -> ApiKey | None:
        where = self._keys.api_key(key_id)
        for _ in range(MAX_CONFLICTS):
            raw = await self._conn.command("GET", where)
            changed = change(api_key_of(raw)) if raw is not None else None
            if changed is None:
                return None
            if await self._conn.script("cas", [where], [raw, encode(changed)]) == 1:
                return changed
        raise StoreError("too many conflicting writes to one API key")

    async def revoke_api_key(self, key_id: str, now: float) -> bool:
        where = self._keys.api_key(key_id)
        for _ in range(MAX_CONFLICTS):
            raw = await self._conn.command("GET", where)
            if raw is None:
                return False
            key = api_key_of(raw)
            if key.revoked_at is not None:
                return False
            revoked = msgspec.structs.replace(key, revoked_at=now)
            if await self._conn.script("cas", [where], [raw, encode(revoked)]) == 1:
                return True
        raise StoreError("too many conflicting writes to one API key")

    async def read_meta(self, name: str) -> str | None:
        raw = await self._conn.command("GET", self._keys.meta(name))
        return None if raw is None else bytes(raw).decode()

    async def swap_meta(self, name: str, expected: str | None, value: str) -> bool:
        where = self._keys.meta(name)
        if expected is None:
            return await self._conn.command("SET", where, value, "NX") is not None
        return bool(await self._conn.script("cas", [where], [expected, value]) == 1)

    async def keep_key_check(self, check: str) -> str:
        kept = await self._conn.script("keep_once", [self._keys.key_check()], [check])
        return bytes(kept).decode()

    async def ping(self) -> None:
        await self._conn.ping()

    async def close(self) -> None:
        return None  # the backend closes the connection it shares with the bus


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)
