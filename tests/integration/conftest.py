"""The HTTP API over the in-memory backend, a frozen clock and the capture driver.

The dispatcher runs in the background as in production; tests that need a sent message
poll ``/v1/dev/messages`` in a bounded loop (``wait_for_messages``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from otpgate.api.app import context_of, create_app
from otpgate.clock import FrozenClock
from otpgate.config import Settings, build
from otpgate.runtime import Runtime

SECRET = "4fedfc15e87f0c7d608e8c13c2d55a3e50a3e0a1bf7d8caf5e42e84c0cc34339"  # random, tests only
START = 1_800_000_000.0
PHONE = "+14155550123"
PROBLEM = "application/problem+json"
CONSOLE = {"sms": ("console://",), "email": ("console://",)}
"""Real-mode drivers for tests outside dev mode (the capture driver needs dev mode)."""

Client = AsyncTestClient[Litestar]
BASE_URL = "http://127.0.0.1:8080"
"""Where the tests' server "listens" (the settings' host and port: dev mode checks Host)."""


def settings(data_dir: Path, **changes: Any) -> Settings:
    return build({"store_url": "memory://", "dev": True, "data_dir": data_dir,
                  "secret_key": SECRET, "poll_interval": 0.005, "sweep_interval": 3600.0,
                  **changes})


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def make_client(tmp_path: Path, clock: FrozenClock) -> Callable[..., AsyncIterator[Client]]:
    """``async with make_client(dev=False) as client`` — an app with changed settings."""
    @asynccontextmanager
    async def make(**changes: Any) -> AsyncIterator[Client]:
        app = create_app(settings(tmp_path, **changes), clock=clock)
        async with AsyncTestClient(app, base_url=BASE_URL) as client:
            yield client

    return make


@pytest.fixture
async def client(make_client: Callable[..., Any]) -> AsyncIterator[Client]:
    """A dev-mode app: no API key needed, messages captured."""
    async with make_client() as c:
        yield c


def runtime_of(client: Client) -> Runtime:
    return context_of(client.app).runtime


async def wait_for_messages(client: Client, to: str, count: int = 1) -> list[dict[str, Any]]:
    """The captured messages for ``to`` once there are at least ``count`` (newest first)."""
    for _ in range(500):
        response = await client.get("/v1/dev/messages", params={"to": to})
        assert response.status_code == 200, response.text
        if len(found := response.json()) >= count:
            return list(found)
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} message(s) for {to} never arrived")


def code_in(body: str, length: int = 6) -> str:
    """The code a message carries."""
    match = re.search(rf"(?<!\d)\d{{{length}}}(?!\d)", body)
    assert match is not None, body
    return match.group()


async def request_code(client: Client, to: str = PHONE, **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/otp", json={"to": to, **fields})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def sent_code(client: Client, to: str = PHONE, **fields: Any) -> tuple[str, str]:
    """Request a code and read it from the dev inbox: ``(otp id, code)``."""
    otp = await request_code(client, to, **fields)
    messages = await wait_for_messages(client, to)
    mine = [m for m in messages if m["otp_id"] == otp["id"]]
    return otp["id"], code_in(mine[0]["body"], fields.get("code_length", 6))


def without_token(body: dict[str, Any]) -> dict[str, Any]:
    """An approving answer without its verification token, which it must carry (see
    ``test_api_tokens`` for what the token holds)."""
    rest = dict(body)
    token = rest.pop("token", None)
    assert isinstance(token, str) and token.count(".") == 2, body
    return rest


def assert_problem(response: Any, status: int, slug: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == f"https://otpgate.dev/problems/{slug}"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    if field is not None:
        assert body["field"] == field
