"""The dispatch benchmark's parts count right: the provider stand-in answers late and counts
what came in, the bench driver maps its answers. Speed is never asserted here."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from benchmarks.dispatch import stats
from benchmarks.httpdriver import BenchHttpDriver
from benchmarks.run import free_port

from otpgate.drivers.base import Message

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def standin() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.provider", "--port", str(port),
                             "--latency-ms", "50"], cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                stats(port)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)


def message(n: int) -> Message:
    return Message(otp_id=f"otp_{n}", send_no=1, channel="sms", to="+14155550123",
                   body="Your code is 123456", idempotency_key=f"otp_{n}:1:sms",
                   expires_at=0.0)


@pytest.mark.parametrize("client", ["raw", "httpx"])
async def test_the_stand_in_takes_every_message_after_its_latency_and_counts_it(
    standin: int, client: str
) -> None:
    before = stats(standin)["count"]
    driver = BenchHttpDriver("127.0.0.1", standin, "/messages", "bench", client=client)
    started = time.monotonic()
    try:
        receipts = await asyncio.gather(*(driver.send(message(n)) for n in range(30)))
    finally:
        await driver.close()
    took = time.monotonic() - started
    found = stats(standin)
    assert found["count"] - before == 30
    assert len({r.provider_id for r in receipts}) == 30
    assert took >= 0.05
    assert stats(standin, before=found["last"])["before"] == found["count"]
