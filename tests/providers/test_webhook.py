"""The signed-webhook driver against a real local receiver that verifies every request with
the ``standardwebhooks`` package, as a receiving service would, and the receipts such a
service reports back, signed with the same package."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from otpgate.capture.memory import MemoryCaptureSink
from otpgate.clock import FrozenClock
from otpgate.drivers import open_driver
from otpgate.drivers.base import DriverContext, ReceiptRequest
from otpgate.drivers.webhook import WebhookDriver
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
from tests.providers.conftest import CODE, OTP_ID, PUBLIC, TO, message
from tests.providers.stand_in import Call, Handler, Reply, StandIn

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OTHER = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()
BUSY = "+14155550101"
DOWN = "+14155550102"
HANGS = "+14155550103"
REFUSED = "+14155550108"
FORBIDDEN = "+14155550109"
MOVED = "+14155550110"
WITH_ID = "+14155550111"

StartStandIn = Callable[[Handler], StandIn]


def receiver(secret: str = SECRET) -> tuple[Handler, list[dict[str, Any]]]:
    """A service that takes otpgate's webhooks: it verifies each with ``standardwebhooks``
    (401 when it does not verify) and answers by the number it is asked to send to."""
    verified: list[dict[str, Any]] = []
    hook = Webhook(secret)

    def handle(call: Call) -> Reply:
        try:
            payload = hook.verify(call.body, call.headers)
        except WebhookVerificationError:
            return Reply.json(401, {"error": "bad signature"})
        verified.append(payload)
        replies = {
            BUSY: Reply.json(429, {"error": "slow down"}, {"Retry-After": "7"}),
            DOWN: Reply(503, b"down"), REFUSED: Reply.json(400, {"error": "no"}),
            FORBIDDEN: Reply(403, b""), MOVED: Reply(302, b"", {"Location": "/v2/otp"}),
            HANGS: Reply(200, b"", delay=2.0),
            WITH_ID: Reply.json(200, {"id": "rcv_42", "queued": True}),
        }
        return replies.get(payload["to"], Reply(204, b""))

    return handle, verified


def ctx(clock: FrozenClock | None = None) -> DriverContext:
    """Signatures carry the clock's time; a receiver checks it against its own, so the
    clock starts at the wall clock's time."""
    return DriverContext(clock or FrozenClock(time.time()), MemoryCaptureSink(),
                         allow_capture=False, public_url=PUBLIC)


def webhook(server: StandIn, *, secret: str = SECRET, extra: str = "",
            clock: FrozenClock | None = None) -> WebhookDriver:
    origin = server.url.removeprefix("http://")
    driver = open_driver(f"webhook+http://{origin}/hooks/otp?secret={secret}&timeout=1"
                         f"{extra}", ctx(clock))
    assert isinstance(driver, WebhookDriver)
    return driver


async def test_a_message_is_posted_signed_as_a_standard_webhook(
    stand_in: StartStandIn,
) -> None:
    handle, verified = receiver()
    server = stand_in(handle)
    driver = webhook(server)
    receipt = await driver.send(message())
    await driver.close()
    [call] = server.calls
    assert (call.method, call.path) == ("POST", "/hooks/otp")
    assert call.headers["content-type"] == "application/json"
    [payload] = verified
    assert set(payload) == {"id", "otp_id", "send_no", "channel", "to", "body", "subject",
                            "expires_at", "idempotency_key"}
    assert call.headers["webhook-id"] == payload["id"] == receipt.provider_id
    assert (payload["otp_id"], payload["send_no"], payload["channel"]) == (OTP_ID, 1, "sms")
    assert payload["to"] == TO
    assert CODE in payload["body"]
    assert payload["subject"] is None
    assert payload["expires_at"] == "2027-01-15T08:05:00.000Z"
    assert payload["idempotency_key"] == message().idempotency_key


async def test_every_channel_goes_out_and_an_email_keeps_its_subject(
    stand_in: StartStandIn,
) -> None:
    handle, verified = receiver()
    driver = webhook(stand_in(handle))
    assert driver.channels >= {"sms", "email", "voice", "whatsapp"}
    await driver.send(message("email", to="ana@example.com"))
    await driver.close()
    assert (verified[0]["channel"], verified[0]["subject"]) == ("email", "Your Acme code")


async def test_the_answers_id_is_kept_when_the_service_gives_one(
    stand_in: StartStandIn,
) -> None:
    handle, _ = receiver()
    driver = webhook(stand_in(handle))
    receipt = await driver.send(message(to=WITH_ID))
    await driver.close()
    assert receipt.provider_id == "rcv_42"


async def test_every_attempt_of_a_send_has_the_same_webhook_id(
    stand_in: StartStandIn,
) -> None:
    handle, _ = receiver()
    server = stand_in(handle)
    driver = webhook(server)
    await driver.send(message())
    await driver.send(message())
    await driver.send(message(send_no=2))
    await driver.close()
    ids = [c.headers["webhook-id"] for c in server.calls]
    assert ids[0] == ids[1] != ids[2]


