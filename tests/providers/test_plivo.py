"""The Plivo driver against a local server speaking Plivo's Message API, and its status
callbacks signed as the official ``plivo`` SDK signs V3 (``plivo.utils.signature_v3``),
each signature also checked by the SDK's own ``validate_v3_signature``."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from plivo.utils.signature_v3 import (
    construct_get_url,
    construct_post_url,
    get_signature_v3,
    validate_v3_signature,
)

from otpgate.drivers import open_driver
from otpgate.drivers.base import ReceiptRequest
from otpgate.drivers.plivo import PlivoDriver
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

AUTH_ID = "MAODUZYTA1ZTJMZTRHMG"
TOKEN = "ZTMyZjg2ZmY5YjY0YjA0MzYxNjUxMjRmYWE5ZmU4"
INVALID = "+14155550100"
BUSY = "+14155550101"
DOWN = "+14155550102"
HANGS = "+14155550103"
CALLBACK = f"{PUBLIC}/v1/receipts/plivo"
_PATH = re.compile(r"/v1/Account/([A-Z0-9]+)/Message/")

StartStandIn = Callable[[Handler], StandIn]


def _error(status: int, error: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply.json(status, {"api_id": "97ceeb52-58b6-11e1-86da-77300b68f8bb",
                               "error": error}, headers)


def plivo_api(call: Call) -> Reply:
    """Plivo as it answers: Basic auth with the Auth ID named in the path, a JSON body,
    202 ``message(s) queued`` or an HTTP error with an ``error`` text."""
    match = _PATH.fullmatch(call.path)
    if match is None:
        return _error(404, "not found")
    if call.basic_auth() != (match.group(1), TOKEN):
        return _error(401, "Authentication failed")
    if match.group(1) != AUTH_ID:
        return _error(404, "not found")
    body = call.json()
    dst = re.sub(r"[/\-.+() ]", "", body.get("dst", ""))  # Plivo's own sanitising
    if not body.get("src") or not dst.isdigit() or not body.get("text"):
        return _error(400, "src, dst and text are required")
    if "+" + dst == INVALID:
        return _error(400, f"{dst} is not a valid phone number")
    if "+" + dst == BUSY:
        return _error(429, "too many requests", {"Retry-After": "4"})
    if "+" + dst == DOWN:
        return Reply(503, b"Service Unavailable")
    return Reply.json(202, {"api_id": "db342550-7f1d-11e1-8ea7-1231380bc196",
                            "message": "message(s) queued",
                            "message_uuid": [f"db3ce55a-7f1d-11e1-8ea7-{len(call.body):012d}"]},
                      delay=2.0 if "+" + dst == HANGS else 0.0)


def plivo(server: StandIn, *, auth_id: str = AUTH_ID, token: str = TOKEN,
          sender: str = "+15550001111", public: str | None = PUBLIC) -> PlivoDriver:
    url = f"plivo://{auth_id}:{token}@{sender}?base_url={server.url}&timeout=1"
    driver = open_driver(url, context(public))
    assert isinstance(driver, PlivoDriver)
    return driver


async def test_an_sms_is_posted_as_plivo_expects_it(stand_in: StartStandIn) -> None:
    server = stand_in(plivo_api)
    driver = plivo(server)
    receipt = await driver.send(message())
    await driver.close()
    [call] = server.calls
    assert (call.method, call.path) == ("POST", f"/v1/Account/{AUTH_ID}/Message/")
    assert call.basic_auth() == (AUTH_ID, TOKEN)
    assert call.headers["content-type"] == "application/json"
    body = call.json()
    assert (body["src"], body["dst"]) == ("+15550001111", TO)
    assert CODE in body["text"]
    assert (body["url"], body["method"]) == (CALLBACK, "POST")
    assert receipt.provider_id.startswith("db3ce55a-7f1d-11e1-8ea7-")
    assert (receipt.segments, receipt.encoding) == (1, "gsm-7")


async def test_no_status_callback_is_passed_without_a_public_url(
    stand_in: StartStandIn,
) -> None:
    server = stand_in(plivo_api)
    driver = plivo(server, sender="AcmeInc", public=None)
    await driver.send(message())
    await driver.close()
    body = server.calls[0].json()
    assert body["src"] == "AcmeInc"
    assert "url" not in body and "method" not in body


@pytest.mark.parametrize(("to", "error"), [
    (INVALID, PermanentDeliveryError),
    (BUSY, TemporaryDeliveryError),
    (DOWN, TemporaryDeliveryError),
])
async def test_plivo_answers_map_to_outcomes(stand_in: StartStandIn, to: str,
                                             error: type[Exception]) -> None:
    driver = plivo(stand_in(plivo_api))
    with pytest.raises(error) as raised:
        await driver.send(message(to=to))
    await driver.close()
    assert type(raised.value) is error
    assert to.removeprefix("+") not in str(raised.value), "the number leaked into the error"
    assert CODE not in str(raised.value), "the text leaked into the error"


async def test_a_429_carries_plivos_retry_after(stand_in: StartStandIn) -> None:
    driver = plivo(stand_in(plivo_api))
    with pytest.raises(TemporaryDeliveryError) as raised:
        await driver.send(message(to=BUSY))
    await driver.close()
    assert raised.value.retry_after == 4


async def test_bad_credentials_or_an_unknown_account_mean_a_broken_driver(
    stand_in: StartStandIn,
) -> None:
    server = stand_in(plivo_api)
    wrong_token = plivo(server, token="wrong")
    other_account = plivo(server, auth_id="MAOTHERACCOUNT000000")
    for driver in (wrong_token, other_account):
        with pytest.raises(BrokenDriverError) as raised:
            await driver.send(message())
        await driver.close()
        assert "wrong" not in str(raised.value)
    assert [call.path.split("/")[3] for call in server.calls] == [AUTH_ID,
                                                                 "MAOTHERACCOUNT000000"]


async def test_a_hang_past_the_timeout_is_an_unknown_outcome(stand_in: StartStandIn) -> None:
    driver = plivo(stand_in(plivo_api))
    with pytest.raises(UnknownOutcomeError):
        await Bounded(driver, 5).send(message(to=HANGS))
    await driver.close()


@pytest.mark.parametrize("url", [
    "plivo://@+15550001111", f"plivo://{AUTH_ID}@+15550001111", f"plivo://{AUTH_ID}:{TOKEN}@",
    f"plivo://{AUTH_ID}:{TOKEN}@+15550001111?colour=red",
    f"plivo://{AUTH_ID}:{TOKEN}@+15550001111?timeout=never",
])
def test_a_bad_plivo_url_is_refused_without_showing_the_token(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_driver(url, context())
    assert TOKEN not in str(raised.value)


def test_the_driver_shows_its_url_masked() -> None:
    driver = open_driver(f"plivo://{AUTH_ID}:{TOKEN}@+15550001111", context())
    assert TOKEN not in driver.url()
    assert TOKEN not in repr(driver)
    assert driver.url(privacy=False).endswith(f":{TOKEN}@+15550001111")


def status(state: str = "delivered", error: str = "", uuid: str = "db3ce55a-1") -> dict[str, str]:
    """A message status callback's fields as Plivo posts them."""
    return {"From": "15550001111", "To": TO.removeprefix("+"), "MessageUUID": uuid,
            "Status": state, "ErrorCode": error, "TotalAmount": "0.00650",
            "TotalRate": "0.00650", "Units": "1", "MessageTime": "2027-01-15 08:00:00",
            "PartInfo": "1 of 1", "ParentMessageUUID": uuid, "Sequence": "1",
            "MCC": "310", "MNC": "004"}


