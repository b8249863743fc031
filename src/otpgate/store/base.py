"""The ``Store`` port.

Every state change goes through ``transact``: a pure decision (``otpgate.core.lifecycle``)
run atomically over one recipient's state. A backend writes the new state, the OTP records
and the decision's events *together* — for SQLite in one transaction with the outbox — so
an accepted request can never lose its dispatch event.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import msgspec

from otpgate.core.lifecycle import Change
from otpgate.core.otp import Delivery, Otp, RecipientState, SendKey
from otpgate.events import CloudEvent

T = TypeVar("T")

Decide = Callable[[RecipientState | None], Change[T]]
Keep = Callable[[T], "tuple[str, Remembered, float]"]
"""From a decision's result: an answer to keep under an idempotency key, and for how long."""


class ClaimState(enum.StrEnum):
    CLAIMED = "claimed"
    """Go ahead and send; the lease is yours."""
    DONE = "done"
    """Already sent, or failed for good, or handed to another driver: do not send."""
    BUSY = "busy"
    """Another dispatcher holds a live lease on this send: try later."""


class Claim(msgspec.Struct, frozen=True):
    state: ClaimState
    attempts: int = 0
    """Including this one."""
    unknown_before: bool = False
    """A previous attempt's outcome is unknown (its dispatcher died mid-send)."""


class Remembered(msgspec.Struct, frozen=True):
    """An answer kept for an ``Idempotency-Key``."""

    fingerprint: str
    status: int
    body: bytes
    created_at: float


class ApiKey(msgspec.Struct, kw_only=True):
    """An API key as stored: only a SHA-256 of its secret part."""

    id: str
    name: str
    secret_hash: bytes
    created_at: float
    revoked_at: float | None = None


class Store(Protocol):
    async def transact(self, key: str, decide: Decide[T], keep: Keep[T] | None = None) -> T:
        """Apply ``decide`` to recipient ``key`` atomically and return its result.

        Exceptions raised by ``decide`` abort the change: nothing is written. With ``keep``,
        the answer it makes of the result is remembered (unless one is already) in the
        same transaction, so that an accepted request and its idempotent answer are kept
        together or not at all.
        """
        ...

    async def get(self, otp_id: str) -> Otp | None: ...

    async def due(self, now: float, limit: int) -> list[str]:
        """Recipient keys holding a pending code that expired at or before ``now``."""
        ...

    async def claim_send(self, key: SendKey, driver: str, now: float, lease: float) -> Claim:
        """Claim one send in the ledger before calling a driver (see ``ClaimState``)."""
        ...

    async def settle_send(self, delivery: Delivery, events: Sequence[CloudEvent], *,
                          claimed: int) -> bool:
        """Record a send's outcome and publish ``events`` with it, atomically — but only
        while the send is still held by the claim numbered ``claimed`` (a dispatcher whose
        lease ran out and was taken over must not overwrite its successor). True if it
        was recorded."""
        ...

    async def purge(self, otps_before: float, recipients_before: float) -> int:
        """Forget finished OTPs that expired before ``otps_before`` (with their ledger),
        and recipients whose state last changed before ``recipients_before`` (callers pick
        a time after which such a state holds nothing live; a backend may keep one up to an
        hour longer, and keeps every recipient with a pending code), and idempotent answers
        past their time. Returns how many went; at most a bounded number per call."""
        ...

    async def deliveries(self, otp_id: str) -> list[Delivery]:
        """Ledger entries of the OTP's latest send, one per channel."""
        ...

    async def recall(self, key: str, now: float) -> Remembered | None: ...

    async def put_api_key(self, key: ApiKey) -> None: ...

    async def get_api_key(self, key_id: str) -> ApiKey | None: ...

    async def list_api_keys(self) -> list[ApiKey]: ...

    async def revoke_api_key(self, key_id: str, now: float) -> bool: ...

    async def ping(self) -> None:
        """Raise ``StoreError`` when the store cannot be used."""
        ...

    async def close(self) -> None: ...
