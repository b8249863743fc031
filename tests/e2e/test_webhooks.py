"""Outgoing webhooks from a real server to a local endpoint: signed Standard Webhooks
verified with the ``standardwebhooks`` package, retried while the endpoint fails, then
dead-lettered, listed and replayed from the command line."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from standardwebhooks import Webhook

from otpgate import client as og
from otpgate.cli import main
from tests.e2e import server as srv
from tests.e2e.receiver import Receiver, receiving
from tests.e2e.test_client import code_for

SECRET = "whsec_" + "c2VjcmV0LWZvci10aGUtd2ViaG9vay10ZXN0cw=="


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Receiver]:
    with receiving() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def env(endpoint: Receiver, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("webhooks")
    return {"OTPGATE_DATA_DIR": str(base / "var"), "OTPGATE_WEBHOOK_URL": endpoint.url,
            "OTPGATE_WEBHOOK_SECRET": SECRET, "OTPGATE_WEBHOOK_BACKOFF": "0.2",
            "OTPGATE_WEBHOOK_RETRY_FOR": "1", "OTPGATE_POLL_INTERVAL": "0.05",
            "OTPGATE_LOG_LEVEL": "warning"}


@pytest.fixture(scope="module")
def live(env: dict[str, str]) -> Iterator[srv.Server]:
    data = Path(env["OTPGATE_DATA_DIR"])
    server = srv.start(data, data.parent / "server.log", env=env)
    yield server
    server.stop()


def cli(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_lifecycle_event_arrives_signed_one_per_request(live: srv.Server,
                                                              endpoint: Receiver) -> None:
    endpoint.status = 204
    with og.Client(live.url) as otp:
        sent = otp.request_otp("+14155550170", purpose="hooks")
        code = code_for(live, sent.id)
        assert otp.verify(sent.id, code).valid
    got = endpoint.wait_for(3, sent.id)
    kinds = set()
    for request in got:
        assert request.headers["content-type"] == "application/cloudevents+json"
        event = Webhook(SECRET).verify(request.body, request.headers)
        assert request.headers["webhook-id"] == event["id"]
        assert event["specversion"] == "1.0" and event["subject"] == sent.id
        assert code not in request.body.decode() and "+14155550170" not in request.body.decode()
        kinds.add(event["type"])
    assert {"otpgate.otp.requested.v1", "otpgate.otp.sent.v1",
            "otpgate.otp.approved.v1"} <= kinds
    assert "otpgate.otp.dispatch.v1" not in kinds
    ids = [r.headers["webhook-id"] for r in got]
    assert len(ids) == len(set(ids)), "each event is delivered once to a working endpoint"


def test_a_failing_endpoint_gets_retries_then_a_dead_letter_that_replays(
    live: srv.Server, env: dict[str, str], endpoint: Receiver
) -> None:
    endpoint.status = 500
    with og.Client(live.url) as otp:
        requested = otp.request_otp("+14155550171", purpose="down")
        deadline = time.monotonic() + 20  # cancel once sent, for three events in all
        while time.monotonic() < deadline and not any(
                b"otpgate.otp.sent.v1" in r.body for r in endpoint.wait_for(1, requested.id)):
            time.sleep(0.05)
        canceled = otp.cancel(requested.id)
    attempts = endpoint.wait_for(4 * 3, canceled.id)  # requested, sent, canceled: 4 each
    by_id: dict[str, int] = {}
    for request in attempts:
        Webhook(SECRET).verify(request.body, request.headers)
        by_id[request.headers["webhook-id"]] = by_id.get(request.headers["webhook-id"], 0) + 1
    assert sorted(by_id.values()) == [4, 4, 4]

    dead: list[dict[str, object]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(dead) < 3:
        dead = [d for d in json.loads(cli(env, "webhooks", "dead"))
                if d["subject"] == canceled.id]
        time.sleep(0.1)
    assert {d["id"] for d in dead} == set(by_id)
    assert all(d["deliveries"] == 4 and "HTTP 500" in str(d["error"]) for d in dead)
    time.sleep(1.0)
    assert len([r for r in endpoint.received() if canceled.id.encode() in r.body]) == 12

    endpoint.status = 200
    assert "replayed 3" in cli(env, "webhooks", "replay", "--all")
    again = endpoint.wait_for(15, canceled.id)
    assert {r.headers["webhook-id"] for r in again[12:]} == set(by_id)
    assert [d for d in json.loads(cli(env, "webhooks", "dead"))
            if d["subject"] == canceled.id] == []
