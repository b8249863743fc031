"""One SQLite file shared by the store, the outbox bus and the capture sink.

Writes are serialized per ``Database``: callers submit a unit of work (a sync function over
the write connection) and await its answer. Units submitted while the event loop is busy
are run together, up to ``batch_size`` of them in one ``BEGIN IMMEDIATE`` … ``COMMIT``
(group commit), each inside its own ``SAVEPOINT``: a unit that raises is rolled back alone
and its error goes to its caller only. Batches run on the event loop's own thread — a
statement takes microseconds, and handing work to a thread costs more than that under the
GIL — and point reads use the same connection between batches.

Several processes may open the same file. A batch that finds the database busy never
blocks the loop: it is tried again a moment later, and fails after ``busy_timeout_ms``.

Units wait in two lanes (``otpgate.sqlite.lanes``): the API's, and the background's (the
bus's consumers and the handlers they run); a full batch takes at least half of it from
each. ``writable`` tells whether writes commit (``otpgate.sqlite.probe``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from otpgate.errors import OtpgateError, StoreError
from otpgate.files import create_private, private_dir, warn_if_open
from otpgate.sqlite.conn import Checkpointer, connect, is_busy, migrate, wrap
from otpgate.sqlite.lanes import Lanes
from otpgate.sqlite.probe import Writability
from otpgate.sqlite.turn import WriterTurn

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]
ErrorType = type[OtpgateError]



@dataclass(slots=True)
class _Unit:
    fn: Callable[[sqlite3.Connection], Any]
    error: ErrorType
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[Any] | None


class Database:
    """The write queue and the connections of one file, driven by one event loop."""

    def __init__(self, path: Path, *, batch_size: int = 256,
                 busy_timeout_ms: int = 5000, checkpoint_interval: float = 0.5) -> None:
        self.path = path
        self._batch_size = max(1, batch_size)
        self._busy_ms = busy_timeout_ms
        self._pending: Lanes[_Unit] = Lanes()
        self._writability = Writability()
        self._handle: asyncio.Handle | None = None
        self._busy_since: float | None = None
        self._busy_tries = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: sqlite3.Connection | None = None
        self._turn: WriterTurn | None = None
        self._checkpoints = Checkpointer(path, busy_timeout_ms, checkpoint_interval)
        self._closed = False
        self.batch_no = 0
        """Counts write transactions; code run in a unit may cache per batch with it."""

    @classmethod
    async def open(cls, path: Path, **options: Any) -> Database:
        db = cls(path, **options)
        try:
            await asyncio.to_thread(db._start)
        except BaseException as exc:
            db._closed = True
            db._close_connections()
            if isinstance(exc, sqlite3.Error | OSError):
                raise StoreError(f"cannot open {path}: {exc}") from exc
            raise
        db._loop = asyncio.get_running_loop()
        return db

    def _start(self) -> None:
        # Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the
        # database file's own mode.
        private_dir(self.path.parent)
        create_private(self.path)
        for suffix in ("-wal", "-shm"):
            warn_if_open(self.path.with_name(self.path.name + suffix))
        self._conn = connect(self.path, self._busy_ms)
        migrate(self._conn)
        # From here on a busy database never blocks the event loop: batches are retried.
        self._conn.execute("PRAGMA busy_timeout = 0")
        self._turn = WriterTurn(self.path)
        self._checkpoints.start()

    def alive(self) -> bool:
        return not self._closed

    async def write(self, fn: Work[T], error: ErrorType = StoreError) -> T:
        """Run ``fn`` in the next write transaction; its result or its exception."""
        loop = self._running(error)
        future: asyncio.Future[T] = loop.create_future()
        self._pending.add(_Unit(fn, error, loop, future))
        self._schedule()
        return await future

    def submit(self, fn: Work[Any], error: ErrorType = StoreError) -> None:
        """Queue ``fn`` for the next write transaction without waiting; failures are
        logged."""
        self._running(error)
        self._pending.add(_Unit(fn, error, None, None))
        self._schedule()

    async def read(self, fn: Work[T], error: ErrorType = StoreError) -> T:
        """Run ``fn`` on the connection, between two write batches (it sees every committed
        write). The write connection serves reads too: its page cache stays warm, where a
        second connection would reload pages after every write. When the file is busy
        (recovery after a crash), the read is tried again shortly, without blocking the
        loop, until ``busy_timeout_ms``."""
        self._running(error)
        assert self._conn is not None
        deadline = time.monotonic() + self._busy_ms / 1000
        pause = 0.0005
        while True:
            try:
                return fn(self._conn)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() >= deadline:
                    raise wrap(exc, error) from exc
            except sqlite3.Error as exc:
                raise wrap(exc, error) from exc
            await asyncio.sleep(pause)
            pause = min(0.02, pause * 2)

    def _running(self, error: ErrorType) -> asyncio.AbstractEventLoop:
        if self._closed or self._loop is None:
            raise error("the database is closed")
        return self._loop

    async def close(self) -> None:
        """Commit what is queued, then close every connection."""
        if self._closed:
            return
        deadline = time.monotonic() + self._busy_ms / 1000
        while self._pending and time.monotonic() < deadline:
            self._flush()
            if self._pending:
                await asyncio.sleep(0.005)
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._fail_pending(StoreError("the database was closed"))
        await asyncio.to_thread(self._checkpoints.stop)
        self._close_connections()

    def _close_connections(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._turn is not None:
            self._turn.close()

    # -- group commit -------------------------------------------------------------------

    def _schedule(self, delay: float = 0.0) -> None:
        """Flush once the loop has run what is ready, so that concurrent callers share a
        transaction."""
        if self._handle is None and self._loop is not None:
            if delay:
                self._handle = self._loop.call_later(delay, self._flush)
            else:
                self._handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._handle = None
        if not self._pending or self._conn is None or self._turn is None:
            return
        try:
            turn = self._turn.try_acquire()
        except OSError as exc:  # no file locks here (a network file system?): fail, loudly
            log.exception("cannot take the writer's turn on %s", self.path)
            self._fail_pending(exc)
            return
        if not turn:
            self._wait_for_turn()
            return
        try:
            counts = self._pending.peek(self._batch_size)
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                self._wait_for_turn()
                return
            batch = self._pending.take(counts)
            self._busy_since, self._busy_tries = None, 0
            outcomes = self._commit(self._conn, batch)
        except Exception as exc:  # the database itself fails: fail what waits
            log.exception("sqlite write failed")
            self._fail_pending(exc)
            return
        finally:
            self._turn.release()
        _deliver(batch, outcomes)
        if self._pending:
            self._schedule()

    def _commit(self, conn: sqlite3.Connection,
                batch: list[_Unit]) -> list[tuple[bool, Any]]:
        self.batch_no += 1
        try:
            outcomes = [_apply(conn, unit) for unit in batch]
            conn.execute("COMMIT")
            self._writability.committed(outcomes)
        except Exception as exc:  # a failed COMMIT (or savepoint) fails the whole batch
            self._writability.failed()
            log.exception("sqlite write batch of %d failed", len(batch))
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("rollback after a failed batch failed")
            return [(False, _batch_error(exc, u.error)) for u in batch]
        return outcomes

    def _wait_for_turn(self) -> None:
        """Another process is writing: try again soon, and give up after the timeout."""
        now = time.monotonic()
        if self._busy_since is None:
            self._busy_since = now
        if (now - self._busy_since) * 1000 >= self._busy_ms:
            self._busy_since, self._busy_tries = None, 0
            self._fail_pending(sqlite3.OperationalError("database is locked"))
            return
        self._busy_tries += 1
        self._schedule(min(0.01, 0.0002 * 2 ** min(self._busy_tries, 6)))

    def _fail_pending(self, exc: BaseException) -> None:
        if not isinstance(exc, StoreError):
            self._writability.failed()
        batch = self._pending.clear()
        _deliver(batch, [(False, _batch_error(exc, u.error)) for u in batch])

    async def writable(self, fresh: float = 1.0) -> None:
        """``StoreError`` unless writes commit: known from the last ``fresh`` seconds of
        batches, or else from a probe write (``otpgate.sqlite.probe``)."""
        await self._writability.check(self.write, fresh)


def _apply(conn: sqlite3.Connection, unit: _Unit) -> tuple[bool, Any]:
    conn.execute("SAVEPOINT unit")
    try:
        value = unit.fn(conn)
    except Exception as exc:  # delivered to the unit's caller
        # A failure that ended the whole transaction makes this raise: the batch fails.
        conn.execute("ROLLBACK TO unit")
        conn.execute("RELEASE unit")
        return False, wrap(exc, unit.error)
    conn.execute("RELEASE unit")
    return True, value


def _batch_error(exc: BaseException, error: ErrorType) -> BaseException:
    if isinstance(exc, OtpgateError):
        return exc
    wrapped = error(f"write batch failed: {type(exc).__name__}: {exc}")
    wrapped.__cause__ = exc
    return wrapped


def _deliver(batch: list[_Unit], outcomes: list[tuple[bool, Any]]) -> None:
    """Answer every unit's caller (on the loop thread, where they wait)."""
    for unit, (ok, value) in zip(batch, outcomes, strict=True):
        future = unit.future
        if future is None:
            if not ok:
                log.error("background write failed: %s", value)
            continue
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
