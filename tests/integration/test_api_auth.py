"""Outside dev mode every /v1 route needs an active API key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from otpgate import apikeys
from otpgate.api.auth import CACHE_TTL
from otpgate.clock import FrozenClock
from tests.integration.conftest import CONSOLE, PHONE, START, Client, assert_problem, runtime_of


@pytest.fixture
async def keyed(make_client: Callable[..., Any]) -> AsyncIterator[Client]:
    async with make_client(dev=False, drivers=CONSOLE) as c:
        yield c


async def new_key(client: Client, name: str = "shop") -> tuple[str, str]:
    key, plaintext = await apikeys.create(runtime_of(client).backend.store, name, START)
    return key.id, plaintext


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_a_request_without_a_key_is_401_with_a_bearer_challenge(keyed: Client) -> None:
    for response in (await keyed.post("/v1/otp", json={"to": PHONE}),
                     await keyed.get("/v1/otp/otp_AAAAAAAAAAAAAAAAAAAAAA"),
                     await keyed.post("/v1/verify", json={"to": PHONE, "code": "123456"})):
        assert_problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("header", [
    "Bearer og_deadbeef_" + "A" * 43,
    "Bearer og_nothex!!_" + "A" * 43,
    "Bearer something-else",
    "Basic dXNlcjpwYXNz",
    "Bearer ",
])
async def test_an_unknown_or_malformed_key_is_401(keyed: Client, header: str) -> None:
    response = await keyed.post("/v1/otp", json={"to": PHONE},
                                headers={"authorization": header})
    assert_problem(response, 401, "unauthorized")


async def test_a_created_key_is_accepted_on_every_route(keyed: Client) -> None:
    _, key = await new_key(keyed)
    created = await keyed.post("/v1/otp", json={"to": PHONE}, headers=bearer(key))
    assert created.status_code == 202
    otp_id = created.json()["id"]
    assert (await keyed.get(f"/v1/otp/{otp_id}", headers=bearer(key))).status_code == 200
    verify = await keyed.post(f"/v1/otp/{otp_id}/verify", json={"code": "000000"},
                              headers=bearer(key))
    assert verify.status_code == 200


async def test_a_key_with_a_wrong_secret_is_401(keyed: Client) -> None:
    _, key = await new_key(keyed)
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    response = await keyed.post("/v1/otp", json={"to": PHONE}, headers=bearer(forged))
    assert_problem(response, 401, "unauthorized")


async def test_a_revoked_key_is_refused_once_the_cache_ttl_has_passed(
    keyed: Client, clock: FrozenClock
) -> None:
    key_id, key = await new_key(keyed)
    assert (await keyed.post("/v1/otp", json={"to": PHONE}, headers=bearer(key))).status_code \
        == 202
    assert await apikeys.revoke(runtime_of(keyed).backend.store, key_id, clock.now())
    clock.advance(CACHE_TTL)
    response = await keyed.post("/v1/otp", json={"to": PHONE}, headers=bearer(key))
    assert_problem(response, 401, "unauthorized")


async def test_a_key_revoked_before_its_first_use_is_refused_at_once(keyed: Client) -> None:
    key_id, key = await new_key(keyed)
    await apikeys.revoke(runtime_of(keyed).backend.store, key_id, START)
    response = await keyed.post("/v1/otp", json={"to": PHONE}, headers=bearer(key))
    assert_problem(response, 401, "unauthorized")


async def test_health_and_the_openapi_document_need_no_key(keyed: Client) -> None:
    assert (await keyed.get("/healthz")).status_code == 200
    assert (await keyed.get("/readyz")).status_code == 200
    assert (await keyed.get("/openapi.json")).status_code == 200


async def test_dev_routes_do_not_exist_outside_dev_mode(keyed: Client) -> None:
    _, key = await new_key(keyed)
    assert_problem(await keyed.get("/v1/dev/messages", headers=bearer(key)), 404, "not-found")
    assert_problem(await keyed.get("/dev/inbox"), 404, "not-found")
