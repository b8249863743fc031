"""A minimal HTTP/1.1 keep-alive load generator for otpgate, on asyncio (uvloop when present).

``C`` connections each send one request, read the whole response (status line, headers and a
``Content-Length`` body), then send the next: no pipelining. Requests are built before the
clock starts; the run stops at ``--requests`` or at the ``--duration`` deadline, whichever
comes first (requests in flight at the deadline are completed and counted). Latency is taken
per request with ``time.perf_counter_ns`` from the write to the last byte of the response.

Run it as its own process, next to (not inside) the server::

    python -m benchmarks.loadgen --url http://127.0.0.1:8080 --scenario healthz --duration 5

Scenarios:

``healthz``  ``GET /healthz`` (the baseline).
``otp``      ``POST /v1/otp``, one distinct valid US number per request (``--first-index``
             picks where in the sequence of numbers to start); ``--save-ids`` keeps the ids
             of the 202 answers, one a line.
``verify``   ``POST /v1/otp/{id}/verify`` with a wrong code, for every id of ``--ids-file``,
             ``--attempts`` rounds (round after round, so one OTP's answers are spread out).

The report (``--json`` for machine use) counts responses by status, transport errors by kind,
and gives requests/s (responses with the expected status only) with p50/p90/p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import msgspec
import phonenumbers

SCENARIOS = ("healthz", "otp", "verify")
EXPECTED_STATUS = {"healthz": 200, "otp": 202, "verify": 200}
WRONG_CODE = "000000"
_AREA = "415"
_FIRST_EXCHANGE = 200  # NANP exchanges run 200..999; lines 0000..9999 inside each


# -- what to send ---------------------------------------------------------------------------


def recipient_numbers(first_index: int, count: int) -> tuple[list[str], int]:
    """``count`` distinct valid E.164 numbers (+1 415 NXX XXXX) from position ``first_index``
    of a fixed sequence, skipping any libphonenumber calls invalid; also the next position."""
    numbers: list[str] = []
    index = first_index
    limit = (1000 - _FIRST_EXCHANGE) * 10_000
    while len(numbers) < count:
        if index >= limit:
            raise ValueError("ran out of bench numbers: lower --first-index or --requests")
        exchange, line = divmod(index, 10_000)
        number = f"+1{_AREA}{_FIRST_EXCHANGE + exchange}{line:04d}"
        index += 1
        if phonenumbers.is_valid_number(phonenumbers.parse(number)):
            numbers.append(number)
    return numbers, index


@dataclass(frozen=True, slots=True)
class Plan:
    """The requests of one run, by position."""

    scenario: str
    total: int
    request: Callable[[int], bytes]
    next_index: int = 0
    """For ``otp``: the first number position not used, where the next run may start."""


def _http(method: str, path: str, host: str, body: bytes = b"", api_key: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: otpgate-loadgen\r\n"
    if api_key:
        head += f"Authorization: Bearer {api_key}\r\n"
    if method != "GET":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode("ascii") + b"\r\n" + body


def build_plan(scenario: str, host: str, requests: int, *, first_index: int = 0,
               purpose: str = "bench", ids: Sequence[str] = (), attempts: int = 4,
               api_key: str = "") -> Plan:
    """Build every request of a run up front, so that no work but I/O is left for the loop."""
    if scenario == "healthz":
        get = _http("GET", "/healthz", host)
        return Plan(scenario, requests, lambda _: get)
    if scenario == "otp":
        numbers, next_index = recipient_numbers(first_index, requests)
        built = [_http("POST", "/v1/otp", host,
                       msgspec.json.encode({"to": n, "purpose": purpose}), api_key)
                 for n in numbers]
        return Plan(scenario, len(built), built.__getitem__, next_index)
    if scenario == "verify":
        if not ids:
            raise ValueError("the verify scenario needs OTP ids (--ids-file)")
        body = msgspec.json.encode({"code": WRONG_CODE})
        per_id = [_http("POST", f"/v1/otp/{otp_id}/verify", host, body, api_key)
                  for otp_id in ids]
        total = min(requests, len(per_id) * attempts)
        count = len(per_id)
        return Plan(scenario, total, lambda i: per_id[i % count])
    raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")


# -- the client -----------------------------------------------------------------------------


class ProtocolError(Exception):
    """The server's answer could not be read as HTTP/1.1 with a Content-Length."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.sent_at = 0
        self.closed = False
        self._buf = bytearray()
        self._need = -1
        self._head_end = 0
        self._status = 0
        self._close = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def send(self, request: bytes,
             loop: asyncio.AbstractEventLoop) -> asyncio.Future[tuple[int, bytes, bool]]:
        assert self.transport is not None
        waiter: asyncio.Future[tuple[int, bytes, bool]] = loop.create_future()
        self.waiter = waiter
        self.sent_at = time.perf_counter_ns()
        self.transport.write(request)
        return waiter

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if self._need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            try:
                if not head.startswith(b"http/1."):
                    raise ProtocolError("not an HTTP/1.x response")
                self._status = int(head[9:12])
                at = head.find(b"\r\ncontent-length:")
                if at < 0:
                    raise ProtocolError("response without Content-Length")
                stop = head.find(b"\r\n", at + 17)
                length = int(head[at + 17:stop if stop >= 0 else len(head)])
            except (ValueError, ProtocolError) as exc:
                self._fail(exc if isinstance(exc, ProtocolError) else ProtocolError(str(exc)))
                return
            self._close = b"\r\nconnection: close" in head
            self._head_end = end + 4
            self._need = end + 4 + length
        if len(buf) >= self._need:
            body = bytes(buf[self._head_end:self._need])
            del buf[:self._need]
            self._need = -1
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result((self._status, body, self._close))

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def timed_out(self) -> None:
        self._fail(TimeoutError("no complete response in time"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc or ConnectionResetError("connection closed by the server"))


class _Id(msgspec.Struct):
    id: str


@dataclass
class Result:
    """What one run measured; ``to_dict`` is the JSON report."""

    scenario: str
    url: str
    connections: int
    planned: int
    expected_status: int
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ns: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    ids: list[str] = field(default_factory=list)
    next_index: int = 0
    started_at: float = 0.0
    """``time.monotonic()`` when the first request went out (shared by this machine's
    processes), and when the last answer came in."""
    ended_at: float = 0.0

    @property
    def completed(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        return self.statuses[self.expected_status]

    def to_dict(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ns)
        elapsed = self.elapsed_s or math.nan
        return {
            "scenario": self.scenario,
            "url": self.url,
            "connections": self.connections,
            "planned": self.planned,
            "completed": self.completed,
            "ok": self.ok,
            "expected_status": self.expected_status,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(sorted(self.errors.items())),
            "unexpected": self.completed - self.ok + sum(self.errors.values()),
            "elapsed_s": round(self.elapsed_s, 4),
            "rps": round(self.ok / elapsed, 1) if self.elapsed_s else 0.0,
            "rps_all": round(self.completed / elapsed, 1) if self.elapsed_s else 0.0,
            "latency_ms": {
                "p50": percentile_ms(lat, 50),
                "p90": percentile_ms(lat, 90),
                "p99": percentile_ms(lat, 99),
                "max": round(lat[-1] / 1e6, 3) if lat else None,
                "mean": round(sum(lat) / len(lat) / 1e6, 3) if lat else None,
            },
            "loadgen_cpu_s": round(self.cpu_s, 3),
            "ids_saved": len(self.ids),
            "next_index": self.next_index,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }


def percentile_ms(sorted_ns: Sequence[int], pct: float) -> float | None:
    """Nearest-rank percentile of sorted nanosecond samples, in milliseconds."""
    if not sorted_ns:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_ns)))
    return round(sorted_ns[rank - 1] / 1e6, 3)


