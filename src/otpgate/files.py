"""Private files: the data dir (0700) and what lives in it — the database and its WAL,
shared-memory and lock files, the secret key — (0600), whatever the umask.

Modes are set when a file or the dir is created; one that exists with looser modes is
left as it is (an operator may have chosen them) and logged as a warning.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) with mode 0700 for the last part; warn when it
    exists and others may read or enter it."""
    try:
        path.mkdir(parents=True, mode=DIR_MODE)
    except FileExistsError:
        warn_if_open(path)
        return
    os.chmod(path, DIR_MODE)  # mkdir's mode is cut by the umask, never widened


def create_private(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists (then warn if it is open to
    others); whether it was created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        warn_if_open(path)
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True


def warn_if_open(path: Path) -> None:
    """A warning if ``path`` is readable, writable or (a dir) searchable by others."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        kind = "directory" if path.is_dir() else "file"
        log.warning("%s %s is open to other users (mode %o); chmod %o it", kind, path, mode,
                    DIR_MODE if kind == "directory" else FILE_MODE)
