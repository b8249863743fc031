"""The Sinch driver against a local server speaking the Sinch SMS REST API (XMS batches), and
its delivery report callbacks: with a token in the callback URL, and signed with HMAC as
Sinch signs them (checked by the official ``sinch`` SDK's validator too)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from sinch.domains.sms.sinch_events.v1.sms_sinch_event import SmsSinchEvent

from otpgate.drivers import open_driver
from otpgate.drivers.base import ReceiptRequest
from otpgate.drivers.sinch import SinchDriver
from otpgate.drivers.wrappers import Bounded
from otpgate.errors import (
    BrokenDriverError,
    ConfigurationError,
    Forbidden,
    InvalidRequest,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    UnknownOutcomeError,
)
from tests.providers.conftest import CODE, PUBLIC, TO, context, message
from tests.providers.stand_in import Call, Handler, Reply, StandIn

PLAN = "9c3d1e2f4a5b6c7d8e9f0a1b2c3d4e5f"
TOKEN = "a7" * 16
CALLBACK_TOKEN = "cb-token-0123456789abcdef"
HMAC_SECRET = "sinch-hmac-secret-42"
INVALID = "+1415555"
"""Too short to be a number: Sinch answers syntax_invalid_parameter_format."""
BUSY = "+14155550101"
DOWN = "+14155550102"
HANGS = "+14155550103"
E164 = re.compile(r"\+[1-9][0-9]{7,14}")

StartStandIn = Callable[[Handler], StandIn]


def sinch_api(call: Call) -> Reply:
    """Sinch as it answers: a Bearer API token for the service plan in the path, JSON batches
    whose ``to`` holds E.164 numbers, errors as ``{"code", "text"}``."""
    match = re.fullmatch(r"/xms/v1/([^/]+)/batches", call.path)
    if call.bearer() != TOKEN:
        return Reply.json(401, {"code": "unauthorized", "text": "Unauthorized"})
    if match is None or match.group(1) != PLAN:
        return Reply.json(404, {"code": "not_found", "text": "Not found"})
    try:
        batch = call.json()
    except ValueError:
        return Reply.json(400, {"code": "syntax_invalid_json", "text": "bad JSON"})
    if not isinstance(batch.get("to"), list) or not batch.get("body") or not batch.get("from"):
        return Reply.json(400, {"code": "syntax_constraint_violation",
                                "text": "to, from and body are required"})
    if batch.get("delivery_report") not in (None, "none", "summary", "full",
                                            "per_recipient", "per_recipient_final"):
        return Reply.json(400, {"code": "syntax_invalid_parameter_format",
                                "text": "delivery_report"})
    to = batch["to"][0]
    if not E164.fullmatch(to):
        return Reply.json(400, {"code": "syntax_invalid_parameter_format",
                                "text": f"Invalid MSISDN {to}"})
    if to == BUSY:
        return Reply.json(429, {"code": "too_many_requests", "text": "Slow down"},
                          {"Retry-After": "7"})
    if to == DOWN:
        return Reply(503, b"Service Unavailable")
    if to == HANGS:
        return Reply.json(201, {"id": "01LATE"}, delay=2.0)
    if batch["from"] == "BLOCKED":
        return Reply.json(403, {"code": "forbidden", "text": "Sender not allowed"})
    return Reply.json(201, {"id": f"01GBATCH{len(call.body):018d}", "from": batch["from"],
                            "to": batch["to"], "body": batch["body"], "canceled": False,
                            "type": "mt_text", "created_at": "2027-01-15T08:00:00.000Z"})


def sinch(server: StandIn | None, *, extra: str = f"&callback_token={CALLBACK_TOKEN}",
          sender: str = "+15550001111", secret: str = TOKEN,
          public: str | None = PUBLIC) -> SinchDriver:
    base = f"&base_url={server.url}&timeout=1" if server else ""
    driver = open_driver(f"sinch://{PLAN}:{secret}@{sender}?region=eu{base}{extra}",
                         context(public))
    assert isinstance(driver, SinchDriver)
    return driver


async def test_a_batch_is_posted_as_sinch_expects_it(stand_in: StartStandIn) -> None:
    server = stand_in(sinch_api)
    driver = sinch(server)
    receipt = await driver.send(message())
    await driver.close()
    assert receipt.provider_id.startswith("01GBATCH")
    [call] = server.calls
    assert (call.method, call.path) == ("POST", f"/xms/v1/{PLAN}/batches")
    assert call.bearer() == TOKEN
    assert call.headers["content-type"] == "application/json"
    batch = call.json()
    assert batch["to"] == [TO]
    assert batch["from"] == "+15550001111"
    assert CODE in batch["body"]
    assert batch["delivery_report"] == "per_recipient"
    assert batch["callback_url"] == f"{PUBLIC}/v1/receipts/sinch?token={CALLBACK_TOKEN}"
    assert batch["client_reference"] == message().idempotency_key


async def test_an_alphanumeric_sender_is_kept_verbatim(stand_in: StartStandIn) -> None:
    server = stand_in(sinch_api)
    driver = sinch(server, sender="AcmeBank")
    await driver.send(message())
    await driver.close()
    assert server.calls[0].json()["from"] == "AcmeBank"


async def test_without_a_callback_token_no_delivery_report_is_asked_for(
    stand_in: StartStandIn,
) -> None:
    server = stand_in(sinch_api)
    driver = sinch(server, extra="")
    await driver.send(message())
    await driver.close()
    batch = server.calls[0].json()
    assert batch["delivery_report"] == "none"
    assert "callback_url" not in batch


async def test_with_an_hmac_secret_the_service_plans_own_callback_url_is_used(
    stand_in: StartStandIn,
) -> None:
    server = stand_in(sinch_api)
    driver = sinch(server, extra=f"&callback_secret={HMAC_SECRET}")
    await driver.send(message())
    await driver.close()
    batch = server.calls[0].json()
    assert batch["delivery_report"] == "per_recipient"
    assert "callback_url" not in batch


@pytest.mark.parametrize(("region", "origin"), [
    ("us", "https://us.sms.api.sinch.com"), ("eu", "https://eu.sms.api.sinch.com"),
    ("au", "https://au.sms.api.sinch.com"), ("br", "https://br.sms.api.sinch.com"),
    ("ca", "https://ca.sms.api.sinch.com"),
])
async def test_the_region_picks_the_regional_origin(region: str, origin: str) -> None:
    driver = open_driver(f"sinch://{PLAN}:{TOKEN}@+15550001111?region={region}", context())
    await driver.close()
    assert isinstance(driver, SinchDriver)
    assert driver.origin == origin


async def test_the_region_defaults_to_the_us_and_base_url_wins() -> None:
    plain = open_driver(f"sinch://{PLAN}:{TOKEN}@+15550001111", context())
    proxied = open_driver(f"sinch://{PLAN}:{TOKEN}@+15550001111?region=eu"
                          "&base_url=https://sms-proxy.example.com/", context())
    await plain.close()
    await proxied.close()
    assert isinstance(plain, SinchDriver)
    assert isinstance(proxied, SinchDriver)
    assert (plain.origin, proxied.origin) == ("https://us.sms.api.sinch.com",
                                              "https://sms-proxy.example.com")


@pytest.mark.parametrize(("to", "sender", "error", "code"), [
    (INVALID, "+15550001111", PermanentDeliveryError, "syntax_invalid_parameter_format"),
    (BUSY, "+15550001111", TemporaryDeliveryError, "too_many_requests"),
    (DOWN, "+15550001111", TemporaryDeliveryError, None),
    (TO, "BLOCKED", BrokenDriverError, "forbidden"),
])
async def test_sinch_errors_map_to_outcomes(stand_in: StartStandIn, to: str, sender: str,
                                            error: type[Exception], code: str | None) -> None:
    driver = sinch(stand_in(sinch_api), sender=sender)
    with pytest.raises(error) as raised:
        await driver.send(message(to=to))
    await driver.close()
    assert getattr(raised.value, "provider_code", None) == code
    assert to not in str(raised.value), "the number leaked into the error"
    assert CODE not in str(raised.value), "the text leaked into the error"


async def test_throttling_carries_sinchs_retry_after(stand_in: StartStandIn) -> None:
    driver = sinch(stand_in(sinch_api))
    with pytest.raises(TemporaryDeliveryError) as raised:
        await driver.send(message(to=BUSY))
    await driver.close()
    assert raised.value.retry_after == 7


async def test_a_wrong_api_token_means_a_broken_driver(stand_in: StartStandIn) -> None:
    driver = sinch(stand_in(sinch_api), secret="wrong-token")
    with pytest.raises(BrokenDriverError) as raised:
        await driver.send(message())
    await driver.close()
    assert raised.value.provider_code == "unauthorized"
    assert "wrong-token" not in str(raised.value)


async def test_an_unknown_service_plan_means_a_broken_driver(stand_in: StartStandIn) -> None:
    server = stand_in(sinch_api)
    driver = open_driver(f"sinch://other-plan:{TOKEN}@+15550001111?base_url={server.url}",
                         context())
    with pytest.raises(BrokenDriverError):
        await driver.send(message())
    await driver.close()


async def test_a_hang_past_the_timeout_is_an_unknown_outcome(stand_in: StartStandIn) -> None:
    driver = sinch(stand_in(sinch_api), extra="&timeout=0.25")
    with pytest.raises(UnknownOutcomeError):
        await Bounded(driver, 5).send(message(to=HANGS))
    await driver.close()


@pytest.mark.parametrize("url", [
    f"sinch://{PLAN}@+15550001111", f"sinch://{PLAN}:{TOKEN}@", f"sinch://:{TOKEN}@+1555",
    f"sinch://{PLAN}:{TOKEN}@+1555?region=mars", f"sinch://{PLAN}:{TOKEN}@+1555?colour=red",
    f"sinch://{PLAN}:{TOKEN}@+1555?callback_token=short",
    f"sinch://{PLAN}:{TOKEN}@+1555?base_url=ftp://x", f"sinch://a%2Fb:{TOKEN}@+1555",
])
def test_a_bad_sinch_url_is_refused_without_showing_the_token(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_driver(url, context())
    assert TOKEN not in str(raised.value)


async def test_the_driver_shows_its_url_masked() -> None:
    driver = open_driver(f"sinch://{PLAN}:{TOKEN}@+15550001111?callback_token="
                         f"{CALLBACK_TOKEN}&callback_secret={HMAC_SECRET}", context())
    await driver.close()
    for secret in (TOKEN, CALLBACK_TOKEN, HMAC_SECRET):
        assert secret not in driver.url()
    assert driver.url().startswith(f"sinch://{PLAN}:***@+15550001111?")
    assert TOKEN in driver.url(privacy=False)


def report(status: str, code: int = 0, batch: str = "01GBATCH1") -> bytes:
    return json.dumps({
        "type": "recipient_delivery_report_sms", "batch_id": batch, "recipient": TO,
        "code": code, "status": status, "at": "2027-01-15T08:00:03.120Z",
        "operator_status_at": "2027-01-15T08:00:02Z",
        "client_reference": message().idempotency_key}).encode()


def by_token(body: bytes, token: str | None = CALLBACK_TOKEN) -> ReceiptRequest:
    query = {"token": token} if token is not None else {}
    url = f"{PUBLIC}/v1/receipts/sinch" + (f"?token={token}" if token is not None else "")
    return ReceiptRequest("POST", url, {"content-type": "application/json"}, query, body)


def signed(body: bytes, secret: str = HMAC_SECRET, nonce: str = "01FJA8B4A7BM43YGWSG9GBV067",
           timestamp: str = "2027-01-15T08:00:03.120Z") -> ReceiptRequest:
    """Signed as Sinch signs SMS callbacks for a service plan with HMAC enabled."""
    mac = hmac.new(secret.encode(), body + f".{nonce}.{timestamp}".encode(), hashlib.sha256)
    headers = {"content-type": "application/json",
               "x-sinch-webhook-signature": base64.b64encode(mac.digest()).decode(),
               "x-sinch-webhook-signature-nonce": nonce,
               "x-sinch-webhook-signature-timestamp": timestamp}
    return ReceiptRequest("POST", f"{PUBLIC}/v1/receipts/sinch", headers, {}, body)


@pytest.mark.parametrize(("status", "code", "seen", "error_code"), [
    ("Delivered", 0, "delivered", None), ("Failed", 402, "failed", "402"),
    ("Rejected", 406, "failed", "406"), ("Expired", 405, "failed", "405"),
    ("Aborted", 407, "failed", "407"), ("Cancelled", 410, "failed", "410"),
    ("Dispatched", 401, "sent", None), ("Queued", 400, "sent", None),
])
async def test_a_delivery_report_with_the_right_token_is_read(
    status: str, code: int, seen: str, error_code: str | None,
) -> None:
    driver = sinch(None)
    [receipt] = await driver.read_receipts(by_token(report(status, code)))
    await driver.close()
    assert (receipt.provider_id, receipt.status, receipt.error_code) == (
        "01GBATCH1", seen, error_code)


async def test_a_report_with_a_wrong_or_no_token_is_forbidden() -> None:
    driver = sinch(None)
    for request in (by_token(report("Delivered"), "cb-token-0123456789abcdeX"),
                    by_token(report("Delivered"), None),
                    by_token(report("Delivered"), "")):
        with pytest.raises(Forbidden):
            await driver.read_receipts(request)
    await driver.close()


async def test_without_a_token_or_secret_every_report_is_forbidden() -> None:
    driver = sinch(None, extra="")
    with pytest.raises(Forbidden, match="callback_token"):
        await driver.read_receipts(by_token(report("Delivered")))
    await driver.close()


async def test_an_hmac_signed_report_is_read_as_sinchs_sdk_validates_it() -> None:
    body = report("Delivered")
    request = signed(body)
    validator = SmsSinchEvent(HMAC_SECRET)
    assert validator.validate_authentication_header(dict(request.headers), body) is True
    driver = sinch(None, extra=f"&callback_secret={HMAC_SECRET}")
    [receipt] = await driver.read_receipts(request)
    await driver.close()
    assert (receipt.provider_id, receipt.status) == ("01GBATCH1", "delivered")


async def test_forged_unsigned_and_tampered_hmac_reports_are_forbidden() -> None:
    body = report("Delivered")
    forged = signed(body, secret="someone-else")
    unsigned = ReceiptRequest("POST", forged.url, {"content-type": "application/json"}, {},
                              body)
    genuine = signed(body)
    tampered = ReceiptRequest("POST", genuine.url, genuine.headers, {},
                              body.replace(b"01GBATCH1", b"01GBATCH2"))
    validator = SmsSinchEvent(HMAC_SECRET)
    driver = sinch(None, extra=f"&callback_secret={HMAC_SECRET}")
    for request in (forged, unsigned, tampered):
        assert not validator.validate_authentication_header(dict(request.headers),
                                                            request.body)
        with pytest.raises(Forbidden):
            await driver.read_receipts(request)
    with pytest.raises(Forbidden):  # with HMAC set, a token alone is not enough
        await driver.read_receipts(by_token(body))
    await driver.close()


async def test_a_batch_summary_report_is_read_per_status() -> None:
    body: dict[str, Any] = {
        "type": "delivery_report_sms", "batch_id": "01GBATCH7", "total_message_count": 1,
        "statuses": [{"code": 0, "count": 1, "status": "Delivered", "recipients": [TO]}]}
    driver = sinch(None)
    [receipt] = await driver.read_receipts(by_token(json.dumps(body).encode()))
    await driver.close()
    assert (receipt.provider_id, receipt.status) == ("01GBATCH7", "delivered")


async def test_inbound_messages_are_not_receipts_and_junk_is_refused() -> None:
    driver = sinch(None)
    inbound = json.dumps({"type": "mo_text", "id": "01MO", "from": TO, "to": "+1555",
                          "body": "STOP"}).encode()
    assert await driver.read_receipts(by_token(inbound)) == []
    for junk in (b"not json", b"[1, 2]", json.dumps({
            "type": "recipient_delivery_report_sms", "status": "Delivered"}).encode()):
        with pytest.raises(InvalidRequest):
            await driver.read_receipts(by_token(junk))
    await driver.close()


async def test_a_sinch_report_through_the_api_marks_the_code_delivered(
    stand_in: StartStandIn, make_client: Callable[..., Any],
) -> None:
    """End to end: a code sent through the Sinch stand-in, then Sinch's report to the
    callback URL it was given moves the channel to delivered; a wrong token is a 403
    problem and changes nothing."""
    import asyncio

    from otpgate import apikeys
    from tests.integration.conftest import START, runtime_of

    server = stand_in(sinch_api)
    url = (f"sinch://{PLAN}:{TOKEN}@+15550001111?base_url={server.url}"
           f"&callback_token={CALLBACK_TOKEN}")
    async with make_client(dev=False, drivers={"sms": (url,)}, public_url=PUBLIC) as client:
        _, key = await apikeys.create(runtime_of(client).backend.store, "shop", START)
        auth = {"authorization": f"Bearer {key}"}
        otp = (await client.post("/v1/otp", json={"to": TO}, headers=auth)).json()
        for _ in range(300):
            [channel] = (await client.get(f"/v1/otp/{otp['id']}", headers=auth)).json()[
                "channels"]
            if channel["status"] == "sent":
                break
            await asyncio.sleep(0.01)
        assert channel["status"] == "sent"
        [call] = server.calls
        callback = call.json()["callback_url"]
        assert callback == f"{PUBLIC}/v1/receipts/sinch?token={CALLBACK_TOKEN}"
        body = report("Delivered", batch=f"01GBATCH{len(call.body):018d}")
        wrong = await client.post("/v1/receipts/sinch?token=cb-token-0123456789abcdeX",
                                  content=body, headers={"content-type": "application/json"})
        assert wrong.status_code == 403
        assert wrong.headers["content-type"] == "application/problem+json"
        [channel] = (await client.get(f"/v1/otp/{otp['id']}", headers=auth)).json()["channels"]
        assert channel["status"] == "sent"
        taken = await client.post(callback.removeprefix(PUBLIC), content=body,
                                  headers={"content-type": "application/json"})
        assert taken.json() == {"received": True, "moved": 1}
        [channel] = (await client.get(f"/v1/otp/{otp['id']}", headers=auth)).json()["channels"]
        assert (channel["status"], channel["driver"]) == ("delivered", "sinch")