def callback(fields: dict[str, str], *, token: str = TOKEN, nonce: str = "05429567804466091622",
             url: str = CALLBACK, method: str = "POST") -> ReceiptRequest:
    """The callback Plivo makes, signed with the SDK's V3 functions; the SDK's validator
    must accept it too."""
    if method == "POST":
        base = construct_post_url(url, dict(fields)).decode()
        body = urlencode(fields).encode()
    else:
        url = f"{url}{'&' if '?' in url else '?'}{urlencode(fields)}"
        base = construct_get_url(url, {}).decode()
        body = b""
    signature = get_signature_v3(token, base, nonce).decode()
    assert validate_v3_signature(method, url, nonce, token, signature,
                                 dict(fields) if method == "POST" else None)
    query = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
    return ReceiptRequest(method, url, {"x-plivo-signature-v3": signature,
                                        "x-plivo-signature-v3-nonce": nonce,
                                        "content-type": "application/x-www-form-urlencoded"},
                          query, body)


def receiver() -> PlivoDriver:
    driver = open_driver(f"plivo://{AUTH_ID}:{TOKEN}@+15550001111", context())
    assert isinstance(driver, PlivoDriver)
    return driver


@pytest.mark.parametrize(("state", "error", "seen", "code"), [
    ("delivered", "", "delivered", None), ("delivered", "000", "delivered", None),
    ("undelivered", "200", "failed", "200"), ("failed", "900", "failed", "900"),
    ("rejected", "30", "failed", "30"), ("sent", "", "sent", None),
    ("queued", "", "sent", None),
])
async def test_a_signed_status_callback_is_read(state: str, error: str, seen: str,
                                                code: str | None) -> None:
    driver = receiver()
    [receipt] = await driver.read_receipts(callback(status(state, error)))
    await driver.close()
    assert (receipt.provider_id, receipt.status, receipt.error_code) == (
        "db3ce55a-1", seen, code)


