"""The ``Store`` port on one DynamoDB table (the key schema is drawn in
``otpgate.aws.table``).

``transact`` reads a recipient's state (a consistent read), runs the decision, and writes
the new state, the OTP records and an outbox item holding the decision's events in one
``TransactWriteItems``, on the condition that the state's version is still the one read;
when another writer got there first the decision runs again on the fresh state (the port
allows it). Once written, the events are published to SNS and the outbox item is cleared
(``otpgate.bus.sns_sqs``); a crash in between leaves the item for the sweep to republish.
``transact_kept`` first takes the idempotency slot with a conditional write (a short lease
on it), so that concurrent requests under one key decide once; the answer replaces the
lease in the decision's own transaction. The send ledger lives in the OTP's partition and
moves by conditional writes on its version, so that of any number of claims, settles and
receipts racing on one send each applies to the row it read or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from otpgate.aws import table as t
from otpgate.aws.table import Cancelled, Item, Table
from otpgate.bus.sns_sqs import SnsSqsBus
from otpgate.clock import Clock
from otpgate.core.lifecycle import Change
from otpgate.core.otp import Delivery, DeliveryStatus, Otp, RecipientState, SendKey, Status
from otpgate.errors import StoreError
from otpgate.events import CloudEvent
from otpgate.store.base import (
    ApiKey,
    Claim,
    Decide,
    Keep,
    Kept,
    ReceiptDecision,
    Remembered,
    T,
    claim_of,
)

log = logging.getLogger(__name__)

_encode = msgspec.msgpack.Encoder().encode
_state_of = msgspec.msgpack.Decoder(RecipientState).decode
_otp_of = msgspec.msgpack.Decoder(Otp).decode
_row_of = msgspec.msgpack.Decoder(Delivery).decode
_KEY_CONFLICTS = 16
_key_of = msgspec.msgpack.Decoder(ApiKey).decode
_answer_of = msgspec.msgpack.Decoder(Remembered).decode

_ATTEMPTS = 100
"""Conflicting writes a decision is retried over before the store gives up."""
_TOUCH_GRAIN = 3600.0
"""How stale a recipient's last-change time may be (it then seldom moves in the index)."""
_SLOT_LEASE = 30.0
"""Seconds an idempotency slot is held by the request deciding under it."""
_SLOT_WAIT = 10.0
"""Real seconds a request waits for another one deciding under its key."""
_PURGE_BATCH = 200
_STATE, _OTP, _ANSWER = "STATE", "OTP", "ANSWER"


def _recipient(key: str) -> str:
    return f"R#{key}"


def _otp_pk(otp_id: str) -> str:
    return f"O#{otp_id}"


def _send_sk(send_no: int, channel: str) -> str:
    return f"SEND#{send_no:08d}#{channel}"


def _slot(slot: str) -> str:
    return f"I#{slot}"


def _pointer(driver: str, provider_id: str) -> str:
    return f"P#{driver}#{provider_id}"


@dataclass(slots=True)
class _Batch:
    """The writes of one transaction, and the outbox item among them, if any."""

    items: list[dict[str, Any]] = field(default_factory=list)
    outbox: str | None = None
    events: Sequence[CloudEvent] = ()

    def publish(self, bus: SnsSqsBus, events: Sequence[CloudEvent], now: float) -> None:
        """Add an outbox item holding ``events``."""
        self.outbox, entry = bus.outbox_entry(events, now)
        self.items.append(entry)
        self.events = events


async def _pause(attempt: int) -> None:
    """Back off after a conflict, with jitter, so that racing writers spread out."""
    await asyncio.sleep(random.uniform(0, min(1.0, 0.01 * 2 ** min(attempt, 7))))  # noqa: S311


