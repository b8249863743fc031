"""A real ``otpgate worker`` whose provider's errors quote the code and the number: what
its standard error, its ledger and its outcome events keep."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.server import _environment
from tests.leaky import NUMBER

ROOT = Path(__file__).resolve().parents[2]
WORKER = ("from otpgate import registry; "
          "registry.DRIVERS['leaky'] = ('tests.leaky:from_url', None); "
          "from otpgate.cli import main; main(['worker'])")


def _ledger(db: Path) -> list[tuple[str, str | None]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        rows: list[tuple[str, str | None]] = conn.execute(
            "SELECT status, error FROM ledger").fetchall()
    return rows


def test_a_worker_logs_and_records_a_leaky_driver_error_masked(tmp_path: Path) -> None:
    revealed = tmp_path / "revealed"
    env = _environment({"OTPGATE_DATA_DIR": str(tmp_path / "var"),
                        "OTPGATE_DRIVERS_SMS": f"leaky://?reveal={revealed}",
                        "OTPGATE_BUS_MAX_DELIVERIES": "1"})
    queued = subprocess.run([sys.executable, "-m", "otpgate", "send", "--to", NUMBER],
                            env=env, capture_output=True, timeout=60, check=False)
    assert queued.returncode == 0, queued.stderr
    stderr = tmp_path / "worker.err"
    with stderr.open("wb") as err:
        worker = subprocess.Popen([sys.executable, "-c", WORKER], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=err,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not any(status == "failed" for status, _ in _ledger(tmp_path / "var"
                                                                   / "otpgate.db")):
            assert worker.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.05)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=15)
    number, code = revealed.read_text().split()
    logged = stderr.read_text()
    [(_, error)] = _ledger(tmp_path / "var" / "otpgate.db")
    assert "HTTPStatusError" in logged and error is not None and "HTTPStatusError" in error
    for text in (logged, error):
        assert code not in text
        assert number[1:] not in text and "%2B" + number[1:] not in text
