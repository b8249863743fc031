"""The writer's two lanes: units from the API, and units from the background (the bus's
consumers and the handlers they run), each first in, first out. When both hold more than
a batch, each gets at least half of it: sending never starves behind accepting, nor the
other way round. Which lane a write joins is a context variable (``background``), so that
the tasks a consumer starts inherit it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Generic, TypeVar

U = TypeVar("U")

_background: ContextVar[bool] = ContextVar("otpgate_sqlite_background", default=False)


@contextlib.contextmanager
def background() -> Iterator[None]:
    """Writes made in this context (and in the tasks it starts) join the background
    lane."""
    token = _background.set(True)
    try:
        yield
    finally:
        _background.reset(token)


@dataclass(slots=True)
class Lanes(Generic[U]):
    """Pending units, by lane."""

    front: list[U] = field(default_factory=list)
    back: list[U] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.front or self.back)

    def add(self, unit: U) -> None:
        (self.back if _background.get() else self.front).append(unit)

    def peek(self, size: int) -> tuple[int, int]:
        """How many units of each lane the next batch of ``size`` takes: all when they
        fit, else at least half of it for each lane that has that many."""
        front = min(len(self.front), max(size // 2, size - len(self.back)))
        return front, min(len(self.back), size - front)

    def take(self, counts: tuple[int, int]) -> list[U]:
        batch = self.front[:counts[0]] + self.back[:counts[1]]
        del self.front[:counts[0]], self.back[:counts[1]]
        return batch

    def clear(self) -> list[U]:
        return self.take((len(self.front), len(self.back)))
