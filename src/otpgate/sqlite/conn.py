"""SQLite connections of the embedded backend: pragmas, schema migrations, error wrapping,
and the background WAL checkpoint."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from otpgate.errors import OtpgateError, StoreError
from otpgate.sqlite.schema import MIGRATIONS
from otpgate.sqlite.turn import WriterTurn

log = logging.getLogger(__name__)

ErrorType = type[OtpgateError]

_BUSY_RETRIES = 5
JOURNAL_LIMIT_BYTES = 16 * 1024 * 1024
REWIND_FRAMES = 4000
"""WAL frames (pages) after which a checkpoint pauses writers to let the WAL rewind."""


def is_busy(exc: sqlite3.Error) -> bool:
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
    # Checkpoints (which fsync) run on their own thread, never inside a commit; a WAL that
    # grew large is cut back to this size once it is rewound.
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_LIMIT_BYTES}")
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
            if not is_busy(exc) or attempt == _BUSY_RETRIES - 1:
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


class Checkpointer:
    """Copies the WAL back into the database file every ``interval`` seconds, on a thread
    of its own, so that no commit ever waits for a checkpoint's fsync.

    Under steady writes a passive checkpoint never catches up with the last frame, and
    SQLite rewinds the WAL only when one has: so once the WAL passes ``REWIND_FRAMES``,
    the checkpointer takes the writers' turn (they retry meanwhile, without blocking their
    event loops) for one full checkpoint, and the next write starts the WAL afresh.
    """

    def __init__(self, path: Path, busy_timeout_ms: int, interval: float) -> None:
        self._path, self._busy_ms, self._interval = path, busy_timeout_ms, interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="otpgate-sqlite-checkpoint",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = connect(self._path, self._busy_ms)
        turn = WriterTurn(self._path)
        try:
            while not self._stopping.wait(self._interval):
                frames = self._checkpoint(conn, "PASSIVE")
                if frames > REWIND_FRAMES:
                    turn.acquire()
                    try:
                        self._checkpoint(conn, "RESTART")
                    finally:
                        turn.release()
            self._checkpoint(conn, "PASSIVE")  # TRUNCATE would make other processes wait
        finally:
            conn.close()
            turn.close()

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection, mode: str) -> int:
        """Run a checkpoint; return the WAL's size in frames."""
        try:
            _, frames, _ = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error:
            log.warning("sqlite checkpoint (%s) failed; trying again later", mode,
                        exc_info=True)
            return 0
        return int(frames)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