class DynamoStore:
    """The ``Store`` port over a ``Table``; ``bus`` publishes what its outbox items hold."""

    def __init__(self, table: Table, bus: SnsSqsBus, clock: Clock, *,
                 retention: float = 7 * 24 * 3600.0) -> None:
        self._table = table
        self._bus = bus
        self._clock = clock
        self._retention = retention

    # -- recipients ---------------------------------------------------------------------

    async def transact(self, key: str, decide: Decide[T]) -> T:
        for attempt in range(_ATTEMPTS):
            change, batch = await self._decide(key, decide)
            if not batch.items:
                return change.result
            try:
                await self._commit(batch)
            except Cancelled:
                await _pause(attempt)
                continue
            return change.result
        raise StoreError(f"gave up after {_ATTEMPTS} conflicting writes to one recipient")

    async def transact_kept(self, key: str, decide: Decide[T], keep: Keep[T]) -> Kept[T]:
        owner = uuid.uuid4().hex
        while True:
            kept = await self._take_slot(keep.slot, owner)
            if kept is not None:
                return Kept(answer=kept, replayed=True)
            try:
                outcome = await self._decide_kept(key, decide, keep, owner)
            except BaseException:
                await self._free_slot(keep.slot, owner)
                raise
            if outcome is not None:
                return outcome

    async def _take_slot(self, slot: str, owner: str) -> Remembered | None:
        """Hold ``slot`` for this request, or the live answer kept there."""
        deadline = time.monotonic() + _SLOT_WAIT
        while True:
            now = self._clock.now()
            found = await self._table.get(_slot(slot), _ANSWER)
            if found is not None and t.num(found, "until") > now:
                if "answer" in found:
                    return _answer_of(t.blob(found, "answer"))
                if time.monotonic() > deadline:
                    raise StoreError("an earlier request with this Idempotency-Key is still "
                                     "being answered")
                await asyncio.sleep(0.01)
                continue
            lease = {**t.key(_slot(slot), _ANSWER), "owner": t.s(owner),
                     "until": t.n(now + _SLOT_LEASE), "ttl": t.n(int(now + _SLOT_LEASE))}
            try:
                await self._table.put(lease, "attribute_not_exists(pk) OR #until <= :now",
                                      {":now": t.n(now)}, {"#until": "until"})
            except Cancelled:
                continue
            return None

    async def _free_slot(self, slot: str, owner: str) -> None:
        # Taken over already, or unreachable: either way its lease runs out.
        with contextlib.suppress(Cancelled, StoreError):
            await self._table.transact([t.delete_if(_slot(slot), _ANSWER, "#owner = :me",
                                                    {":me": t.s(owner)}, {"#owner": "owner"})])

    async def _decide_kept(self, key: str, decide: Decide[T], keep: Keep[T],
                           owner: str) -> Kept[T] | None:
        """Decide and keep the answer while holding the slot; ``None`` when the slot was
        lost meanwhile (the caller looks at it again)."""
        for attempt in range(_ATTEMPTS):
            change, batch = await self._decide(key, decide)
            answer = keep.answer(change.result)
            until = answer.created_at + keep.ttl
            kept = {**t.key(_slot(keep.slot), _ANSWER), "answer": t.b(_encode(answer)),
                    "until": t.n(until), "ttl": t.n(int(until) + 1),
                    **t.timeline("answer", _slot(keep.slot), until)}
            batch.items.append(t.put(kept, "#owner = :me", {":me": t.s(owner)},
                                     {"#owner": "owner"}))
            try:
                await self._commit(batch)
            except Cancelled as cancelled:
                if cancelled.failed(len(batch.items) - 1):
                    return None
                await _pause(attempt)
                continue
            return Kept(answer=answer, result=change.result)
        raise StoreError(f"gave up after {_ATTEMPTS} conflicting writes to one recipient")

    async def _decide(self, key: str, decide: Decide[T]) -> tuple[Change[T], _Batch]:
        """Run ``decide`` over the stored state: the change and the writes it needs."""
        pk = _recipient(key)
        found = await self._table.get(pk, _STATE)
        change = decide(_state_of(t.blob(found, "state")) if found else None)
        if found is None:
            condition, values = "attribute_not_exists(pk)", None
        else:
            condition, values = "ver = :ver", {":ver": found["ver"]}
        batch = _Batch()
        now = self._clock.now()
        if change.state is not None:
            version = int(t.num(found, "ver")) + 1 if found else 1
            touched = t.num(found, "touched") if found else now
            if now - touched >= _TOUCH_GRAIN:
                touched = now
            item = {**t.key(pk, _STATE), "state": t.b(_encode(change.state)),
                    "ver": t.n(version), "touched": t.n(touched),
                    "ttl": t.n(int(now + self._retention))}
            if not change.state.pending:
                item |= t.timeline("idle", pk, touched)
            batch.items.append(t.put(item, condition, values))
        elif change.otps or change.events:
            batch.items.append(t.check(pk, _STATE, condition, values))
        for otp in {o.id: o for o in change.otps}.values():
            batch.items.append(t.put(self._otp_item(otp)))
        if change.events:
            batch.publish(self._bus, change.events, now)
        return change, batch

    def _otp_item(self, otp: Otp) -> Item:
        pk = _otp_pk(otp.id)
        kind = "due" if otp.status is Status.PENDING else "done"
        return {**t.key(pk, _OTP), "otp": t.b(_encode(otp)), "recipient": t.s(otp.recipient),
                "ttl": t.n(int(otp.expires_at + self._retention)),
                **t.timeline(kind, pk, otp.expires_at)}

    async def _commit(self, batch: _Batch) -> None:
        """Write ``batch`` in one transaction, then publish the events its outbox item
        holds (a publish that fails is left to the sweep)."""
        await self._table.transact(batch.items)
        if batch.outbox is not None:
            await self._bus.relay(batch.outbox, batch.events)

    async def get(self, otp_id: str) -> Otp | None:
        found = await self._table.get(_otp_pk(otp_id), _OTP)
        return _otp_of(t.blob(found, "otp")) if found else None

    async def due(self, now: float, limit: int) -> list[str]:
        found = await self._table.timeline("due", now, limit)
        return sorted({t.text(i, "recipient") for i in found})[:limit]

    async def purge(self, otps_before: float, recipients_before: float) -> int:
        now = self._clock.now()
        gone = 0
        for item in await self._table.timeline("done", otps_before, _PURGE_BATCH):
            if t.num(item, "tl_at") < otps_before:
                gone += await self._forget_otp(t.text(item, "pk"))
        cutoff = recipients_before - _TOUCH_GRAIN
        for item in await self._table.timeline("idle", cutoff, _PURGE_BATCH):
            if t.num(item, "tl_at") < cutoff:
                gone += await self._delete_if(
                    t.text(item, "pk"), _STATE, "begins_with(tl_pk, :idle) AND tl_at < :cut",
                    {":idle": t.s("idle#"), ":cut": t.n(cutoff)})
        for item in await self._table.timeline("answer", now, _PURGE_BATCH):
            gone += await self._delete_if(t.text(item, "pk"), _ANSWER, "#until <= :now",
                                          {":now": t.n(now)}, {"#until": "until"})
        return gone

    async def _forget_otp(self, pk: str) -> int:
        items = await self._table.partition(pk)
        otp = next((i for i in items if t.text(i, "sk") == _OTP), None)
        if otp is None or _otp_of(t.blob(otp, "otp")).status is Status.PENDING:
            return 0
        deletes = [t.delete(pk, t.text(i, "sk")) for i in items]
        for item in items:
            if "row" in item and (row := _row_of(t.blob(item, "row"))).provider_id:
                deletes.append(t.delete(_pointer(row.driver, row.provider_id), "SENT"))
        for start in range(0, len(deletes), 100):
            await self._table.transact(deletes[start:start + 100])
        return 1

    async def _delete_if(self, pk: str, sk: str, condition: str, values: Item,
                         names: dict[str, str] | None = None) -> int:
        try:
            await self._table.transact([t.delete_if(pk, sk, condition, values, names)])
        except Cancelled:
            return 0
        return 1

    # -- the send ledger ----------------------------------------------------------------

    def _row_item(self, row: Delivery, version: int) -> Item:
        return {**t.key(_otp_pk(row.otp_id), _send_sk(row.send_no, row.channel)),
                "row": t.b(_encode(row)), "status": t.s(row.status.value),
                "attempts": t.n(row.attempts), "ver": t.n(version),
                "ttl": t.n(int(row.updated_at + self._retention + 86400))}

    async def claim(self, key: SendKey, driver: str, now: float, lease: float) -> Claim:
        pk, sk = _otp_pk(key.otp_id), _send_sk(key.send_no, key.channel)
        for attempt in range(_ATTEMPTS):
            items = {t.text(i, "sk"): i for i in await self._table.partition(pk)}
            otp = _otp_of(t.blob(items[_OTP], "otp")) if _OTP in items else None
            found = items.get(sk)
            claim, row = claim_of(key, _row_of(t.blob(found, "row")) if found else None,
                                  driver, now, lease, otp)
            if row is None:
                return claim
            version = int(t.num(found, "ver")) if found else 0
            condition = "ver = :ver" if found else "attribute_not_exists(pk)"
            try:
                await self._table.transact([t.put(self._row_item(row, version + 1), condition,
                                                  {":ver": t.n(version)} if found else None)])
            except Cancelled:
                await _pause(attempt)
                continue
            return claim
        raise StoreError(f"gave up after {_ATTEMPTS} conflicting claims of one send")

    async def settle(self, delivery: Delivery, events: Sequence[CloudEvent], *,
                     claimed: int) -> bool:
        d = delivery
        batch = _Batch([t.update(
            _otp_pk(d.otp_id), _send_sk(d.send_no, d.channel),
            "SET #row = :row, #status = :status, attempts = :attempts, ver = ver + :one, "
            "#ttl = :ttl",
            {":row": t.b(_encode(d)), ":status": t.s(d.status.value),
             ":attempts": t.n(d.attempts), ":one": t.n(1),
             ":ttl": t.n(int(d.updated_at + self._retention + 86400)),
             ":sending": t.s(DeliveryStatus.SENDING.value), ":claimed": t.n(claimed)},
            "#status = :sending AND attempts = :claimed",
            {"#row": "row", "#status": "status", "#ttl": "ttl"})])
        if d.provider_id is not None:
            batch.items.append(t.put({
                **t.key(_pointer(d.driver, d.provider_id), "SENT"), "otp_id": t.s(d.otp_id),
                "send_no": t.n(d.send_no), "channel": t.s(d.channel),
                "ttl": t.n(int(d.updated_at + self._retention + 86400))}))
        if events:
            batch.publish(self._bus, events, self._clock.now())
        try:
            await self._commit(batch)
        except Cancelled:
            return False
        return True

    async def deliveries(self, otp_id: str) -> list[Delivery]:
        items = await self._table.partition(_otp_pk(otp_id))
        head = next((i for i in items if t.text(i, "sk") == _OTP), None)
        if head is None:
            return []
        otp = _otp_of(t.blob(head, "otp"))
        rows = [_row_of(t.blob(i, "row")) for i in items if "row" in i]
        order = {channel: n for n, channel in enumerate(otp.channels)}
        return sorted((r for r in rows if r.send_no == otp.send_count),
                      key=lambda r: (order.get(r.channel, len(order)), r.channel))

    async def record_receipt(self, driver: str, provider_id: str,
                             decide: ReceiptDecision) -> Delivery | None:
        for attempt in range(_ATTEMPTS):
            pointer = await self._table.get(_pointer(driver, provider_id), "SENT")
            if pointer is None:
                return None
            pk = _otp_pk(t.text(pointer, "otp_id"))
            sk = _send_sk(int(t.num(pointer, "send_no")), t.text(pointer, "channel"))
            items = {t.text(i, "sk"): i for i in await self._table.partition(pk)}
            found = items.get(sk)
            if found is None:
                return None
            row = _row_of(t.blob(found, "row"))
            if (row.driver, row.provider_id) != (driver, provider_id):
                return None
            otp = _otp_of(t.blob(items[_OTP], "otp")) if _OTP in items else None
            outcome = decide(row, otp)
            if outcome is None:
                return None
            moved, published = outcome
            version = int(t.num(found, "ver"))
            batch = _Batch([t.put(self._row_item(moved, version + 1), "ver = :ver",
                                  {":ver": t.n(version)})])
            if (moved.driver, moved.provider_id) != (driver, provider_id):
                batch.items.append(t.delete(_pointer(driver, provider_id), "SENT"))
            if published:
                batch.publish(self._bus, published, self._clock.now())
            try:
                await self._commit(batch)
            except Cancelled:
                await _pause(attempt)
                continue
            return moved
        raise StoreError(f"gave up after {_ATTEMPTS} conflicting receipts for one send")

    # -- answers, keys, the key check ---------------------------------------------------

    async def recall(self, slot: str, now: float) -> Remembered | None:
        found = await self._table.get(_slot(slot), _ANSWER)
        if found is None or "answer" not in found or t.num(found, "until") <= now:
            return None
        return _answer_of(t.blob(found, "answer"))

    def _key_item(self, key: ApiKey) -> Item:
        item = {**t.key("KEYS", f"K#{key.id}"), "key": t.b(_encode(key))}
        if key.revoked_at is not None:
            item["revoked_at"] = t.n(key.revoked_at)
        return item

    async def put_api_key(self, key: ApiKey) -> None:
        await self._table.put(self._key_item(key))

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        found = await self._table.get("KEYS", f"K#{key_id}")
        return _key_of(t.blob(found, "key")) if found else None

    async def list_api_keys(self) -> list[ApiKey]:
        keys = [_key_of(t.blob(i, "key")) for i in await self._table.partition("KEYS", "K#")]
        return sorted(keys, key=lambda k: (k.created_at, k.id))

    async def change_api_key(self, key_id: str,
                             change: Callable[[ApiKey], ApiKey | None]) -> ApiKey | None:
        for _ in range(_KEY_CONFLICTS):
            found = await self._table.get("KEYS", f"K#{key_id}")
            if not found:
                return None
            raw = t.blob(found, "key")
            changed = change(_key_of(raw))
            if changed is None:
                return None
            try:
                await self._table.put(self._key_item(changed), "#k = :old",
                                      {":old": t.b(raw)}, {"#k": "key"})
            except Cancelled:
                continue
            return changed
        raise StoreError("too many conflicting writes to one API key")

    async def revoke_api_key(self, key_id: str, now: float) -> bool:
        key = await self.get_api_key(key_id)
        if key is None or key.revoked_at is not None:
            return False
        key.revoked_at = now
        try:
            await self._table.transact([t.put(self._key_item(key),
                                              "attribute_exists(pk) AND "
                                              "attribute_not_exists(revoked_at)")])
        except Cancelled:
            return False
        return True

    async def read_meta(self, name: str) -> str | None:
        found = await self._table.get("META", f"M#{name}")
        return t.text(found, "value") if found else None

    async def swap_meta(self, name: str, expected: str | None, value: str) -> bool:
        item = {**t.key("META", f"M#{name}"), "value": t.s(value)}
        try:
            if expected is None:
                await self._table.put(item, "attribute_not_exists(pk)")
            else:
                await self._table.put(item, "#v = :old", {":old": t.s(expected)},
                                      {"#v": "value"})
        except Cancelled:
            return False
        return True

    async def keep_key_check(self, check: str) -> str:
        with contextlib.suppress(Cancelled):  # one is kept already
            await self._table.transact([t.put({**t.key("META", "KEYCHECK"),
                                               "value": t.s(check)},
                                              "attribute_not_exists(pk)")])
        found = await self._table.get("META", "KEYCHECK")
        if found is None:
            raise StoreError("the key check vanished from the table")
        return t.text(found, "value")

    async def ping(self) -> None:
        await self._table.ping()

    async def close(self) -> None:
        return None
