"""The store ports: four small concerns that one backend implements together.

- ``Recipients``: every change of OTP state goes through ``transact`` — a pure decision
  (``otpgate.core.lifecycle``) run atomically over one recipient's state. A backend writes
  the new state, the OTP records and the decision's events *together* (for SQLite in one
  transaction with the outbox), so an accepted request can never lose its dispatch event.
- ``SendLedger``: one row per (OTP, send, channel), claimed before a driver is called and
  settled with the outcome's events, so that a redelivered event never sends twice.
- ``ApiKeys`` and ``Answers`` (idempotent answers).

``Store`` is all four, plus ``ping`` and ``close``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import msgspec

from otpgate.core.lifecycle import Change
from otpgate.core.otp import Delivery, DeliveryStatus, Otp, RecipientState, SendKey, Status
from otpgate.events import CloudEvent

T = TypeVar("T")

Decide = Callable[[RecipientState | None], Change[T]]


class Remembered(msgspec.Struct, frozen=True):
    """An answer kept for an ``Idempotency-Key``."""

    fingerprint: str
    status: int
    body: bytes
    created_at: float


@dataclass(frozen=True, slots=True)
class Keep(Generic[T]):
    """Keep an answer under ``slot`` for ``ttl`` seconds, made by ``answer`` from the
    decision's result, in the decision's own transaction."""

    slot: str
    ttl: float
    answer: Callable[[T], Remembered]


@dataclass(frozen=True, slots=True)
class Kept(Generic[T]):
    """What ``transact_kept`` did: either it decided (``result``, and ``answer`` is the
    one it kept) or an answer was already kept under the slot (``replayed``: nothing was
    decided, ``result`` is ``None``)."""

    answer: Remembered
    result: T | None = None
    replayed: bool = False


class ClaimState(enum.StrEnum):
    CLAIMED = "claimed"
    """Go ahead and send; the lease is yours."""
    DONE = "done"
    """Already sent, or failed for good, or handed to another driver: do not send."""
    BUSY = "busy"
    """Another dispatcher holds a live lease on this send: try later."""


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """The ledger's answer to a claim, with what the dispatcher needs to decide whether
    the send should still go out — so that a send costs the store two calls (claim,
    settle), not four."""

    state: ClaimState
    attempts: int = 0
    """Including this one."""
    unknown_before: bool = False
    """A previous attempt's outcome is unknown (its dispatcher died mid-send)."""
    retry_in: float = 0.0
    """``BUSY``: seconds until the holder's lease runs out."""
    otp_status: Status | None = None
    """The OTP's status when claimed; ``None`` when the OTP no longer exists."""
    send_count: int = 0
    """The OTP's latest send number when claimed (a higher one supersedes this send)."""


ReceiptDecision = Callable[[Delivery, Otp | None],
                           "tuple[Delivery, Sequence[CloudEvent]] | None"]
"""A receipt's effect (``otpgate.core.receipts.decide_receipt``): from the ledger entry
and its OTP, the entry to write and the events to publish, or ``None`` for no change."""


class Recipients(Protocol):
    async def transact(self, key: str, decide: Decide[T]) -> T:
        """Apply ``decide`` to recipient ``key`` atomically and return its result.

        ``decide`` may run more than once (a backend may retry it after a conflicting
        write: Redis ``WATCH``/``MULTI``, a DynamoDB conditional write), so it must have
        no effect outside the ``Change`` it returns. Exceptions it raises abort the change:
        nothing is written.
        """
        ...

    async def transact_kept(self, key: str, decide: Decide[T], keep: Keep[T]) -> Kept[T]:
        """``transact``, claiming ``keep.slot`` in the same atomic step: if a live answer
        is kept there, ``decide`` does not run and that answer comes back (``replayed``);
        otherwise the decision and its answer are written together or not at all."""
        ...

    async def get(self, otp_id: str) -> Otp | None: ...

    async def due(self, now: float, limit: int) -> list[str]:
        """Recipient keys holding a pending code that expired at or before ``now``."""
        ...

    async def purge(self, otps_before: float, recipients_before: float) -> int:
        """Forget finished OTPs that expired before ``otps_before`` (with their ledger),
        and recipients whose state last changed before ``recipients_before`` (callers pick
        a time after which such a state holds nothing live; a backend may keep one up to an
        hour longer, and keeps every recipient with a pending code), and idempotent answers
        past their time. Returns how many went; at most a bounded number per call."""
        ...


class SendLedger(Protocol):
    async def claim(self, key: SendKey, driver: str, now: float, lease: float) -> Claim:
        """Claim one send before calling a driver (see ``ClaimState``), reading the OTP's
        status and latest send number in the same step."""
        ...

    async def settle(self, delivery: Delivery, events: Sequence[CloudEvent], *,
                     claimed: int) -> bool:
        """Record a send's outcome and publish ``events`` with it, atomically — but only
        while the send is still held by the claim numbered ``claimed`` (a dispatcher whose
        lease ran out and was taken over must not overwrite its successor). True if it
        was recorded."""
        ...

    async def deliveries(self, otp_id: str) -> list[Delivery]:
        """Ledger entries of the OTP's latest send, one per channel."""
        ...

    async def record_receipt(self, driver: str, provider_id: str,
                             decide: ReceiptDecision) -> Delivery | None:
        """Run ``decide`` over the entry ``driver`` sent as ``provider_id`` and that
        entry's OTP, atomically: write the entry it returns (which may move the send to
        another driver, dropping ``provider_id``) and publish its events in the same
        step. ``None`` — and nothing written — for an unknown id or when ``decide`` changes
        nothing; ``decide`` may run more than once, like ``transact``'s."""
        ...


