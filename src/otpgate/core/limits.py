"""What may refuse a new code for a recipient: the send limits (per purpose and across
purposes), the delay that grows with consecutive failures, and the lock. Pure, like the
decisions that use it."""

from __future__ import annotations

import enum
import math

from otpgate.core.otp import RecipientState
from otpgate.core.policy import Policy
from otpgate.errors import RateLimited
from otpgate.ratelimit.algorithms import SlidingLog


class Rule(enum.StrEnum):
    """What refused a request for a code (the problem's ``rule``)."""

    SEND_LIMIT = "send-limit"
    RECIPIENT_SEND_LIMIT = "recipient-send-limit"
    FAILURE_DELAY = "failure-delay"
    RECIPIENT_LOCK = "recipient-lock"


REFUSED = "too many requests for this recipient; try again later"
"""The one text of every refusal of a recipient, whatever refused it: a lock reads like a
send limit (only the problem's ``rule`` tells them apart)."""


def sends(policy: Policy) -> SlidingLog:
    return SlidingLog(limit=policy.max_sends, window=policy.send_window)


def recipient_sends(policy: Policy) -> SlidingLog:
    return SlidingLog(limit=policy.recipient_max_sends, window=policy.recipient_send_window)


def refusal(state: RecipientState, purpose: str, policy: Policy,
            now: float) -> RateLimited | None:
    """Why no code may be sent for ``purpose`` now — the longest wait of the limits that
    apply, so that ``Retry-After`` is worth waiting for — or ``None``."""
    if state.locked(now):
        return RateLimited(REFUSED, math.ceil(state.locked_until - now), Rule.RECIPIENT_LOCK)
    waits: list[tuple[int, Rule]] = []
    per_purpose, log = state.sends.get(purpose, []), sends(policy)
    if log.remaining(per_purpose) == 0:
        waits.append((log.retry_after(per_purpose, now), Rule.SEND_LIMIT))
    overall = recipient_sends(policy)
    if overall.remaining(state.sent) == 0:
        waits.append((overall.retry_after(state.sent, now), Rule.RECIPIENT_SEND_LIMIT))
    ready = state.last_failure_at + policy.send_delay(state.streak)
    if now < ready:
        waits.append((math.ceil(ready - now), Rule.FAILURE_DELAY))
    if not waits:
        return None
    wait, rule = max(waits)
    return RateLimited(REFUSED, wait, rule)
