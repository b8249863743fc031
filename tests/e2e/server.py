"""Run ``otpgate serve`` as a real subprocess for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing — a crash."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


UNGUARDED = {"OTPGATE_PUMPING_MODE": "off", "OTPGATE_RATE_LIMITS": "prefix=off,new-prefix=off"}
"""These tests send codes to runs of sequential numbers that nobody verifies — SMS pumping,
to the guard (its own tests are ``tests/contract/test_abuse_at_scale.py`` and
``tests/integration/test_api_abuse.py``); a test may set the variables back."""


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTPGATE_")}
    full_env.update({"OTPGATE_LOG_LEVEL": "debug", "PYTHONUNBUFFERED": "1", **UNGUARDED})
    full_env.update(env or {})
    return full_env


def _spawn(cmd: list[str], log: Path, env: Mapping[str, str] | None,
           preexec: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env=_environment(env), start_new_session=True,
                                preexec_fn=preexec)


def start_worker(data_dir: Path, log: Path, env: Mapping[str, str] | None = None,
                 extra: tuple[str, ...] = ()) -> Server:
    """``otpgate worker`` on ``data_dir`` (it serves no HTTP: ``url`` is empty)."""
    proc = _spawn([sys.executable, "-m", "otpgate", "worker", *extra], log,
                  {"OTPGATE_DATA_DIR": str(data_dir), **(env or {})})
    return Server(proc, "", log)


def start(data_dir: Path, log: Path, env: Mapping[str, str] | None = None,
          dev: bool = True, timeout: float = 30.0, extra: tuple[str, ...] = (),
          preexec: Callable[[], None] | None = None) -> Server:
    """``otpgate serve`` on a free port, once ``/readyz`` answers 200 (``preexec`` runs in
    the child before it starts, e.g. to limit its resources)."""
    port = free_port()
    cmd = [sys.executable, "-m", "otpgate", "serve", "--port", str(port),
           "--data-dir", str(data_dir), "--dev" if dev else "--no-dev", *extra]
    proc = _spawn(cmd, log, env, preexec)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.output()}")
        try:
            if httpx.get(server.url + "/readyz", timeout=1.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    server.kill()
    raise RuntimeError(f"server did not become ready:\n{server.output()}")
