"""The benchmark, in one command: ``python -m benchmarks.run`` (``make bench``, ``otpgate bench``).

Starts ``otpgate serve --dev`` on a free loopback port with a throw-away data directory, waits
for ``/healthz``, warms up, then loads three scenarios, each from a separate load-generator
process (``benchmarks/loadgen.py``):

1. ``GET /healthz``                — the baseline: the same stack doing nothing;
2. ``POST /v1/otp``                — one distinct recipient per request;
3. ``POST /v1/otp/{id}/verify``    — wrong answers, spread over a pool of OTPs.

Prints requests/s, p50 and p99 per scenario, each route's requests/s as a ratio of the baseline
measured in the same run, and the goals with pass/miss; writes the same as JSON to
``benchmarks/results/latest.json``. The server's process group is stopped at the end, always.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
_HIGH = 10**9
RULES_ENV = {
    "OTPGATE_RATE_LIMITS": ",".join(f"{rule}={_HIGH}/3600" for rule in (
        "key", "prefix", "new-country", "new-prefix")),
    "OTPGATE_PUMPING_MIN_SENDS": str(_HIGH),
}
"""The load sends codes to sequential numbers from one caller and never verifies them —
what the abuse rules exist to stop. They stay on, so that their cost is measured, with
thresholds no run reaches."""
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
DEFAULT_SERVER_CMD = ("{python} -m otpgate serve --dev --host {host} --port {port} "
                      "--data-dir {data_dir} --workers {workers}")
ATTEMPTS = 4
"""Wrong answers per OTP in the verify scenario (an OTP dies at the 5th)."""

GOALS: dict[str, str] = {
    "otp_rps": "POST /v1/otp >= 3,000 req/s",
    "verify_rps": "POST /v1/otp/{id}/verify >= 5,000 req/s",
    "otp_p99": "POST /v1/otp p99 < 50 ms",
    "verify_p99": "POST /v1/otp/{id}/verify p99 < 50 ms",
    "otp_ratio": "POST /v1/otp >= 30 % of /healthz req/s",
}
LABELS = {"healthz": "GET /healthz", "otp": "POST /v1/otp",
          "verify": "POST /v1/otp/{id}/verify"}


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- the server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def healthz(port: int, timeout: float = 1.0) -> bool:
    """Whether ``GET /healthz`` answers 200 (http.client: loopback only, no proxies)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) of every live process in a process group (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # after the command: state ppid pgrp session ... utime(12) stime(13)
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def cpu_seconds(self) -> float:
        try:
            return _group_cpu_seconds(self.proc.pid)
        except OSError:
            return math.nan

    def output(self, last: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-last:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to the whole process group, then SIGKILL for anything left."""
        pgid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        # workers may outlive the parent; the group id stays theirs
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def server_command(template: str, *, port: int, data_dir: Path, workers: int) -> list[str]:
    return [part.format(python=sys.executable, host=HOST, port=port, data_dir=data_dir,
                        workers=workers) for part in shlex.split(template)]


@contextlib.contextmanager
def running_server(template: str, workers: int, workdir: Path,
                   timeout: float = 60.0) -> Iterator[Server]:
    port = free_port()
    data_dir = workdir / "data"
    cmd = server_command(template, port=port, data_dir=data_dir, workers=workers)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTPGATE_")}
    # The same settings for the `uvicorn otpgate.api.app:from_env --factory` form.
    env.update({"OTPGATE_DEV": "true", "OTPGATE_HOST": HOST, "OTPGATE_PORT": str(port),
                "OTPGATE_DATA_DIR": str(data_dir), "OTPGATE_WORKERS": str(workers),
                "OTPGATE_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1", **RULES_ENV})
    log = workdir / "server.log"
    _log(f"server: {shlex.join(cmd)}")
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)
    server = Server(proc, port, log)
    try:
        deadline = time.monotonic() + timeout
        while not healthz(port):
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited ({proc.returncode}):\n{server.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no 200 from /healthz in {timeout:.0f} s:\n{server.output()}")
            time.sleep(0.05)
        yield server
    finally:
        server.stop()


def settle(server: Server, idle: float = 0.10, limit: float = 20.0) -> None:
    """Wait until the server is (nearly) idle, so that one scenario's background work (the
    dispatchers sending the codes just requested) is not billed to the next one."""
    deadline = time.monotonic() + limit
    before = server.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = server.cpu_seconds()
        if math.isnan(now) or (now - before) / 0.5 < idle:
            return
        before = now


# -- the load generator, as its own process -----------------------------------------------


def loadgen(server: Server, scenario: str, *, duration: float, connections: int,
            requests: int = 10_000_000, extra: Sequence[str] = ()) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.loadgen", "--json", "--url", server.url,
           "--scenario", scenario, "--duration", str(duration),
           "--connections", str(connections), "--requests", str(requests), *extra]
    cpu0 = server.cpu_seconds()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        # building the requests (validating numbers) comes before the deadline starts
        out, err = proc.communicate(timeout=duration + 120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode not in (0, 1) or not out.strip():
        raise RuntimeError(f"loadgen {scenario} failed ({proc.returncode}):\n{err}")
    report: dict[str, Any] = json.loads(out)
    report["server_cpu_s"] = round(server.cpu_seconds() - cpu0, 2)
    if server.proc.poll() is not None:
        raise RuntimeError(f"the server died during {scenario}:\n{server.output()}")
    return report


# -- the table ------------------------------------------------------------------------------


def evaluate(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    def rps(name: str) -> float:
        return float(results[name]["rps"])

    def p99(name: str) -> float:
        value = results[name]["latency_ms"]["p99"]
        return math.inf if value is None else float(value)

    base = rps("healthz")
    measured = {
        "otp_rps": (rps("otp"), rps("otp") >= 3000),
        "verify_rps": (rps("verify"), rps("verify") >= 5000),
        "otp_p99": (p99("otp"), p99("otp") < 50),
        "verify_p99": (p99("verify"), p99("verify") < 50),
        "otp_ratio": (rps("otp") / base if base else 0.0,
                      base > 0 and rps("otp") / base >= 0.30),
    }
    return {key: {"goal": GOALS[key], "value": round(value, 4), "pass": ok}
            for key, (value, ok) in measured.items()}


def table(results: dict[str, dict[str, Any]], goals: dict[str, dict[str, Any]]) -> str:
    base = results["healthz"]["rps"] or math.nan
    rows = [f"{'scenario':<28}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs healthz':>12}"
            f"{'requests':>10}{'other':>7}{'server CPU':>12}",
            "-" * 97]
    for name, report in results.items():
        lat = report["latency_ms"]
        cores = report["server_cpu_s"] / report["elapsed_s"] if report["elapsed_s"] else 0.0
        rows.append(f"{LABELS[name]:<28}{report['rps']:>10,.0f}{_ms(lat['p50']):>9}"
                    f"{_ms(lat['p99']):>9}{report['rps'] / base:>11.0%} "
                    f"{report['completed']:>10,}{report['unexpected']:>7}{cores:>12.0%}")
    rows += ["", "goals:"]
    for goal in goals.values():
        value, text = goal["value"], goal["goal"]
        shown = (f"{value:.0%}" if "%" in text else f"{value:.2f} ms" if "ms" in text
                 else f"{value:,.0f} req/s")
        rows.append(f"  {'PASS' if goal['pass'] else 'MISS'}  {goal['goal']:<44} "
                    f"measured {shown}")
    return "\n".join(rows)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# -- the run --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark a local otpgate server: /healthz, POST /v1/otp and "
                    "POST /v1/otp/{id}/verify, each from a separate load-generator process.")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of load per scenario (default 10)")
    parser.add_argument("--connections", type=int, default=32,
                        help="concurrent keep-alive connections (default 32)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server worker processes (default 1; try 2)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of warm-up load before measuring (default 2)")
    parser.add_argument("--server-cmd", default=DEFAULT_SERVER_CMD,
                        help="server command; {python} {host} {port} {data_dir} {workers} are "
                             "filled in; OTPGATE_DEV/_PORT/_DATA_DIR/_WORKERS are set too "
                             f"(default: {DEFAULT_SERVER_CMD!r})")
    parser.add_argument("--output", type=Path, default=RESULTS,
                        help="where to write the JSON results (default: %(default)s)")
    parser.add_argument("--suite", choices=("all", "http", "dispatch"), default="all",
                        help="the HTTP scenarios, the dispatch scenarios "
                             "(benchmarks/dispatch.py), or both (default)")
    from benchmarks import dispatch

    dispatch.add_arguments(parser)
    parser.add_argument("--runtime", choices=("embedded", "redis"), default="embedded",
                        help="redis: the scenarios on the embedded runtime, then on Redis "
                             "(2 API processes, 1 worker, a redis-server of its own), "
                             "compared; see benchmarks/redis_runtime.py")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.connections < 1 or args.workers < 1 or args.warmup < 0:
        parser.error("--duration must be > 0, --connections and --workers >= 1, "
                     "--warmup >= 0")
    return args


def benchmark(args: argparse.Namespace, workdir: Path,
              serve: Any = running_server) -> dict[str, Any]:
    """The scenarios against the server ``serve`` starts (by default ``running_server``;
    ``benchmarks.redis_runtime`` passes the Redis deployment)."""
    duration, connections = args.duration, args.connections
    results: dict[str, dict[str, Any]] = {}
    with serve(args.server_cmd, args.workers, workdir) as server:
        _log(f"server up at {server.url} ({args.workers} worker(s)); warming up")
        next_index = 0
        if args.warmup:
            loadgen(server, "healthz", duration=args.warmup / 2, connections=connections)
            warm = loadgen(server, "otp", duration=args.warmup / 2, connections=connections,
                           requests=5000, extra=["--purpose", "warmup"])
            next_index = warm["next_index"]
            settle(server)

        _log(f"healthz for {duration:g} s")
        results["healthz"] = loadgen(server, "healthz", duration=duration,
                                     connections=connections)
        baseline = results["healthz"]["rps"]

        # No run can send more than the baseline's rate; one number per request.
        ids_file = workdir / "ids.txt"
        budget = max(1000, math.ceil(baseline * duration * 1.1))
        _log(f"POST /v1/otp for {duration:g} s")
        results["otp"] = loadgen(server, "otp", duration=duration, connections=connections,
                                 requests=budget, extra=["--first-index", str(next_index),
                                                         "--save-ids", str(ids_file)])
        next_index = results["otp"]["next_index"]
        ids = ids_file.read_text().split()

        # The verify pool: every OTP takes ATTEMPTS wrong answers (of 5 allowed), each from
        # its own recipient (10 failures per recipient and hour).
        wanted = max(1000, math.ceil(baseline * duration * 1.1 / ATTEMPTS))
        if len(ids) < wanted:
            more_file = workdir / "more-ids.txt"
            _log(f"topping the verify pool up from {len(ids):,} to {wanted:,} OTPs")
            settle(server)
            loadgen(server, "otp", duration=max(30.0, 4 * duration), connections=connections,
                    requests=wanted - len(ids),
                    extra=["--first-index", str(next_index), "--save-ids", str(more_file),
                           "--purpose", "pool"])
            ids += more_file.read_text().split()
            ids_file.write_text("".join(f"{i}\n" for i in ids))
        settle(server)
        _log(f"POST /v1/otp/{{id}}/verify for {duration:g} s over {len(ids):,} OTPs")
        results["verify"] = loadgen(server, "verify", duration=duration,
                                    connections=connections,
                                    extra=["--ids-file", str(ids_file),
                                           "--attempts", str(ATTEMPTS)])
        if results["verify"]["elapsed_s"] < duration * 0.9:
            _log("note: the verify pool ran out before the deadline")

    goals = evaluate(results)
    for report in results.values():
        report["ratio_to_healthz"] = round(report["rps"] / baseline, 4) if baseline else None
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {"duration_s": duration, "connections": connections,
                     "workers": args.workers, "warmup_s": args.warmup,
                     "server_cmd": args.server_cmd, "loadgen_processes": 1,
                     "verify_attempts_per_otp": ATTEMPTS},
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "load_avg": _loadavg()},
        "scenarios": results,
        "goals": goals,
        "all_pass": all(g["pass"] for g in goals.values()),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)  # so that the server is stopped on SIGTERM too
    if args.runtime == "redis":
        from benchmarks import redis_runtime

        return redis_runtime.main(args)
    from benchmarks import dispatch

    with tempfile.TemporaryDirectory(prefix="otpgate-bench-") as tmp:
        try:
            outcome = benchmark(args, Path(tmp)) if args.suite != "dispatch" else {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}
            if args.suite != "http":
                outcome["dispatch"] = dispatch.run_dispatch(args, Path(tmp))
        except RuntimeError as exc:
            _log(f"failed: {exc}")
            return 2
    outcome["machine"]["load_avg"] = _loadavg()
    if "scenarios" in outcome:
        print(table(outcome["scenarios"], outcome["goals"]))
    if "dispatch" in outcome:
        print(("\n" if "scenarios" in outcome else "") + dispatch.table(outcome["dispatch"]))
    print(f"\n{args.workers} server worker(s), {args.connections} connections, "
          f"{args.duration:g} s per scenario; load average now {outcome['machine']['load_avg']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_suffix(".json.tmp")
    partial.write_text(json.dumps(outcome, indent=2) + "\n")
    partial.replace(args.output)
    print(f"written to {_shown(args.output)}")
    return 0


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
