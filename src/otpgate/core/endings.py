"""How a pending OTP ends without a right answer — canceled, expired, or failed because no
channel could deliver it — and how an operator ends a recipient's lock. Pure decisions,
like those of ``lifecycle``."""

from __future__ import annotations

from dataclasses import dataclass

from otpgate.core.lifecycle import Change, finish, otp_event, reset_failures, sweep
from otpgate.core.otp import Otp, RecipientState, Status
from otpgate.core.policy import Policy
from otpgate.events import EventType


def decide_cancel(
    state: RecipientState | None, otp_id: str, now: float, policy: Policy
) -> Change[Otp | None]:
    """Cancel the pending code ``otp_id``; ``None`` when it is no longer pending."""
    if state is None:
        return Change(result=None)
    change: Change[Otp | None] = Change(result=None, state=state)
    sweep(state, policy, now, change)
    otp = state.find(otp_id)
    if otp is not None:
        del state.pending[otp.purpose]
        change.otps.append(finish(otp, Status.CANCELED, now))
        change.events.append(otp_event(EventType.CANCELED, otp, now))
        change.result = otp
    return change


def decide_expire(
    state: RecipientState | None, now: float, policy: Policy
) -> Change[int]:
    """Expire every due code of the recipient; the result is how many died."""
    if state is None:
        return Change(result=0)
    change: Change[int] = Change(result=0, state=state)
    sweep(state, policy, now, change)
    change.result = len(change.otps)
    if not change.otps:
        change.state = None
    return change


def decide_fail(
    state: RecipientState | None, otp_id: str, send_no: int, now: float, policy: Policy
) -> Change[Otp | None]:
    """Every channel of send ``send_no`` failed for good: the code can never arrive, so the
    OTP is ``failed`` (unless a resend or an answer has moved it on already)."""
    if state is None:
        return Change(result=None)
    change: Change[Otp | None] = Change(result=None, state=state)
    sweep(state, policy, now, change)
    otp = state.find(otp_id)
    if otp is not None and otp.send_count == send_no:
        del state.pending[otp.purpose]
        change.otps.append(finish(otp, Status.FAILED, now))
        change.result = otp
    if not change.otps:
        change.state = None
    return change


@dataclass(frozen=True, slots=True)
class Unlocked:
    was_locked: bool
    failures: int
    """The consecutive failures the unlock forgot."""


def decide_unlock(state: RecipientState | None, now: float,
                  policy: Policy) -> Change[Unlocked]:
    """An operator's unlock: the lock ends and the consecutive failures are forgotten."""
    if state is None:
        return Change(result=Unlocked(False, 0))
    change: Change[Unlocked] = Change(result=Unlocked(False, 0), state=state)
    sweep(state, policy, now, change)
    change.result = Unlocked(state.locked(now), state.streak)
    reset_failures(state)
    return change
