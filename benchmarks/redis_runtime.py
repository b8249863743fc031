"""The benchmark on the Redis runtime: ``python -m benchmarks.run --runtime redis``.

Runs the runner's three scenarios twice, one runtime after the other on the same machine:
first the embedded runtime as the runner starts it (the baseline), then a Redis deployment
— a ``redis-server`` on a free port (AOF ``everysec``), two API processes (``otpgate serve
--api-only --workers 2``) and one ``otpgate worker``, all in dev mode — and compares them.

Before the Redis run's scenarios, while no worker runs yet, ``--count`` OTP requests are
counted with ``INFO commandstats`` before and after: the calls of EVALSHA, EVAL, HMGET,
HGETALL and GET (the commands otpgate's API sends; none of them runs inside the scripts of
this path, whose own commands Redis counts under their names) per request are its round
trips, and all commands per request include those the scripts ran. Then the worker starts
and sends those codes: the commands it needed per code, likewise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from benchmarks import run
from otpgate.redisio.keys import Keys

API_CMD = ("{python} -m otpgate serve --api-only --dev --host {host} --port {port} "
           "--workers 2")
CLIENT_COMMANDS = ("evalsha", "eval", "hmget", "hgetall", "get")
COUNT = 2000


@dataclass
class Deployment(run.Server):
    """The API processes (``proc``, their port), the worker and Redis: one thing to load,
    to bill CPU time to, and to stop."""

    others: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        groups = {self.proc.pid, *(p.pid for p in self.others)}
        return sum(run._group_cpu_seconds(pgid) for pgid in groups)

    def stop(self) -> None:
        for proc in [self.proc, *self.others]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in [self.proc, *self.others]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def _spawn(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=run.ROOT, start_new_session=True)


def _stats(client: redis.Redis) -> dict[str, int]:
    info = client.info("commandstats")
    stats = {name.removeprefix("cmdstat_"): int(value["calls"])
             for name, value in info.items()}
    stats["*"] = int(client.info("stats")["total_commands_processed"])
    return stats


def _per_request(before: dict[str, int], after: dict[str, int], requests: int,
                 names: tuple[str, ...] | None) -> float:
    keys = names if names is not None else ("*",)
    calls = sum(after.get(k, 0) - before.get(k, 0) for k in keys)
    return round(calls / max(1, requests), 3)


def running_redis(counts: dict[str, Any], count: int = COUNT) -> Callable[..., Any]:
    """A ``serve`` for ``run.benchmark``: the Redis deployment; what the count found
    goes into ``counts``."""

    @contextlib.contextmanager
    def serve(template: str, workers: int, workdir: Path,
              timeout: float = 60.0) -> Iterator[run.Server]:
        server_bin = shutil.which("redis-server")
        if server_bin is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        workdir.mkdir(parents=True, exist_ok=True)
        log = workdir / "deployment.log"
        redis_port, port = run.free_port(), run.free_port()
        store = _spawn([server_bin, "--port", str(redis_port), "--bind", run.HOST,
                        "--dir", str(workdir), "--save", "", "--appendonly", "yes",
                        "--appendfsync", "everysec"], log, dict(os.environ))
        deployment = Deployment(store, port, log)
        client = redis.Redis(host=run.HOST, port=redis_port)
        try:
            _wait(lambda: _pings(client), timeout, "redis-server did not answer", deployment)
            env = {k: v for k, v in os.environ.items() if not k.startswith("OTPGATE_")}
            env.update({"OTPGATE_STORE_URL": f"redis://{run.HOST}:{redis_port}/0",
                        "OTPGATE_SECRET_KEY": secrets.token_hex(32), "OTPGATE_DEV": "true",
                        "OTPGATE_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1",
                        **run.RULES_ENV})
            cmd = run.server_command(API_CMD, port=port, data_dir=workdir, workers=2)
            run._log(f"redis deployment: redis-server :{redis_port}, {' '.join(cmd[1:])}, "
                     "otpgate worker --dev")
            deployment.proc = _spawn(cmd, log, env)
            deployment.others = [store]
            _wait(lambda: run.healthz(port), timeout, "no 200 from /healthz", deployment)
            _count_api(deployment, client, counts, count)
            deployment.others.append(_spawn([sys.executable, "-m", "otpgate", "worker",
                                             "--dev"], log, env))
            _count_worker(deployment, client, counts, timeout)
            yield deployment
        finally:
            deployment.stop()
            client.close()

    return serve


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False


def _wait(ready: Callable[[], bool], timeout: float, what: str, deployment: Deployment) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} in {timeout:.0f} s:\n{deployment.output()}")
        time.sleep(0.05)


def _count_api(deployment: Deployment, client: redis.Redis, counts: dict[str, Any],
               count: int) -> None:
    """Round trips per OTP request, while only the API processes talk to Redis."""
    for n in range(4):  # new connections each time: every API process gets some
        run.loadgen(deployment, "otp", duration=30, connections=32, requests=200,
                    extra=["--purpose", f"count-warmup-{n}", "--first-index", "7000000"])
    before = _stats(client)
    report = run.loadgen(deployment, "otp", duration=60, connections=32, requests=count,
                         extra=["--purpose", "count", "--first-index", "7000000"])
    after = _stats(client)
    accepted = int(report["ok"])
    counts.update({
        "requests": accepted,
        "round_trips_per_otp_request": _per_request(before, after, accepted,
                                                    CLIENT_COMMANDS),
        "commands_per_otp_request": _per_request(before, after, accepted, None),
        "api_calls": {k: after.get(k, 0) - before.get(k, 0) for k in CLIENT_COMMANDS},
        "_after_api": after,
    })
    run._log(f"round trips per OTP request: {counts['round_trips_per_otp_request']} "
             f"({counts['commands_per_otp_request']} commands with those scripts ran)")


def _count_worker(deployment: Deployment, client: redis.Redis, counts: dict[str, Any],
                  timeout: float) -> None:
    """Commands the worker needs per code: until the codes counted are all sent."""
    queue = Keys().queue(0, "dispatch.capture")
    deadline = time.monotonic() + timeout
    time.sleep(1.0)
    while client.xlen(queue) or client.zcard(f"{queue}:retry"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not drain the stream:\n{deployment.output()}")
        time.sleep(0.2)
    after = _stats(client)
    sent = counts["requests"] + 800
    counts["commands_per_sent_code"] = _per_request(counts.pop("_after_api"), after, sent,
                                                    None)


def main(args: argparse.Namespace) -> int:
    counts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="otpgate-bench-") as tmp:
        for part in ("embedded", "redis"):
            (Path(tmp) / part).mkdir()
        try:
            run._log("embedded runtime (the baseline)")
            embedded = run.benchmark(args, Path(tmp) / "embedded")
            run._log("redis runtime")
            on_redis = run.benchmark(args, Path(tmp) / "redis", serve=running_redis(counts))
        except RuntimeError as exc:
            run._log(f"failed: {exc}")
            return 2
    on_redis["settings"].update({"server_cmd": API_CMD, "workers": 2,
                                 "worker_processes": 1, "store": "redis-server, AOF everysec"})
    goals = compare(embedded, on_redis, counts)
    outcome = {"embedded": embedded, "redis": on_redis, "redis_counts": counts,
               "goals": goals, "all_pass": all(g["pass"] for g in goals.values())}
    print("embedded runtime (otpgate serve --dev):")
    print(run.table(embedded["scenarios"], embedded["goals"]))
    print("\nredis runtime (2 API processes, 1 worker, redis-server):")
    print(run.table(on_redis["scenarios"], on_redis["goals"]))
    print("\nredis vs embedded:")
    for goal in goals.values():
        print(f"  {'PASS' if goal['pass'] else 'MISS'}  {goal['goal']:<52} measured "
              f"{goal['shown']}")
    print(f"  commands per OTP request with those its scripts ran: "
          f"{counts['commands_per_otp_request']}; per code the worker sent: "
          f"{counts['commands_per_sent_code']}")
    output = args.output.with_name("redis.json") if args.output == run.RESULTS \
        else args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(outcome, indent=2) + "\n")
    print(f"written to {run._shown(output)}")
    return 0


def compare(embedded: dict[str, Any], on_redis: dict[str, Any],
            counts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    def rps(outcome: dict[str, Any], name: str) -> float:
        return float(outcome["scenarios"][name]["rps"])

    otp = rps(on_redis, "otp") / max(1.0, rps(embedded, "otp"))
    verify = rps(on_redis, "verify") / max(1.0, rps(embedded, "verify"))
    trips = float(counts["round_trips_per_otp_request"])
    return {
        "otp_vs_embedded": {"goal": "POST /v1/otp on Redis >= 80 % of embedded",
                            "value": round(otp, 4), "pass": otp >= 0.8,
                            "shown": f"{otp:.0%} ({rps(on_redis, 'otp'):,.0f} vs "
                                     f"{rps(embedded, 'otp'):,.0f} req/s)"},
        "verify_vs_embedded": {"goal": "POST /v1/otp/{id}/verify on Redis >= embedded",
                               "value": round(verify, 4), "pass": verify >= 1.0,
                               "shown": f"{verify:.0%} ({rps(on_redis, 'verify'):,.0f} vs "
                                        f"{rps(embedded, 'verify'):,.0f} req/s)"},
        "round_trips": {"goal": "Redis round trips per OTP request <= 2",
                        "value": trips, "pass": trips <= 2, "shown": f"{trips:g}"},
    }
