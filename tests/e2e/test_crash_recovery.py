"""An accepted OTP is sent exactly once, even when the server is killed mid-drain."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from pathlib import Path

import anyio
import httpx

from tests.e2e import server as srv

TOTAL = 200


def numbers(count: int) -> list[str]:
    return [f"+1415200{n:04d}" for n in range(count)]


async def request_all(url: str, recipients: list[str]) -> list[str]:
    ids: list[str] = []
    limit = anyio.Semaphore(16)
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:

        async def one(to: str) -> None:
            async with limit:
                answer = await client.post("/v1/otp", json={"to": to})
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])

        async with anyio.create_task_group() as tg:
            for to in recipients:
                tg.start_soon(one, to)
    return ids


def captured(db: Path) -> Counter[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT otp_id FROM captured").fetchall()
    return Counter(r[0] for r in rows)


def test_every_accepted_otp_is_captured_exactly_once_across_a_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "var"
    log = tmp_path / "server.log"
    # A slow provider keeps sends in flight when the process dies; short leases let the
    # restarted process take them over quickly.
    slow = {"OTPGATE_DRIVERS_SMS": "capture://?latency_ms=60", "OTPGATE_BUS_LEASE": "2"}
    first = srv.start(data, log, slow)
    try:
        ids = anyio.run(request_all, first.url, numbers(TOTAL))
    finally:
        first.kill()
    assert len(set(ids)) == TOTAL
    before = captured(data / "otpgate.db")
    assert sum(before.values()) < TOTAL, "the dispatcher drained before the kill"

    second = srv.start(data, log, {"OTPGATE_BUS_LEASE": "2"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(captured(data / "otpgate.db")) < TOTAL:
            time.sleep(0.1)
        time.sleep(2.5)  # one more lease period: nothing may arrive twice after the drain
        after = captured(data / "otpgate.db")
    finally:
        second.stop()
    assert set(after) == set(ids)
    assert all(n == 1 for n in after.values()), [k for k, n in after.items() if n > 1]


def sending(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(
            "SELECT count(*) FROM ledger WHERE status = 'sending'").fetchone()[0])


def test_codes_in_flight_at_a_kill_9_leave_within_2_s_of_the_restart(tmp_path: Path) -> None:
    data, log = tmp_path / "var", tmp_path / "server.log"
    db = data / "otpgate.db"
    # The provider never answers before the kill; leases keep their default of 30 s.
    first = srv.start(data, log, {"OTPGATE_DRIVERS_SMS": "capture://?latency_ms=20000"})
    try:
        ids = anyio.run(request_all, first.url, numbers(50))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sending(db) < 50:
            time.sleep(0.02)
    finally:
        first.kill()
    assert sending(db) == 50, "the codes were not all in flight at the kill"

    second = srv.start(data, log)
    try:
        restarted = time.monotonic()  # it answers /readyz
        deadline = restarted + 10
        while time.monotonic() < deadline and len(captured(db)) < 50:
            time.sleep(0.02)
        took = time.monotonic() - restarted
        after = captured(db)
    finally:
        second.stop()
    assert set(after) == set(ids)
    assert all(n == 1 for n in after.values())
    assert took < 2, f"the codes left {took:.1f} s after the restart"
