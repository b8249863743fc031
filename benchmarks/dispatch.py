"""The dispatch scenarios of the benchmark, against a provider stand-in that answers after
50 ms (``benchmarks/provider.py``), reached by the ``bench+http://`` driver
(``benchmarks/httpdriver.py``) through one pooled HTTP client, like a real provider driver:

1. ``sends``  — sends/s of one dispatcher process: ``--sends`` codes are accepted by an
   API-only server first (nothing is sent), then one ``otpgate worker`` sends them all;
   the rate is taken at the stand-in, from its first arrival to its last.
2. ``burst``  — the request burst of the HTTP benchmark (``POST /v1/otp`` for
   ``--duration`` seconds) on one ``otpgate serve`` that also sends: how many of the
   accepted codes reached the stand-in before the burst ended, and how long after it the
   last one did. ``/readyz`` is polled meanwhile for the oldest due send's age.

Servers run outside dev mode, with an API key made for the run. Run alone with
``python -m benchmarks.run --suite dispatch``.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.run import HOST, ROOT, RULES_ENV, Server, free_port, healthz, loadgen

GOALS: dict[str, str] = {
    "sends_per_s": "one dispatcher process >= 1,000 sends/s",
    "burst_delivered": "delivered during the burst >= 50 % of accepted",
    "burst_drain": "backlog gone <= 2 s after the burst",
}


WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"otpgate benchmark webhook secret").decode()
"""The secret the benchmark's webhook driver signs with (the stand-in does not check it)."""


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- processes ------------------------------------------------------------------------------


@dataclass
class Setup:
    """What every otpgate process of one scenario shares."""

    workdir: Path
    provider_port: int
    concurrency: int | None
    driver_kind: str = "webhook"
    env: dict[str, str] = field(default_factory=dict)
    api_key: str = ""

    def __post_init__(self) -> None:
        if self.driver_kind == "webhook":  # a provider driver as users run it
            driver = (f"webhook+http://{HOST}:{self.provider_port}/messages"
                      f"?secret={WEBHOOK_SECRET}")
        else:
            driver = f"bench+http://{HOST}:{self.provider_port}/messages?client=raw"
        if self.concurrency is not None:
            driver += f"&concurrency={self.concurrency}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OTPGATE_")}
        self.env.update({"OTPGATE_DATA_DIR": str(self.workdir / "data"),
                         "OTPGATE_DRIVERS_SMS": driver, "OTPGATE_LOG_LEVEL": "warning",
                         "PYTHONUNBUFFERED": "1", **RULES_ENV})


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.cli", *args]


def _spawn(cmd: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=ROOT, start_new_session=True)


@contextlib.contextmanager
def provider(workdir: Path, latency_ms: float) -> Iterator[int]:
    port = free_port()
    proc = _spawn([sys.executable, "-m", "benchmarks.provider", "--port", str(port),
                   "--latency-ms", str(latency_ms)], dict(os.environ),
                  workdir / "provider.log")
    server = Server(proc, port, workdir / "provider.log")
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError, http.client.HTTPException):
                stats(port)
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the provider stand-in did not start:\n{server.output()}")
            time.sleep(0.05)
        yield port
    finally:
        server.stop()


