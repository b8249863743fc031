"""The Redis runtime as it is deployed: API processes and workers, separate, on one Redis
— killed, stopped, racing, and outliving a Redis crash."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests import redis_servers
from tests.contract.conftest import BACKENDS, require
from tests.e2e import server as srv

SECRET = "2b9e6c0d4a7f1e83c5d29b6a0f4e7c13d8a5b2f96e0c7d41a3f8b5e2c9d06a7f"  # random, tests only
LEASE = 2


@pytest.fixture(autouse=True)
def _needs_redis() -> None:
    require(next(case for case in BACKENDS if case.name == "redis"))


def environment(redis: redis_servers.RedisServer, **more: str) -> dict[str, str]:
    return {"OTPGATE_STORE_URL": redis.url, "OTPGATE_SECRET_KEY": SECRET,
            "OTPGATE_DRIVERS_SMS": "capture://?latency_ms=20", "OTPGATE_BUS_LEASE": str(LEASE),
            "OTPGATE_POLL_INTERVAL": "0.1", "OTPGATE_LOG_LEVEL": "info", **more}


def numbers(count: int, first: int = 0) -> list[str]:
    return [f"+1415200{n:04d}" for n in range(first, first + count)]


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[redis_servers.RedisServer]:
    server = redis_servers.start_server(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[srv.Server]]:
    """Processes a test starts; every one is stopped at its end."""
    started: list[srv.Server] = []
    yield started
    for proc in started:
        proc.kill()


def api(tmp_path: Path, env: dict[str, str], started: list[srv.Server]) -> srv.Server:
    server = srv.start(tmp_path / "var", tmp_path / "processes.log", env,
                       extra=("--api-only",))
    started.append(server)
    return server


def worker(tmp_path: Path, env: dict[str, str], started: list[srv.Server]) -> srv.Server:
    server = srv.start_worker(tmp_path / "var", tmp_path / "processes.log", env,
                              extra=("--dev",))
    started.append(server)
    return server


def captured(url: str) -> Counter[str]:
    """Every captured message's OTP id, read a page at a time from the dev inbox."""
    found: Counter[str] = Counter()
    before: str | None = None
    with httpx.Client(base_url=url, timeout=10) as client:
        while True:
            params: dict[str, Any] = {"limit": 1000, **({"before": before} if before else {})}
            page = client.get("/v1/dev/messages", params=params).json()
            found.update(m["otp_id"] for m in page)
            if len(page) < 1000:
                return found
            before = page[-1]["id"]


def wait_until_captured(url: str, wanted: set[str], seconds: float) -> Counter[str]:
    deadline = time.monotonic() + seconds
    while True:
        found = captured(url)
        if wanted <= set(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


async def request_all(urls: list[str], recipients: list[str]) -> list[str]:
    ids: list[str] = []
    limit = anyio.Semaphore(32)
    clients = [httpx.AsyncClient(base_url=url, timeout=15.0) for url in urls]
    try:
        async def one(n: int, to: str) -> None:
            async with limit:
                answer = await clients[n % len(clients)].post("/v1/otp", json={"to": to})
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])

        async with anyio.create_task_group() as tg:
            for n, to in enumerate(recipients):
                tg.start_soon(one, n, to)
    finally:
        for client in clients:
            await client.aclose()
    return ids


def test_every_accepted_code_is_captured_exactly_once_while_workers_are_killed(
    tmp_path: Path, redis: redis_servers.RedisServer, processes: list[srv.Server]
) -> None:
    env = environment(redis)
    apis = [api(tmp_path, env, processes) for _ in range(2)]
    workers = [worker(tmp_path, env, processes) for _ in range(3)]
    done, kills = threading.Event(), [0]

    def killer() -> None:
        chance = random.Random(7)
        while not done.wait(chance.uniform(0.2, 0.5)):
            victim = chance.randrange(len(workers))
            workers[victim].kill()
            workers[victim] = worker(tmp_path, env, processes)
            kills[0] += 1

    chaos = threading.Thread(target=killer)
    chaos.start()
    try:
        ids = anyio.run(request_all, [a.url for a in apis], numbers(2000))
        time.sleep(1.0)  # and a few more kills while the backlog drains
    finally:
        done.set()
        chaos.join()

    assert len(set(ids)) == 2000
    found = wait_until_captured(apis[0].url, set(ids), 90)
    time.sleep(LEASE + 0.5)  # one more lease: nothing may arrive twice after the drain
    found = captured(apis[1].url)
    assert kills[0] >= 5
    assert set(found) == set(ids)
    assert all(n == 1 for n in found.values()), [k for k, n in found.items() if n > 1]


