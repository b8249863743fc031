"""``/metrics`` from a real ``otpgate serve --workers 2``: parsed by prometheus-client's
text parser, counting a whole flow across both server processes, linted by promtool."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from otpgate import client as og
from tests.e2e import server as srv
from tests.e2e.scrape import promtool_lint, scrape, value
from tests.e2e.test_client import code_for

FLOWS = 6


def test_the_counters_move_as_a_flow_runs_on_two_server_processes(tmp_path: Path) -> None:
    server = srv.start(tmp_path / "var", tmp_path / "server.log", extra=("--workers", "2"))
    try:
        _, before = scrape(server.url)
        with og.Client(server.url) as otp:
            for n in range(FLOWS):
                sent = otp.request_otp(f"+1415555{n:04d}", purpose="metrics")
                assert otp.verify(sent.id, code_for(server, sent.id)).valid
            otp.verify(otp.request_otp("+447400123456").id, "000000")
        text, after = scrape(server.url)
    finally:
        server.stop()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("otpgate_otps_total", outcome="requested", country="US") == FLOWS
    assert moved("otpgate_otps_total", outcome="approved", country="US") == FLOWS
    assert moved("otpgate_otps_total", outcome="requested", country="GB") == 1
    assert moved("otpgate_otps_total", outcome="verification_failed", country="GB") == 1
    assert moved("otpgate_http_requests_total", route="/v1/otp", method="POST",
                 status="202") == FLOWS + 1
    assert moved("otpgate_sends_total", driver="capture", channel="sms", country="US",
                 outcome="sent") == FLOWS
    assert moved("otpgate_send_duration_seconds_count", driver="capture") == FLOWS + 1
    assert value(after, "otpgate_http_request_duration_seconds_count",
                 route="/v1/otp/{otp_id}/verify") >= FLOWS
    assert ("otpgate_queue_depth", frozenset({("subscription", "dispatch.capture")})) in after
    assert value(after, "otpgate_breaker_state", driver="capture") == 0
    families = {name for name, _ in after}
    assert all(name.startswith("otpgate_") for name in families)
    assert "+1415" not in text and "@" not in text
    assert promtool_lint(text) == ""


def test_the_multiprocess_directory_is_removed_when_the_server_stops(tmp_path: Path) -> None:
    server = srv.start(tmp_path / "var", tmp_path / "server.log", extra=("--workers", "2"),
                       env={"TMPDIR": str(tmp_path)})
    try:
        assert httpx.get(server.url + "/metrics").status_code == 200
        assert list(tmp_path.glob("otpgate-metrics-*/*.db"))
    finally:
        server.stop()
    assert not list(tmp_path.glob("otpgate-metrics-*"))


def test_a_worker_serves_its_own_metrics_on_its_metrics_port(tmp_path: Path) -> None:
    data, log = tmp_path / "var", tmp_path / "processes.log"
    api = srv.start(data, log, extra=("--api-only",))
    port = srv.free_port()
    worker = srv.start_worker(data, log, {"OTPGATE_DEV": "true",
                                          "OTPGATE_METRICS_PORT": str(port)})
    url = f"http://127.0.0.1:{port}"
    try:
        with og.Client(api.url) as otp:
            otp.request_otp("+14155550175")
        deadline = time.monotonic() + 20
        sent = 0.0
        while time.monotonic() < deadline and not sent:
            try:
                _, samples = scrape(url)
                sent = value(samples, "otpgate_sends_total", driver="capture", outcome="sent")
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert sent == 1
        assert value(samples, "otpgate_breaker_state", driver="capture") == 0
    finally:
        worker.stop()
        api.stop()