@pytest.mark.parametrize(("to", "error"), [
    (BUSY, TemporaryDeliveryError), (DOWN, TemporaryDeliveryError),
    (REFUSED, PermanentDeliveryError), (FORBIDDEN, BrokenDriverError),
    (MOVED, BrokenDriverError),
])
async def test_the_services_answers_map_to_outcomes(stand_in: StartStandIn, to: str,
                                                    error: type[Exception]) -> None:
    handle, _ = receiver()
    driver = webhook(stand_in(handle))
    with pytest.raises(error) as raised:
        await driver.send(message(to=to))
    await driver.close()
    assert type(raised.value) is error
    assert to not in str(raised.value), "the number leaked into the error"


async def test_throttling_carries_the_services_retry_after(stand_in: StartStandIn) -> None:
    handle, _ = receiver()
    driver = webhook(stand_in(handle))
    with pytest.raises(TemporaryDeliveryError) as raised:
        await driver.send(message(to=BUSY))
    await driver.close()
    assert raised.value.retry_after == 7


async def test_a_service_with_another_secret_refuses_it_and_the_driver_is_broken(
    stand_in: StartStandIn,
) -> None:
    handle, verified = receiver(OTHER)
    driver = webhook(stand_in(handle))
    with pytest.raises(BrokenDriverError):
        await driver.send(message())
    await driver.close()
    assert verified == []


async def test_a_signature_from_a_stale_clock_is_refused_by_the_service(
    stand_in: StartStandIn,
) -> None:
    handle, verified = receiver()
    driver = webhook(stand_in(handle), clock=FrozenClock(time.time() - 3600))
    with pytest.raises(BrokenDriverError):
        await driver.send(message())
    await driver.close()
    assert verified == []


async def test_a_hang_past_the_timeout_is_an_unknown_outcome(stand_in: StartStandIn) -> None:
    handle, _ = receiver()
    driver = webhook(stand_in(handle), extra="&timeout=0.25")
    with pytest.raises(UnknownOutcomeError):
        await Bounded(driver, 5).send(message(to=HANGS))
    await driver.close()


async def test_credentials_in_the_url_are_sent_as_basic_auth(stand_in: StartStandIn) -> None:
    handle, _ = receiver()
    server = stand_in(handle)
    origin = server.url.removeprefix("http://")
    driver = open_driver(f"webhook+http://relay:pa%40ss@{origin}/hooks?secret={SECRET}",
                         ctx())
    await driver.send(message())
    await driver.close()
    assert server.calls[0].basic_auth() == ("relay", "pa@ss")
    assert "pa%40ss" not in driver.url()


@pytest.mark.parametrize("url", [
    "webhook+http://127.0.0.1:9000/otp", "webhook+http://localhost/otp",
    "webhook+http://[::1]:9000/otp", "webhook+https://hooks.example.com/otp",
])
async def test_both_schemes_are_named_webhook(url: str) -> None:
    driver = open_driver(f"{url}?secret={SECRET}", ctx())
    await driver.close()
    assert driver.name == "webhook"
    named = open_driver(f"{url}?secret={SECRET}&name=relay", ctx())
    await named.close()
    assert named.name == "relay"


