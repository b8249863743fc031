"""A full disk: the server says it is not ready, and its answers say nothing internal.

The server process may write no file past a size (``RLIMIT_FSIZE``, as a full file system
would refuse to let it grow), and its database file is already that size when it starts:
the database cannot grow, so its WAL fills and nothing commits any more.
"""

from __future__ import annotations

import resource
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.e2e import server as srv

LIMIT = 1024 * 1024
"""Bytes any file of the server may hold."""


def fill(db: Path) -> None:
    """A database file of ``LIMIT`` bytes (a table otpgate never reads takes the room)."""
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE filler (blob BLOB)")
        while db.stat().st_size < LIMIT:
            conn.execute("INSERT INTO filler VALUES (randomblob(4000))")
            conn.commit()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def disk_full() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write fails, it does not kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def test_a_full_disk_turns_readyz_503_and_no_answer_shows_the_internal_error(
    tmp_path: Path,
) -> None:
    data = tmp_path / "var"
    fill(data / "otpgate.db")
    server = srv.start(data, tmp_path / "server.log", {"OTPGATE_LOG_LEVEL": "warning"},
                       preexec=disk_full)
    try:
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            numbers = (f"+1415300{n:04d}" for n in range(10_000))
            refused = fill_up(client, numbers)
            # The WAL's last frames may still take a probe or two before none fits.
            deadline = time.monotonic() + 20
            while (ready := client.get("/readyz")).status_code == 200 \
                    and time.monotonic() < deadline:
                refused = fill_up(client, numbers)
            later = []
            for _ in range(2):  # probes a second apart: the verdict holds
                time.sleep(1.1)
                later.append(client.get("/readyz"))
    finally:
        server.kill()
    for answer in (refused[-1], ready, *later):
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["retry-after"] == "1"
        assert answer.json()["type"].endswith("/store-unavailable")
        for internal in ("full", "I/O", "OperationalError", "sqlite"):
            assert internal not in answer.text


def fill_up(client: httpx.Client, numbers: Iterator[str]) -> list[httpx.Response]:
    """Request codes until 20 in a row are refused (the file cannot take them)."""
    refused: list[httpx.Response] = []
    for to in numbers:
        answer = client.post("/v1/otp", json={"to": to})
        refused = [*refused, answer] if answer.status_code != 202 else []
        if len(refused) >= 20:
            return refused
    raise AssertionError("the disk never filled")
