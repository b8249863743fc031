"""The failover timeline, in real time: two provider stand-ins behind two webhook drivers
(``primary`` first, ``secondary`` its failover), otpgate's own runtime (the embedded
SQLite runtime, its real bus and dispatchers, default breaker settings) sending a steady
stream of codes. After a second of normal traffic the primary starts answering 503; the
benchmark records

- from the primary's first 503 to the first send through the secondary,
- from the primary's first 503 to its breaker opening,
- per code that met a 503: from that 503 to the code's arrival at the secondary
  (p50 / p99 / max),
- once the primary heals: until its breaker closes, and until a send reaches it again.

``python -m benchmarks.failover [--rate 50] [--outage 5] [--output FILE]``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.run import RULES_ENV
from otpgate import config
from otpgate.breaker import BreakerState
from otpgate.runtime import Runtime
from otpgate.service import OtpRequest

SECRET = "whsec_" + base64.b64encode(b"otpgate failover benchmark secret").decode()
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Provider:
    """A provider stand-in: 200, or 503 while ``down``; notes when each send arrived."""

    name: str
    down: bool = False
    arrivals: list[tuple[float, str, int]] = field(default_factory=list)
    """(monotonic time, otp id, status answered)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self) -> ThreadingHTTPServer:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = 503 if provider.down else 200
                with provider.lock:
                    provider.arrivals.append((time.monotonic(), json.loads(body)["otp_id"],
                                              status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
        return server


def _url(server: ThreadingHTTPServer, name: str) -> str:
    host, port = server.server_address[:2]
    return f"webhook+http://{host!s}:{port}/otp?secret={SECRET}&name={name}&timeout=5"


async def _watch(runtime: Runtime, seen: dict[BreakerState, list[float]],
                 stop: asyncio.Event) -> None:
    """Note when the primary's breaker changes state (polled every millisecond)."""
    last = BreakerState.CLOSED
    while not stop.is_set():
        state = runtime.breakers.of("primary").state
        if state is not last:
            seen.setdefault(state, []).append(time.monotonic())
            last = state
        await asyncio.sleep(0.001)


async def _stream(runtime: Runtime, rate: float, seconds: float, counter: list[int]) -> None:
    """``rate`` codes a second for ``seconds``, each to a recipient of its own."""
    started = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - started) < seconds:
        while sent < elapsed * rate:
            counter[0] += 1
            await runtime.service.request(OtpRequest(to=f"+1415555{counter[0]:04d}"))
            sent += 1
        await asyncio.sleep(0.002)


async def run(rate: float, outage: float, heal_wait: float) -> dict[str, Any]:
    primary, secondary = Provider("primary"), Provider("secondary")
    servers = [primary.serve(), secondary.serve()]
    with tempfile.TemporaryDirectory(prefix="otpgate-failover-") as data_dir:
        settings = config.from_env({
            "OTPGATE_DATA_DIR": data_dir, "OTPGATE_SECRET_KEY": secrets.token_hex(32),
            "OTPGATE_DRIVERS_SMS": f"{_url(servers[0], 'primary')},"
                                   f"{_url(servers[1], 'secondary')}",
            "OTPGATE_LOG_LEVEL": "error", **RULES_ENV})
        runtime = await Runtime.open(settings)
        await runtime.start_workers()
        seen: dict[BreakerState, list[float]] = {}
        stop = asyncio.Event()
        watcher = asyncio.create_task(_watch(runtime, seen, stop))
        counter = [0]
        try:
            await _stream(runtime, rate, 1.0, counter)  # normal traffic
            primary.down = True
            down_at = time.monotonic()
            await _stream(runtime, rate, outage, counter)
            primary.down = False
            healed_at = time.monotonic()
            deadline = healed_at + heal_wait
            while time.monotonic() < deadline and not any(
                    t > healed_at and status == 200 for t, _, status in primary.arrivals):
                await _stream(runtime, rate, 0.2, counter)
            await asyncio.sleep(0.5)  # the last sends land
        finally:
            stop.set()
            await watcher
            await runtime.close()
            for server in servers:
                server.shutdown()
    return _figures(primary, secondary, seen, down_at, healed_at, rate, outage, counter[0])


def _figures(primary: Provider, secondary: Provider, seen: dict[BreakerState, list[float]],
             down_at: float, healed_at: float, rate: float, outage: float,
             codes: int) -> dict[str, Any]:
    ms: Callable[[float], float] = lambda s: round(s * 1000, 1)  # noqa: E731
    refused = {otp: t for t, otp, status in primary.arrivals if status == 503}
    first_503 = min(refused.values())
    arrived = {otp: t for t, otp, _ in secondary.arrivals}
    moved = sorted(arrived[otp] - t for otp, t in refused.items() if otp in arrived)
    after_503 = [t for t, _, _ in secondary.arrivals if t >= first_503]
    opened = [t for t in seen.get(BreakerState.OPEN, []) if t >= down_at]
    closed = [t for t in seen.get(BreakerState.CLOSED, []) if t >= healed_at]
    back = [t for t, _, status in primary.arrivals if t > healed_at and status == 200]
    lost = codes - len({otp for _, otp, s in primary.arrivals if s == 200} | set(arrived))
    return {
        "rate_per_s": rate, "outage_s": outage, "codes": codes,
        "first_503_to_first_secondary_send_ms": ms(min(after_503) - first_503),
        "first_503_to_breaker_open_ms": ms(opened[0] - first_503) if opened else None,
        "per_code_503_to_secondary_ms": {
            "count": len(moved), "p50": ms(statistics.median(moved)),
            "p99": ms(moved[min(len(moved) - 1, int(len(moved) * 0.99))]),
            "max": ms(moved[-1])},
        "primary_calls_during_outage": len(refused),
        "heal_to_breaker_closed_ms": ms(closed[0] - healed_at) if closed else None,
        "heal_to_first_primary_send_ms": ms(back[0] - healed_at) if back else None,
        "codes_not_sent": lost,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="codes a second")
    parser.add_argument("--outage", type=float, default=5.0,
                        help="seconds the primary answers 503")
    parser.add_argument("--heal-wait", type=float, default=30.0,
                        help="seconds to wait for traffic to return to the primary")
    parser.add_argument("--output", type=Path,
                        default=ROOT / "benchmarks" / "results" / "failover.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    figures = asyncio.run(run(args.rate, args.outage, args.heal_wait))
    text = json.dumps(figures, indent=2)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    print(f"[bench] written to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
