"""``Flow``: one recipient's state moved only by the lifecycle's pure decisions, applied the
way a store applies them (the state handed over is a copy, written back only when it
changed)."""

from __future__ import annotations

import msgspec

from otpgate.core import codes, ids, lifecycle, recipients
from otpgate.core.lifecycle import Change, Minted, NewCode, Requested, Verdict
from otpgate.core.otp import Otp, RecipientState
from otpgate.core.policy import Policy
from otpgate.crypto import Keyring, Sealed, seal_aad
from otpgate.events import CloudEvent

KEYRING = Keyring.from_secret(b"lifecycle-test-master-secret-32b")
T0 = 1_800_000_000.0
TO = "+14155550123"
RCPT = recipients.parse(TO)
KEY = RCPT.key(KEYRING.digest_key)


class Flow:
    """One recipient's state, moved only by the lifecycle's decisions."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self.state: RecipientState | None = None
        self.events: list[CloudEvent] = []
        self.otps: dict[str, Otp] = {}
        self.last: Change[object] | None = None

    def _apply(self, change: Change[object]) -> None:
        self.last = change
        if change.state is not None:
            self.state = change.state
        for otp in change.otps:
            self.otps[otp.id] = otp
        self.events.extend(change.events)

    def _copy(self) -> RecipientState | None:
        if self.state is None:
            return None
        return msgspec.msgpack.decode(msgspec.msgpack.encode(self.state), type=RecipientState)

    def request(self, now: float, code: str = "123456", purpose: str = "login",
                ttl: int = 300, channels: tuple[str, ...] = ("sms",)) -> Requested:
        def mint(otp_id: str, send_no: int) -> Minted:
            sealed = KEYRING.seal(Sealed(to=TO, code=code), seal_aad(otp_id, send_no))
            return Minted(codes.digest(KEYRING.digest_key, otp_id, code), sealed)

        new = NewCode(
            recipient_key=KEY, to_masked=RCPT.masked, purpose=purpose, channels=channels,
            drivers=dict.fromkeys(channels, ("capture://", "console://")), code_length=len(code),
            locale="en", ttl=ttl, reference="order-42", fresh_id=ids.new_otp_id(), mint=mint,
        )
        change = lifecycle.decide_request(self._copy(), new, self.policy, now)
        self._apply(change)  # type: ignore[arg-type]
        return change.result

    def verify(self, now: float, code: str, purpose: str = "login",
               otp_id: str | None = None) -> Verdict:
        """By recipient (counting missing codes), or by id when ``otp_id`` is given."""
        def check(otp_id: str, digest: bytes) -> bool:
            return codes.matches(KEYRING.digest_key, otp_id, code, digest)

        def find(state: RecipientState) -> Otp | None:
            return state.find(otp_id) if otp_id else state.pending.get(purpose)

        change = lifecycle.decide_verify(self._copy(), KEY, find, check, self.policy, now,
                                         missing=None if otp_id else purpose)
        self._apply(change)  # type: ignore[arg-type]
        return change.result

    def types(self) -> list[str]:
        return [e.type for e in self.events]
