"""``/metrics`` and the dashboard's figures: open in dev mode, admin keys only otherwise;
every request carries a request id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from otpgate import apikeys
from tests.integration.conftest import (
    CONSOLE,
    PHONE,
    START,
    Client,
    assert_problem,
    runtime_of,
    sent_code,
)


async def key_for(client: Client, admin: bool) -> str:
    _, plaintext = await apikeys.create(runtime_of(client).backend.store, "ops", START,
                                        admin=admin)
    return plaintext


async def test_outside_dev_mode_metrics_need_an_admin_key(make_client: Callable[..., Any]
                                                          ) -> None:
    async with make_client(dev=False, drivers=CONSOLE) as client:
        plain, admin = await key_for(client, False), await key_for(client, True)
        for path in ("/metrics", "/dashboard/data"):
            assert_problem(await client.get(path), 401, "unauthorized")
            assert_problem(await client.get(path, headers={"authorization": f"Bearer {plain}"}),
                           403, "forbidden")
            allowed = await client.get(path, headers={"authorization": f"Bearer {admin}"})
            assert allowed.status_code == 200, allowed.text
            assert allowed.headers["cache-control"] == "no-store"
        # an admin key is a key: it may use the API too
        response = await client.post("/v1/otp", json={"to": PHONE},
                                     headers={"authorization": f"Bearer {admin}"})
        assert response.status_code == 202


async def test_in_dev_mode_metrics_are_open_and_parse(client: Client) -> None:
    otp_id, code = await sent_code(client)
    assert (await client.post(f"/v1/otp/{otp_id}/verify", json={"code": code})).json()["valid"]
    response = await client.get("/metrics")
    assert response.status_code == 200
    names = {f.name for f in text_string_to_metric_families(response.text)}
    assert {"otpgate_http_requests", "otpgate_http_request_duration_seconds", "otpgate_otps",
            "otpgate_sends", "otpgate_send_duration_seconds", "otpgate_queue_depth",
            "otpgate_queue_oldest_age_seconds", "otpgate_breaker_state"} <= names
    assert code not in response.text.replace("_bucket", "")


async def test_the_dashboard_figures_follow_the_flow(client: Client) -> None:
    before = (await client.get("/dashboard/data")).json()
    otp_id, code = await sent_code(client, "+14155550199")
    await client.post(f"/v1/otp/{otp_id}/verify", json={"code": code})
    after = (await client.get("/dashboard/data")).json()
    assert after["requests"] >= before["requests"] + 2
    us = next(c for c in after["conversion"] if c["country"] == "US")
    assert us["approved"] >= 1 and 0 < us["rate"] <= 1
    assert {q["subscription"] for q in after["queues"]} >= {"dispatch.capture"}
    assert after["breakers"] == [{"driver": "capture", "state": "closed"}]
    assert any(s["driver"] == "capture" and s["outcome"] == "sent" for s in after["sends"])
    assert after["blocked_prefixes"] == [] or after["blocked_prefixes"][0]["value"] > 0


async def test_every_answer_carries_a_request_id_and_a_sane_one_is_kept(client: Client
                                                                        ) -> None:
    made = await client.get("/healthz")
    assert len(made.headers["x-request-id"]) == 16
    kept = await client.get("/nowhere", headers={"x-request-id": "abc-123"})
    assert kept.status_code == 404
    assert kept.headers["x-request-id"] == "abc-123"
    replaced = await client.get("/healthz", headers={"x-request-id": "<script>"})
    assert replaced.headers["x-request-id"] != "<script>"


async def test_security_events_are_counted_for_prometheus(make_client: Callable[..., Any]
                                                           ) -> None:
    from prometheus_client import REGISTRY

    def now(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    async with make_client(dev=False, drivers=CONSOLE) as client:
        key = await key_for(client, False)
        missing = now("otpgate_api_key_failures_total", reason="missing")
        assert_problem(await client.get("/v1/otp/otp_AAAAAAAAAAAAAAAAAAAAAA"), 401,
                       "unauthorized")
        assert now("otpgate_api_key_failures_total", reason="missing") == missing + 1
        wrong = now("otpgate_verify_failures_total", tenant="default")
        sent = await client.post("/v1/otp", json={"to": PHONE},
                                 headers={"authorization": f"Bearer {key}"})
        await client.post(f"/v1/otp/{sent.json()['id']}/verify", json={"code": "000000"},
                          headers={"authorization": f"Bearer {key}"})
        assert now("otpgate_verify_failures_total", tenant="default") == wrong + 1
