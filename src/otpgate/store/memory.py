"""In-memory store: the twin of every other backend, for tests and throwaway runs."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence

import msgspec

from otpgate.bus.memory import MemoryBus
from otpgate.clock import Clock
from otpgate.core.lifecycle import Change
from otpgate.core.otp import Delivery, DeliveryStatus, Otp, RecipientState, SendKey, Status
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


class MemoryStore:
    """Holds everything in dicts; ``transact`` is atomic under one lock and queues the
    decision's events on the ``MemoryBus`` inside that same section."""

    def __init__(self, bus: MemoryBus, clock: Clock) -> None:
        self._bus = bus
        self._clock = clock
        self._touched: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self._states: dict[str, bytes] = {}
        self._otps: dict[str, Otp] = {}
        self._ledger: dict[SendKey, Delivery] = {}
        self._sent_as: dict[tuple[str, str], SendKey] = {}
        self._idem: dict[str, tuple[Remembered, float]] = {}
        self._keys: dict[str, ApiKey] = {}
        self._meta: dict[str, str] = {}
        self._key_check: str | None = None

    async def transact(self, key: str, decide: Decide[T]) -> T:
        async with self._lock:
            return self._apply(key, self._decide(key, decide))

    async def transact_kept(self, key: str, decide: Decide[T], keep: Keep[T]) -> Kept[T]:
        async with self._lock:
            now = self._clock.now()
            hit = self._idem.get(keep.slot)
            if hit is not None and hit[1] > now:
                return Kept(answer=hit[0], replayed=True)
            change = self._decide(key, decide)
            answer = keep.answer(change.result)
            result = self._apply(key, change)
            self._idem[keep.slot] = (answer, answer.created_at + keep.ttl)
            return Kept(answer=answer, result=result)

    def _decide(self, key: str, decide: Decide[T]) -> Change[T]:
        raw = self._states.get(key)
        # Decisions mutate what they are given: hand them a copy, as a database would.
        return decide(msgspec.msgpack.decode(raw, type=RecipientState) if raw else None)

    def _apply(self, key: str, change: Change[T]) -> T:
        if change.state is not None:
            self._states[key] = msgspec.msgpack.encode(change.state)
            self._touched[key] = self._clock.now()
        for otp in change.otps:
            self._otps[otp.id] = copy.deepcopy(otp)
        self._bus.enqueue(change.events)
        return change.result

    async def get(self, otp_id: str) -> Otp | None:
        otp = self._otps.get(otp_id)
        return copy.deepcopy(otp) if otp else None

    async def due(self, now: float, limit: int) -> list[str]:
        keys = {o.recipient for o in self._otps.values()
                if o.status is Status.PENDING and o.expires_at <= now}
        return sorted(keys)[:limit]

    async def claim(self, key: SendKey, driver: str, now: float, lease: float) -> Claim:
        async with self._lock:
            claim, row = claim_of(key, self._ledger.get(key), driver, now, lease,
                                  self._otps.get(key.otp_id))
            if row is not None:
                self._ledger[key] = row
            return claim

    async def settle(self, delivery: Delivery, events: Sequence[CloudEvent], *,
                     claimed: int) -> bool:
        async with self._lock:
            key = SendKey(delivery.otp_id, delivery.send_no, delivery.channel)
            row = self._ledger.get(key)
            if row is None or row.status is not DeliveryStatus.SENDING \
                    or row.attempts != claimed:
                return False
            self._ledger[key] = copy.deepcopy(delivery)
            if delivery.provider_id is not None:
                self._sent_as[(delivery.driver, delivery.provider_id)] = key
            self._bus.enqueue(events)
            return True

    async def record_receipt(self, driver: str, provider_id: str,
                             decide: ReceiptDecision) -> Delivery | None:
        async with self._lock:
            key = self._sent_as.get((driver, provider_id))
            row = self._ledger.get(key) if key is not None else None
            if key is None or row is None or (row.driver, row.provider_id) != (driver,
                                                                               provider_id):
                return None
            otp = self._otps.get(key.otp_id)
            outcome = decide(copy.deepcopy(row), copy.deepcopy(otp) if otp else None)
            if outcome is None:
                return None
            moved, published = outcome
            self._ledger[key] = copy.deepcopy(moved)
            if (moved.driver, moved.provider_id) != (driver, provider_id):
                del self._sent_as[(driver, provider_id)]
            self._bus.enqueue(published)
            return copy.deepcopy(moved)

    async def purge(self, otps_before: float, recipients_before: float) -> int:
        async with self._lock:
            gone = {i for i, o in self._otps.items()
                    if o.status is not Status.PENDING and o.expires_at < otps_before}
            for otp_id in gone:
                del self._otps[otp_id]
            for send in [k for k in self._ledger if k.otp_id in gone]:
                row = self._ledger.pop(send)
                if row.provider_id is not None:
                    self._sent_as.pop((row.driver, row.provider_id), None)
            live = {o.recipient for o in self._otps.values() if o.status is Status.PENDING}
            idle = [k for k, t in self._touched.items()
                    if t < recipients_before and k not in live]
            for key in idle:
                del self._touched[key]
                self._states.pop(key, None)
            now = self._clock.now()
            answers = [k for k, (_, until) in self._idem.items() if until <= now]
            for key in answers:
                del self._idem[key]
            return len(gone) + len(idle) + len(answers)

    async def deliveries(self, otp_id: str) -> list[Delivery]:
        otp = self._otps.get(otp_id)
        if otp is None:
            return []
        return [copy.deepcopy(d) for k, d in self._ledger.items()
                if k.otp_id == otp_id and k.send_no == otp.send_count]

    async def recall(self, slot: str, now: float) -> Remembered | None:
        hit = self._idem.get(slot)
        if hit is None or hit[1] <= now:
            return None
        return hit[0]

    async def put_api_key(self, key: ApiKey) -> None:
        self._keys[key.id] = copy.deepcopy(key)

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        key = self._keys.get(key_id)
        return copy.deepcopy(key) if key else None

    async def list_api_keys(self) -> list[ApiKey]:
        return [copy.deepcopy(k) for k in sorted(self._keys.values(), key=lambda k: k.created_at)]

    async def change_api_key(self, key_id: str,
                             change: Callable[[ApiKey], ApiKey | None]) -> ApiKey | None:
        key = self._keys.get(key_id)
        changed = change(copy.deepcopy(key)) if key is not None else None
        if changed is None:
            return None
        self._keys[key_id] = copy.deepcopy(changed)
        return changed

    async def revoke_api_key(self, key_id: str, now: float) -> bool:
        key = self._keys.get(key_id)
        if key is None or key.revoked_at is not None:
            return False
        key.revoked_at = now
        return True

    async def read_meta(self, name: str) -> str | None:
        return self._meta.get(name)

    async def swap_meta(self, name: str, expected: str | None, value: str) -> bool:
        if self._meta.get(name) != expected:
            return False
        self._meta[name] = value
        return True

    async def keep_key_check(self, check: str) -> str:
        if self._key_check is None:
            self._key_check = check
        return self._key_check

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