@pytest.mark.parametrize("url", [
    f"webhook+http://hooks.example.com/otp?secret={SECRET}",
    f"webhook+http://10.0.0.8/otp?secret={SECRET}",
    f"webhook+https://hooks.example.com/otp?secret={SECRET}&base_url=http://example.com",
    "webhook+https://hooks.example.com/otp",
    "webhook+https://hooks.example.com/otp?secret=not-a-whsec",
    "webhook+https://hooks.example.com/otp?secret=whsec_%21%21%21",
    "webhook+https://hooks.example.com/otp?secret=whsec_c2hvcnQ=",
    f"webhook+https://hooks.example.com/otp?secret={SECRET}&colour=red",
    f"webhook+ftp://hooks.example.com/otp?secret={SECRET}",
    f"webhook+https:///otp?secret={SECRET}",
])
def test_a_bad_webhook_url_is_refused_without_showing_the_secret(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_driver(url, ctx())
    assert SECRET not in str(raised.value)


async def test_the_driver_shows_its_url_masked() -> None:
    driver = open_driver(f"webhook+https://hooks.example.com/otp?secret={SECRET}", ctx())
    await driver.close()
    assert SECRET not in driver.url()
    assert driver.url() == "webhook+https://hooks.example.com/otp?secret=***"
    assert SECRET in driver.url(privacy=False)


def signed_receipt(body: dict[str, Any], clock: FrozenClock, secret: str = SECRET,
                   webhook_id: str = "msg_rcpt_1") -> ReceiptRequest:
    """A receipt as the receiving service reports it, signed by ``standardwebhooks``."""
    raw = json.dumps(body)
    when = datetime.fromtimestamp(int(clock.now()), UTC)
    headers = {"content-type": "application/json", "webhook-id": webhook_id,
               "webhook-timestamp": str(int(clock.now())),
               "webhook-signature": Webhook(secret).sign(webhook_id, when, raw)}
    return ReceiptRequest("POST", f"{PUBLIC}/v1/receipts/webhook", headers, {},
                          raw.encode())


@pytest.mark.parametrize(("body", "seen", "code"), [
    ({"id": "msg_abc", "status": "delivered"}, "delivered", None),
    ({"id": "msg_abc", "status": "failed", "error_code": "unreachable"}, "failed",
     "unreachable"),
    ({"id": "msg_abc", "status": "failed", "error_code": 30003}, "failed", "30003"),
])
async def test_a_signed_receipt_is_read(body: dict[str, Any], seen: str,
                                        code: str | None) -> None:
    clock = FrozenClock(1_800_000_000.0)
    driver = open_driver(f"webhook+https://hooks.example.com/otp?secret={SECRET}", ctx(clock))
    [receipt] = await driver.read_receipts(signed_receipt(body, clock))  # type: ignore[attr-defined]
    await driver.close()
    assert (receipt.provider_id, receipt.status, receipt.error_code) == ("msg_abc", seen, code)


async def test_forged_unsigned_tampered_and_stale_receipts_are_forbidden() -> None:
    clock = FrozenClock(1_800_000_000.0)
    driver = open_driver(f"webhook+https://hooks.example.com/otp?secret={SECRET}", ctx(clock))
    body = {"id": "msg_abc", "status": "delivered"}
    forged = signed_receipt(body, clock, secret=OTHER)
    unsigned = ReceiptRequest("POST", forged.url, {"content-type": "application/json"}, {},
                              forged.body)
    genuine = signed_receipt(body, clock)
    tampered = ReceiptRequest("POST", genuine.url, genuine.headers, {},
                              genuine.body.replace(b"msg_abc", b"msg_abd"))
    garbled = ReceiptRequest("POST", genuine.url, {**genuine.headers,
                                                   "webhook-signature": "AAAA"}, {},
                             genuine.body)
    requests = [forged, unsigned, tampered, garbled]
    for request in requests:
        with pytest.raises(Forbidden):
            await driver.read_receipts(request)  # type: ignore[attr-defined]
    clock.advance(301)
    with pytest.raises(Forbidden, match="timestamp"):
        await driver.read_receipts(genuine)  # type: ignore[attr-defined]
    await driver.close()


async def test_a_signed_receipt_not_shaped_as_one_is_refused() -> None:
    clock = FrozenClock(1_800_000_000.0)
    driver = open_driver(f"webhook+https://hooks.example.com/otp?secret={SECRET}", ctx(clock))
    for body in ({"id": "msg_abc", "status": "lost"}, {"status": "delivered"},
                 {"id": 7, "status": "delivered"}):
        with pytest.raises(InvalidRequest):
            await driver.read_receipts(signed_receipt(body, clock))  # type: ignore[attr-defined]
    await driver.close()


async def test_a_webhook_receipt_through_the_api_marks_the_code_delivered(
    stand_in: StartStandIn, make_client: Callable[..., Any], clock: FrozenClock,
) -> None:
    """End to end: the service verifies otpgate's webhook with ``standardwebhooks``, then
    reports the delivery back, signed; a receipt under another secret is a 403 problem and
    changes nothing."""
    from otpgate import apikeys
    from tests.integration.conftest import runtime_of

    clock.set(time.time())
    handle, verified = receiver()
    server = stand_in(handle)
    url = f"webhook+http://{server.url.removeprefix('http://')}/hooks/otp?secret={SECRET}"
    async with make_client(dev=False, drivers={"sms": (url,)}, public_url=PUBLIC) as client:
        _, key = await apikeys.create(runtime_of(client).backend.store, "shop", clock.now())
        auth = {"authorization": f"Bearer {key}"}
        otp = (await client.post("/v1/otp", json={"to": TO}, headers=auth)).json()
        for _ in range(300):
            [channel] = (await client.get(f"/v1/otp/{otp['id']}", headers=auth)).json()[
                "channels"]
            if channel["status"] == "sent":
                break
            await asyncio.sleep(0.01)
        assert channel["status"] == "sent"
        [payload] = verified
        assert payload["otp_id"] == otp["id"]
        body = {"id": payload["id"], "status": "delivered"}
        forged = signed_receipt(body, clock, secret=OTHER)
        refused = await client.post("/v1/receipts/webhook", content=forged.body,
                                    headers=dict(forged.headers))
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        [channel] = (await client.get(f"/v1/otp/{otp['id']}", headers=auth)).json()["channels"]
        assert channel["status"] == "sent"
        genuine = signed_receipt(body, clock)
        taken = await client.post("/v1/receipts/webhook", content=genuine.body,
                                  headers=dict(genuine.headers))
        assert taken.json() == {"received": True, "moved": 1}
        [channel] = (await client.get(f"/v1/otp/{otp['id']}", headers=auth)).json()["channels"]
        assert (channel["status"], channel["driver"]) == ("delivered", "webhook")
