"""The Infobip driver against a local server speaking Infobip's SMS API v3
(``/sms/3/messages``), including the failures it reports inside a 200, and its delivery
reports, authenticated by the token in the per-message webhook URL."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import Any

import pytest

from otpgate.drivers import open_driver
from otpgate.drivers.base import ReceiptRequest
from otpgate.drivers.infobip import InfobipDriver
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

KEY = "3f9a1c0d2e7b4a6f8c5d9e0a1b2c3d4e-5f6a7b8c-9d0e-1f2a-3b4c-5d6e7f8a9b0c"
CALLBACK_TOKEN = "ib-token-0123456789abcdef"
NO_PREFIX = "+4155550100"
"""Digits Infobip cannot route without a country prefix (REJECTED_PREFIX_MISSING)."""
NO_CREDIT = "+14155550104"
FLOODED = "+14155550105"
BUSY = "+14155550101"
DOWN = "+14155550102"
HANGS = "+14155550103"

StartStandIn = Callable[[Handler], StandIn]


def rejected(message_id: str, to: str, status_id: int, name: str) -> Reply:
    return Reply.json(200, {"bulkId": "BULK-1", "messages": [{
        "messageId": message_id, "destination": to,
        "status": {"groupId": 5, "groupName": "REJECTED", "id": status_id, "name": name,
                   "description": name.replace("_", " ").capitalize()}}]})


def infobip_api() -> Handler:
    """Infobip as it answers: ``Authorization: App KEY``, JSON ``messages[]`` with digits-
    only destinations and caller-chosen message ids (a repeated one is refused), 200 answers
    that may carry a REJECTED status, errors in either of its error body formats."""
    seen: set[str] = set()
    lock = threading.Lock()

    def handle(call: Call) -> Reply:
        if call.headers.get("authorization") != f"App {KEY}":
            return Reply.json(401, {"requestError": {"serviceException": {
                "messageId": "UNAUTHORIZED", "text": "Invalid login details"}}})
        if call.path != "/sms/3/messages":
            return Reply.json(404, {"errorCode": "E404", "description": "Not found"})
        sms = call.json()["messages"][0]
        destination = sms["destinations"][0]
        to, message_id = destination["to"], destination.get("messageId", "generated-1")
        if not re.fullmatch(r"[0-9]{6,15}", to) or not sms.get("content", {}).get("text"):
            return Reply.json(400, {"errorCode": "E400", "description": "Request cannot be "
                                    "processed.", "violations": [
                                        {"property": "messages[0].destinations[0].to",
                                         "violation": f"invalid destination {to}"}]})
        with lock:
            duplicate = message_id in seen
            seen.add(message_id)
        if duplicate:
            return rejected(message_id, to, 23, "REJECTED_DUPLICATE_MESSAGE_ID")
        if to == NO_PREFIX[1:]:
            return rejected(message_id, to, 8, "REJECTED_PREFIX_MISSING")
        if to == NO_CREDIT[1:]:
            return rejected(message_id, to, 12, "REJECTED_NOT_ENOUGH_CREDITS")
        if to == FLOODED[1:]:
            return rejected(message_id, to, 20, "REJECTED_FLOODING_FILTER")
        if to == BUSY[1:]:
            return Reply.json(429, {"errorCode": "E429", "description": "Too many requests"},
                              {"Retry-After": "7"})
        if to == DOWN[1:]:
            return Reply(503, b"Service Unavailable")
        if to == HANGS[1:]:
            return Reply.json(200, {"messages": []}, delay=2.0)
        return Reply.json(200, {"bulkId": "BULK-1", "messages": [{
            "messageId": message_id, "destination": to, "details": {"messageCount": 1},
            "status": {"groupId": 1, "groupName": "PENDING", "id": 26,
                       "name": "PENDING_ACCEPTED",
                       "description": "Message sent to next instance"}}]})

    return handle


def infobip(server: StandIn, *, key: str = KEY, sender: str = "AcmeBank",
            extra: str = f"&callback_token={CALLBACK_TOKEN}",
            public: str | None = PUBLIC) -> InfobipDriver:
    driver = open_driver(f"infobip://{key}@{sender}?base_url={server.url}&timeout=1{extra}",
                         context(public))
    assert isinstance(driver, InfobipDriver)
    return driver


def reader(extra: str = f"&callback_token={CALLBACK_TOKEN}") -> InfobipDriver:
    driver = open_driver(f"infobip://{KEY}@AcmeBank?base_url=https://x1y2z3.api.infobip.com"
                         f"{extra}", context())
    assert isinstance(driver, InfobipDriver)
    return driver


async def test_a_message_is_posted_as_infobip_expects_it(stand_in: StartStandIn) -> None:
    server = stand_in(infobip_api())
    driver = infobip(server)
    receipt = await driver.send(message())
    await driver.close()
    [call] = server.calls
    assert (call.method, call.path) == ("POST", "/sms/3/messages")
    assert call.headers["authorization"] == f"App {KEY}"
    sms = call.json()["messages"][0]
    assert sms["sender"] == "AcmeBank"
    [destination] = sms["destinations"]
    assert destination["to"] == TO.removeprefix("+")
    assert receipt.provider_id == destination["messageId"]
    assert CODE in sms["content"]["text"]
    assert sms["webhooks"]["delivery"]["url"] == (
        f"{PUBLIC}/v1/receipts/infobip?token={CALLBACK_TOKEN}")


async def test_the_message_id_is_the_same_for_every_attempt_of_a_send(
    stand_in: StartStandIn,
) -> None:
    server = stand_in(infobip_api())
    driver = infobip(server)
    first = await driver.send(message())
    again = await driver.send(message())  # a redelivery after an unknown outcome
    other = await driver.send(message(send_no=2))
    await driver.close()
    ids = [c.json()["messages"][0]["destinations"][0]["messageId"] for c in server.calls]
    assert ids[0] == ids[1] != ids[2]
    assert first.provider_id == again.provider_id == ids[0]
    assert other.provider_id == ids[2]


async def test_without_a_token_no_webhook_url_is_passed(stand_in: StartStandIn) -> None:
    server = stand_in(infobip_api())
    driver = infobip(server, extra="")
    await driver.send(message())
    await driver.close()
    assert "webhooks" not in server.calls[0].json()["messages"][0]


@pytest.mark.parametrize(("to", "error", "code"), [
    (NO_PREFIX, PermanentDeliveryError, "REJECTED_PREFIX_MISSING"),
    (NO_CREDIT, BrokenDriverError, "REJECTED_NOT_ENOUGH_CREDITS"),
    (FLOODED, TemporaryDeliveryError, "REJECTED_FLOODING_FILTER"),
    ("+1415", PermanentDeliveryError, "E400"),
    (BUSY, TemporaryDeliveryError, "E429"),
    (DOWN, TemporaryDeliveryError, None),
])
async def test_infobip_answers_map_to_outcomes(stand_in: StartStandIn, to: str,
                                               error: type[Exception],
                                               code: str | None) -> None:
    driver = infobip(stand_in(infobip_api()))
    with pytest.raises(error) as raised:
        await driver.send(message(to=to))
    await driver.close()
    assert type(raised.value) is error
    assert getattr(raised.value, "provider_code", None) == code
    assert to.removeprefix("+") not in str(raised.value), "the number leaked into the error"
    assert CODE not in str(raised.value), "the text leaked into the error"


async def test_throttling_carries_infobips_retry_after(stand_in: StartStandIn) -> None:
    driver = infobip(stand_in(infobip_api()))
    with pytest.raises(TemporaryDeliveryError) as raised:
        await driver.send(message(to=BUSY))
    await driver.close()
    assert raised.value.retry_after == 7


async def test_a_wrong_api_key_means_a_broken_driver(stand_in: StartStandIn) -> None:
    driver = infobip(stand_in(infobip_api()), key="wrong-key")
    with pytest.raises(BrokenDriverError) as raised:
        await driver.send(message())
    await driver.close()
    assert raised.value.provider_code == "UNAUTHORIZED"
    assert "wrong-key" not in str(raised.value)


async def test_a_hang_past_the_timeout_is_an_unknown_outcome(stand_in: StartStandIn) -> None:
    driver = infobip(stand_in(infobip_api()), extra="&timeout=0.25")
    with pytest.raises(UnknownOutcomeError):
        await Bounded(driver, 5).send(message(to=HANGS))
    await driver.close()


@pytest.mark.parametrize("url", [
    f"infobip://{KEY}@AcmeBank", f"infobip://{KEY}@?base_url=https://x.api.infobip.com",
    "infobip://@AcmeBank?base_url=https://x.api.infobip.com",
    f"infobip://{KEY}:extra@AcmeBank?base_url=https://x.api.infobip.com",
    f"infobip://{KEY}@AcmeBank?base_url=https://x.api.infobip.com&colour=red",
    f"infobip://{KEY}@AcmeBank?base_url=x.api.infobip.com",
    f"infobip://{KEY}@AcmeBank?base_url=https://x.api.infobip.com&callback_token=short",
])
def test_a_bad_infobip_url_is_refused_without_showing_the_key(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_driver(url, context())
    assert KEY not in str(raised.value)


async def test_the_driver_shows_its_url_masked() -> None:
    driver = reader()
    await driver.close()
    assert KEY not in driver.url()
    assert CALLBACK_TOKEN not in driver.url()
    assert driver.url().startswith("infobip://***@AcmeBank?base_url=https://x1y2z3")
    assert KEY in driver.url(privacy=False)


def report(group: str, name: str, error: str = "NO_ERROR", error_id: int = 0,
           message_id: str = "ib_0123456789abcdef01234567") -> bytes:
    result: dict[str, Any] = {
        "bulkId": "BULK-1", "messageId": message_id, "to": TO.removeprefix("+"),
        "sender": "AcmeBank", "sentAt": "2027-01-15T08:00:00.000+0000",
        "doneAt": "2027-01-15T08:00:03.000+0000", "messageCount": 1,
        "price": {"pricePerMessage": 0.01, "currency": "EUR"},
        "status": {"groupId": 3, "groupName": group, "id": 5, "name": name,
                   "description": name},
        "error": {"groupId": 0 if not error_id else 1, "groupName": "OK" if not error_id
                  else "HANDSET_ERRORS", "id": error_id, "name": error,
                  "description": error, "permanent": bool(error_id)}}
    return json.dumps({"results": [result]}).encode()


def callback(body: bytes, token: str | None = CALLBACK_TOKEN) -> ReceiptRequest:
    query = {"token": token} if token is not None else {}
    return ReceiptRequest("POST", f"{PUBLIC}/v1/receipts/infobip", {
        "content-type": "application/json"}, query, body)


@pytest.mark.parametrize(("group", "name", "error", "error_id", "seen", "code"), [
    ("DELIVERED", "DELIVERED_TO_HANDSET", "NO_ERROR", 0, "delivered", None),
    ("UNDELIVERABLE", "UNDELIVERABLE_NOT_DELIVERED", "EC_UNKNOWN_SUBSCRIBER", 1, "failed",
     "EC_UNKNOWN_SUBSCRIBER"),
    ("EXPIRED", "EXPIRED_EXPIRED", "NO_ERROR", 0, "failed", "EXPIRED_EXPIRED"),
    ("REJECTED", "REJECTED_DESTINATION", "NO_ERROR", 0, "failed", "REJECTED_DESTINATION"),
    ("PENDING", "PENDING_ENROUTE", "NO_ERROR", 0, "sent", None),
])
async def test_a_delivery_report_with_the_right_token_is_read(
    group: str, name: str, error: str, error_id: int, seen: str, code: str | None,
) -> None:
    driver = reader()
    [receipt] = await driver.read_receipts(callback(report(group, name, error, error_id)))
    await driver.close()
    assert (receipt.provider_id, receipt.status, receipt.error_code) == (
        "ib_0123456789abcdef01234567", seen, code)


async def test_a_report_with_a_wrong_or_no_token_is_forbidden() -> None:
    driver = reader()
    body = report("DELIVERED", "DELIVERED_TO_HANDSET")
    for request in (callback(body, "ib-token-0123456789abcdeX"), callback(body, None)):
        with pytest.raises(Forbidden):
            await driver.read_receipts(request)
    without = reader(extra="")
    with pytest.raises(Forbidden, match="callback_token"):
        await without.read_receipts(callback(body))
    await driver.close()
    await without.close()


async def test_a_report_not_shaped_as_infobips_is_refused() -> None:
    driver = reader()
    for junk in (b"<xml/>", b'{"results": {}}', b'{"results": [{"status": {}}]}'):
        with pytest.raises(InvalidRequest):
            await driver.read_receipts(callback(junk))
    await driver.close()
