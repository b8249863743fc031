"""The newcomer's walk-through against a real server process, and what its logs hold."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.e2e import server as srv

RECIPIENTS = [f"+1415300{n:04d}" for n in range(20)]
CODE_IN_SMS = re.compile(r"\b(\d{6})\b")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> srv.Server:
    base = tmp_path_factory.mktemp("flow")
    server = srv.start(base / "var", base / "server.log")
    yield server
    server.stop()


def inbox(client: httpx.Client, to: str, count: int = 1) -> list[dict[str, str]]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        messages: list[dict[str, str]] = client.get("/v1/dev/messages",
                                                    params={"to": to}).json()
        if len(messages) >= count:
            return messages
        time.sleep(0.05)
    raise AssertionError(f"no message for {to}")


def test_a_code_requested_over_http_arrives_in_the_inbox_and_verifies(running: srv.Server,
                                                                       ) -> None:
    with httpx.Client(base_url=running.url, timeout=10) as client:
        # As the README types it: curl -d sends a form content type with a JSON body.
        sent = client.post("/v1/otp", content=b'{"to":"+14155550123"}',
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert sent.status_code == 202, sent.text
        body = sent.json()
        assert body["to"] == "+1415•••0123" and body["status"] == "pending"
        message = inbox(client, "+14155550123")[0]
        assert message["otp_id"] == body["id"]
        code = CODE_IN_SMS.search(message["body"])
        assert code is not None, message["body"]
        verified = client.post(f"/v1/otp/{body['id']}/verify", json={"code": code.group(1)})
        approval = verified.json()
        assert approval.pop("token").count(".") == 2
        assert approval == {"id": body["id"], "valid": True, "status": "approved"}
        again = client.post(f"/v1/otp/{body['id']}/verify", json={"code": code.group(1)})
        assert again.json()["valid"] is False and again.json()["status"] == "approved"
        page = client.get("/dev/inbox")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert body["id"] in page.text


def test_the_logs_never_hold_a_code_or_a_full_number(running: srv.Server) -> None:
    codes: list[str] = []
    with httpx.Client(base_url=running.url, timeout=10) as client:
        for to in RECIPIENTS:
            answer = client.post("/v1/otp", json={"to": to, "purpose": "signup"})
            assert answer.status_code == 202
            code = CODE_IN_SMS.search(inbox(client, to)[0]["body"])
            assert code is not None
            codes.append(code.group(1))
            client.post(f"/v1/otp/{answer.json()['id']}/verify", json={"code": "000000"})
            client.post("/v1/verify", json={"to": to, "purpose": "signup",
                                            "code": code.group(1)})
    time.sleep(0.5)
    log = running.output()
    assert "DEV MODE" in log or "dev mode" in log.lower()
    leaked_codes = [c for c in codes if c in log]
    leaked_numbers = [to for to in RECIPIENTS if to in log or to[1:] in log]
    assert leaked_codes == []
    assert leaked_numbers == []
