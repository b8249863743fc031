"""SIGTERM: what was sent before it is answered, what was being sent goes out, exit 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import time
from pathlib import Path

from tests.e2e import server as srv

SLOW = {"OTPGATE_DRIVERS_SMS": "capture://?latency_ms=400", "OTPGATE_LOG_LEVEL": "warning"}


def post_otp(to: str) -> bytes:
    body = json.dumps({"to": to}).encode()
    return (f"POST /v1/otp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def answer_status(sock: socket.socket) -> int:
    """The status of the one HTTP/1.1 answer on ``sock`` (read to its last byte)."""
    sock.settimeout(20)
    data = b""
    while b"\r\n\r\n" not in data:
        if not (chunk := sock.recv(65536)):
            raise ConnectionResetError("closed without an answer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        if not (chunk := sock.recv(65536)):
            raise ConnectionResetError("closed in the middle of an answer")
        body += chunk
    return int(head.split()[1])


def captured(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT otp_id FROM captured")}


def test_sigterm_answers_every_request_in_flight_sends_its_codes_and_exits_0(
    tmp_path: Path,
) -> None:
    data = tmp_path / "var"
    server = srv.start(data, tmp_path / "server.log", SLOW)
    port = int(server.url.rsplit(":", 1)[1])
    try:
        # Keep-alive connections the server has accepted, and fresh ones it may not have.
        kept = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        for sock in kept:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert answer_status(sock) == 200
        fresh = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
        connections = kept + fresh
        for n, sock in enumerate(connections):
            sock.sendall(post_otp(f"+1415300{n:04d}"))
        os.kill(server.proc.pid, signal.SIGTERM)
        statuses = []
        for sock in connections:
            try:
                statuses.append(answer_status(sock))
            except OSError as exc:
                statuses.append(type(exc).__name__)
            sock.close()
        started = time.monotonic()
        code = server.proc.wait(timeout=30)
        stopped_in = time.monotonic() - started
    finally:
        server.kill()
    assert statuses == [202] * len(connections)
    assert code == 0
    assert len(captured(data / "otpgate.db")) == len(connections), "sends were cut off"
    assert stopped_in < 10


def test_a_worker_finishes_the_sends_it_has_in_flight_on_sigterm_and_exits_0(
    tmp_path: Path,
) -> None:
    data, log = tmp_path / "var", tmp_path / "processes.log"
    api = srv.start(data, log, extra=("--api-only",))
    try:
        port = int(api.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            for n in range(30):
                sock.sendall(post_otp(f"+1415300{n:04d}"))
                assert answer_status(sock) == 202
    finally:
        api.stop()
    worker = srv.start_worker(data, log, {"OTPGATE_DEV": "true", **SLOW})
    try:
        db = data / "otpgate.db"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sending(db) < 30:  # out at the "provider"
            time.sleep(0.02)
        assert sending(db) == 30
        os.kill(worker.proc.pid, signal.SIGTERM)
        code = worker.proc.wait(timeout=30)
    finally:
        worker.kill()
    assert code == 0
    assert len(captured(db)) == 30, "sends in flight were cut off"


def test_a_worker_hands_back_the_sends_that_outlast_its_grace_and_the_next_sends_them_now(
    tmp_path: Path,
) -> None:
    data, log = tmp_path / "var", tmp_path / "processes.log"
    api = srv.start(data, log, extra=("--api-only",))
    try:
        port = int(api.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            for n in range(10):
                sock.sendall(post_otp(f"+1415300{n:04d}"))
                assert answer_status(sock) == 202
    finally:
        api.stop()
    db = data / "otpgate.db"
    hung = srv.start_worker(data, log, {"OTPGATE_DEV": "true", "OTPGATE_SHUTDOWN_GRACE": "1",
                                        "OTPGATE_DRIVERS_SMS": "capture://?latency_ms=20000"})
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sending(db) < 10:
            time.sleep(0.02)
        os.kill(hung.proc.pid, signal.SIGTERM)
        started = time.monotonic()
        code = hung.proc.wait(timeout=30)
        stopped_in = time.monotonic() - started
    finally:
        hung.kill()
    assert code == 0
    assert stopped_in < 5, "the grace was not kept"
    assert captured(db) == set()
    # Handed back: the next worker need not wait for the leases (30 s) to run out.
    nxt = srv.start_worker(data, log, {"OTPGATE_DEV": "true"})
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(captured(db)) < 10:
            time.sleep(0.05)
    finally:
        nxt.stop()
    assert len(captured(db)) == 10


def sending(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(
            "SELECT count(*) FROM ledger WHERE status = 'sending'").fetchone()[0])
