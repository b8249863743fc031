"""Proving a consumer of the database file dead, so that its leases need not run out.

Every consumer holds an exclusive ``flock`` on a file named after its owner id, in a
directory beside the database (``otpgate.db-owners/<owner>.lock``), for as long as it lives.
The kernel drops a process's locks when it ends, however it ends (``kill -9`` included): a
lock another process can take belongs to a consumer that is gone, and the leases it left
can be handed on at once. A lock file appears already locked (it is locked under a
temporary name, then renamed), so a consumer that is starting is never mistaken for a dead
one. Where ``fcntl`` does not exist nothing is ever proven dead and leases run out as
before.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

_SUFFIX = ".lock"


@dataclass(frozen=True, slots=True)
class Gone:
    """A consumer proven dead; its lock is held (by ``fd``) until ``Owners.forget``."""

    owner: str
    path: Path
    fd: int


class Owners:
    """This consumer's lock, and the search for the locks of dead ones."""

    def __init__(self, db_path: Path, owner: str) -> None:
        self._dir = db_path.with_name(db_path.name + "-owners")
        self.owner = owner
        self._fd: int | None = None
        self._tried = False

    def hold(self) -> None:
        """Take this consumer's lock (once; before it leases anything)."""
        if fcntl is None or self._tried:
            return
        self._tried = True
        try:
            self._dir.mkdir(mode=0o700, exist_ok=True)
            hidden = self._dir / f".{self.owner}.tmp"
            fd = os.open(hidden, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.replace(hidden, self._dir / (self.owner + _SUFFIX))
        except OSError:
            log.warning("cannot hold a consumer lock in %s: if this process dies, its "
                        "leases run out instead of being handed on", self._dir,
                        exc_info=True)
            return
        self._fd = fd

    def dead(self) -> list[Gone]:
        """The other consumers whose lock is free, each locked now by this one."""
        if fcntl is None or self._fd is None:
            return []
        found: list[Gone] = []
        try:
            entries = list(os.scandir(self._dir))
        except OSError:
            return []
        for entry in entries:
            owner = entry.name.removesuffix(_SUFFIX)
            if not entry.name.endswith(_SUFFIX) or owner == self.owner:
                continue
            try:
                fd = os.open(entry.path, os.O_RDWR)
            except OSError:  # forgotten meanwhile by another process
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # alive (or another process is burying it right now)
                os.close(fd)
                continue
            found.append(Gone(owner, Path(entry.path), fd))
        return found

    @staticmethod
    def forget(gone: list[Gone], *, remove: bool) -> None:
        """Let go of the locks ``dead`` took; ``remove`` the files once the dead consumers'
        leases are handed on (until then another process may find them again)."""
        for item in gone:
            if remove:
                with contextlib.suppress(OSError):
                    item.path.unlink()
            os.close(item.fd)

    def release(self, *, remove: bool = True) -> None:
        """Drop this consumer's lock when it stops; ``remove`` its file once its leases
        are handed back (a file left behind lets others prove it gone)."""
        if self._fd is None:
            return
        if remove:
            with contextlib.suppress(OSError):
                (self._dir / (self.owner + _SUFFIX)).unlink()
        os.close(self._fd)
        self._fd = None
        self._tried = False
