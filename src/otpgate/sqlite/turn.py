"""Taking turns at writing across processes that share one database file.

SQLite's own lock stays the rule; but a writer that finds it taken polls with sleeps of up
to tens of milliseconds, so under load one process keeps the lock while the others sleep.
Writers of otpgate first queue on an ``flock`` of a file beside the database: the kernel
wakes the next one as soon as the lock is let go. Where ``fcntl`` does not exist the turn
is a no-op and ``busy_timeout`` alone orders writers.
"""

from __future__ import annotations

import os
from pathlib import Path

from otpgate.files import create_private

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


class WriterTurn:
    """An exclusive turn at writing; held from ``BEGIN IMMEDIATE`` to ``COMMIT``."""

    def __init__(self, db_path: Path) -> None:
        self._fd: int | None = None
        if fcntl is not None:
            lock_path = db_path.with_name(db_path.name + "-writer.lock")
            create_private(lock_path)
            self._fd = os.open(lock_path, os.O_RDWR)

    def acquire(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def try_acquire(self) -> bool:
        """Take the turn if no other process holds it; never waits."""
        if self._fd is None:
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
