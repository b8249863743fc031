"""The HTTP API over Redis, dispatchers in the same process (``otpgate serve``): the whole
flow, and what a caller sees while Redis is down, hung, and back."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from otpgate.api.app import create_app
from otpgate.clock import FrozenClock
from tests import redis_servers
from tests.contract.conftest import BACKENDS, require
from tests.integration.conftest import (
    BASE_URL,
    PHONE,
    Client,
    assert_problem,
    code_in,
    request_code,
    settings,
    wait_for_messages,
    without_token,
)

TIMEOUT = 0.5


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[redis_servers.RedisServer]:
    require(next(case for case in BACKENDS if case.name == "redis"))
    server = redis_servers.start_server(tmp_path, "--appendonly", "yes",
                                        "--appendfsync", "always")
    yield server
    server.stop()


@pytest.fixture
async def client(tmp_path: Path, clock: FrozenClock,
                 own_redis: redis_servers.RedisServer) -> AsyncIterator[Client]:
    app = create_app(settings(tmp_path, store_url=own_redis.url, store_timeout=TIMEOUT,
                              poll_interval=0.02), clock=clock)
    async with AsyncTestClient(app, base_url=BASE_URL) as c:
        yield c


async def test_a_code_is_requested_sent_and_verified_over_redis(client: Client) -> None:
    otp = await request_code(client, purpose="login")
    [message] = await wait_for_messages(client, PHONE)
    verdict = await client.post(f"/v1/otp/{otp['id']}/verify",
                                json={"code": code_in(message["body"])})
    assert without_token(verdict.json()) == {"id": otp["id"], "valid": True, "status": "approved"}
    status = (await client.get(f"/v1/otp/{otp['id']}")).json()
    assert (status["status"], status["channels"][0]["status"]) == ("approved", "sent")


async def assert_unavailable(client: Client, otp_id: str) -> None:
    for method, path, body in [("POST", "/v1/otp", {"to": PHONE}),
                               ("POST", f"/v1/otp/{otp_id}/verify", {"code": "123456"}),
                               ("GET", f"/v1/otp/{otp_id}", None),
                               ("GET", "/v1/dev/messages", None), ("GET", "/readyz", None)]:
        began = time.monotonic()
        answer = await client.request(method, path, json=body)
        assert time.monotonic() - began < TIMEOUT * 2 + 0.5, f"{path} hung"
        assert answer.status_code == 503, (path, answer.text)
        assert answer.headers["retry-after"] == "1"
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["type"].endswith("-unavailable")


async def test_while_redis_is_down_every_route_answers_503_and_then_recovers_by_itself(
    client: Client, own_redis: redis_servers.RedisServer
) -> None:
    otp = await request_code(client)
    own_redis.kill()
    await assert_unavailable(client, otp["id"])

    own_redis.start()  # from its append-only file
    again = await client.post("/v1/otp", json={"to": "+14155550199"})
    assert again.status_code == 202
    assert (await client.get("/readyz")).status_code == 200
    await wait_for_messages(client, "+14155550199")
    assert (await client.get(f"/v1/otp/{otp['id']}")).json()["id"] == otp["id"]


async def test_a_hung_redis_is_a_503_within_the_store_timeout_not_a_hang(
    client: Client, own_redis: redis_servers.RedisServer
) -> None:
    otp = await request_code(client)
    assert own_redis.proc is not None
    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    try:
        await assert_unavailable(client, otp["id"])
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)
    assert_problem(await client.post("/v1/otp", json={"to": "bad"}), 422, "invalid-recipient")
    assert (await client.post("/v1/otp", json={"to": PHONE})).status_code == 202
