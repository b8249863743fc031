"""Can a caller tell a known recipient from an unknown one by how fast ``/v1/verify`` answers?

``python -m benchmarks.enumeration`` starts ``otpgate serve --dev`` (as ``benchmarks.run``
does), requests a code for ``--known`` recipients (not timed), then times ``--calls``
``POST /v1/verify`` calls with a wrong code, alternating a known recipient (a live code) and
an unknown one (never asked for), one at a time on one keep-alive connection. It prints the
median latency of each group and their difference; the goal is a difference within 0.2 ms.

Known recipients each get at most ``calls / 2 / known`` answers (2 by default), so no code
dies of wrong answers and no recipient's failures reach the send delay: every known call
meets a live code, every unknown call meets nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.loadgen import recipient_numbers
from benchmarks.run import DEFAULT_SERVER_CMD, HOST, running_server

GOAL_MS = 0.2
WRONG = "000000"


@dataclass(frozen=True, slots=True)
class Medians:
    known_ms: float
    unknown_ms: float
    calls: int

    @property
    def gap_ms(self) -> float:
        return abs(self.known_ms - self.unknown_ms)

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "known_median_ms": round(self.known_ms, 4),
                "unknown_median_ms": round(self.unknown_ms, 4),
                "gap_ms": round(self.gap_ms, 4), "goal_ms": GOAL_MS,
                "pass": self.gap_ms <= GOAL_MS}


def _post(conn: http.client.HTTPConnection, path: str, body: dict[str, str]) -> tuple[int, int]:
    """POST ``body``; the status and the nanoseconds from sending to the last byte read."""
    payload = json.dumps(body).encode()
    start = time.perf_counter_ns()
    conn.request("POST", path, payload, {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status, time.perf_counter_ns() - start


def measure(port: int, *, calls: int = 1000, known: int = 250, warmup: int = 50,
            first_index: int = 0) -> Medians:
    """Time ``calls`` interleaved verifications against the server on ``port``."""
    if calls % 2 or calls // 2 > known * 4:
        raise ValueError("calls must be even and at most 8 per known recipient")
    numbers, _ = recipient_numbers(first_index, known + calls // 2 + warmup)
    known_to, unknown_to = numbers[:known], numbers[known:known + calls // 2]
    spare = numbers[known + calls // 2:]
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        for to in known_to:
            status, _ = _post(conn, "/v1/otp", {"to": to, "purpose": "enum"})
            if status != 202:
                raise RuntimeError(f"POST /v1/otp answered {status}")
        for to in spare:  # warm-up: both paths, not kept
            _post(conn, "/v1/verify", {"to": to, "purpose": "enum", "code": WRONG})
            _post(conn, "/v1/verify", {"to": known_to[0], "purpose": "other", "code": WRONG})
        times: dict[bool, list[int]] = {True: [], False: []}
        for n in range(calls // 2):
            for is_known, to in ((True, known_to[n % known]), (False, unknown_to[n])):
                status, elapsed = _post(conn, "/v1/verify",
                                        {"to": to, "purpose": "enum", "code": WRONG})
                if status != 200:
                    raise RuntimeError(f"POST /v1/verify answered {status}")
                times[is_known].append(elapsed)
    finally:
        conn.close()
    return Medians(statistics.median(times[True]) / 1e6, statistics.median(times[False]) / 1e6,
                   calls)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.enumeration",
                                     description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--calls", type=int, default=1000, help="timed calls, half of each")
    parser.add_argument("--known", type=int, default=250, help="recipients with a live code")
    parser.add_argument("--server-cmd", default=DEFAULT_SERVER_CMD)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="otpgate-enum-") as tmp, \
            running_server(args.server_cmd, 1, Path(tmp)) as server:
        figures = measure(server.port, calls=args.calls, known=args.known)
    if args.json:
        print(json.dumps(figures.as_dict(), indent=2))
    else:
        print(f"POST /v1/verify, {figures.calls} interleaved calls: known recipient median "
              f"{figures.known_ms:.3f} ms, unknown {figures.unknown_ms:.3f} ms, gap "
              f"{figures.gap_ms:.3f} ms (goal <= {GOAL_MS} ms: "
              f"{'pass' if figures.gap_ms <= GOAL_MS else 'miss'})")
    return 0 if figures.gap_ms <= GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