def test_two_api_processes_racing_one_recipient_make_one_code_and_coalesce_the_rest(
    tmp_path: Path, redis: redis_servers.RedisServer, processes: list[srv.Server]
) -> None:
    env = environment(redis)
    apis = [api(tmp_path, env, processes) for _ in range(2)]

    async def race() -> list[dict[str, Any]]:
        clients = [httpx.AsyncClient(base_url=a.url, timeout=15.0) for a in apis]
        try:
            answers = await _gather([clients[n % 2].post(
                "/v1/otp", json={"to": "+14155550123", "purpose": "login"})
                for n in range(40)])
        finally:
            for client in clients:
                await client.aclose()
        assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
        return [a.json() for a in answers]

    bodies = anyio.run(race)
    assert len({b["id"] for b in bodies}) == 1
    assert {b["send_count"] for b in bodies} == {1}
    status = httpx.get(f"{apis[1].url}/v1/otp/{bodies[0]['id']}", timeout=10).json()
    assert (status["status"], status["send_count"]) == ("pending", 1)


async def _gather(calls: list[Any]) -> list[Any]:
    results: list[Any] = [None] * len(calls)

    async def run(n: int, call: Any) -> None:
        results[n] = await call

    async with anyio.create_task_group() as tg:
        for n, call in enumerate(calls):
            tg.start_soon(run, n, call)
    return results


def test_a_worker_stopped_by_sigterm_finishes_its_sends_and_exits_0_within_the_lease(
    tmp_path: Path, redis: redis_servers.RedisServer, processes: list[srv.Server]
) -> None:
    env = environment(redis, OTPGATE_DRIVERS_SMS="capture://?latency_ms=1500",
                      OTPGATE_BUS_LEASE="8")
    front = api(tmp_path, env, processes)
    sender = worker(tmp_path, env, processes)
    ids = anyio.run(request_all, [front.url], numbers(10))
    deadline = time.monotonic() + 20
    log = tmp_path / "processes.log"
    while "otpgate worker running" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # its first sends are out at the slow provider
    assert captured(front.url) == Counter()

    sender.proc.send_signal(signal.SIGTERM)
    began = time.monotonic()
    code = sender.proc.wait(timeout=15)
    took = time.monotonic() - began

    assert code == 0
    assert took < 8, f"the worker took {took:.1f} s to stop"
    # What it had in flight was finished, not left for the next worker to send again.
    assert set(captured(front.url)) == set(ids)


class RequestStream(threading.Thread):
    """POST /v1/otp, one new recipient after another, noting each answer and when."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.answers: list[tuple[float, int, dict[str, Any], httpx.Headers]] = []
        self.done = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            for to in numbers(9000, first=1000):
                if self.done.is_set():
                    return
                answer = client.post("/v1/otp", json={"to": to})
                self.answers.append((time.monotonic(), answer.status_code, answer.json(),
                                     answer.headers))

    def accepted(self, until: float = float("inf"), since: float = 0.0) -> set[str]:
        return {body["id"] for at, status, body, _ in self.answers
                if status == 202 and since <= at < until}


def test_a_redis_killed_and_restarted_from_its_aof_keeps_what_was_acknowledged(
    tmp_path: Path, processes: list[srv.Server]
) -> None:
    aof = redis_servers.start_server(tmp_path, "--appendonly", "yes",
                                     "--appendfsync", "everysec")
    try:
        env = environment(aof, OTPGATE_STORE_TIMEOUT="1")
        front = api(tmp_path, env, processes)
        sender = worker(tmp_path, env, processes)
        stream = RequestStream(front.url)
        stream.start()
        time.sleep(3)
        killed = time.monotonic()
        aof.kill()
        time.sleep(1)
        ready_while_down = httpx.get(f"{front.url}/readyz", timeout=5).status_code
        time.sleep(0.5)
        aof.start()
        back = time.monotonic()
        time.sleep(2)
        stream.done.set()
        stream.join(timeout=15)

        statuses = Counter(status for _, status, _, _ in stream.answers)
        refused = [(body, headers) for _, status, body, headers in stream.answers
                   if status == 503]
        assert set(statuses) <= {202, 503}, statuses
        assert statuses[503] >= 1 and ready_while_down == 503
        assert all(body["type"].endswith("/store-unavailable")
                   and headers["retry-after"] == "1" for body, headers in refused)
        # AOF everysec may lose the last second before the crash; nothing older.
        kept = stream.accepted(until=killed - 2) | stream.accepted(since=back)
        assert len(stream.accepted(since=back)) > 0, "no code accepted after the restart"
        found = wait_until_captured(front.url, kept, 60)
        assert kept <= set(found), f"{len(kept - set(found))} acknowledged codes never sent"
        assert sender.proc.poll() is None and front.proc.poll() is None
    finally:
        aof.stop()


def test_one_serve_process_runs_api_and_dispatchers_on_redis(
    tmp_path: Path, redis: redis_servers.RedisServer, processes: list[srv.Server]
) -> None:
    both = srv.start(tmp_path / "var", tmp_path / "processes.log", environment(redis))
    processes.append(both)
    [otp_id] = anyio.run(request_all, [both.url], numbers(1))
    found = wait_until_captured(both.url, {otp_id}, 20)
    assert found[otp_id] == 1
    assert "API and dispatchers" in (tmp_path / "processes.log").read_text()
