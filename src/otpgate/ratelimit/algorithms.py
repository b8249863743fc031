"""Pure rate-limit algorithms over timestamps; storage is the caller's business."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SlidingLog:
    """At most ``limit`` events in any ``window`` seconds, kept as a log of timestamps.

    Exact (no bucket edges to game) and small: the log never holds more than ``limit``
    entries worth keeping.
    """

    limit: int
    window: float

    def prune(self, log: list[float], now: float) -> list[float]:
        """The entries still inside the window (an entry leaves at exactly ``t + window``)."""
        cutoff = now - self.window
        return [t for t in log if t > cutoff][-self.limit :]

    def remaining(self, log: list[float]) -> int:
        return max(0, self.limit - len(log))

    def retry_after(self, log: list[float], now: float) -> int:
        """Whole seconds until one more event is allowed (>= 1)."""
        if len(log) < self.limit:
            return 1
        oldest = log[-self.limit]
        return max(1, math.ceil(oldest + self.window - now))
