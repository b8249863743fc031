"""Decisions over a recipient's state: request, verify, cancel, expire.

Each ``decide_*`` function is pure: it takes the current ``RecipientState`` (or ``None``),
the clock's reading and the policy, and returns a ``Change`` — the new state, the OTP
records to keep, the events to publish and the answer. Stores apply a ``Change`` atomically,
so every backend shares these rules.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from otpgate import events
from otpgate.core import limits, tenants
from otpgate.core.otp import Approved, Otp, RecipientState, Status, Step
from otpgate.core.policy import Policy
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
    """A fresh code, as the store may see it: its digest, and its seal for dispatchers
    (and one per fallback step, each with the step's address)."""

    digest: bytes
    sealed: str
    steps: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """A fallback step of a request: its channel, when, its masked address, its chain."""

    channel: str
    after: int
    to_masked: str
    drivers: tuple[str, ...]


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
    tenant: str = tenants.DEFAULT
    app_hash: str | None = None
    webotp_domain: str | None = None
    external: bool = False
    """The code was made by another service: otpgate delivers it and never verifies it
    (``mint`` then digests the message with ``codes.delivery_digest``)."""
    brand: str | None = None
    seal_address: Callable[[str], str] | None = None
    """Seals the recipient's address for an OTP id, where the OTP must keep it (see
    ``Otp.address``)."""
    test: bool = False
    """A test number's: its fixed code is never sent, and no send limit applies."""
    prefix_key: str = ""
    """The keyed name of the number's prefix, which approvals are counted under."""
    steps: tuple[PlannedStep, ...] = ()
    """Fallback steps (``mint`` seals one payload for each)."""


Finder = Callable[[RecipientState], Otp | None]
"""Picks the pending code an answer is meant for."""
Checker = Callable[[str, bytes], bool]
"""Whether the answer is the code whose (OTP id, digest) it is given."""


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
    otp_id: str | None = None
    """The OTP the answer was checked against, where the answer may name it."""
    counted: bool = False
    """A wrong answer to a live code: it counted."""
    locked_until: float | None = None
    """This answer locked the recipient, until then."""


def _phantoms(policy: Policy) -> SlidingLog:
    return SlidingLog(limit=policy.max_attempts, window=policy.max_ttl)


def finish(otp: Otp, status: Status, now: float) -> Otp:
    otp.status = status
    otp.updated_at = now
    otp.sealed = ""
    for step in otp.steps:
        step.sealed = ""
    return otp


def sweep(state: RecipientState, policy: Policy, now: float, change: Change[T]) -> None:
    """Expire due codes, end a lock whose time is up, and forget what has left its window.

    Consecutive failures end with a lock; a streak without a failure for as long as a lock
    lasts is forgotten as the lock would have been."""
    for purpose, otp in list(state.pending.items()):
        if not otp.is_live(now):
            del state.pending[purpose]
            change.otps.append(finish(otp, Status.EXPIRED, now))
            change.events.append(otp_event(EventType.EXPIRED, otp, now))
    if not state.locked(now) and (state.locked_until or (
            state.streak and now - state.last_failure_at >= policy.lock_time)):
        reset_failures(state)
    state.sent = limits.recipient_sends(policy).prune(state.sent, now)
    for history, log in ((state.sends, limits.sends(policy)), (state.phantoms, _phantoms(policy))):
        for purpose in list(history):
            kept = log.prune(history[purpose], now)
            if kept:
                history[purpose] = kept
            else:
                del history[purpose]
    for purpose, done in list(state.approved.items()):
        if done.until <= now:
            del state.approved[purpose]


def reset_failures(state: RecipientState) -> None:
    state.streak, state.last_failure_at, state.locked_until = 0, 0.0, 0.0


def attempts_left(otp: Otp, state: RecipientState, policy: Policy) -> int:
    """Wrong answers still allowed: the smaller of the code's and the recipient's (until
    its lock) budget."""
    return max(0, min(otp.attempts_left, policy.lock_after - state.streak))


def otp_event(type_: EventType, otp: Otp, now: float, **extra: object) -> CloudEvent:
    data: dict[str, object] = {
        "id": otp.id,
        "to": otp.to_masked,
        "purpose": otp.purpose,
        "status": otp.status.value,
        "send_count": otp.send_count,
        "tenant": otp.tenant,
    }
    if otp.reference is not None:
        data["reference"] = otp.reference
    if otp.test:
        data["test"] = True
    data.update(extra)
    return events.new(type_, otp.id, data, now)


def dispatch_event(otp: Otp, channel: str, driver: str, fallbacks: list[str],
                   now: float, *, step: tuple[str, str, float] | None = None) -> CloudEvent:
    """The ``dispatch.v1`` event handing the OTP's latest send on ``channel`` to
    ``driver``, with the drivers to fail over to after it; for a fallback ``step`` its
    (masked address, sealed payload, not before)."""
    to, sealed = (otp.to_masked, otp.sealed) if step is None else step[:2]
    data: dict[str, object] = {
        "otp_id": otp.id,
        "send_no": otp.send_count,
        "channel": channel,
        "to": to,
        "purpose": otp.purpose,
        "locale": otp.locale,
        "expires_at": otp.expires_at,
        "sealed": sealed,
        "fallbacks": fallbacks,
    }
    if step is not None:
        data["not_before"] = step[2]
    if otp.app_hash is not None:
        data["app_hash"] = otp.app_hash
    if otp.webotp_domain is not None:
        data["webotp_domain"] = otp.webotp_domain
    if otp.brand is not None:
        data["brand"] = otp.brand
    return events.new(EventType.DISPATCH, otp.id, data, now, channel=channel, driver=driver)


def _dispatches(otp: Otp, req: NewCode, minted: Minted, now: float) -> list[CloudEvent]:
    """A dispatch event per channel, at once, and one per fallback step, which waits in
    the bus until its time (``not_before``): durable as every event, and sent once."""
    found = [dispatch_event(otp, channel, req.drivers[channel][0],
                            list(req.drivers[channel][1:]), now)
             for channel in otp.channels]
    for step, sealed in zip(req.steps, minted.steps, strict=True):
        found.append(dispatch_event(otp, step.channel, step.drivers[0], list(step.drivers[1:]),
                                    now, step=(step.to_masked, sealed, now + step.after)))
    return found


def _steps(req: NewCode, minted: Minted, now: float) -> list[Step]:
    return [Step(channel=s.channel, after=s.after, to=s.to_masked, due_at=now + s.after,
                 driver=s.drivers[0], drivers=list(s.drivers), sealed=sealed)
            for s, sealed in zip(req.steps, minted.steps, strict=True)]


def decide_request(
    state: RecipientState | None, req: NewCode, policy: Policy, now: float
) -> Change[Requested]:
    """Create, coalesce or resend the code for (recipient, purpose)."""
    state = state or RecipientState.empty(req.recipient_key)
    change: Change[Requested] = Change(result=None, state=state)  # type: ignore[arg-type]
    sweep(state, policy, now, change)
    current = state.pending.get(req.purpose)
    if current is not None and _coalesces(current, req, now):
        change.result = Requested(current, Outcome.COALESCED,
                                  attempts_left(current, state, policy))
        if not change.otps:
            change.state = None
        return change
    if not req.test and (refused := limits.refusal(state, req.purpose, policy, now)) is not None:
        raise refused
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
        otp.external, otp.brand = req.external, req.brand
        otp.routes = {c: list(req.drivers[c]) for c in req.channels}
        otp.expires_at = now + req.ttl
        outcome = Outcome.RESENT
    if req.seal_address is not None and not otp.address:
        otp.address = req.seal_address(otp.id)
    minted = req.mint(otp.id, otp.send_count)
    otp.digest = minted.digest
    otp.sealed = minted.sealed
    otp.resend_after = now + policy.resend_cooldown
    otp.updated_at = now
    otp.sent_at = [*otp.sent_at, now]
    state.pending[req.purpose] = otp
    state.sends[req.purpose] = [*state.sends.get(req.purpose, []), now]
    state.sent = [*state.sent, now]
    change.otps.append(otp)
    change.events.append(otp_event(EventType.REQUESTED, otp, now, channels=otp.channels,
                                expires_at=otp.expires_at))
    if not req.test:  # a test number is never sent to, by a step neither
        otp.steps = _steps(req, minted, now)
        change.events.extend(_dispatches(otp, req, minted, now))
    change.result = Requested(otp, outcome, attempts_left(otp, state, policy))
    return change


def _coalesces(current: Otp, req: NewCode, now: float) -> bool:
    """Whether a request is answered by the code pending for its purpose, sending nothing.
    otpgate's own codes coalesce before ``resend_after``. A code another service made
    coalesces only with the very message pending (a retried hand-over): a new one must go
    out at once, or the user would get a code its maker no longer accepts. Neither kind
    coalesces with the other."""
    if current.external != req.external:
        return False
    if not req.external:
        return now < current.resend_after
    return hmac.compare_digest(req.mint(current.id, current.send_count).digest,
                               current.digest)


def _new_otp(req: NewCode, policy: Policy, now: float) -> Otp:
    return Otp(
        id=req.fresh_id, recipient=req.recipient_key, to_masked=req.to_masked,
        purpose=req.purpose, channels=list(req.channels), status=Status.PENDING,
        digest=b"", code_length=req.code_length, locale=req.locale, send_count=1,
        failed_attempts=0, max_attempts=policy.max_attempts, created_at=now,
        expires_at=now + req.ttl, resend_after=now, updated_at=now, reference=req.reference,
        routes={c: list(req.drivers[c]) for c in req.channels}, tenant=req.tenant,
        app_hash=req.app_hash, webotp_domain=req.webotp_domain, external=req.external,
        brand=req.brand, sent_at=[], test=req.test, prefix_key=req.prefix_key,
    )


def decide_verify(
    state: RecipientState | None,
    key: str,
    find: Finder,
    check: Checker,
    policy: Policy,
    now: float,
    *,
    missing: str | None = None,
) -> Change[Verdict]:
    """Check one answer against the live code ``find`` picks; approve at most once.

    Only a wrong answer to a live code counts: against the code (``max_attempts``) and
    against the recipient's consecutive failures (a delay before new codes from
    ``delay_after`` on, a lock at ``lock_after``). A locked recipient's answers count
    nothing. By recipient (``missing`` names the purpose), an answer that meets no live
    code counts nothing either, yet is answered as a wrong answer to a fresh code would be —
    a stand-in code's attempts run down the same way — so that probing tells nothing; and
    the right code of a code approved a moment ago is told ``approved``. By id (no
    ``missing``) an answer that meets no live code gets ``otp None``: the caller reports the
    dead code's status.

    Every answer that is not approved costs two code checks, whether or not there was a code
    to check (a missing one is checked against nothing), so that a live code and none take
    alike long to answer.
    """
    state = state or RecipientState.empty(key)
    change: Change[Verdict] = Change(result=None, state=state)  # type: ignore[arg-type]
    sweep(state, policy, now, change)
    otp = None if state.locked(now) else find(state)
    if otp is not None and otp.external:
        otp = None  # another service's code: it alone verifies it
    if otp is not None and check(otp.id, otp.digest):
        change.result = _approve(state, otp, policy, now, change)
        return change
    if otp is None:
        _check_nothing(check)
    done = state.approved.get(missing) if missing is not None else None
    if done is None:
        _check_nothing(check)
    if done is not None and check(done.id, done.digest):
        change.result = Verdict(None, False, Status.APPROVED, None, otp_id=done.id)
    elif otp is not None:
        change.result = _wrong(state, otp, policy, now, change)
        return change
    elif missing is not None:
        change.result = _stand_in(state, missing, policy, now)
        return change
    else:
        change.result = Verdict(None, False, Status.PENDING, None)
    if not change.otps:
        change.state = None
    return change


def decide_approve(
    state: RecipientState | None, otp_id: str, now: float, policy: Policy
) -> Change[Otp | None]:
    """Approve the pending code ``otp_id`` without an answer (the app's word that the user
    is verified: Twilio Verify's ``Status=approved``); ``None`` when it is not pending, or
    is another service's code."""
    if state is None:
        return Change(result=None)
    change: Change[Otp | None] = Change(result=None, state=state)
    sweep(state, policy, now, change)
    otp = state.find(otp_id)
    if otp is not None and not otp.external:
        _approve(state, otp, policy, now, change)
        change.result = otp
    elif not change.otps:
        change.state = None
    return change


def _check_nothing(check: Checker) -> None:
    """The work of a code check where there is no code to check."""
    check("", b"")


def _approve(state: RecipientState, otp: Otp, policy: Policy, now: float,
             change: Change[T]) -> Verdict:
    del state.pending[otp.purpose]
    reset_failures(state)
    state.phantoms.pop(otp.purpose, None)
    state.approved[otp.purpose] = Approved(id=otp.id, digest=otp.digest,
                                           until=now + policy.max_ttl)
    change.otps.append(finish(otp, Status.APPROVED, now))
    change.events.append(otp_event(EventType.APPROVED, otp, now))
    return Verdict(otp, True, Status.APPROVED, None, otp_id=otp.id)


def _wrong(state: RecipientState, otp: Otp, policy: Policy, now: float,
           change: Change[Verdict]) -> Verdict:
    otp.failed_attempts += 1
    otp.updated_at = now
    if not otp.test:  # a test number's code is fixed, no secret: its misses build no lock
        state.streak += 1
        state.last_failure_at = now
    left = attempts_left(otp, state, policy)
    change.otps.append(otp)
    change.events.append(otp_event(EventType.VERIFICATION_FAILED, otp, now, attempts_left=left))
    if otp.attempts_left == 0:
        del state.pending[otp.purpose]
        # Later answers for this purpose meet a spent stand-in, as they would a dead code.
        state.phantoms[otp.purpose] = [now] * policy.max_attempts
        finish(otp, Status.MAX_ATTEMPTS_REACHED, now)
    locked_until = None
    if state.streak >= policy.lock_after and not otp.test:
        locked_until = _lock(state, otp, policy, now, change)
    return Verdict(otp, False, otp.status, left if otp.status is Status.PENDING else 0,
                   otp_id=otp.id, counted=True, locked_until=locked_until)


def _stand_in(state: RecipientState, purpose: str, policy: Policy, now: float) -> Verdict:
    """The answer a wrong answer to a fresh code for ``purpose`` would get, counting
    nothing: a stand-in's attempts run down within the life of a code (and, as a real
    code's, with the recipient's budget — except while locked, which must not show)."""
    stand_in = state.phantoms.get(purpose, [])
    if len(stand_in) < policy.max_attempts:
        stand_in = [*stand_in, now]
    state.phantoms[purpose] = stand_in
    budget = policy.max_attempts if state.locked(now) else policy.lock_after - state.streak - 1
    left = max(0, min(policy.max_attempts - len(stand_in), budget))
    return Verdict(None, False, Status.PENDING if left else Status.MAX_ATTEMPTS_REACHED, left)


def _lock(state: RecipientState, trigger: Otp, policy: Policy, now: float,
          change: Change[T]) -> float:
    """``lock_after`` consecutive failures: every live code dies and nothing is sent or
    counted for ``lock_time``; a ``locked`` event for each code the lock ended."""
    state.locked_until = now + policy.lock_time
    ended = [trigger]
    for purpose, live in list(state.pending.items()):
        del state.pending[purpose]
        if live is not trigger:
            change.otps.append(live)
            ended.append(live)
        finish(live, Status.MAX_ATTEMPTS_REACHED, now)
    for otp in ended:
        change.events.append(otp_event(EventType.LOCKED, otp, now,
                                    locked_until=state.locked_until, failures=state.streak))
    return state.locked_until
