"""The Telnyx driver against a local server speaking Telnyx's Messaging API v2, and its
message webhooks signed with an Ed25519 key pair made here, each signature also checked by
the official ``telnyx`` SDK's verifier (``telnyx/lib/webhook_verification.py``, loaded from
its file: importing the package would load the whole generated client, seconds per run)."""

from __future__ import annotations

import base64
import dataclasses
import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from otpgate.clock import FrozenClock
from otpgate.drivers import open_driver
from otpgate.drivers.base import ReceiptRequest
from otpgate.drivers.telnyx import TelnyxDriver
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

API_KEY = "KEY0184C4DC6E5A9C3F4B54D3E9C5FD8E4_Aa1Bb2Cc3Dd4Ee5Ff6Gg7H"
INVALID = "+14155550100"
OPTED_OUT = "+14155550101"
BUSY = "+14155550102"
DOWN = "+14155550103"
HANGS = "+14155550104"
QUEUE_FULL = "+14155550105"
NOW = 1_800_000_000  # the FrozenClock of ``context()``
PRIVATE = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
"""A fixed key pair whose public key's base64 holds ``+``, ``/`` and ``=``."""
PUBLIC_KEY = base64.b64encode(PRIVATE.public_key().public_bytes(
    Encoding.Raw, PublicFormat.Raw)).decode()
assert {"+", "/", "="} <= set(PUBLIC_KEY)

StartStandIn = Callable[[Handler], StandIn]


