"""One SQLite file shared by the store, the outbox bus and the capture sink.

Writes are serialized through one writer thread per ``Database``: callers submit a unit of
work (a sync function over the write connection) and await its answer. The writer drains
its queue and runs up to ``batch_size`` units in one ``BEGIN IMMEDIATE`` … ``COMMIT`` (group
commit), each inside its own ``SAVEPOINT``: a unit that raises is rolled back alone and its
error goes to its caller only. Reads run on a small pool of threads with their own
connections, beside the writer (WAL). Several processes may open the same file: SQLite's
locks and ``busy_timeout`` order them, and a batch that still meets ``SQLITE_BUSY`` is
retried.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from otpgate.errors import OtpgateError, StoreError
from otpgate.store.sqlite_schema import MIGRATIONS
from otpgate.store.sqlite_turn import WriterTurn

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]
ErrorType = type[OtpgateError]

_BUSY_RETRIES = 5


@dataclass(slots=True)
class _Unit:
    fn: Callable[[sqlite3.Connection], Any]
    error: ErrorType
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[Any] | None


_STOP = object()


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def wrap(exc: BaseException, error: ErrorType) -> BaseException:
    """``exc`` itself, or an ``error`` describing it when it is a database error."""
    if isinstance(exc, sqlite3.Error):
        wrapped = error(f"sqlite: {exc}")
        wrapped.__cause__ = exc
        return wrapped
    return exc


def connect(path: Path, busy_timeout_ms: int, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with our pragmas."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           timeout=busy_timeout_ms / 1000)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; safe when several processes open the file at once."""
    for attempt in range(_BUSY_RETRIES):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or attempt == _BUSY_RETRIES - 1:
                raise
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise StoreError(f"database schema {version} is newer than this otpgate "
                             f"({len(MIGRATIONS)})")
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)


class Database:
    """The write queue, its writer thread, and the read connections of one file."""

    def __init__(self, path: Path, *, batch_size: int = 256, readers: int = 2,
                 busy_timeout_ms: int = 5000) -> None:
        self.path = path
        self._batch_size = max(1, batch_size)
        self._busy_ms = busy_timeout_ms
        self._queue: queue.SimpleQueue[_Unit | object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers = ThreadPoolExecutor(max(1, readers), "otpgate-sqlite-read")
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        self.batch_no = 0
        """Counts write transactions; writer-thread code may cache per batch with it."""

    @classmethod
    async def open(cls, path: Path, **options: Any) -> Database:
        db = cls(path, **options)
        try:
            await asyncio.to_thread(db._start)
        except BaseException as exc:
            db._closed = True
            db._readers.shutdown(wait=False)
            if isinstance(exc, sqlite3.Error | OSError):
                raise StoreError(f"cannot open {path}: {exc}") from exc
            raise
        return db

    def _start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path, self._busy_ms)
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._writer = threading.Thread(target=self._serve, args=(conn, WriterTurn(self.path)),
                                        name="otpgate-sqlite-writer", daemon=True)
        self._writer.start()

    def alive(self) -> bool:
        return not self._closed and self._writer is not None and self._writer.is_alive()

    async def write(self, fn: Work[T], error: ErrorType = StoreError) -> T:
        """Run ``fn`` in the writer's next transaction; its result or its exception."""
        if self._closed:
            raise error("the database is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Unit(fn, error, loop, future))
        return await future

    def submit(self, fn: Work[Any], error: ErrorType = StoreError) -> None:
        """Queue ``fn`` for the writer without waiting for it; failures are logged."""
        if self._closed:
            raise error("the database is closed")
        self._queue.put(_Unit(fn, error, None, None))

    async def read(self, fn: Work[T], error: ErrorType = StoreError) -> T:
        """Run ``fn`` on a read connection in a reader thread."""
        if self._closed:
            raise error("the database is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._readers, self._call_read, fn)
        except sqlite3.Error as exc:
            raise wrap(exc, error) from exc

    def _call_read(self, fn: Work[T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, self._busy_ms, readonly=True)
            self._local.conn = conn
            with self._conns_lock:
                self._read_conns.append(conn)
        return fn(conn)

    async def close(self) -> None:
        """Finish what is queued, stop the writer, close every connection."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._writer.join)
        await asyncio.to_thread(self._readers.shutdown, True)
        with self._conns_lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()

    # -- the writer thread ------------------------------------------------------------

    def _serve(self, conn: sqlite3.Connection, turn: WriterTurn) -> None:
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is _STOP:
                    break
                batch = [first]
                while len(batch) < self._batch_size:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    batch.append(item)
                self._run_batch(conn, turn, [u for u in batch if isinstance(u, _Unit)])
        finally:
            conn.close()
            turn.close()

    def _run_batch(self, conn: sqlite3.Connection, turn: WriterTurn,
                   batch: list[_Unit]) -> None:
        turn.acquire()
        try:
            outcomes = self._commit(conn, batch)
        except BaseException as exc:  # the writer must outlive any failure
            log.exception("sqlite write batch of %d failed", len(batch))
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("rollback after a failed batch failed")
            outcomes = [(False, _batch_error(exc, u.error)) for u in batch]
        finally:
            turn.release()
        _deliver(batch, outcomes)

    def _commit(self, conn: sqlite3.Connection,
                batch: list[_Unit]) -> list[tuple[bool, Any]]:
        for attempt in range(_BUSY_RETRIES):
            try:
                conn.execute("BEGIN IMMEDIATE")
                self.batch_no += 1
                outcomes = [_apply(conn, unit) for unit in batch]
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or attempt == _BUSY_RETRIES - 1:
                    raise
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                log.warning("sqlite busy, retrying a batch of %d (%s)", len(batch), exc)
                time.sleep(0.01 * (attempt + 1))
                continue
            return outcomes
        raise StoreError("unreachable")  # pragma: no cover


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
    """Resolve futures with one hop per event loop (not one per unit)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for unit, (ok, value) in zip(batch, outcomes, strict=True):
        if unit.loop is None or unit.future is None:
            if not ok:
                log.error("background write failed: %s", value)
            continue
        by_loop.setdefault(unit.loop, []).append((unit.future, ok, value))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            log.debug("dropping %d answers for a closed event loop", len(items))


def _resolve(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in items:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
