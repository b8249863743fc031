"""Idempotency-Key holds under concurrency: two server processes, no resend cooldown, many
pairs of simultaneous requests with one key each — one code and one SMS per key, and the
same 202 for both requests of a pair (never a 422 for an answer whose SMS went out)."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from pathlib import Path

import anyio
import httpx

from tests.e2e import server as srv

PAIRS = 150


def numbers(count: int) -> list[str]:
    return [f"+1415201{n:04d}" for n in range(count)]


async def fire_pairs(url: str, recipients: list[str]) -> list[tuple[httpx.Response, ...]]:
    """For each recipient, two requests with one Idempotency-Key, sent at the same moment
    on two connections (so that the two server processes may each take one)."""
    pairs: list[tuple[httpx.Response, ...]] = []
    limit = anyio.Semaphore(8)
    async with httpx.AsyncClient(base_url=url, timeout=20.0) as one, \
            httpx.AsyncClient(base_url=url, timeout=20.0) as two:

        async def pair(n: int, to: str) -> None:
            got: list[httpx.Response] = []

            async def post(client: httpx.AsyncClient) -> None:
                got.append(await client.post("/v1/otp", json={"to": to},
                                             headers={"Idempotency-Key": f"key-{n}"}))

            async with limit, anyio.create_task_group() as both:
                both.start_soon(post, one)
                both.start_soon(post, two)
            pairs.append(tuple(got))

        async with anyio.create_task_group() as tg:
            for n, to in enumerate(recipients):
                tg.start_soon(pair, n, to)
    return pairs


def sent(db: Path) -> tuple[Counter[str], int]:
    """Messages captured per recipient, and dispatches not yet settled."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute('SELECT "to", count(*) FROM captured GROUP BY "to"').fetchall()
        waiting = conn.execute("SELECT count(*) FROM deliveries WHERE subscription LIKE "
                               "'dispatch.%'").fetchone()[0]
    return Counter(dict(rows)), int(waiting)


def test_one_key_sends_one_sms_however_many_workers_race_for_it(tmp_path: Path) -> None:
    data = tmp_path / "var"
    server = srv.start(data, tmp_path / "server.log", extra=("--workers", "2"),
                       env={"OTPGATE_POLICY_RESEND_COOLDOWN": "0"})
    recipients = numbers(PAIRS)
    try:
        pairs = anyio.run(fire_pairs, server.url, recipients)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            counts, waiting = sent(data / "otpgate.db")
            if sum(counts.values()) >= PAIRS and waiting == 0:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # a second send, were there one, would be queued by now
        counts, waiting = sent(data / "otpgate.db")
    finally:
        server.stop()
    statuses = Counter(r.status_code for pair in pairs for r in pair)
    assert statuses == {202: 2 * PAIRS}, statuses
    for first, second in pairs:
        assert first.json() == second.json()
        assert {first.headers.get("idempotent-replayed"),
                second.headers.get("idempotent-replayed")} == {None, "true"}
    assert waiting == 0
    assert counts == Counter(dict.fromkeys(recipients, 1))
