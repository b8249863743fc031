"""Whether the database takes writes, for readiness: from the batches the writer commits,
and when they say nothing, from a probe write.

A batch committed in the last ``fresh`` seconds, and none failed in them, says so for free:
readiness costs no writes under load. Otherwise a probe write says so, and its answer is
kept for ``fresh`` seconds: one write a second at most when idle. The probe commits as
many pages as a few requests do (``PROBE_BYTES``): on a full disk the last frames of a WAL
can still take a page or two while no request fits; for the same reason, once a probe
failed, only a probe can say the file takes writes again.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

from otpgate.errors import OtpgateError, StoreError

log = logging.getLogger(__name__)

PROBE_BYTES = 64 * 1024
"""What a write probe commits (16 pages: about what a few OTP requests write)."""

Write = Callable[[Callable[[sqlite3.Connection], None]], Awaitable[Any]]


def _probe(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO meta (name, value) VALUES ('write_probe', zeroblob(?)) "
                 "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (PROBE_BYTES,))


class Writability:
    """What the writer's batches said lately (``time.monotonic()``), and the last probe."""

    __slots__ = ("_committed_at", "_failed_at", "_probed_at", "_refused")

    def __init__(self) -> None:
        self._committed_at = self._failed_at = self._probed_at = -1e9
        self._refused = False

    def committed(self, outcomes: list[tuple[bool, Any]]) -> None:
        """A batch committed (some of its units may have failed on the disk alone)."""
        self._committed_at = time.monotonic()
        if any(not ok and disk_error(value) for ok, value in outcomes):
            self._failed_at = self._committed_at

    def failed(self) -> None:
        self._failed_at = time.monotonic()

    async def check(self, write: Write, fresh: float) -> None:
        """``StoreError`` unless writes commit (see the module)."""
        now = time.monotonic()
        if not self._refused and now - self._committed_at < fresh \
                and now - self._failed_at >= fresh:
            return
        if now - self._probed_at >= fresh:
            self._probed_at = now
            try:
                await write(_probe)
            except StoreError as exc:
                log.warning("the database does not take writes: %s", exc.detail)
                self._refused = True
            else:
                self._refused = False
        if self._refused:
            raise StoreError("the database does not take writes")


def disk_error(exc: BaseException) -> bool:
    """Whether a unit failed because the file could not grow or be written."""
    cause = exc.__cause__ if isinstance(exc, OtpgateError) else exc
    code = getattr(cause, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)
