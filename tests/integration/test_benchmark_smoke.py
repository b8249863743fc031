"""The load generator counts requests and statuses right, against a real server process.

Speed is never asserted here: only that what was sent is what the report says. The server is
``otpgate serve --dev``; a small stand-in app below answers ``/flaky`` with a known mix of
statuses, for counting. Running this file as a script serves it: ``python this.py PORT``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


# -- the stand-in app -----------------------------------------------------------------------

async def standin_app(scope: Scope, receive: Receive, send: Send) -> None:
    """``/healthz`` 200 (to know it is up); ``GET /flaky/{n}``: 429 when n % 5 == 0, else
    200; anything else 404."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    path = scope["path"]
    status: int = 404
    body: dict[str, object] = {"type": "not-found"}
    if path == "/healthz":
        status, body = 200, {"status": "ok"}
    elif path.startswith("/flaky/"):
        status = 429 if int(path.rsplit("/", 1)[1]) % 5 == 0 else 200
        body = {"n": path}
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


# -- server processes -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


@dataclass
class Server:
    url: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = _free_port()
    workdir = tmp_path_factory.mktemp("bench-smoke")
    cmd = [sys.executable, "-m", "otpgate", "serve", "--dev", "--port", str(port),
           "--data-dir", str(workdir / "data")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTPGATE_")}
    env["OTPGATE_LOG_LEVEL"] = "warning"
    log = workdir / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not _healthy(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield Server(f"http://127.0.0.1:{port}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def standin() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not _healthy(port):
            assert proc.poll() is None, "the stand-in exited"
            assert time.monotonic() < deadline, "the stand-in did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def loadgen(*args: str) -> dict[str, Any]:
    """The load generator as its own process, as the runner uses it; its JSON report."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.loadgen", "--json", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


# -- the tests ------------------------------------------------------------------------------


def test_healthz_counts_every_request(server: Server) -> None:
    report = loadgen("--url", server.url, "--scenario", "healthz", "-n", "57", "-c", "4",
                     "-d", "60")
    assert report["completed"] == report["ok"] == 57
    assert report["statuses"] == {"200": 57}
    assert report["errors"] == {}
    assert report["unexpected"] == 0
    assert report["rps"] > 0
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]


def test_otp_then_verify_counts_statuses_and_keeps_ids(server: Server, tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    report = loadgen("--url", server.url, "--scenario", "otp", "-n", "12", "-c", "3",
                     "-d", "60", "--save-ids", str(ids_file), "--purpose", "smoke")
    assert report["statuses"] == {"202": 12}
    assert report["ok"] == report["ids_saved"] == 12
    ids = ids_file.read_text().split()
    assert len(set(ids)) == 12

    # two wrong answers per OTP, plus unknown ids that must come back 404
    ids_file.write_text("\n".join([*ids, "otp_unknown1", "otp_unknown2"]) + "\n")
    report = loadgen("--url", server.url, "--scenario", "verify", "-n", "1000", "-c", "3",
                     "-d", "60", "--ids-file", str(ids_file), "--attempts", "2")
    assert report["planned"] == report["completed"] == 28
    assert report["statuses"] == {"200": 24, "404": 4}
    assert report["ok"] == 24
    assert report["unexpected"] == 4


def test_deadline_bounds_the_run(server: Server) -> None:
    report = loadgen("--url", server.url, "--scenario", "healthz", "-n", "100000000", "-c", "2",
                     "-d", "0.3")
    assert 0 < report["completed"] < 100000000
    assert report["elapsed_s"] < 5
    assert report["statuses"] == {"200": report["completed"]}


def test_transport_errors_are_counted_not_fatal(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens here
    done = subprocess.run([sys.executable, "-m", "benchmarks.loadgen", "--json",
                           "--url", f"http://127.0.0.1:{port}", "-n", "5", "-c", "1", "-d", "10"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    report = json.loads(done.stdout)
    assert done.returncode == 1
    assert report["completed"] == 0
    assert sum(report["errors"].values()) == 5


def test_mixed_statuses_are_counted_exactly(standin: str) -> None:
    # The healthz scenario's request, aimed elsewhere, is not configurable; use the library.
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import loadgen as lg
    finally:
        sys.path.remove(str(ROOT))
    host = standin.removeprefix("http://")
    plan = lg.Plan("healthz", 50,
                   lambda i: f"GET /flaky/{i} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    result = lg.run_sync(standin, plan, connections=5, duration=60.0)
    report = result.to_dict()
    assert report["completed"] == 50
    assert report["statuses"] == {"200": 40, "429": 10}
    assert report["ok"] == 40
    assert report["unexpected"] == 10
    assert len(result.latencies_ns) == 50


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(standin_app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False)