class ApiKey(msgspec.Struct, kw_only=True):
    """An API key as stored: only a SHA-256 of its secret part. It acts for its ``tenant``
    alone; an ``admin`` key may also use the admin routes (unlock) of its tenant.

    ``kind`` is ``server`` (kept on a server) or ``client`` (shipped in an app: request and
    verify only, see ``otpgate.apikeys``); ``scopes`` narrows what it may do (``None``: the
    defaults of its kind); ``origins`` are the browser origins a client key is bound to.
    While its secret is rotated, ``old_secret_hash`` (the previous secret) keeps working
    until ``old_until``."""

    id: str
    name: str
    secret_hash: bytes
    created_at: float
    revoked_at: float | None = None
    tenant: str = "default"
    admin: bool = False
    kind: str = "server"
    scopes: list[str] | None = None
    origins: list[str] = msgspec.field(default_factory=list)
    old_secret_hash: bytes | None = None
    old_until: float | None = None


class ApiKeys(Protocol):
    async def put_api_key(self, key: ApiKey) -> None: ...

    async def get_api_key(self, key_id: str) -> ApiKey | None: ...

    async def list_api_keys(self) -> list[ApiKey]: ...

    async def revoke_api_key(self, key_id: str, now: float) -> bool: ...

    async def change_api_key(self, key_id: str,
                             change: Callable[[ApiKey], ApiKey | None]) -> ApiKey | None:
        """Replace the key ``key_id`` with what ``change`` makes of it, atomically (a
        revocation in between is never undone: ``change`` then runs again, over the
        revoked key). ``None`` — and nothing written — for no such key, or when ``change``
        returns ``None``; ``change`` may run more than once."""
        ...


class KeyCheck(Protocol):
    async def keep_key_check(self, check: str) -> str:
        """Keep ``check`` (a value derived from the master secret that reveals nothing of
        it) unless one is kept already; return the one kept, so that a process started with
        another secret can tell before it writes anything."""
        ...

    async def read_meta(self, name: str) -> str | None:
        """A fact about the store itself kept under ``name`` (the wrapped code keys)."""
        ...

    async def swap_meta(self, name: str, expected: str | None, value: str) -> bool:
        """Keep ``value`` under ``name`` if what is kept there is ``expected`` (``None``:
        nothing yet); False, and nothing changed, otherwise."""
        ...


class Answers(Protocol):
    async def recall(self, slot: str, now: float) -> Remembered | None:
        """The live answer kept under ``slot``, if any."""
        ...


class Store(Recipients, SendLedger, ApiKeys, Answers, KeyCheck, Protocol):
    async def ping(self) -> None:
        """Raise ``StoreError`` when the store cannot be used."""
        ...

    async def close(self) -> None: ...


FINAL_DELIVERY = frozenset({DeliveryStatus.SENT, DeliveryStatus.DELIVERED,
                            DeliveryStatus.FAILED, DeliveryStatus.EXPIRED})
"""Ledger states a claim never reopens."""
def claim_of(key: SendKey, row: Delivery | None, driver: str, now: float, lease: float,
             otp: Otp | None) -> tuple[Claim, Delivery | None]:
    """The claim rules every backend shares, over the current ledger row: the claim, and
    the row to write (``None``: write nothing)."""
    status, count = (otp.status, otp.send_count) if otp is not None else (None, 0)
    if row is None:
        fresh = Delivery(otp_id=key.otp_id, send_no=key.send_no, channel=key.channel,
                         driver=driver, status=DeliveryStatus.SENDING, attempts=1,
                         updated_at=now, lease_until=now + lease)
        return (Claim(state=ClaimState.CLAIMED, attempts=1, otp_status=status,
                      send_count=count), fresh)
    if row.status in FINAL_DELIVERY or row.driver != driver:
        return Claim(state=ClaimState.DONE, attempts=row.attempts), None
    if row.status is DeliveryStatus.SENDING and row.lease_until > now:
        return (Claim(state=ClaimState.BUSY, attempts=row.attempts,
                      retry_in=row.lease_until - now), None)
    unknown = row.status is DeliveryStatus.SENDING
    moved = msgspec.structs.replace(row, status=DeliveryStatus.SENDING,
                                    attempts=row.attempts + 1, updated_at=now,
                                    lease_until=now + lease)
    return (Claim(state=ClaimState.CLAIMED, attempts=moved.attempts, unknown_before=unknown,
                  otp_status=status, send_count=count), moved)
