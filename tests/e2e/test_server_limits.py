"""What a real ``otpgate serve`` does to clients that hold it before authentication:
heads too large, heads and bodies too slow — spoken to over raw sockets."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import server as srv

TIMEOUT = 1.0
"""The server's request deadline in these tests (OTPGATE_REQUEST_TIMEOUT)."""


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[srv.Server]:
    base = tmp_path_factory.mktemp("limits")
    server = srv.start(base / "var", base / "server.log",
                       {"OTPGATE_REQUEST_TIMEOUT": str(TIMEOUT)})
    yield server
    server.stop()


def _connect(server: srv.Server) -> socket.socket:
    port = int(server.url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT * 5)


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or 5 deadlines pass)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_an_oversized_header_is_answered_431_and_closed(running: srv.Server) -> None:
    with _connect(running) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
                     + b"a" * 9000 + b"\r\n\r\n")
        answer = _read_all(sock)
    assert _status(answer) == 431
    assert b"application/problem+json" in answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["status"] == 431


def test_more_than_64_headers_are_answered_431(running: srv.Server) -> None:
    headers = b"".join(b"X-H%d: 1\r\n" % i for i in range(65))
    with _connect(running) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n")
        assert _status(_read_all(sock)) == 431


def test_unfinished_huge_headers_held_open_do_not_grow_the_server(running: srv.Server) -> None:
    before = _rss_kib(running.proc.pid)
    socks = [_connect(running) for _ in range(30)]
    try:
        for sock in socks:  # 2 MiB of one header each, never finished, all held open
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for _ in range(32):
                    sock.sendall(b"a" * 65536)
        grown_mib = (_rss_kib(running.proc.pid) - before) / 1024
        assert grown_mib < 20, f"the server grew by {grown_mib:.0f} MiB"
        answers = [_read_all(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert all(_status(a) == 431 or a == b"" for a in answers)


def test_a_head_sent_too_slowly_is_closed_after_the_deadline(running: srv.Server) -> None:
    with _connect(running) as sock:
        start = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = b""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(20):  # a header line every 0.2 s, never the blank line
                sock.sendall(b"X-Slow: 1\r\n")
                sock.settimeout(0.2)
                try:
                    answer += sock.recv(65536)
                except TimeoutError:
                    continue
                if answer:
                    break
        sock.settimeout(TIMEOUT * 5)
        answer += _read_all(sock)
        took = time.monotonic() - start
    assert _status(answer) == 408
    assert TIMEOUT * 0.9 <= took < TIMEOUT + 2


def test_a_body_shorter_than_its_content_length_is_closed_after_the_deadline(
    running: srv.Server,
) -> None:
    with _connect(running) as sock:
        start = time.monotonic()
        sock.sendall(b"POST /v1/otp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n"
                     b"Content-Type: application/json\r\n\r\n" + b'{"to": "+1415')
        answer = _read_all(sock)
        took = time.monotonic() - start
    assert _status(answer) == 408
    assert TIMEOUT * 0.9 <= took < TIMEOUT + 2
    assert "Traceback" not in running.output()
    assert " 500" not in running.output()


def test_an_idle_connection_that_never_sends_is_closed(running: srv.Server) -> None:
    with _connect(running) as sock:
        start = time.monotonic()
        assert _read_all(sock) == b""
        assert time.monotonic() - start < TIMEOUT + 2


def test_a_keep_alive_client_sends_request_after_request_on_one_connection(
    running: srv.Server,
) -> None:
    with _connect(running) as sock:
        for _ in range(3):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while not answer.endswith(b'{"status":"ok"}'):
                answer += sock.recv(65536)
            assert _status(answer) == 200
            time.sleep(TIMEOUT * 0.6)  # a pause between requests restarts the deadline
        body = json.dumps({"to": "+14155550123"}).encode()
        sock.sendall(b"POST /v1/otp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        answer = b""
        while b"attempts_left" not in answer:
            answer += sock.recv(65536)
        assert _status(answer) == 202
