"""A provider stand-in for the dispatch benchmarks: an HTTP server on loopback that takes
every message after a fixed delay, like an SMS API at 50 ms.

``POST /messages`` (any JSON body with an ``idempotency_key``) answers 200
``{"id": "msg_N"}`` after ``--latency-ms``; ``GET /stats`` answers how many messages came in,
how many distinct keys they carried, and when the first and the last arrived
(``time.monotonic()``, the clock every process of this machine shares); ``GET /stats?before=T``
adds how many came in before ``T``. Plain asyncio on raw transports (uvloop when installed),
HTTP/1.1 keep-alive, no pipelining assumed but tolerated::

    python -m benchmarks.provider --port 9900 --latency-ms 50
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import sys
import time
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlsplit


class Inbox:
    """What the stand-in received."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.keys: set[str] = set()

    def take(self, body: bytes) -> int:
        self.arrivals.append(time.monotonic())
        try:
            key = json.loads(body).get("idempotency_key")
        except (ValueError, AttributeError):
            key = None
        if isinstance(key, str):
            self.keys.add(key)
        return len(self.arrivals)

    def stats(self, before: float | None) -> dict[str, object]:
        found: dict[str, object] = {
            "count": len(self.arrivals), "distinct": len(self.keys),
            "first": self.arrivals[0] if self.arrivals else None,
            "last": self.arrivals[-1] if self.arrivals else None}
        if before is not None:
            found["before"] = bisect.bisect_right(self.arrivals, before)
        return found


class _Http(asyncio.Protocol):
    """One connection: requests read to the end of their ``Content-Length``, answers in
    order."""

    def __init__(self, inbox: Inbox, latency: float) -> None:
        self._inbox = inbox
        self._latency = latency
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._queue: asyncio.Queue[asyncio.Future[bytes]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._writer = asyncio.get_running_loop().create_task(self._write())

    def connection_lost(self, exc: Exception | None) -> None:
        if self._writer is not None:
            self._writer.cancel()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buf[:end]).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self._buf) < end + 4 + length:
                return
            body = bytes(self._buf[end + 4:end + 4 + length])
            del self._buf[:end + 4 + length]
            method, target = [*head.split(" ", 2), "", ""][:2]
            self._queue.put_nowait(self._answer(method, target, body))

    def _answer(self, method: str, target: str, body: bytes) -> asyncio.Future[bytes]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bytes] = loop.create_future()
        parts = urlsplit(target)
        if method == "POST" and parts.path == "/messages":
            n = self._inbox.take(body)
            loop.call_later(self._latency, answer.set_result,
                            _response(200, {"id": f"msg_{n}"}))
        elif method == "GET" and parts.path == "/stats":
            query = dict(parse_qsl(parts.query))
            before = float(query["before"]) if "before" in query else None
            answer.set_result(_response(200, self._inbox.stats(before)))
        else:
            answer.set_result(_response(404, {"error": "not found"}))
        return answer

    async def _write(self) -> None:
        while True:
            answer = await self._queue.get()
            payload = await answer
            if self._transport is None or self._transport.is_closing():
                return
            self._transport.write(payload)


def _response(status: int, body: object) -> bytes:
    payload = json.dumps(body).encode()
    reason = "OK" if status == 200 else "Not Found"
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload


async def serve(host: str, port: int, latency_ms: float) -> None:
    inbox = Inbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Http(inbox, latency_ms / 1000), host, port,
                                      backlog=1024)
    print(f"provider stand-in on http://{host}:{port} ({latency_ms:g} ms)", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.provider",
                                     description="A provider stand-in that answers late.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        asyncio.run(serve(args.host, args.port, args.latency_ms))
        return 0
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.host, args.port, args.latency_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
