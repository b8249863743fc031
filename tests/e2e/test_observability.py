"""A real server exporting traces to an in-test OTLP/HTTP receiver and logging JSON: one
OTP is one trace from the HTTP request through the bus to the provider call, and every
log line is one object carrying its ids — with no code or full number anywhere."""

from __future__ import annotations

import json
from pathlib import Path

from otpgate import client as og
from tests.e2e import server as srv
from tests.e2e.otlp import collecting
from tests.e2e.test_client import code_for

PHONE = "+14155550180"


def test_one_otp_is_one_trace_and_every_log_line_is_a_masked_object(tmp_path: Path) -> None:
    with collecting() as collector:
        server = srv.start(tmp_path / "var", tmp_path / "server.log", env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_SERVICE_NAME": "otp-e2e",
            "OTEL_BSP_SCHEDULE_DELAY": "50", "OTPGATE_LOG_FORMAT": "json"})
        try:
            with og.Client(server.url) as otp:
                sent = otp.request_otp(PHONE)
                code = code_for(server, sent.id)
                assert otp.verify(sent.id, code).valid
            api = collector.wait_for("POST /v1/otp")
            send = collector.wait_for("send capture")
        finally:
            server.stop()
        trace = collector.in_trace(api.trace_id)

    dispatch = next(s for s in trace if s.name == "dispatch.capture process")
    assert send.trace_id == api.trace_id
    assert dispatch.parent_id == api.span_id and send.parent_id == dispatch.span_id
    assert api.service == "otp-e2e"
    assert api.attributes["http.route"] == "/v1/otp"
    assert api.attributes["http.response.status_code"] == 202
    assert dispatch.attributes["otpgate.otp_id"] == sent.id
    assert send.attributes["otpgate.outcome"] == "sent"
    assert send.attributes["otpgate.country"] == "US"
    for span in trace:
        for value in span.attributes.values():
            assert code not in str(value) and PHONE[1:] not in str(value), span

    lines = [line for line in server.output().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert all({"ts", "level", "msg"} <= set(r) for r in records)
    dispatched = [r for r in records if r.get("event_id") and r.get("driver") == "capture"]
    assert any(r.get("otp_id") == sent.id for r in dispatched), records
    assert code not in server.output() and PHONE[1:] not in server.output()