async def run(url: str, plan: Plan, *, connections: int, duration: float,
              request_timeout: float = 10.0, keep_ids: bool = False) -> Result:
    """Send ``plan`` over ``connections`` keep-alive connections until it is done or
    ``duration`` seconds have passed."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http://host:port URLs are supported, not {url!r}")
    host, port = parts.hostname, parts.port or 80
    loop = asyncio.get_running_loop()
    expected = EXPECTED_STATUS[plan.scenario]
    result = Result(plan.scenario, url, connections, plan.total, expected,
                    next_index=plan.next_index)
    statuses, errors, latencies, ids = result.statuses, result.errors, result.latencies_ns, []
    cursor = iter(range(plan.total))
    live: set[_Connection] = set()
    perf = time.perf_counter_ns

    async def connect() -> _Connection:
        _, conn = await asyncio.wait_for(
            loop.create_connection(_Connection, host, port), request_timeout)
        live.add(conn)
        return conn

    result.started_at = time.monotonic()
    start = perf()
    deadline = start + int(duration * 1e9)

    async def client() -> None:
        conn: _Connection | None = None
        failures = 0
        for i in cursor:
            if perf() >= deadline:
                break
            try:
                if conn is None or conn.closed:
                    conn = await connect()
                waiter = conn.send(plan.request(i), loop)
                status, body, close = await waiter
            except (OSError, TimeoutError, ProtocolError) as exc:
                errors[type(exc).__name__] += 1
                if conn is not None:
                    live.discard(conn)
                    if conn.transport is not None:
                        conn.transport.abort()
                conn = None
                failures += 1
                if failures >= 50:  # the server is gone: stop rather than spin
                    break
                await asyncio.sleep(min(0.001 * failures, 0.05))
                continue
            latencies.append(perf() - conn.sent_at)
            statuses[status] += 1
            if keep_ids and status == expected:
                with contextlib.suppress(msgspec.DecodeError):
                    ids.append(msgspec.json.decode(body, type=_Id).id)
            if close:
                live.discard(conn)
                assert conn.transport is not None
                conn.transport.close()
                conn = None
        if conn is not None and conn.transport is not None:
            live.discard(conn)
            conn.transport.close()

    async def watchdog() -> None:
        limit = int(request_timeout * 1e9)
        while True:
            await asyncio.sleep(min(0.25, request_timeout / 4))
            now = perf()
            for conn in list(live):
                if conn.waiter is not None and now - conn.sent_at > limit:
                    conn.timed_out()

    cpu0 = time.process_time()
    guard = asyncio.create_task(watchdog())
    try:
        await asyncio.gather(*(client() for _ in range(connections)))
    finally:
        guard.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await guard
    result.elapsed_s = (perf() - start) / 1e9
    result.ended_at = time.monotonic()
    result.cpu_s = time.process_time() - cpu0
    result.ids = ids
    return result


def run_sync(url: str, plan: Plan, **options: Any) -> Result:
    """``run`` on a fresh event loop (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]
        return asyncio.run(run(url, plan, **options))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run(url, plan, **options))


