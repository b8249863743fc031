"""Circuit breakers, one per driver, shared by every dispatcher of a process.

```
closed ──failure rate ≥ threshold over the window (with enough calls), ``consecutive``
         failures in a row, or a broken driver──▶ open
open ──open_for seconds──▶ half-open ──probe succeeds──▶ closed
                                      └─probe fails────▶ open
```
While open, sends are refused at once (``BreakerOpen``, a temporary outcome), so they fail
over to the next driver without waiting for a provider that is down. Time is injected.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

import msgspec

from otpgate.clock import Clock
from otpgate.errors import ConfigurationError, TemporaryDeliveryError


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerOpen(TemporaryDeliveryError):
    """The driver's circuit is open: it was not called."""

    slug = "breaker-open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    window: float = 30.0
    """Seconds of calls the failure rate is taken over."""
    min_calls: int = 10
    failure_rate: float = 0.5
    open_for: float = 15.0
    """Seconds an open circuit waits before letting a probe through."""
    probes: int = 1
    """Calls let through at once while half-open."""
    consecutive: int = 5
    """Failures in a row that open the circuit whatever the window holds: a provider that
    goes down after a busy spell is noticed in as many calls, not once its failures
    outweigh the window's successes."""

    def __post_init__(self) -> None:
        if self.window <= 0 or self.open_for <= 0 or self.min_calls < 1 or self.probes < 1 \
                or self.consecutive < 1 \
                or not 0 < self.failure_rate <= 1:
            raise ConfigurationError("breaker settings must be positive (failure rate in "
                                     "(0, 1])")


class BreakerView(msgspec.Struct, frozen=True):
    """A breaker as ``/readyz`` and metrics show it."""

    driver: str
    state: BreakerState
    calls: int
    failures: int
    open_until: float | None = None


@dataclass(slots=True)
class CircuitBreaker:
    name: str
    policy: BreakerPolicy
    clock: Clock
    _calls: deque[tuple[float, bool]] = field(default_factory=deque)
    _opened_at: float | None = None
    _probing: int = 0
    _streak: int = 0

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self.clock.now() < self._opened_at + self.policy.open_for:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def admit(self) -> bool:
        """Whether a call may go out now (a half-open circuit admits its probes)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._probing < self.policy.probes:
            self._probing += 1
            return True
        return False

    def release(self) -> None:
        """An admitted call that did not reach the provider after all: a probe it held is
        free again, and nothing is recorded."""
        if self._opened_at is not None:
            self._probing = max(0, self._probing - 1)

    def reopens_in(self) -> float:
        """Seconds until an open circuit lets a probe through (0 unless open)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.policy.open_for - self.clock.now())

    def record(self, ok: bool, *, broken: bool = False) -> None:
        """The outcome of an admitted call: ``ok`` when the provider answered as a
        working provider does (sent, or refused the number)."""
        now = self.clock.now()
        if self._opened_at is not None:
            if self._probing == 0:
                # an answer to a call let through before the circuit opened (hundreds may be
                # in flight): it says nothing of the provider since, and does not close it
                return
            self._probing -= 1  # a probe's answer
            if ok:
                self._opened_at = None
                self._calls.clear()
            else:
                self._opened_at = now
            return
        self._streak = 0 if ok else self._streak + 1
        if broken or self._streak >= self.policy.consecutive:
            self._trip(now)
            return
        self._calls.append((now, ok))
        self._prune(now)
        failures = sum(1 for _, good in self._calls if not good)
        if len(self._calls) >= self.policy.min_calls and \
                failures >= self.policy.failure_rate * len(self._calls):
            self._trip(now)

    def _trip(self, now: float) -> None:
        self._opened_at = now
        self._calls.clear()
        self._streak = 0

    def _prune(self, now: float) -> None:
        horizon = now - self.policy.window
        while self._calls and self._calls[0][0] <= horizon:
            self._calls.popleft()

    def view(self) -> BreakerView:
        self._prune(self.clock.now())
        state = self.state
        until = self._opened_at + self.policy.open_for if self._opened_at is not None \
            else None
        return BreakerView(driver=self.name, state=state, calls=len(self._calls),
                           failures=sum(1 for _, good in self._calls if not good),
                           open_until=until)


@dataclass(slots=True)
class Breakers:
    """The breakers of one process, by driver name."""

    policy: BreakerPolicy
    clock: Clock
    _by_name: dict[str, CircuitBreaker] = field(default_factory=dict)

    def of(self, driver: str) -> CircuitBreaker:
        if driver not in self._by_name:
            self._by_name[driver] = CircuitBreaker(driver, self.policy, self.clock)
        return self._by_name[driver]

    def views(self) -> list[BreakerView]:
        return [b.view() for _, b in sorted(self._by_name.items())]

    def healthy(self, driver: str) -> bool:
        """Whether the driver's circuit is not open (a driver never called is healthy)."""
        found = self._by_name.get(driver)
        return found is None or found.state is not BreakerState.OPEN

    def delivery_rate(self, driver: str) -> float:
        """The share of the driver's calls in the window that succeeded (1.0 with none)."""
        found = self._by_name.get(driver)
        if found is None:
            return 1.0
        view = found.view()
        return 1.0 if view.calls == 0 else 1 - view.failures / view.calls
