"""Decisions over a recipient's state: request, verify, cancel, expire.

Each ``decide_*`` function is pure: it takes the current ``RecipientState`` (or ``None``),
the clock's reading and the policy, and returns a ``Change`` — the new state, the OTP
records to keep, the events to publish and the answer. Stores apply a ``Change`` atomically,
so every backend shares these rules.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from otpgate import events
from otpgate.core.otp import Otp, RecipientState, Status
from otpgate.core.policy import Policy
from otpgate.errors import RateLimited
from otpgate.events import CloudEvent, EventType
from otpgate.ratelimit.algorithms import SlidingLog

T = TypeVar("T")


@dataclass(slots=True)
class Change(Generic[T]):
    """What a decision wants written. ``state`` is ``None`` when nothing changes."""

    result: T
    state: RecipientState | None = None
    otps: list[Otp] = field(default_factory=list)
    events: list[CloudEvent] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Minted:
    """A fresh code, as the store may see it: its digest, and its seal for dispatchers."""

    digest: bytes
    sealed: str


@dataclass(frozen=True, slots=True)
class NewCode:
    """A request for a code, validated; ``mint`` binds the code to an OTP id and send."""

    recipient_key: str
    to_masked: str
    purpose: str
    channels: tuple[str, ...]
    drivers: dict[str, tuple[str, ...]]
    """Driver chain per channel: the first is tried, the rest are failovers."""
    code_length: int
    locale: str
    ttl: int
    reference: str | None
    fresh_id: str
    mint: Callable[[str, int], Minted]
    app_hash: str | None = None
    webotp_domain: str | None = None


Finder = Callable[[RecipientState], Otp | None]
"""Picks the pending code an answer is meant for."""


class Outcome(enum.StrEnum):
    CREATED = "created"
    RESENT = "resent"
    COALESCED = "coalesced"


@dataclass(frozen=True, slots=True)
class Requested:
    otp: Otp
    outcome: Outcome
    attempts_left: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to a verification; ``otp`` is ``None`` when no code was pending."""

    otp: Otp | None
    valid: bool
    status: Status
    attempts_left: int | None


def _failures(policy: Policy) -> SlidingLog:
    return SlidingLog(limit=policy.max_failures, window=policy.failure_window)


def _phantoms(policy: Policy) -> SlidingLog:
    return SlidingLog(limit=policy.max_attempts, window=policy.failure_window)


def _sends(policy: Policy) -> SlidingLog:
    return SlidingLog(limit=policy.max_sends, window=policy.send_window)


def finish(otp: Otp, status: Status, now: float) -> Otp:
    otp.status = status
    otp.updated_at = now
    otp.sealed = ""
    return otp


def sweep(state: RecipientState, policy: Policy, now: float, change: Change[T]) -> None:
    """Expire due codes and forget history that has left its window."""
    for purpose, otp in list(state.pending.items()):
        if not otp.is_live(now):
            del state.pending[purpose]
            change.otps.append(finish(otp, Status.EXPIRED, now))
            change.events.append(otp_event(EventType.EXPIRED, otp, now))
    state.failures = _failures(policy).prune(state.failures, now)
    for history, log in ((state.sends, _sends(policy)), (state.phantoms, _phantoms(policy))):
        for purpose in list(history):
            kept = log.prune(history[purpose], now)
            if kept:
                history[purpose] = kept
            else:
                del history[purpose]


def attempts_left(otp: Otp, state: RecipientState, policy: Policy) -> int:
    """Wrong answers still allowed: the smaller of the code's and the recipient's budget."""
    return min(otp.attempts_left, _failures(policy).remaining(state.failures))


def otp_event(type_: EventType, otp: Otp, now: float, **extra: object) -> CloudEvent:
    data: dict[str, object] = {
        "id": otp.id,
        "to": otp.to_masked,
        "purpose": otp.purpose,
        "status": otp.status.value,
        "send_count": otp.send_count,
    }
    if otp.reference is not None:
        data["reference"] = otp.reference
    data.update(extra)
    return events.new(type_, otp.id, data, now)


def dispatch_event(otp: Otp, channel: str, driver: str, fallbacks: list[str],
                   now: float) -> CloudEvent:
    """The ``dispatch.v1`` event handing the OTP's latest send on ``channel`` to
    ``driver``, with the drivers to fail over to after it."""
    data = {
        "otp_id": otp.id,
        "send_no": otp.send_count,
        "channel": channel,
        "to": otp.to_masked,
        "purpose": otp.purpose,
        "locale": otp.locale,
        "expires_at": otp.expires_at,
        "sealed": otp.sealed,
        "fallbacks": fallbacks,
    }
    if otp.app_hash is not None:
        data["app_hash"] = otp.app_hash
    if otp.webotp_domain is not None:
        data["webotp_domain"] = otp.webotp_domain
    return events.new(EventType.DISPATCH, otp.id, data, now, channel=channel, driver=driver)


def _dispatches(otp: Otp, req: NewCode, now: float) -> list[CloudEvent]:
    return [dispatch_event(otp, channel, req.drivers[channel][0],
                           list(req.drivers[channel][1:]), now)
            for channel in otp.channels]


def _check_lock(state: RecipientState, policy: Policy, now: float) -> None:
    log = _failures(policy)
    if log.remaining(state.failures) == 0:
        raise RateLimited("too many wrong codes for this recipient",
                          retry_after=log.retry_after(state.failures, now))


