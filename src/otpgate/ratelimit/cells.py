"""The limiter's storage port: a batch of operations over small numeric *cells*, applied
in one call per request.

A request's checks travel together (``Limiter.apply``), so that a backend answers them in
one round trip where it can (Redis runs them as one script) and applies them
atomically: if any enforced operation refuses, nothing of the batch is written, so a
refused request spends no other rule's allowance. ``plan`` is the rule every backend but
Redis runs in Python over the cells it read; the Redis script is the same rule in Lua, and
the contract suite (``tests/contract/test_limiter_contract.py``) holds both to one
behaviour.

Operations:

- ``Rate``: GCRA (``otpgate.ratelimit.gcra``) — at most ``limit`` per ``window``;
- ``Count``: add ``by`` (one) to a counter living ``ttl`` seconds (whenever the batch is
  written);
- ``Peek``: read a cell, change nothing;
- ``Spend``: add ``cost`` to a total that may not pass ``cap`` (a budget);
- ``Flag``: refuse while the cell holds a time later than now (a block until then);
- ``Put``: set a cell for ``ttl`` seconds (a block's end).

A cell's value is a float; every write says when the cell may be forgotten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from otpgate.ratelimit import gcra


@dataclass(frozen=True, slots=True)
class Rate:
    key: str
    limit: int
    window: float
    enforce: bool = True


@dataclass(frozen=True, slots=True)
class Count:
    key: str
    ttl: float
    by: float = 1.0


@dataclass(frozen=True, slots=True)
class Peek:
    key: str


@dataclass(frozen=True, slots=True)
class Spend:
    key: str
    cost: float
    cap: float
    ttl: float
    enforce: bool = True


@dataclass(frozen=True, slots=True)
class Flag:
    key: str
    enforce: bool = True


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: float
    ttl: float


Op = Rate | Count | Peek | Spend | Flag | Put


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one operation found: ``allowed`` (always true for ``Count`` and ``Peek``),
    ``retry_after`` in seconds when refused, and ``value`` — the counter after the add
    (``Count``), the cell (``Peek``, ``Flag``: 0 when empty), the total (``Spend``)."""

    allowed: bool
    retry_after: float = 0.0
    value: float = 0.0


@dataclass(frozen=True, slots=True)
class Plan:
    outcomes: list[Outcome]
    writes: dict[str, tuple[float, float]]
    """Cell -> (value, forget after); empty when an enforced operation refused."""


def plan(ops: Sequence[Op], cells: Mapping[str, float | None], now: float) -> Plan:
    """The outcomes of ``ops`` over ``cells`` (each op's key read; ``None`` for an empty
    or expired cell) and the cells to write. Ops on one key see each other's writes."""
    seen: dict[str, float | None] = dict(cells)
    outcomes: list[Outcome] = []
    writes: dict[str, tuple[float, float]] = {}
    refused = False
    for op in ops:
        old = seen.get(op.key)
        if isinstance(op, Rate):
            done = gcra.step(old, now, op.limit, op.window)
            outcomes.append(Outcome(done.allowed, done.retry_after))
            if done.allowed:
                seen[op.key] = done.tat
                writes[op.key] = (done.tat, done.tat)
            refused = refused or (op.enforce and not done.allowed)
        elif isinstance(op, Count):
            value = (old or 0.0) + op.by
            seen[op.key] = value
            writes[op.key] = (value, now + op.ttl)
            outcomes.append(Outcome(True, value=value))
        elif isinstance(op, Peek):
            outcomes.append(Outcome(True, value=old or 0.0))
        elif isinstance(op, Spend):
            total = (old or 0.0) + op.cost
            over = total > op.cap
            if over and op.enforce:
                outcomes.append(Outcome(False, op.ttl, old or 0.0))
                refused = True
            else:
                seen[op.key] = total
                writes[op.key] = (total, now + op.ttl)
                outcomes.append(Outcome(not over, op.ttl if over else 0.0, total))
        elif isinstance(op, Put):
            seen[op.key] = op.value
            writes[op.key] = (op.value, now + op.ttl)
            outcomes.append(Outcome(True, value=op.value))
        else:
            until = old or 0.0
            blocked = until > now
            outcomes.append(Outcome(not blocked, until - now if blocked else 0.0, until))
            refused = refused or (op.enforce and blocked)
    return Plan(outcomes, {} if refused else writes)


class Limiter(Protocol):
    """Where the cells live: one per backend."""

    async def apply(self, ops: Sequence[Op], now: float) -> list[Outcome]:
        """Run ``ops`` atomically (see ``plan``), in one call where the backend allows."""
        ...


class MemoryLimiter:
    """Cells in this process (the memory backend, and tests)."""

    __slots__ = ("_cells",)

    def __init__(self) -> None:
        self._cells: dict[str, tuple[float, float]] = {}

    async def apply(self, ops: Sequence[Op], now: float) -> list[Outcome]:
        cells = self._cells
        if len(cells) > 100_000:
            for key in [k for k, (_, until) in cells.items() if until <= now]:
                del cells[key]
        found: dict[str, float | None] = {}
        for op in ops:
            held = cells.get(op.key)
            found[op.key] = held[0] if held is not None and held[1] > now else None
        done = plan(ops, found, now)
        cells.update(done.writes)
        return done.outcomes
