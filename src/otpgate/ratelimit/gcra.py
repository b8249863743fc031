"""GCRA (the generic cell rate algorithm) over one number: the theoretical arrival time.

At most ``limit`` requests in any ``window`` seconds, a burst of ``limit`` allowed, and
then one every ``window / limit`` seconds. The state is a single float — the time at
which the cell would be empty again — so any store that keeps numbers can hold it, and
nothing here knows which one does.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Step:
    """One request through GCRA: whether it passes, the state to keep if it does, and
    the seconds until it would (0 when it does)."""

    allowed: bool
    tat: float
    retry_after: float


def step(tat: float | None, now: float, limit: int, window: float) -> Step:
    """One request at ``now`` against the state ``tat`` (``None``: never used)."""
    interval = window / limit
    new_tat = max(tat if tat is not None else now, now) + interval
    allow_at = new_tat - window
    if now < allow_at:
        return Step(False, tat if tat is not None else now, allow_at - now)
    return Step(True, new_tat, 0.0)
