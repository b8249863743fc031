"""The Clickatell driver against a local server speaking Clickatell's Platform (One API)
``/messages``, including the message-level refusals it reports inside a 2xx, and its status
callbacks, authenticated by the token in the callback URL set in the portal."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from otpgate.drivers import open_driver
from otpgate.drivers.base import ReceiptRequest
from otpgate.drivers.clickatell import ClickatellDriver
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

KEY = "Xq7bT2mP9sLkQ4vW8nR3yZ=="
CALLBACK_TOKEN = "ct-token-0123456789abcdef"
OPTED_OUT = "+14155550106"
NO_BALANCE = "+14155550104"
RATE_LIMITED = "+14155550107"
BUSY = "+14155550101"
DOWN = "+14155550102"
HANGS = "+14155550103"

StartStandIn = Callable[[Handler], StandIn]


def refused(to: str, code: int, error: str, status: int = 202) -> Reply:
    return Reply.json(status, {"messages": [{
        "apiMessageId": None, "accepted": False, "to": to, "errorCode": code,
        "error": error, "errorDescription": error}],
        "errorCode": None, "error": None, "errorDescription": None})


def clickatell_api(call: Call) -> Reply:
    """Clickatell as it answers: the bare API key in ``Authorization``, JSON ``to`` lists
    of digits-only numbers, 202 answers whose messages may be refused one by one."""
    if call.headers.get("authorization") != KEY:
        return Reply.json(401, {"messages": [], "errorCode": 1, "error": "Invalid or "
                                "missing Integration API Key", "errorDescription": "…"})
    if call.path != "/messages":
        return Reply.json(404, {"messages": [], "errorCode": 41,
                                "error": "Resource does not exist"})
    payload = call.json()
    if not isinstance(payload.get("to"), list) or not payload.get("content"):
        return Reply.json(400, {"messages": [], "errorCode": 21,
                                "error": "Payload data is malformed"})
    to = payload["to"][0]
    if not re.fullmatch(r"[1-9][0-9]{7,14}", to):
        return refused(to, 25, f"Invalid recipient address: {to}", status=400)
    if to == OPTED_OUT[1:]:
        return refused(to, 26, "Recipient opted out")
    if to == NO_BALANCE[1:]:
        return refused(to, 20, "Insufficient account balance")
    if to == RATE_LIMITED[1:]:
        return Reply.json(400, {"messages": [], "errorCode": "43", "error": "Rate limit"})
    if to == BUSY[1:]:
        return Reply(429, b"", {"Retry-After": "7"})
    if to == DOWN[1:]:
        return Reply(503, b"Service Unavailable")
    if to == HANGS[1:]:
        return Reply.json(202, {"messages": []}, delay=2.0)
    return Reply.json(202, {"messages": [{
        "apiMessageId": f"{len(call.body):032x}", "accepted": True, "to": to,
        "errorCode": None, "error": None, "errorDescription": None}],
        "errorCode": None, "error": None, "errorDescription": None})


def clickatell(server: StandIn, *, key: str = KEY, extra: str = "") -> ClickatellDriver:
    driver = open_driver(f"clickatell://{key}@?base_url={server.url}&timeout=1"
                         f"&callback_token={CALLBACK_TOKEN}{extra}", context())
    assert isinstance(driver, ClickatellDriver)
    return driver


def reader(extra: str = f"?callback_token={CALLBACK_TOKEN}") -> ClickatellDriver:
    driver = open_driver(f"clickatell://{KEY}@{extra}", context())
    assert isinstance(driver, ClickatellDriver)
    return driver


async def test_a_message_is_posted_as_clickatell_expects_it(stand_in: StartStandIn) -> None:
    server = stand_in(clickatell_api)
    driver = clickatell(server)
    receipt = await driver.send(message())
    await driver.close()
    [call] = server.calls
    assert (call.method, call.path) == ("POST", "/messages")
    assert call.headers["authorization"] == KEY
    assert call.headers["content-type"] == "application/json"
    payload = call.json()
    assert payload["to"] == [TO.removeprefix("+")]
    assert CODE in payload["content"]
    assert "from" not in payload
    assert payload["clientMessageId"].startswith("ct_")
    assert receipt.provider_id == f"{len(call.body):032x}"


async def test_a_two_way_sender_is_passed_as_from(stand_in: StartStandIn) -> None:
    server = stand_in(clickatell_api)
    driver = clickatell(server, extra="&from=15550001111")
    await driver.send(message())
    await driver.close()
    assert server.calls[0].json()["from"] == "15550001111"


def test_the_default_origin_is_clickatells_platform() -> None:
    driver = reader()
    assert driver.origin == "https://platform.clickatell.com"


@pytest.mark.parametrize(("to", "error", "code"), [
    ("+1415", PermanentDeliveryError, "25"),
    (OPTED_OUT, PermanentDeliveryError, "26"),
    (NO_BALANCE, BrokenDriverError, "20"),
    (RATE_LIMITED, TemporaryDeliveryError, "43"),
    (BUSY, TemporaryDeliveryError, None),
    (DOWN, TemporaryDeliveryError, None),
])
async def test_clickatell_answers_map_to_outcomes(stand_in: StartStandIn, to: str,
                                                  error: type[Exception],
                                                  code: str | None) -> None:
    driver = clickatell(stand_in(clickatell_api))
    with pytest.raises(error) as raised:
        await driver.send(message(to=to))
    await driver.close()
    assert type(raised.value) is error
    assert getattr(raised.value, "provider_code", None) == code
    assert to.removeprefix("+") not in str(raised.value), "the number leaked into the error"
    assert CODE not in str(raised.value), "the text leaked into the error"


async def test_throttling_carries_clickatells_retry_after(stand_in: StartStandIn) -> None:
    driver = clickatell(stand_in(clickatell_api))
    with pytest.raises(TemporaryDeliveryError) as raised:
        await driver.send(message(to=BUSY))
    await driver.close()
    assert raised.value.retry_after == 7


async def test_a_wrong_api_key_means_a_broken_driver(stand_in: StartStandIn) -> None:
    driver = clickatell(stand_in(clickatell_api), key="wrong-key")
    with pytest.raises(BrokenDriverError) as raised:
        await driver.send(message())
    await driver.close()
    assert raised.value.provider_code == "1"
    assert "wrong-key" not in str(raised.value)


async def test_a_wrong_base_url_means_a_broken_driver(stand_in: StartStandIn) -> None:
    server = stand_in(clickatell_api)
    driver = open_driver(f"clickatell://{KEY}@?base_url={server.url}/v9", context())
    with pytest.raises(BrokenDriverError) as raised:
        await driver.send(message())
    await driver.close()
    assert raised.value.provider_code == "41"


async def test_a_hang_past_the_timeout_is_an_unknown_outcome(stand_in: StartStandIn) -> None:
    driver = clickatell(stand_in(clickatell_api), extra="&timeout=0.25")
    with pytest.raises(UnknownOutcomeError):
        await Bounded(driver, 5).send(message(to=HANGS))
    await driver.close()


@pytest.mark.parametrize("url", [
    "clickatell://@", "clickatell://", f"clickatell://{KEY}:secret@",
    f"clickatell://{KEY}@+15550001111", f"clickatell://{KEY}@?colour=red",
    f"clickatell://{KEY}@?callback_token=short", f"clickatell://{KEY}@?timeout=0",
])
def test_a_bad_clickatell_url_is_refused_without_showing_the_key(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_driver(url, context())
    assert KEY not in str(raised.value)


def test_the_driver_shows_its_url_masked() -> None:
    driver = reader()
    assert KEY not in driver.url()
    assert CALLBACK_TOKEN not in driver.url()
    assert driver.url() == "clickatell://***@?callback_token=***"
    assert driver.url(privacy=False) == f"clickatell://{KEY}@?callback_token={CALLBACK_TOKEN}"


def status_update(code: int, status: str, message_id: str = "9f1c" * 8) -> dict[str, Any]:
    return {"integrationName": "otp", "messageId": message_id, "requestId": "r-1",
            "clientMessageId": "ct_0123", "to": TO.removeprefix("+"), "from": "",
            "statusCode": code, "status": status, "statusDescription": status.lower(),
            "timestamp": 1_800_000_003_000}


def posted(update: dict[str, Any], token: str | None = CALLBACK_TOKEN) -> ReceiptRequest:
    query = {"token": token} if token is not None else {}
    return ReceiptRequest("POST", f"{PUBLIC}/v1/receipts/clickatell?{urlencode(query)}",
                          {"content-type": "application/json"}, query,
                          json.dumps(update).encode())


@pytest.mark.parametrize(("code", "status", "seen"), [
    (5, "DEVICE_ACK", "delivered"), (6, "READ", "delivered"),
    (4, "SENT_TO_SUPPLIER", "sent"), (2, "QUEUED", "sent"),
    (23, "DELIVERY_FAILURE", "failed"), (20, "EXPIRED", "failed"),
    (29, "RECIPIENT_DOES_NOT_EXIST", "failed"), (100, "ROUTING_ERROR", "failed"),
])
async def test_a_status_callback_with_the_right_token_is_read(code: int, status: str,
                                                              seen: str) -> None:
    driver = reader()
    [receipt] = await driver.read_receipts(posted(status_update(code, status)))
    await driver.close()
    assert (receipt.provider_id, receipt.status) == ("9f1c" * 8, seen)
    assert receipt.error_code == (str(code) if seen == "failed" else None)


async def test_a_callback_sent_as_a_get_query_is_read() -> None:
    driver = reader()
    fields = {k: str(v) for k, v in status_update(5, "DEVICE_ACK").items()}
    query = {**fields, "token": CALLBACK_TOKEN}
    request = ReceiptRequest("GET", f"{PUBLIC}/v1/receipts/clickatell?{urlencode(query)}",
                             {}, query, b"")
    [receipt] = await driver.read_receipts(request)
    await driver.close()
    assert receipt.status == "delivered"


async def test_a_callback_with_a_wrong_or_no_token_is_forbidden() -> None:
    driver = reader()
    update = status_update(5, "DEVICE_ACK")
    for request in (posted(update, "ct-token-0123456789abcdeX"), posted(update, None)):
        with pytest.raises(Forbidden):
            await driver.read_receipts(request)
    without = reader(extra="")
    with pytest.raises(Forbidden, match="callback_token"):
        await without.read_receipts(posted(update))
    await driver.close()
    await without.close()


async def test_a_callback_not_shaped_as_clickatells_is_refused() -> None:
    driver = reader()
    for update in ({"statusCode": 5}, {"messageId": "abc", "status": "WHATEVER"}):
        with pytest.raises(InvalidRequest):
            await driver.read_receipts(posted(update))
    with pytest.raises(InvalidRequest):
        await driver.read_receipts(ReceiptRequest(
            "POST", PUBLIC, {"content-type": "application/json"},
            {"token": CALLBACK_TOKEN}, b"[]"))
    await driver.close()
