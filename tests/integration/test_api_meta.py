"""Health, readiness, the OpenAPI document and what the app says at start-up."""

from __future__ import annotations

from typing import Any

import pytest

from otpgate.store.memory import MemoryStore
from tests.integration.conftest import CONSOLE, Client, assert_problem


async def test_healthz_answers_ok(client: Client) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_answers_ok_when_store_and_bus_answer(client: Client) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_readyz_is_503_when_the_store_cannot_be_reached(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(_: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(MemoryStore, "ping", down)
    response = await client.get("/readyz")
    assert_problem(response, 503, "store-unavailable")
    assert response.headers["retry-after"] == "1"
    assert "disk gone" not in response.text


async def test_the_openapi_document_is_3_1_and_describes_every_route(client: Client) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    assert {"/v1/otp", "/v1/otp/{otp_id}/verify", "/v1/verify", "/v1/otp/{otp_id}",
            "/v1/dev/messages", "/healthz", "/readyz"} <= set(paths)
    request_otp = paths["/v1/otp"]["post"]
    body_ref = request_otp["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    otp_in = doc["components"]["schemas"][body_ref.rsplit("/", 1)[1]]
    assert {"to", "channel", "channels", "purpose", "code_length"} <= set(otp_in["properties"])
    assert otp_in["required"] == ["to"]
    assert {"202", "401", "413", "422", "429"} <= set(request_otp["responses"])
    assert "application/problem+json" in request_otp["responses"]["422"]["content"]
    assert {"200", "404", "422"} <= set(paths["/v1/otp/{otp_id}/verify"]["post"]["responses"])
    assert set(paths["/v1/otp/{otp_id}"]) >= {"get", "delete"}
    assert any(p["name"] == "Idempotency-Key" for p in request_otp["parameters"])


async def test_dev_mode_warns_loudly_at_start_up(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_client():
        pass
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "no API key" in warning.message
    assert "/dev/inbox" in warning.message


async def test_real_mode_says_keys_are_required(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="otpgate")
    async with make_client(dev=False, drivers=CONSOLE):
        pass
    assert any("needs an API key" in r.message for r in caplog.records)
    assert not any(r.levelname == "WARNING" for r in caplog.records)
