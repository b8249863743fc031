"""The OTP record, its recipient aggregate, and the state machine's states.

```
pending ──right code──────────────▶ approved
   │ ────now >= expires_at─────────▶ expired
   │ ────DELETE────────────────────▶ canceled
   │ ────max_attempts wrong codes──▶ max_attempts_reached
   └ ────every channel failed──────▶ failed
```
Only ``pending`` moves; every other state is final.
"""

from __future__ import annotations

import enum

import msgspec


class Status(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    EXPIRED = "expired"
    CANCELED = "canceled"
    MAX_ATTEMPTS_REACHED = "max_attempts_reached"
    FAILED = "failed"


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"


class Step(msgspec.Struct, kw_only=True):
    """A fallback step of the latest send: on ``channel``, to ``to`` (masked), at
    ``due_at`` if the code is still pending then. Its dispatch event waits in the bus."""

    channel: str
    after: int
    to: str
    due_at: float
    driver: str
    drivers: list[str] = []
    """The step's chain (``driver`` first), for a failover after a delivery receipt."""
    sealed: str = ""
    """While pending: the step's code and address, sealed for dispatchers alone."""


class Otp(msgspec.Struct, kw_only=True):
    """One OTP. ``digest`` is the HMAC of its current code; the code itself is never kept."""

    id: str
    recipient: str
    """Keyed digest of the recipient; the address itself is not stored."""
    to_masked: str
    purpose: str
    channels: list[str]
    status: Status
    digest: bytes
    code_length: int
    locale: str
    send_count: int
    failed_attempts: int
    max_attempts: int
    created_at: float
    expires_at: float
    resend_after: float
    updated_at: float
    reference: str | None = None
    routes: dict[str, list[str]] = {}
    """The driver chain chosen per channel for the latest send."""
    sealed: str = ""
    """While pending: the latest send's code and address, sealed for dispatchers alone
    (``crypto.Keyring.seal``), so that a send can fail over after a delivery receipt."""
    tenant: str = "default"
    """The tenant whose key asked for it; other tenants see no such OTP."""
    app_hash: str | None = None
    """The Android SMS Retriever hash the latest send's SMS ends with, if asked for."""
    webotp_domain: str | None = None
    """The domain of the latest send's WebOTP line (``@domain #code``), if asked for."""
    external: bool = False
    """The latest send's code was made by another service (a Supabase Auth or Ory Kratos
    hook), which verifies it: otpgate only delivers it and never checks an answer against
    it. ``digest`` is then a digest of the message handed over (``codes.delivery_digest``),
    which tells a repeated hand-over from a new one."""
    brand: str | None = None
    """The name the latest send's message gives, where the request named one (otherwise
    the configured brand)."""
    address: str = ""
    """The recipient's address sealed for this OTP alone (``Keyring.seal``), kept for the
    surfaces that must show it whole (Twilio Verify's ``to``); empty for every other OTP."""
    sent_at: list[float] = []
    """When each of its sends was made."""
    test: bool = False
    """Made for a test number: never sent, marked ``test`` in its events."""
    prefix_key: str = ""
    """The keyed name of the number's prefix (``otpgate.abuse.guard``): the pumping guard
    counts the OTP's approval under it."""
    steps: list[Step] = []
    """The latest send's fallback steps, in order."""

    @property
    def attempts_left(self) -> int:
        return max(0, self.max_attempts - self.failed_attempts)

    def is_live(self, now: float) -> bool:
        """Pending and not yet expired: a code is valid while ``now < expires_at``."""
        return self.status is Status.PENDING and now < self.expires_at


class Approved(msgspec.Struct, kw_only=True):
    """A code approved a moment ago, kept so that a repeated right answer (a double submit,
    a client's retry) is told ``approved`` instead of being counted as a wrong one."""

    id: str
    digest: bytes
    until: float


class RecipientState(msgspec.Struct, kw_only=True):
    """Everything about one recipient (of one tenant) that must change atomically: its live
    OTPs (one per purpose), its sends, and its consecutive failures across codes."""

    key: str
    pending: dict[str, Otp] = {}
    sends: dict[str, list[float]] = {}
    """Per purpose: when codes were sent, within the policy's ``send_window``."""
    sent: list[float] = []
    """When codes were sent, whatever the purpose, within ``recipient_send_window``."""
    streak: int = 0
    """Consecutive wrong answers to live codes, across codes and purposes; a right answer,
    an unlock or the end of a lock resets it."""
    last_failure_at: float = 0.0
    phantoms: dict[str, list[float]] = {}
    """Per purpose: answers given while no code was pending. They count against nothing;
    they only make the answer run down as a real code's would (see ``decide_verify``)."""
    approved: dict[str, Approved] = {}
    """Per purpose: the code approved last, for a little while."""
    locked_until: float = 0.0
    """While ``now < locked_until`` no code is sent and no answer is counted."""

    @classmethod
    def empty(cls, key: str) -> RecipientState:
        return cls(key=key, pending={}, sends={}, sent=[], phantoms={}, approved={})

    def locked(self, now: float) -> bool:
        return now < self.locked_until

    def find(self, otp_id: str) -> Otp | None:
        for otp in self.pending.values():
            if otp.id == otp_id:
                return otp
        return None


class SendKey(msgspec.Struct, frozen=True):
    """Identifies one send of one OTP on one channel: the send ledger's key."""

    otp_id: str
    send_no: int
    channel: str

    def __str__(self) -> str:
        return f"{self.otp_id}:{self.send_no}:{self.channel}"


class Delivery(msgspec.Struct, kw_only=True):
    """The state of one channel of one OTP, as reported by ``GET /v1/otp/{id}``."""

    otp_id: str
    send_no: int
    channel: str
    driver: str
    status: DeliveryStatus
    attempts: int
    updated_at: float
    provider_id: str | None = None
    error: str | None = None
    lease_until: float = 0.0
    """While ``SENDING``: until when the claiming dispatcher owns this send."""
