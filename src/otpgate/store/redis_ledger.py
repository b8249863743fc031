"""The send ledger on Redis: one hash per OTP (``<send no>:<channel>`` → ``Delivery``),
in its OTP's shard.

A claim applies the shared rules (``claim_of``) in Python and writes the entry only if it
is still the one those rules saw (``lua/ledger_put.lua``, which reads the OTP in the same
step); the first claim of a send guesses "no entry yet", so it costs one round trip.
``settle`` records an outcome only while the claim it names still holds the send — the
script checks the entry's status and attempts, as the SQL ``WHERE`` does on SQLite.
A provider's message id points to its send (``w:s:…``) for receipts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from otpgate.bus.redis_routes import STALE, Routes
from otpgate.clock import Clock
from otpgate.core.otp import Delivery, Otp, SendKey
from otpgate.errors import StoreError
from otpgate.events import CloudEvent
from otpgate.redisio.conn import RedisConn
from otpgate.redisio.records import delivery_of, encode, found, lua, number
from otpgate.store.base import Claim, ReceiptDecision, claim_of

MAX_CONFLICTS = 64
Locate = Callable[[str], Awaitable[int | None]]


def _field(send_no: int, channel: str) -> str:
    return f"{send_no}:{channel}"


class RedisLedger:
    def __init__(self, conn: RedisConn, routes: Routes, clock: Clock, locate: Locate) -> None:
        self._conn = conn
        self._keys = conn.keys
        self._routes = routes
        self._clock = clock
        self._locate = locate

    async def _home(self, otp_id: str) -> int:
        """The OTP's shard; for an OTP that does not exist, the shard its id hashes to."""
        shard = await self._locate(otp_id)
        return self._keys.shard(otp_id) if shard is None else shard

    async def claim(self, key: SendKey, driver: str, now: float, lease: float) -> Claim:
        shard = await self._home(key.otp_id)
        tag, field = [self._keys.tag(shard)], _field(key.send_no, key.channel)
        expected: bytes | None = None
        _, row = claim_of(key, None, driver, now, lease, None)
        for _ in range(MAX_CONFLICTS):
            new = encode(row) if row is not None else b""
            written, current, otp_reply = await self._conn.script("ledger_put", tag, [encode([
                key.otp_id, field, lua(expected or b""), lua(new), number(now), "", []])])
            otp = found(otp_reply, key.otp_id).otp
            if written == 1:
                return claim_of(key, _entry(expected), driver, now, lease, otp)[0]
            expected = bytes(current) or None
            claim, row = claim_of(key, _entry(expected), driver, now, lease, otp)
            if row is None:
                return claim
        raise StoreError("too many conflicting claims of one send")

    async def settle(self, delivery: Delivery, events: Sequence[CloudEvent], *,
                     claimed: int) -> bool:
        d = delivery
        shard = await self._home(d.otp_id)
        here = await self._pointer(shard, d)
        pointer = f"{shard} {d.otp_id} {d.send_no} {d.channel}"
        now = number(self._clock.now())
        for _ in range(MAX_CONFLICTS):
            plan = await self._routes.plan(shard, events)
            done = await self._conn.script("ledger_settle", [self._keys.tag(shard)], [encode([
                d.otp_id, _field(d.send_no, d.channel), claimed, lua(encode(d)), now,
                plan.version, d.driver, d.provider_id if here else "", pointer,
                plan.events])])
            if done != STALE:
                return bool(done == 1)
            self._routes.forget(shard)
        raise StoreError("the subscriptions keep changing")

    async def _pointer(self, shard: int, d: Delivery) -> bool:
        """Whether the receipt pointer of a send a provider named lives in the OTP's shard
        (the settle's script writes it); if it lives elsewhere it is written here, first."""
        if d.provider_id is None:
            return False
        if self._keys.shard(f"{d.driver}\x00{d.provider_id}") == shard:
            return True
        await self._conn.command("SET", self._keys.sent_as(d.driver, d.provider_id),
                                 f"{shard} {d.otp_id} {d.send_no} {d.channel}")
        return False

    async def deliveries(self, otp_id: str) -> list[Delivery]:
        shard = await self._locate(otp_id)
        if shard is None:
            return []
        otp_reply, pairs = await self._conn.script("ledger_read", [self._keys.tag(shard)],
                                                   [otp_id])
        otp = found(otp_reply, otp_id).otp
        if otp is None:
            return []
        entries = {pairs[i]: pairs[i + 1] for i in range(0, len(pairs), 2)}
        if (early := self._keys.shard(otp_id)) != shard:
            # Sends claimed while the OTP did not exist yet went to its id's shard.
            claimed = await self._conn.command("HGETALL", self._keys.ledger(early, otp_id))
            entries = {**claimed, **entries}
        rows = [delivery_of(raw) for raw in entries.values()]
        order = {channel: n for n, channel in enumerate(otp.channels)}
        latest = [d for d in rows if d.send_no == otp.send_count]
        return sorted(latest, key=lambda d: (order.get(d.channel, len(order)), d.channel))

    async def record_receipt(self, driver: str, provider_id: str, decide: ReceiptDecision,
                             otp_of: Callable[[str], Awaitable[Otp | None]]
                             ) -> Delivery | None:
        pointer = self._keys.sent_as(driver, provider_id)
        raw = await self._conn.command("GET", pointer)
        if raw is None:
            return None
        where, otp_id, send_no, channel = bytes(raw).decode().split(" ", 3)
        shard = int(where)
        ledger = self._keys.ledger(shard, otp_id)
        field = _field(int(send_no), channel)
        otp = await otp_of(otp_id)
        current = await self._conn.command("HGET", ledger, field)
        for _ in range(MAX_CONFLICTS):
            row = _entry(current)
            if row is None or row.driver != driver or row.provider_id != provider_id:
                return None
            outcome = decide(row, otp)
            if outcome is None:
                return None
            moved, published = outcome
            plan = await self._routes.plan(shard, published)
            written, again, _ = await self._conn.script("ledger_put", [self._keys.tag(shard)], [
                encode([otp_id, field, lua(current), lua(encode(moved)), number(moved.updated_at),
                        plan.version, plan.events])])
            if written == 1:
                if (moved.driver, moved.provider_id) != (driver, provider_id):
                    # The send moved to another driver: this id names nothing any more.
                    await self._conn.command("DEL", pointer)
                return moved
            if written == STALE:
                self._routes.forget(shard)
            else:
                current = bytes(again) or None
        raise StoreError("too many conflicting receipts for one send")


def _entry(raw: Any) -> Delivery | None:
    return delivery_of(raw) if raw else None