def stats(port: int, before: float | None = None) -> dict[str, Any]:
    """The stand-in's counts (``before``: also how many arrived before that moment)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", "/stats" + (f"?before={before!r}" if before is not None else ""))
        found: dict[str, Any] = json.loads(conn.getresponse().read())
        return found
    finally:
        conn.close()


def make_key(setup: Setup) -> str:
    out = subprocess.run(_cli("keys", "create", "--name", "bench"), env=setup.env, cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def otpgate(setup: Setup, *args: str, http_port: int | None = None) -> Iterator[Server]:
    """``otpgate ARGS`` (with the bench driver); waits for ``/healthz`` when it serves."""
    log = setup.workdir / f"{args[0]}.log"
    proc = _spawn(_cli(*args), setup.env, log)
    server = Server(proc, http_port or 0, log)
    try:
        deadline = time.monotonic() + 60
        while http_port is not None and not healthz(http_port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"otpgate {args[0]} did not start:\n{server.output()}")
            time.sleep(0.05)
        yield server
    finally:
        server.stop()


def serve(setup: Setup, *extra: str) -> contextlib.AbstractContextManager[Server]:
    port = free_port()
    return otpgate(setup, "serve", "--no-dev", "--host", HOST, "--port", str(port),
                   "--data-dir", setup.env["OTPGATE_DATA_DIR"], *extra, http_port=port)


def wait_for(port: int, count: int, timeout: float) -> dict[str, Any]:
    """Poll the stand-in until ``count`` messages came in (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while True:
        found = stats(port)
        if found["count"] >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


class ReadyWatch:
    """Polls ``GET /readyz`` twice a second in a thread: statuses seen, and the largest
    ``oldest_due_age`` its details reported."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._stop = threading.Event()
        self.statuses: dict[int, int] = {}
        self.max_age: float | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReadyWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            conn = http.client.HTTPConnection(HOST, self._port, timeout=5)
            try:
                conn.request("GET", "/readyz")
                answer = conn.getresponse()
                body = answer.read()
            except (OSError, http.client.HTTPException):
                continue
            finally:
                conn.close()
            self.statuses[answer.status] = self.statuses.get(answer.status, 0) + 1
            with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
                ages = [s["oldest_due_age"] for s in json.loads(body)["subscriptions"]]
                self.max_age = max([self.max_age or 0.0, *ages])


# -- the scenarios --------------------------------------------------------------------------


def run_sends(args: Any, workdir: Path, port: int) -> dict[str, Any]:
    """Accept ``args.sends`` codes without sending, then time one worker sending them."""
    setup = Setup(workdir / "sends", port, args.dispatch_concurrency, args.dispatch_driver)
    setup.workdir.mkdir()
    key = make_key(setup)
    before = stats(port)["count"]
    with serve(setup, "--api-only") as api:
        _log(f"sends: accepting {args.sends:,} codes on an API-only server")
        loaded = loadgen(api, "otp", duration=600, connections=args.connections,
                         requests=args.sends, extra=["--api-key", key])
    accepted = int(loaded["ok"])
    _log(f"sends: {accepted:,} accepted; one worker sends them")
    with otpgate(setup, "worker") as worker:
        cpu0 = worker.cpu_seconds()
        found = wait_for(port, before + accepted, timeout=30 + accepted / 100)
        cpu = worker.cpu_seconds() - cpu0
    sent = found["count"] - before
    span = (found["last"] - found["first"]) if sent > 1 else float("nan")
    _log(f"sends: {sent:,} sent in {span:.2f} s")
    return {"accepted": accepted, "sent": sent, "distinct": found["distinct"],
            "span_s": round(span, 3), "sends_per_s": round(sent / span, 1) if sent > 1 else 0.0,
            "worker_cpu_s": round(cpu, 2),
            "concurrency": args.dispatch_concurrency}


def run_burst(args: Any, workdir: Path, port: int) -> dict[str, Any]:
    """``POST /v1/otp`` for ``args.duration`` s on a server that sends as well."""
    setup = Setup(workdir / "burst", port, args.dispatch_concurrency, args.dispatch_driver)
    setup.workdir.mkdir()
    key = make_key(setup)
    with serve(setup) as server:
        base = stats(port)["count"]
        if args.warmup:
            warm = loadgen(server, "otp", duration=args.warmup, connections=args.connections,
                           requests=3000, extra=["--api-key", key, "--purpose", "warmup"])
            base = wait_for(port, base + int(warm["ok"]), timeout=60)["count"]
        _log(f"burst: POST /v1/otp for {args.duration:g} s, sending meanwhile")
        with ReadyWatch(server.port) as ready:
            burst = loadgen(server, "otp", duration=args.duration,
                            connections=args.connections, requests=int(8000 * args.duration),
                            extra=["--api-key", key, "--first-index", "200000"])
            accepted = int(burst["ok"])
            ended = float(burst["ended_at"])
            during = stats(port, before=ended)["before"] - base
            found = wait_for(port, base + accepted, timeout=120)
    delivered = found["count"] - base
    drain = found["last"] - ended if delivered >= accepted else float("inf")
    elapsed = float(burst["elapsed_s"]) or float("nan")
    return {"accepted": accepted, "accepted_per_s": round(accepted / elapsed, 1),
            "delivered_during": during,
            "delivered_during_ratio": round(during / accepted, 4) if accepted else 0.0,
            "sent_per_s_during": round(during / elapsed, 1),
            "delivered": delivered, "drain_s": round(drain, 3),
            "p50_ms": burst["latency_ms"]["p50"], "p99_ms": burst["latency_ms"]["p99"],
            "server_cpu_s": burst["server_cpu_s"], "elapsed_s": burst["elapsed_s"],
            "readyz": {str(k): v for k, v in sorted(ready.statuses.items())},
            "readyz_max_oldest_due_age_s": ready.max_age}


def run_dispatch(args: Any, workdir: Path) -> dict[str, Any]:
    with provider(workdir, args.provider_latency_ms) as port:
        results = {"sends": run_sends(args, workdir, port),
                   "burst": run_burst(args, workdir, port)}
    sends, burst = results["sends"], results["burst"]
    measured = {
        "sends_per_s": (sends["sends_per_s"], sends["sends_per_s"] >= 1000),
        "burst_delivered": (burst["delivered_during_ratio"],
                            burst["delivered_during_ratio"] >= 0.5),
        "burst_drain": (burst["drain_s"], burst["drain_s"] <= 2.0),
    }
    goals = {key: {"goal": GOALS[key], "value": value, "pass": ok}
             for key, (value, ok) in measured.items()}
    return {"settings": {"provider_latency_ms": args.provider_latency_ms,
                         "sends": args.sends, "duration_s": args.duration,
                         "connections": args.connections,
                         "concurrency": args.dispatch_concurrency},
            "scenarios": results, "goals": goals}


def table(outcome: dict[str, Any]) -> str:
    sends, burst = outcome["scenarios"]["sends"], outcome["scenarios"]["burst"]
    latency = outcome["settings"]["provider_latency_ms"]
    rows = [
        f"dispatch, provider stand-in answering after {latency:g} ms:",
        f"  one worker: {sends['sent']:,} sends in {sends['span_s']:.2f} s = "
        f"{sends['sends_per_s']:,.0f} sends/s (worker CPU {sends['worker_cpu_s']:.1f} s, "
        f"{sends['distinct']:,} distinct at the stand-in)",
        f"  burst of {burst['elapsed_s']:.1f} s: {burst['accepted']:,} accepted "
        f"({burst['accepted_per_s']:,.0f}/s, p50 {burst['p50_ms']} ms, p99 {burst['p99_ms']} "
        f"ms), {burst['delivered_during']:,} delivered during it "
        f"({burst['delivered_during_ratio']:.0%}, {burst['sent_per_s_during']:,.0f}/s); "
        f"backlog gone {burst['drain_s']:.2f} s after",
        f"  /readyz during the burst: {burst['readyz']}, oldest due send at most "
        f"{_age(burst['readyz_max_oldest_due_age_s'])}",
        "", "dispatch goals:",
    ]
    shown = {"sends_per_s": "{:,.0f} sends/s", "burst_delivered": "{:.0%}",
             "burst_drain": "{:.2f} s"}
    for key, goal in outcome["goals"].items():
        rows.append(f"  {'PASS' if goal['pass'] else 'MISS'}  {goal['goal']:<48} "
                    f"measured {shown[key].format(goal['value'])}")
    return "\n".join(rows)


def _age(value: float | None) -> str:
    return "not reported" if value is None else f"{value:.2f} s"


def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("dispatch scenarios")
    group.add_argument("--sends", type=int, default=15_000,
                       help="codes the one-worker scenario sends (default 15,000)")
    group.add_argument("--provider-latency-ms", type=float, default=50.0,
                       help="how late the provider stand-in answers (default 50)")
    group.add_argument("--dispatch-driver", choices=["webhook", "bench"], default="webhook",
                       help="webhook: the webhook+http:// provider driver (httpx over aiohttp, "
                            "signed) as users run it; bench: a bare driver that measures the "
                            "dispatcher alone (default webhook)")
    group.add_argument("--dispatch-concurrency", type=int, default=None,
                       help="concurrency= of the bench driver (default: the driver default)")