def decide_request(
    state: RecipientState | None, req: NewCode, policy: Policy, now: float
) -> Change[Requested]:
    """Create, coalesce or resend the code for (recipient, purpose)."""
    state = state or RecipientState.empty(req.recipient_key)
    change: Change[Requested] = Change(result=None, state=state)  # type: ignore[arg-type]
    sweep(state, policy, now, change)
    _check_lock(state, policy, now)
    current = state.pending.get(req.purpose)
    if current is not None and now < current.resend_after:
        change.result = Requested(current, Outcome.COALESCED,
                                  attempts_left(current, state, policy))
        if not change.otps:
            change.state = None
        return change
    sends = state.sends.get(req.purpose, [])
    log = _sends(policy)
    if log.remaining(sends) == 0:
        raise RateLimited("too many codes sent to this recipient for this purpose",
                          retry_after=log.retry_after(sends, now))
    if current is None:
        otp = _new_otp(req, policy, now)
        outcome = Outcome.CREATED
        state.phantoms.pop(req.purpose, None)
    else:
        otp = current
        otp.send_count += 1
        otp.channels = list(req.channels)
        otp.code_length, otp.locale, otp.reference = req.code_length, req.locale, req.reference
        otp.app_hash, otp.webotp_domain = req.app_hash, req.webotp_domain
        otp.routes = {c: list(req.drivers[c]) for c in req.channels}
        otp.expires_at = now + req.ttl
        outcome = Outcome.RESENT
    minted = req.mint(otp.id, otp.send_count)
    otp.digest = minted.digest
    otp.sealed = minted.sealed
    otp.resend_after = now + policy.resend_cooldown
    otp.updated_at = now
    state.pending[req.purpose] = otp
    state.sends[req.purpose] = [*sends, now]
    change.otps.append(otp)
    change.events.append(otp_event(EventType.REQUESTED, otp, now, channels=otp.channels,
                                expires_at=otp.expires_at))
    change.events.extend(_dispatches(otp, req, now))
    change.result = Requested(otp, outcome, attempts_left(otp, state, policy))
    return change


def _new_otp(req: NewCode, policy: Policy, now: float) -> Otp:
    return Otp(
        id=req.fresh_id, recipient=req.recipient_key, to_masked=req.to_masked,
        purpose=req.purpose, channels=list(req.channels), status=Status.PENDING,
        digest=b"", code_length=req.code_length, locale=req.locale, send_count=1,
        failed_attempts=0, max_attempts=policy.max_attempts, created_at=now,
        expires_at=now + req.ttl, resend_after=now, updated_at=now, reference=req.reference,
        routes={c: list(req.drivers[c]) for c in req.channels},
        app_hash=req.app_hash, webotp_domain=req.webotp_domain,
    )


def decide_verify(
    state: RecipientState | None,
    key: str,
    find: Finder,
    check: Callable[[Otp], bool],
    policy: Policy,
    now: float,
    *,
    missing: str | None = None,
) -> Change[Verdict]:
    """Count one answer against the pending code ``find`` picks; approve at most once.

    With no pending code and ``missing`` naming the purpose asked for (verification by
    recipient), the answer is counted as a wrong one — against the recipient, and against a
    stand-in code for that purpose — and answered exactly as a wrong answer to a fresh code
    would be, so that probing recipients costs the same as guessing codes and tells
    nothing. Without ``missing`` (verification by id) nothing is counted; the caller
    reports the dead code's status instead.
    """
    state = state or RecipientState.empty(key)
    change: Change[Verdict] = Change(result=None, state=state)  # type: ignore[arg-type]
    sweep(state, policy, now, change)
    otp = find(state)
    log = _failures(policy)
    if otp is None and missing is None:
        change.result = Verdict(None, False, Status.PENDING, None)
        if not change.otps:
            change.state = None
        return change
    if otp is None:
        assert missing is not None
        if log.remaining(state.failures):
            state.failures = [*state.failures, now]
        stand_in = _phantoms(policy).prune(state.phantoms.get(missing, []), now)
        if len(stand_in) < policy.max_attempts:
            stand_in.append(now)
        state.phantoms[missing] = stand_in
        left = min(policy.max_attempts - len(stand_in), log.remaining(state.failures))
        if log.remaining(state.failures) == 0:
            _lock(state, log.retry_after(state.failures, now), now, change)
        status = Status.PENDING if left else Status.MAX_ATTEMPTS_REACHED
        change.result = Verdict(None, False, status, left)
        return change
    if check(otp):
        del state.pending[otp.purpose]
        change.otps.append(finish(otp, Status.APPROVED, now))
        change.events.append(otp_event(EventType.APPROVED, otp, now))
        change.result = Verdict(otp, True, Status.APPROVED, None)
        return change
    otp.failed_attempts += 1
    otp.updated_at = now
    state.failures = [*state.failures, now]
    left = attempts_left(otp, state, policy)
    change.otps.append(otp)
    change.events.append(otp_event(EventType.VERIFICATION_FAILED, otp, now, attempts_left=left))
    if otp.attempts_left == 0:
        del state.pending[otp.purpose]
        # Later answers for this purpose meet a spent stand-in, as they would a dead code.
        state.phantoms[otp.purpose] = [now] * policy.max_attempts
        finish(otp, Status.MAX_ATTEMPTS_REACHED, now)
    if log.remaining(state.failures) == 0:
        _lock(state, log.retry_after(state.failures, now), now, change)
    change.result = Verdict(otp, False, otp.status, left if otp.status is Status.PENDING
                            else 0)
    return change


def _lock(state: RecipientState, retry_after: int, now: float, change: Change[T]) -> None:
    """The recipient's failure budget is spent: every live code dies until it refills."""
    state.locked_until = now + retry_after
    for purpose, live in list(state.pending.items()):
        del state.pending[purpose]
        if live not in change.otps:
            change.otps.append(live)
        finish(live, Status.MAX_ATTEMPTS_REACHED, now)
        change.events.append(otp_event(EventType.LOCKED, live, now,
                                    locked_until=state.locked_until))
