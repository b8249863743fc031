"""An API-only server and a separate worker process share one embedded database."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.e2e import server as srv


def test_codes_accepted_by_an_api_only_server_are_sent_by_a_worker_process(
    tmp_path: Path,
) -> None:
    data, log = tmp_path / "var", tmp_path / "processes.log"
    api = srv.start(data, log, extra=("--api-only",))
    try:
        with httpx.Client(base_url=api.url, timeout=10) as client:
            accepted = client.post("/v1/otp", json={"to": "+14155550123"})
            assert accepted.status_code == 202
            time.sleep(0.5)  # nobody dispatches yet: the event waits in the outbox
            assert client.get("/v1/dev/messages").json() == []
            worker = srv.start_worker(data, log, {"OTPGATE_DEV": "true"})
            try:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    found = client.get("/v1/dev/messages").json()
                    if found:
                        break
                    time.sleep(0.05)
            finally:
                worker.stop()
    finally:
        api.stop()
    assert [m["otp_id"] for m in found] == [accepted.json()["id"]]
    assert "API only" in log.read_text()
