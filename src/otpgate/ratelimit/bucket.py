"""A token bucket: ``rate`` tokens a second, at most ``burst`` saved up. Pure state and
arithmetic over the times it is given; the caller decides what to do with a wait."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from otpgate.errors import ConfigurationError


@dataclass(slots=True)
class TokenBucket:
    """Hands out slots in time: ``take(now)`` says how long the caller must wait for its
    token (0 when one is there). Tokens taken are spoken for even while their caller
    waits, so concurrent callers queue up ``1 / rate`` apart. Kept as GCRA: the time at
    which the bucket would be empty again (``_due``)."""

    rate: float
    burst: int = 1
    _due: float = field(default=-math.inf)

    def __post_init__(self) -> None:
        if not self.rate > 0 or math.isinf(self.rate):
            raise ConfigurationError("a rate must be a positive number of messages a second")
        if self.burst < 1:
            raise ConfigurationError("a burst must be at least 1")

    def wait_for(self, now: float) -> float:
        """Seconds the next token would wait if taken at ``now`` (nothing is taken)."""
        return max(0.0, max(self._due, now) - (self.burst - 1) / self.rate - now)

    def take(self, now: float) -> float:
        """Take the next token; the seconds to wait before using it."""
        wait = self.wait_for(now)
        self._due = max(self._due, now) + 1 / self.rate
        return wait
