"""The Twilio driver against a local server speaking Twilio's Messages and Calls API, and
its status callbacks signed by the official ``twilio`` package's ``RequestValidator``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from otpgate import config
from otpgate.clock import FrozenClock
from otpgate.core.otp import DeliveryStatus
from otpgate.drivers import open_driver
from otpgate.drivers.base import ReceiptRequest
from otpgate.drivers.twilio import TwilioDriver
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
from otpgate.runtime import Runtime
from otpgate.service import OtpRequest
from tests.providers.conftest import CODE, PUBLIC, TO, context, message
from tests.providers.stand_in import Call, Handler, Reply, StandIn

SID = "AC" + "1" * 32
TOKEN = "f" * 32
INVALID = "+14155550100"
"""A number the stand-in refuses as Twilio does an invalid one (21211)."""
BUSY = "+14155550101"
DOWN = "+14155550102"
HANGS = "+14155550103"
UNAUTHORIZED_SID = "AC" + "9" * 32


def twilio_api(call: Call) -> Reply:
    """Twilio as it answers: Basic auth with the account, form bodies, JSON errors."""
    auth = call.basic_auth()
    account = call.path.split("/")[3] if call.path.count("/") >= 4 else ""
    if auth is None or (auth != (account, TOKEN) and not auth[0].startswith("SK")):
        return Reply.json(401, {"code": 20003, "message": "Authenticate", "status": 401})
    if not call.path.endswith(("/Messages.json", "/Calls.json")):
        return Reply.json(404, {"code": 20404, "message": "not found", "status": 404})
    to = call.form().get("To", "").removeprefix("whatsapp:")
    if to == INVALID:
        return Reply.json(400, {"code": 21211, "message": f"The 'To' number {to} is not a "
                                "valid phone number.", "status": 400})
    if to == BUSY:
        return Reply.json(429, {"code": 20429, "message": "Too Many Requests",
                                "status": 429}, {"Retry-After": "7"})
    if to == DOWN:
        return Reply(503, b"Service Unavailable")
    if to == HANGS:
        return Reply.json(201, {"sid": "SMlate"}, delay=2.0)
    prefix = "CA" if call.path.endswith("/Calls.json") else "SM"
    return Reply.json(201, {"sid": f"{prefix}{len(call.body):032d}", "status": "queued"})


StartStandIn = Callable[[Handler], StandIn]


def twilio(server: StandIn, *, user: str = SID, secret: str = TOKEN, sender: str = "+15550001111",
           extra: str = "", public: str | None = PUBLIC) -> TwilioDriver:
    url = f"twilio://{user}:{secret}@{sender}?base_url={server.url}&timeout=1{extra}"
    driver = open_driver(url, context(public))
    assert isinstance(driver, TwilioDriver)
    return driver


async def test_an_sms_is_posted_as_twilio_expects_it(stand_in: StartStandIn) -> None:
    server = stand_in(twilio_api)
    driver = twilio(server)
    receipt = await driver.send(message())
    await driver.close()
    assert receipt.provider_id.startswith("SM")
    [call] = server.calls
    assert (call.method, call.path) == ("POST", f"/2010-04-01/Accounts/{SID}/Messages.json")
    assert call.basic_auth() == (SID, TOKEN)
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    form = call.form()
    assert form["To"] == TO
    assert form["From"] == "+15550001111"
    assert CODE in form["Body"]
    assert form["StatusCallback"] == f"{PUBLIC}/v1/receipts/twilio"


async def test_a_messaging_service_is_the_sender_when_the_url_names_one(
    stand_in: StartStandIn,
) -> None:
    server = stand_in(twilio_api)
    driver = twilio(server, sender="MGabcdef0123456789", public=None)
    await driver.send(message())
    await driver.close()
    form = server.calls[0].form()
    assert form["MessagingServiceSid"] == "MGabcdef0123456789"
    assert "From" not in form
    assert "StatusCallback" not in form


async def test_an_api_key_without_the_auth_token_asks_for_no_callback(
    stand_in: StartStandIn,
) -> None:
    """Twilio signs callbacks with the account's Auth Token: without it every callback
    would be refused, so none is asked for."""
    server = stand_in(twilio_api)
    driver = twilio(server, user="SK" + "2" * 32, secret="keysecret",
                    extra=f"&account_sid={SID}")
    await driver.send(message())
    await driver.close()
    assert "StatusCallback" not in server.calls[0].form()


async def test_an_api_key_authenticates_for_its_account(stand_in: StartStandIn) -> None:
    server = stand_in(twilio_api)
    driver = twilio(server, user="SK" + "2" * 32, secret="keysecret",
                    extra=f"&account_sid={SID}")
    await driver.send(message())
    await driver.close()
    [call] = server.calls
    assert call.basic_auth() == ("SK" + "2" * 32, "keysecret")
    assert call.path == f"/2010-04-01/Accounts/{SID}/Messages.json"


async def test_whatsapp_uses_prefixed_numbers_and_the_approved_template(
    stand_in: StartStandIn,
) -> None:
    server = stand_in(twilio_api)
    driver = twilio(server, extra="&content_sid=HX0123")
    await driver.send(message("whatsapp"))
    await driver.close()
    form = server.calls[0].form()
    assert (form["To"], form["From"]) == (f"whatsapp:{TO}", "whatsapp:+15550001111")
    assert form["ContentSid"] == "HX0123"
    assert form["ContentVariables"] == f'{{"1":"{CODE}"}}'
    assert "Body" not in form


async def test_a_voice_call_reads_the_code_from_twiml(stand_in: StartStandIn) -> None:
    server = stand_in(twilio_api)
    driver = twilio(server)
    spoken = "Your Acme code is 4 8 2 9 1 3. Again, your code is 4 8 2 9 1 3."
    receipt = await driver.send(message("voice", body=spoken))
    await driver.close()
    assert receipt.provider_id.startswith("CA")
    [call] = server.calls
    assert call.path.endswith("/Calls.json")
    twiml = call.form()["Twiml"]
    assert twiml.startswith("<Response><Say")
    assert twiml.count("4 8 2 9 1 3") == 2


@pytest.mark.parametrize(("to", "error", "code"), [
    (INVALID, PermanentDeliveryError, "21211"),
    (BUSY, TemporaryDeliveryError, "20429"),
    (DOWN, TemporaryDeliveryError, None),
])
async def test_twilio_errors_map_to_outcomes(stand_in: StartStandIn, to: str,
                                             error: type[Exception], code: str | None) -> None:
    driver = twilio(stand_in(twilio_api))
    with pytest.raises(error) as raised:
        await driver.send(message(to=to))
    await driver.close()
    assert getattr(raised.value, "provider_code", None) == code
    assert to not in str(raised.value), "the number leaked into the error"


async def test_throttling_carries_twilios_retry_after(stand_in: StartStandIn) -> None:
    driver = twilio(stand_in(twilio_api))
    with pytest.raises(TemporaryDeliveryError) as raised:
        await driver.send(message(to=BUSY))
    await driver.close()
    assert raised.value.retry_after == 7


async def test_bad_credentials_mean_a_broken_driver(stand_in: StartStandIn) -> None:
    driver = twilio(stand_in(twilio_api), secret="wrong")
    with pytest.raises(BrokenDriverError):
        await driver.send(message())
    await driver.close()


async def test_a_hang_past_the_timeout_is_an_unknown_outcome(stand_in: StartStandIn) -> None:
    driver = twilio(stand_in(twilio_api))
    with pytest.raises(UnknownOutcomeError):
        await Bounded(driver, 5).send(message(to=HANGS))
    await driver.close()


async def test_a_refused_connection_is_temporary() -> None:
    driver = open_driver(f"twilio://{SID}:{TOKEN}@+15550001111?base_url=http://127.0.0.1:9",
                         context())
    with pytest.raises(TemporaryDeliveryError) as raised:
        await driver.send(message())
    await driver.close()
    assert not isinstance(raised.value, UnknownOutcomeError)


@pytest.mark.parametrize("url", [
    "twilio://@+15550001111", f"twilio://{SID}@+15550001111", f"twilio://{SID}:{TOKEN}@",
    "twilio://SKabc:secret@+15550001111", f"twilio://{SID}:{TOKEN}@+1555?colour=red",
    f"twilio://{SID}:{TOKEN}@+1555?base_url=ftp://x",
])
def test_a_bad_twilio_url_is_refused_without_showing_the_token(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_driver(url, context())
    assert TOKEN not in str(raised.value)


def test_the_driver_shows_its_url_masked() -> None:
    driver = open_driver(f"twilio://{SID}:{TOKEN}@+15550001111", context())
    assert TOKEN not in driver.url()
    assert TOKEN not in repr(driver.url())
    assert driver.url(privacy=False).endswith(f":{TOKEN}@+15550001111")


def callback(params: dict[str, str], *, token: str = TOKEN,
             url: str = f"{PUBLIC}/v1/receipts/twilio") -> ReceiptRequest:
    signature = RequestValidator(token).compute_signature(url, params)
    return ReceiptRequest(method="POST", url=url,
                          headers={"x-twilio-signature": signature,
                                   "content-type": "application/x-www-form-urlencoded"},
                          query={}, body=urlencode(params).encode())


@pytest.mark.parametrize(("status", "seen"), [("delivered", "delivered"),
                                              ("undelivered", "failed"),
                                              ("failed", "failed"), ("sent", "sent")])
async def test_a_signed_status_callback_is_read(status: str, seen: str) -> None:
    driver = open_driver(f"twilio://{SID}:{TOKEN}@+15550001111", context())
    params = {"MessageSid": "SM42", "MessageStatus": status, "AccountSid": SID,
              "To": TO, "ErrorCode": "30003" if status != "delivered" else ""}
    [receipt] = await driver.read_receipts(callback(params))  # type: ignore[attr-defined]
    await driver.close()
    assert (receipt.provider_id, receipt.status) == ("SM42", seen)


async def test_a_forged_or_unsigned_status_callback_is_forbidden() -> None:
    driver = open_driver(f"twilio://{SID}:{TOKEN}@+15550001111", context())
    params = {"MessageSid": "SM42", "MessageStatus": "delivered"}
    forged = callback(params, token="0" * 32)
    unsigned = ReceiptRequest("POST", forged.url, {}, {}, forged.body)
    tampered = callback(params)
    tampered = ReceiptRequest("POST", tampered.url, tampered.headers, {},
                              tampered.body.replace(b"SM42", b"SM43"))
    garbled = ReceiptRequest("POST", forged.url, {"x-twilio-signature": "säure=="}, {},
                             forged.body)
    for request in (forged, unsigned, tampered, garbled):
        with pytest.raises(Forbidden):
            await driver.read_receipts(request)  # type: ignore[attr-defined]
    await driver.close()


async def test_a_call_status_callback_is_read_as_the_calls_outcome() -> None:
    driver = open_driver(f"twilio://{SID}:{TOKEN}@+15550001111", context())
    [done] = await driver.read_receipts(callback(  # type: ignore[attr-defined]
        {"CallSid": "CA1", "CallStatus": "completed"}))
    [busy] = await driver.read_receipts(callback(  # type: ignore[attr-defined]
        {"CallSid": "CA2", "CallStatus": "no-answer"}))
    await driver.close()
    assert (done.status, busy.status) == ("delivered", "failed")


async def test_with_an_api_key_receipts_need_the_auth_token() -> None:
    key = f"twilio://SK{'2' * 32}:keysecret@+15550001111?account_sid={SID}"
    without = open_driver(key, context())
    with pytest.raises(Forbidden, match="auth_token"):
        await without.read_receipts(callback({"MessageSid": "SM1",  # type: ignore[attr-defined]
                                              "MessageStatus": "delivered"}))
    with_token = open_driver(key + f"&auth_token={TOKEN}", context())
    [receipt] = await with_token.read_receipts(callback(  # type: ignore[attr-defined]
        {"MessageSid": "SM1", "MessageStatus": "delivered"}))
    assert receipt.status == "delivered"
    await without.close()
    await with_token.close()


async def test_a_twilio_status_callback_through_the_api_marks_the_code_delivered(
    stand_in: StartStandIn, make_client: Callable[..., object], tmp_path: object,
) -> None:
    """End to end: a code sent through the Twilio stand-in, then Twilio's callback to the
    public URL, signed by the official validator, moves its channel to delivered; a
    forged one is a 403 problem and changes nothing."""
    import asyncio

    from otpgate import apikeys
    from tests.integration.conftest import START, runtime_of

    server = stand_in(twilio_api)
    url = f"twilio://{SID}:{TOKEN}@+15550001111?base_url={server.url}"
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
        sid = server.calls[0]
        assert sid.form()["StatusCallback"] == f"{PUBLIC}/v1/receipts/twilio"
        message_sid = f"SM{len(sid.body):032d}"
        params = {"MessageSid": message_sid, "MessageStatus": "delivered", "AccountSid": SID}
        signed = callback(params)
        forged = await client.post("/v1/receipts/twilio", content=signed.body, headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": "AAAA"})
        assert forged.status_code == 403
        assert forged.headers["content-type"] == "application/problem+json"
        [channel] = (await client.get(f"/v1/otp/{otp['id']}", headers=auth)).json()["channels"]
        assert channel["status"] == "sent"
        taken = await client.post("/v1/receipts/twilio", content=signed.body,
                                  headers=dict(signed.headers))
        assert taken.json() == {"received": True, "moved": 1}
        [channel] = (await client.get(f"/v1/otp/{otp['id']}", headers=auth)).json()["channels"]
        assert (channel["status"], channel["driver"]) == ("delivered", "twilio")


@pytest.mark.parametrize("base", ["http://api.example.com", "http://10.0.0.5:8080"])
def test_a_plain_http_base_url_beyond_loopback_is_refused(base: str) -> None:
    with pytest.raises(ConfigurationError, match="in clear"):
        open_driver(f"twilio://{SID}:{TOKEN}@+15550001111?base_url={base}", context())


async def test_voice_and_whatsapp_end_to_end_from_the_request_to_twilio(
    stand_in: StartStandIn, tmp_path: Path,
) -> None:
    server = stand_in(twilio_api)
    base = f"twilio://{SID}:{TOKEN}@+15550001111?base_url={server.url}"
    settings = config.from_env({
        "OTPGATE_STORE_URL": "memory://", "OTPGATE_DATA_DIR": str(tmp_path),
        "OTPGATE_SECRET_KEY": bytes(range(32)).hex(), "OTPGATE_PUBLIC_URL": PUBLIC,
        "OTPGATE_DRIVERS_VOICE": base,
        "OTPGATE_DRIVERS_WHATSAPP": f"{base}&content_sid=HX0123&name=twilio-wa"})
    runtime = await Runtime.open(settings, FrozenClock())
    try:
        for dispatcher in runtime.dispatchers():
            runtime.backend.bus.consume(dispatcher.subscription().name, dispatcher.handle,
                                        dispatcher.limits())
        otp = (await runtime.service.request(OtpRequest(
            to=TO, channels=["voice", "whatsapp"], locale="en"))).otp
        while await runtime.backend.bus.pump():
            pass
        by_path = {call.path.rsplit("/", 1)[1]: call.form() for call in server.calls}
        assert set(by_path) == {"Calls.json", "Messages.json"}
        assert by_path["Calls.json"]["To"] == TO
        assert by_path["Calls.json"]["Twiml"].startswith("<Response><Say")
        assert by_path["Calls.json"]["StatusCallback"] == f"{PUBLIC}/v1/receipts/twilio"
        whatsapp = by_path["Messages.json"]
        assert (whatsapp["To"], whatsapp["ContentSid"]) == (f"whatsapp:{TO}", "HX0123")
        assert whatsapp["StatusCallback"] == f"{PUBLIC}/v1/receipts/twilio-wa"
        rows = {d.channel: d for d in await runtime.service.store.deliveries(otp.id)}
        assert {c: (r.driver, r.status) for c, r in rows.items()} == {
            "voice": ("twilio", DeliveryStatus.SENT),
            "whatsapp": ("twilio-wa", DeliveryStatus.SENT)}
    finally:
        await runtime.close()


async def test_a_channel_no_driver_carries_is_refused_at_the_request(tmp_path: Path) -> None:
    settings = config.from_env({
        "OTPGATE_STORE_URL": "memory://", "OTPGATE_DATA_DIR": str(tmp_path),
        "OTPGATE_SECRET_KEY": bytes(range(32)).hex(), "OTPGATE_DRIVERS_SMS": "console://"})
    runtime = await Runtime.open(settings, FrozenClock())
    try:
        for channel in ("voice", "whatsapp"):
            with pytest.raises(InvalidRequest, match=f"no driver is configured for channel "
                                                     f"'{channel}'"):
                await runtime.service.request(OtpRequest(to=TO, channel=channel))
    finally:
        await runtime.close()
