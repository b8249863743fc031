"""Readiness: whether this process should be sent traffic (``GET /readyz``), and what
waits in the bus meanwhile.

Ready means: the store answers and takes writes (``Store.ping``; the embedded store probes
a write, at most once a second and never while writes commit anyway), the bus answers, and
no watched subscription — the dispatch queue of each configured driver — has a due
delivery older than ``max_due_age`` seconds. A code is for a person at a screen: one that
waits that long for its send will make them press resend, so a process whose sends are
that late says so instead of taking more requests. ``max_due_age`` 0 turns that check off.
The backlog is read at most once per ``refresh`` seconds of the injected clock.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from otpgate.bus.base import Backlog, Bus
from otpgate.clock import Clock
from otpgate.store.base import Store

log = logging.getLogger(__name__)

RETRY_UNAVAILABLE = 1
"""``Retry-After`` seconds when the store or the bus cannot be used."""
RETRY_LATE = 5
"""``Retry-After`` seconds when sends are late (a backlog drains in seconds, not at once)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a readiness check found: ``slug`` and ``detail`` say why it is not ready
    (never an internal error's text), ``backlog`` is what waits per subscription."""

    ready: bool
    backlog: list[Backlog] = field(default_factory=list)
    slug: str | None = None
    detail: str | None = None
    retry_after: int = 0


class Readiness:
    """The checks behind ``GET /readyz``, over the runtime's store and bus."""

    def __init__(self, store: Store, bus: Bus, clock: Clock, watched: Iterable[str],
                 max_due_age: float, refresh: float = 1.0) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        self._watched = frozenset(watched)
        self._max_due_age = max_due_age
        self._refresh = refresh
        self._backlog: tuple[float, list[Backlog]] = (-math.inf, [])

    async def check(self) -> Verdict:
        for name, ping in (("store", self._store.ping), ("bus", self._bus.ping)):
            try:
                await ping()
            except Exception as exc:  # whatever it is, the process is not ready
                log.warning("readiness: the %s cannot be used: %s", name, exc)
                return Verdict(False, slug=f"{name}-unavailable",
                               detail=f"the {name} cannot be used right now",
                               retry_after=RETRY_UNAVAILABLE)
        try:
            backlog = await self.backlog()
        except Exception as exc:  # the bus answered a ping but not this
            log.warning("readiness: the bus backlog cannot be read: %s", exc)
            return Verdict(False, slug="bus-unavailable",
                           detail="the bus cannot be used right now",
                           retry_after=RETRY_UNAVAILABLE)
        late = [b for b in backlog if b.subscription in self._watched
                and 0 < self._max_due_age < b.oldest_due_age]
        if late:
            worst = max(late, key=lambda b: b.oldest_due_age)
            return Verdict(False, backlog, "sends-late",
                           f"the oldest due send of {worst.subscription} has waited "
                           f"{worst.oldest_due_age:.0f} s, more than "
                           f"{self._max_due_age:g} s", RETRY_LATE)
        return Verdict(True, backlog)

    async def backlog(self) -> list[Backlog]:
        """The bus's backlog, read again once ``refresh`` seconds have passed; ages are
        rounded to milliseconds."""
        now = self._clock.now()
        at, kept = self._backlog
        if now - at >= self._refresh:
            kept = [msgspec.structs.replace(b, oldest_due_age=round(b.oldest_due_age, 3))
                    for b in await self._bus.backlog()]
            self._backlog = (now, kept)
        return kept
