"""``otpgate.client`` against a live server: every route, every problem type, both
clients, and Retry-After honoured."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook

from otpgate import client as og
from tests.e2e import server as srv

CODE = re.compile(r"\b(\d{6})\b")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[srv.Server]:
    base = tmp_path_factory.mktemp("client")
    server = srv.start(base / "var", base / "server.log",
                       env={"OTPGATE_POLICY_MAX_SENDS": "2", "OTPGATE_POLICY_RESEND_COOLDOWN": "0"})
    yield server
    server.stop()


def code_for(server: srv.Server, otp_id: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for message in httpx.get(server.url + "/v1/dev/messages").json():
            if message["otp_id"] == otp_id and (found := CODE.search(message["body"])):
                return found.group(1)
        time.sleep(0.05)
    raise AssertionError(f"no message for {otp_id}")


def test_the_client_requests_verifies_reads_and_cancels(live: srv.Server) -> None:
    with og.Client(live.url) as otp:
        sent = otp.request_otp("+14155550161", purpose="login", reference="order-1")
        assert (sent.status, sent.to, sent.channels) == ("pending", "+1415•••0161", ["sms"])
        wrong = otp.verify(sent.id, "000000" if code_for(live, sent.id) != "000000"
                           else "111111")
        assert (wrong.valid, wrong.status, wrong.attempts_left) == (False, "pending", 4)
        right = otp.verify(sent.id, code_for(live, sent.id))
        assert (right.valid, right.status) == (True, "approved")
        assert right.token is not None and right.token.count(".") == 2
        assert wrong.token is None
        status = otp.get(sent.id)
        assert (status.status, status.reference, status.channels[0].channel) == (
            "approved", "order-1", "sms")

        other = otp.request_otp("+14155550162")
        by_recipient = otp.verify_recipient("+14155550162", code_for(live, other.id))
        assert by_recipient.valid
        third = otp.request_otp("+14155550163")
        assert otp.cancel(third.id).status == "canceled"


def test_problems_are_raised_as_their_own_types(live: srv.Server) -> None:
    with og.Client(live.url, max_retry_wait=0) as otp:
        with pytest.raises(og.InvalidRequest) as invalid:
            otp.request_otp("not-a-number")
        assert (invalid.value.status, invalid.value.field) == (422, "to")
        assert invalid.value.slug == "invalid-recipient"
        with pytest.raises(og.NotFound):
            otp.get("otp_" + "A" * 22)
        key = f"key-{time.monotonic_ns()}"
        otp.request_otp("+14155550164", idempotency_key=key)
        with pytest.raises(og.Conflict):
            otp.request_otp("+14155550165", idempotency_key=key)
        otp.request_otp("+14155550166", purpose="cap")
        otp.request_otp("+14155550166", purpose="cap")
        with pytest.raises(og.RateLimited) as limited:
            otp.request_otp("+14155550166", purpose="cap")
        assert limited.value.retry_after is not None and limited.value.retry_after >= 1


def test_a_missing_key_outside_dev_mode_is_unauthorized(tmp_path: Path) -> None:
    server = srv.start(tmp_path / "var", tmp_path / "server.log", dev=False,
                       env={"OTPGATE_DRIVERS_SMS": "console://"})
    try:
        with og.Client(server.url) as otp, pytest.raises(og.Unauthorized):
            otp.request_otp("+14155550167")
        with og.Client(server.url, api_key="og_deadbeef_" + "A" * 43) as otp, \
                pytest.raises(og.Unauthorized):
            otp.get("otp_" + "A" * 22)
    finally:
        server.stop()


async def test_the_async_client_does_the_same(live: srv.Server) -> None:
    async with og.AsyncClient(live.url) as otp:
        sent = await otp.request_otp("+14155550168")
        assert (await otp.get(sent.id)).status == "pending"
        verdict = await otp.verify(sent.id, code_for(live, sent.id))
        assert verdict.valid
        with pytest.raises(og.NotFound):
            await otp.verify("otp_" + "B" * 22, "123456")


def test_retry_after_is_honoured_on_503_then_the_answer_is_read() -> None:
    answers = iter([
        httpx.Response(503, headers={"Retry-After": "1"}, json={
            "type": "https://otpgate.dev/problems/store-unavailable", "title": "Store "
            "unavailable", "status": 503, "detail": "the store cannot be reached"}),
        httpx.Response(202, json={"id": "otp_x", "status": "pending", "to": "+1415•••0123",
                                  "channels": ["sms"], "expires_at": "", "resend_after": "",
                                  "send_count": 1, "attempts_left": 5}),
    ])
    transport = httpx.MockTransport(lambda request: next(answers))
    start = time.monotonic()
    with og.Client("http://otpgate.test", transport=transport) as otp:
        assert otp.request_otp("+14155550123").id == "otp_x"
    assert time.monotonic() - start >= 1
    never = httpx.MockTransport(lambda request: httpx.Response(503, headers={
        "Retry-After": "30"}, json={"type": "https://otpgate.dev/problems/store-unavailable",
                                    "title": "Store unavailable", "status": 503,
                                    "detail": "down"}))
    with og.Client("http://otpgate.test", transport=never) as otp, \
            pytest.raises(og.Unavailable) as down:
        otp.request_otp("+14155550123")
    assert down.value.retry_after == 30


def test_a_webhook_signed_with_the_secret_verifies_and_a_forged_one_does_not() -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = '{"id":"evt_1","type":"otpgate.otp.approved.v1"}'
    now = datetime.now(UTC)
    signature = Webhook(secret).sign("evt_1", now, body)
    headers = {"Webhook-Id": "evt_1", "Webhook-Timestamp": str(int(now.timestamp())),
               "Webhook-Signature": signature}
    assert og.verify_webhook(headers, body, secret)["id"] == "evt_1"
    with pytest.raises(ValueError, match="does not verify"):
        og.verify_webhook({**headers, "Webhook-Signature": "v1,AAAA"}, body, secret)
    with pytest.raises(ValueError, match="does not verify"):
        og.verify_webhook(headers, body.replace("evt_1", "evt_2"), secret)
