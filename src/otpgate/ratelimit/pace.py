"""A driver's pace (``mps=``, ``burst=``), shared by every sender of the driver: in this
process (``LocalPace``, a ``TokenBucket``) or across every process on one Redis
(``otpgate.redisio.pace.RedisPace``, the same arithmetic in a script, on Redis's clock).

``reserve(now, within)`` takes the next slot only if it comes within ``within`` seconds,
so a send that would wait past its code's expiry (or past what its lease allows) takes
nothing from those queued behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from otpgate.ratelimit.bucket import TokenBucket


@dataclass(frozen=True, slots=True)
class Slot:
    """The seconds until the slot; ``taken`` False when it came too late to be taken."""

    wait: float
    taken: bool


class Pace(Protocol):
    rate: float
    burst: int

    async def reserve(self, now: float, within: float) -> Slot:
        """Take the next slot if it comes in less than ``within`` seconds of ``now``."""
        ...


class LocalPace:
    """One process's pace for a driver."""

    def __init__(self, rate: float, burst: int = 1) -> None:
        self.bucket = TokenBucket(rate, burst)
        self.rate, self.burst = rate, burst

    async def reserve(self, now: float, within: float) -> Slot:
        wait = self.bucket.wait_for(now)
        if wait >= within:
            return Slot(wait, taken=False)
        return Slot(self.bucket.take(now), taken=True)