def _sdk_verifier() -> ModuleType:
    spec = importlib.util.find_spec("telnyx")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "lib" / \
        "webhook_verification.py"
    module_spec = importlib.util.spec_from_file_location("telnyx_webhook_verification", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


SDK = _sdk_verifier()


def _errors(status: int, code: str, title: str, headers: dict[str, str] | None = None,
            pointer: str | None = None) -> Reply:
    error: dict[str, Any] = {"code": code, "title": title,
                             "detail": title, "meta": {
                                 "url": f"https://developers.telnyx.com/docs/overview/errors/{code}"}}
    if pointer:
        error["source"] = {"pointer": pointer}
    return Reply.json(status, {"errors": [error]}, headers)


def telnyx_api(call: Call) -> Reply:
    """Telnyx as it answers: a Bearer API key, a JSON body, ``{"data": …}`` or an
    ``errors`` array of codes."""
    if call.bearer() != API_KEY:
        return _errors(401, "10009", "Authentication failed")
    if call.path != "/v2/messages":
        return _errors(404, "10005", "Resource not found")
    body = call.json()
    to, sender = body.get("to", ""), body.get("from")
    if not sender and not body.get("messaging_profile_id"):
        return _errors(400, "10004", "Missing required parameter", pointer="/from")
    if not to.startswith("+") or not to[1:].isdigit():
        return _errors(400, "10016", "Phone number must be in +E.164 format", pointer="/to")
    failures = {INVALID: (400, "40310", "Invalid 'to' address"),
                OPTED_OUT: (400, "40300", "Blocked due to STOP message"),
                QUEUE_FULL: (400, "40318", "Message queue full")}
    if (failure := failures.get(to)) is not None:
        return _errors(*failure, pointer="/to")
    if to == BUSY:
        return _errors(429, "10011", "Too many requests", {"Retry-After": "2"})
    if to == DOWN:
        return Reply(503, b"Service Unavailable")
    return Reply.json(200, {"data": {
        "record_type": "message", "direction": "outbound",
        "id": f"40385f64-5717-4562-b3fc-{len(call.body):012d}", "type": "SMS",
        "messaging_profile_id": body.get("messaging_profile_id") or "400174af-0a13",
        "from": {"phone_number": sender, "carrier": "Telnyx", "line_type": "Wireless"},
        "to": [{"phone_number": to, "status": "queued", "carrier": "T-MOBILE USA, INC.",
                "line_type": "Wireless"}],
        "text": body.get("text"), "webhook_url": body.get("webhook_url"),
        "encoding": "GSM-7", "parts": 1, "errors": []}},
        delay=2.0 if to == HANGS else 0.0)


def telnyx(server: StandIn, *, key: str = API_KEY, sender: str = "+15550001111",
           extra: str = "", public: str | None = PUBLIC) -> TelnyxDriver:
    url = f"telnyx://{key}@{sender}?base_url={server.url}&timeout=1{extra}"
    driver = open_driver(url, context(public))
    assert isinstance(driver, TelnyxDriver)
    return driver


async def test_no_webhook_is_asked_for_that_could_not_be_verified(
    stand_in: StartStandIn,
) -> None:
    """Without public_key= every webhook would be refused: Telnyx is given no URL."""
    server = stand_in(telnyx_api)
    driver = telnyx(server)
    await driver.send(message())
    await driver.close()
    assert "webhook_url" not in server.calls[0].json()


async def test_an_sms_is_posted_as_telnyx_expects_it(stand_in: StartStandIn) -> None:
    server = stand_in(telnyx_api)
    driver = telnyx(server, extra=f"&public_key={quote(PUBLIC_KEY, safe='')}")
    receipt = await driver.send(message())
    await driver.close()
    [call] = server.calls
    assert (call.method, call.path) == ("POST", "/v2/messages")
    assert call.bearer() == API_KEY
    assert call.headers["content-type"] == "application/json"
    body = call.json()
    assert (body["from"], body["to"]) == ("+15550001111", TO)
    assert CODE in body["text"]
    assert body["webhook_url"] == f"{PUBLIC}/v1/receipts/telnyx"
    assert "messaging_profile_id" not in body
    assert receipt.provider_id.startswith("40385f64-5717-4562-b3fc-")
    assert receipt.segments == 1


async def test_an_alphanumeric_sender_goes_with_its_messaging_profile(
    stand_in: StartStandIn,
) -> None:
    server = stand_in(telnyx_api)
    driver = telnyx(server, sender="AcmeInc", public=None,
                    extra="&messaging_profile_id=400174af-0a13-4e28-b4f5")
    await driver.send(message())
    await driver.close()
    body = server.calls[0].json()
    assert (body["from"], body["messaging_profile_id"]) == ("AcmeInc",
                                                            "400174af-0a13-4e28-b4f5")
    assert "webhook_url" not in body


@pytest.mark.parametrize(("to", "error", "code"), [
    (INVALID, PermanentDeliveryError, "40310"),
    (OPTED_OUT, PermanentDeliveryError, "40300"),
    (QUEUE_FULL, TemporaryDeliveryError, "40318"),
    (BUSY, TemporaryDeliveryError, "10011"),
    (DOWN, TemporaryDeliveryError, None),
])
async def test_telnyx_errors_map_to_outcomes(stand_in: StartStandIn, to: str,
                                             error: type[Exception], code: str | None) -> None:
    driver = telnyx(stand_in(telnyx_api))
    with pytest.raises(error) as raised:
        await driver.send(message(to=to))
    await driver.close()
    assert type(raised.value) is error
    assert getattr(raised.value, "provider_code", None) == code
    assert to not in str(raised.value) and to[1:] not in str(raised.value)
    assert CODE not in str(raised.value), "the text leaked into the error"


async def test_a_429_carries_telnyxs_retry_after(stand_in: StartStandIn) -> None:
    driver = telnyx(stand_in(telnyx_api))
    with pytest.raises(TemporaryDeliveryError) as raised:
        await driver.send(message(to=BUSY))
    await driver.close()
    assert raised.value.retry_after == 2


async def test_a_bad_api_key_means_a_broken_driver(stand_in: StartStandIn) -> None:
    driver = telnyx(stand_in(telnyx_api), key="KEYwrong")
    with pytest.raises(BrokenDriverError) as raised:
        await driver.send(message())
    await driver.close()
    assert raised.value.provider_code == "10009"
    assert "KEYwrong" not in str(raised.value)


async def test_a_hang_past_the_timeout_is_an_unknown_outcome(stand_in: StartStandIn) -> None:
    driver = telnyx(stand_in(telnyx_api))
    with pytest.raises(UnknownOutcomeError):
        await Bounded(driver, 5).send(message(to=HANGS))
    await driver.close()


@pytest.mark.parametrize("url", [
    "telnyx://@+15550001111", f"telnyx://{API_KEY}@", f"telnyx://{API_KEY}:extra@+1555",
    f"telnyx://{API_KEY}@+15550001111?colour=red",
    f"telnyx://{API_KEY}@+15550001111?public_key=bm90IGEga2V5",
    f"telnyx://{API_KEY}@+15550001111?public_key=%%%",
])
def test_a_bad_telnyx_url_is_refused_without_showing_the_key(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_driver(url, context())
    assert API_KEY not in str(raised.value)


def test_the_driver_shows_its_url_masked() -> None:
    raw = f"telnyx://{API_KEY}@+15550001111?public_key={quote(PUBLIC_KEY, safe='')}"
    driver = open_driver(raw, context())
    assert API_KEY not in driver.url()
    assert API_KEY not in repr(driver)
    assert driver.url(privacy=False) == raw


def webhook(status: str = "delivered", event: str = "message.finalized",
            errors: list[dict[str, str]] | None = None, message_id: str = "40385f64-1") -> bytes:
    """A message webhook's body as Telnyx posts it."""
    return json.dumps({"data": {
        "event_type": event, "id": "b301ed3f-1490-491f-995f-6e64e69674d4",
        "occurred_at": "2027-01-15T08:00:00.000+00:00", "record_type": "event",
        "payload": {"id": message_id, "record_type": "message", "direction": "outbound",
                    "type": "SMS", "from": {"phone_number": "+15550001111"},
                    "to": [{"phone_number": TO, "status": status, "carrier": "T-MOBILE"}],
                    "text": f"Your Acme code is {CODE}.", "parts": 1,
                    "errors": errors or []}},
        "meta": {"attempt": 1, "delivered_to": f"{PUBLIC}/v1/receipts/telnyx"}}).encode()


def signed(body: bytes, *, timestamp: int = NOW,
           key: Ed25519PrivateKey = PRIVATE) -> ReceiptRequest:
    """The webhook request Telnyx makes: ``{timestamp}|{body}`` signed with Ed25519."""
    signature = base64.b64encode(key.sign(f"{timestamp}|".encode() + body)).decode()
    return ReceiptRequest("POST", f"{PUBLIC}/v1/receipts/telnyx",
                          {"content-type": "application/json",
                           "telnyx-signature-ed25519": signature,
                           "telnyx-timestamp": str(timestamp)}, {}, body)


def receiver(clock: FrozenClock | None = None) -> TelnyxDriver:
    ctx = context() if clock is None else dataclasses.replace(context(), clock=clock)
    # A "+" left unencoded in the query reads back as a space; the driver puts it back.
    driver = open_driver(f"telnyx://{API_KEY}@+15550001111?public_key={PUBLIC_KEY}", ctx)
    assert isinstance(driver, TelnyxDriver)
    return driver


async def test_a_webhook_the_telnyx_sdk_verifies_is_read() -> None:
    now = int(time.time())  # the SDK's verifier reads the wall clock
    request = signed(webhook(), timestamp=now)
    SDK.verify_webhook_signature(request.body, dict(request.headers), PUBLIC_KEY)
    driver = receiver(FrozenClock(now))
    [receipt] = await driver.read_receipts(request)
    await driver.close()
    assert (receipt.provider_id, receipt.status, receipt.error_code) == (
        "40385f64-1", "delivered", None)


@pytest.mark.parametrize(("status", "event", "seen", "code"), [
    ("delivered", "message.finalized", "delivered", None),
    ("delivery_failed", "message.finalized", "failed", "40008"),
    ("sending_failed", "message.finalized", "failed", "40008"),
    ("expired", "message.finalized", "failed", "40008"),
    ("delivery_unconfirmed", "message.finalized", "sent", None),
    ("sent", "message.sent", "sent", None),
])
async def test_telnyx_delivery_statuses_map_to_receipts(status: str, event: str, seen: str,
                                                        code: str | None) -> None:
    errors = [{"code": "40008", "title": "Undeliverable"}] if code else None
    driver = receiver()
    [receipt] = await driver.read_receipts(signed(webhook(status, event, errors)))
    await driver.close()
    assert (receipt.status, receipt.error_code) == (seen, code)


async def test_other_events_carry_no_receipt() -> None:
    driver = receiver()
    assert await driver.read_receipts(signed(webhook(event="message.received"))) == []
    await driver.close()


async def test_forged_unsigned_tampered_and_stale_webhooks_are_forbidden() -> None:
    driver = receiver()
    good = signed(webhook())
    headers = dict(good.headers)
    requests = [
        signed(webhook(), key=Ed25519PrivateKey.generate()),
        ReceiptRequest("POST", good.url, {"content-type": "application/json"}, {}, good.body),
        ReceiptRequest("POST", good.url, headers, {},
                       good.body.replace(b"delivered", b"delivery_failed")),
        ReceiptRequest("POST", good.url, {**headers, "telnyx-timestamp": str(NOW + 1)}, {},
                       good.body),
        ReceiptRequest("POST", good.url, {**headers, "telnyx-signature-ed25519": "not*b64"},
                       {}, good.body),
        signed(webhook(), timestamp=NOW - 301),
        signed(webhook(), timestamp=NOW + 301),
    ]
    for request in requests:
        with pytest.raises(Forbidden):
            await driver.read_receipts(request)
    with pytest.raises(SDK.WebhookVerificationError):  # the SDK refuses the tampered one too
        SDK.verify_webhook_signature(requests[2].body, headers, PUBLIC_KEY)
    await driver.close()


async def test_without_a_public_key_every_webhook_is_forbidden() -> None:
    driver = open_driver(f"telnyx://{API_KEY}@+15550001111", context())
    with pytest.raises(Forbidden, match="public_key"):
        await driver.read_receipts(signed(webhook()))  # type: ignore[attr-defined]
    await driver.close()


async def test_a_signed_body_that_is_not_a_telnyx_webhook_is_invalid() -> None:
    driver = receiver()
    for body in (b"[1, 2]", b'{"data": {"event_type": "message.finalized", "payload": '
                           b'{"id": "", "to": []}}}'):
        with pytest.raises(InvalidRequest):
            await driver.read_receipts(signed(body))
    await driver.close()


async def test_a_telnyx_webhook_through_the_api_marks_the_code_delivered(
    stand_in: StartStandIn, make_client: Callable[..., object],
) -> None:
    """End to end: a code sent through the Telnyx stand-in, then Telnyx's signed
    ``message.finalized`` webhook moves its channel to delivered; a forged one is a 403
    problem and changes nothing."""
    import asyncio

    from otpgate import apikeys
    from tests.integration.conftest import START, runtime_of

    server = stand_in(telnyx_api)
    url = (f"telnyx://{API_KEY}@+15550001111?base_url={server.url}"
           f"&public_key={quote(PUBLIC_KEY, safe='')}")
    async with make_client(dev=False, drivers={"sms": (url,)},  # type: ignore[operator]
                           public_url=PUBLIC) as client:
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
        message_id = f"40385f64-5717-4562-b3fc-{len(server.calls[0].body):012d}"
        good = signed(webhook(message_id=message_id), timestamp=int(START))
        forged = signed(webhook(message_id=message_id), timestamp=int(START),
                        key=Ed25519PrivateKey.generate())
        refused = await client.post("/v1/receipts/telnyx", content=forged.body,
                                    headers=dict(forged.headers))
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        [channel] = (await client.get(f"/v1/otp/{otp['id']}", headers=auth)).json()["channels"]
        assert channel["status"] == "sent"
        taken = await client.post("/v1/receipts/telnyx", content=good.body,
                                  headers=dict(good.headers))
        assert taken.json() == {"received": True, "moved": 1}
        again = await client.post("/v1/receipts/telnyx", content=good.body,
                                  headers=dict(good.headers))
        assert again.json() == {"received": True, "moved": 0}, "a replay changes nothing"
        [channel] = (await client.get(f"/v1/otp/{otp['id']}", headers=auth)).json()["channels"]
        assert (channel["status"], channel["driver"]) == ("delivered", "telnyx")