async def test_callbacks_to_a_url_with_a_query_and_by_get_verify() -> None:
    driver = receiver()
    [posted] = await driver.read_receipts(callback(status(), url=f"{CALLBACK}?b=2&a=1"))
    [got] = await driver.read_receipts(callback(status(), method="GET"))
    await driver.close()
    assert posted.status == got.status == "delivered"


async def test_a_header_with_several_signatures_verifies_when_one_matches() -> None:
    driver = receiver()
    signed = callback(status())
    rotated = {**signed.headers, "x-plivo-signature-v3":
               "bm90IHRoaXMgb25l," + signed.headers["x-plivo-signature-v3"]}
    [receipt] = await driver.read_receipts(ReceiptRequest("POST", signed.url, rotated, {},
                                                          signed.body))
    await driver.close()
    assert receipt.status == "delivered"


async def test_forged_unsigned_and_tampered_callbacks_are_forbidden() -> None:
    driver = receiver()
    signed = callback(status())
    forged = callback(status(), token="0" * 40)
    without_nonce = {k: v for k, v in signed.headers.items() if not k.endswith("nonce")}
    other_nonce = {**signed.headers, "x-plivo-signature-v3-nonce": "1"}
    requests = [
        forged,
        ReceiptRequest("POST", signed.url, {}, {}, signed.body),
        ReceiptRequest("POST", signed.url, without_nonce, {}, signed.body),
        ReceiptRequest("POST", signed.url, other_nonce, {}, signed.body),
        ReceiptRequest("POST", signed.url, signed.headers, {},
                       signed.body.replace(b"delivered", b"failed")),
        ReceiptRequest("POST", f"{PUBLIC}/v1/receipts/other", signed.headers, {}, signed.body),
        ReceiptRequest("POST", signed.url, {**signed.headers, "x-plivo-signature-v3": "ü"},
                       {}, signed.body),
    ]
    for request in requests:
        with pytest.raises(Forbidden):
            await driver.read_receipts(request)
    await driver.close()


async def test_a_signed_callback_without_a_message_uuid_is_not_plivos() -> None:
    driver = receiver()
    fields = status()
    del fields["MessageUUID"]
    with pytest.raises(InvalidRequest):
        await driver.read_receipts(callback(fields))
    await driver.close()