# -- command line ---------------------------------------------------------------------------


def format_report(report: dict[str, Any]) -> str:
    lat = report["latency_ms"]
    lines = [
        f"{report['scenario']}: {report['completed']} responses in {report['elapsed_s']:.2f} s "
        f"over {report['connections']} connection(s)",
        f"  statuses {report['statuses']}  errors {report['errors'] or '{}'}",
        f"  {report['rps']:.0f} req/s (status {report['expected_status']})  "
        f"p50 {lat['p50']} ms  p90 {lat['p90']} ms  p99 {lat['p99']} ms  max {lat['max']} ms",
    ]
    return "\n".join(lines)


def _read_ids(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL")
    parser.add_argument("--scenario", choices=SCENARIOS, default="healthz")
    parser.add_argument("-c", "--connections", type=int, default=32)
    parser.add_argument("-d", "--duration", type=float, default=10.0,
                        help="deadline in seconds")
    parser.add_argument("-n", "--requests", type=int, default=1_000_000,
                        help="at most this many requests")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--first-index", type=int, default=0,
                        help="otp: position of the first recipient number")
    parser.add_argument("--purpose", default="bench", help="otp: the purpose field")
    parser.add_argument("--save-ids", type=Path, help="otp: write the ids of 202 answers here")
    parser.add_argument("--ids-file", type=Path, help="verify: OTP ids, one a line")
    parser.add_argument("--attempts", type=int, default=4,
                        help="verify: wrong answers per OTP (an OTP takes 5)")
    parser.add_argument("--api-key", default="", help="sent as Authorization: Bearer")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.requests < 1 or args.duration <= 0:
        parser.error("--connections and --requests must be >= 1, --duration > 0")
    if args.scenario == "verify" and args.ids_file is None:
        parser.error("--scenario verify needs --ids-file")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    host = urlsplit(args.url).netloc
    ids = _read_ids(args.ids_file) if args.ids_file else []
    plan = build_plan(args.scenario, host, args.requests, first_index=args.first_index,
                      purpose=args.purpose, ids=ids, attempts=args.attempts,
                      api_key=args.api_key)
    result = run_sync(args.url, plan, connections=args.connections, duration=args.duration,
                      request_timeout=args.timeout, keep_ids=args.save_ids is not None)
    if args.save_ids is not None:
        args.save_ids.write_text("".join(f"{i}\n" for i in result.ids))
    report = result.to_dict()
    print(json.dumps(report) if args.json else format_report(report))
    return 0 if result.completed else 1


if __name__ == "__main__":
    sys.exit(main())
