"""The Vonage driver against a local server speaking Vonage's SMS API (``/sms/json``), and
its delivery receipts signed by the official SDK's signer (``vonage-http-client``'s
``Auth.sign_params``) for the HMAC methods."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from urllib.parse import urlencode

import msgspec
import pytest
from vonage_http_client.auth import Auth

from otpgate.drivers import open_driver
from otpgate.drivers.base import ReceiptRequest
from otpgate.drivers.vonage import VonageDriver
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

KEY = "a1b2c3d4"
SECRET = "Sup3rS3cr3tValue"
SIGNATURE_SECRET = "sigsecret0123456789abcdef"
NOW = 1_800_000_000  # the FrozenClock of ``context()``
INVALID = "+14155550100"
BARRED = "+14155550101"
THROTTLED = "+14155550102"
BUSY = "+14155550103"
DOWN = "+14155550104"
HANGS = "+14155550105"
NO_CREDIT = "+14155550106"

StartStandIn = Callable[[Handler], StandIn]


def _answer(*parts: dict[str, str]) -> Reply:
    return Reply.json(200, {"message-count": str(len(parts)), "messages": list(parts)})


def vonage_api(call: Call) -> Reply:
    """Vonage as it answers: credentials by Basic auth or form fields, a form body, and
    every outcome inside a 200 (``messages[].status``) unless the edge throttles."""
    form = call.form()
    credentials = call.basic_auth() or (form.get("api_key", ""), form.get("api_secret", ""))
    if call.path != "/sms/json":
        return Reply(404, b"Not Found")
    if credentials != (KEY, SECRET):
        return _answer({"status": "4", "error-text": "Bad Credentials"})
    if not form.get("from") or not form.get("to") or not form.get("text"):
        return _answer({"status": "2", "error-text": "Missing from param"})
    to = form["to"]
    if not to.isdigit():
        return _answer({"status": "3", "error-text": "Invalid to address"})
    failures = {INVALID: ("3", "Invalid to address"), BARRED: ("7", "Number barred."),
                THROTTLED: ("1", "Throughput Rate Exceeded - please wait [ 10 ] and retry"),
                NO_CREDIT: ("9", "Quota Exceeded - rejected")}
    if (failure := failures.get("+" + to)) is not None:
        return _answer({"status": failure[0], "error-text": failure[1]})
    if "+" + to == BUSY:
        return Reply.json(429, {"type": "https://developer.vonage.com/api-errors#throttled",
                                "title": "Too Many Requests"}, {"Retry-After": "3"})
    if "+" + to == DOWN:
        return Reply(503, b"Service Unavailable")
    delay = 2.0 if "+" + to == HANGS else 0.0
    size = 70 if form.get("type") == "unicode" else 160
    count = max(1, -(-len(form["text"]) // size))
    parts = [{"to": to, "message-id": f"1D0000000{i}{len(call.body):07d}", "status": "0",
              "remaining-balance": "15.53590000", "message-price": "0.03330000",
              "network": "310004", **({"client-ref": form["client-ref"]}
                                      if "client-ref" in form else {})}
             for i in range(count)]
    reply = _answer(*parts)
    reply.delay = delay
    return reply


def vonage(server: StandIn, *, secret: str = SECRET, sender: str = "AcmeInc",
           extra: str = "", public: str | None = PUBLIC) -> VonageDriver:
    url = f"vonage://{KEY}:{secret}@{sender}?base_url={server.url}&timeout=1{extra}"
    driver = open_driver(url, context(public))
    assert isinstance(driver, VonageDriver)
    return driver


async def test_an_sms_is_posted_as_vonage_expects_it(stand_in: StartStandIn) -> None:
    server = stand_in(vonage_api)
    driver = vonage(server, extra=f"&signature_secret={SIGNATURE_SECRET}")
    receipt = await driver.send(message())
    await driver.close()
    [call] = server.calls
    assert (call.method, call.path) == ("POST", "/sms/json")
    assert call.basic_auth() == (KEY, SECRET)
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    form = call.form()
    assert form["to"] == TO.removeprefix("+"), "Vonage takes numbers without the +"
    assert form["from"] == "AcmeInc"
    assert CODE in form["text"]
    assert "type" not in form, "a GSM-7 text is Vonage's default type"
    assert form["callback"] == f"{PUBLIC}/v1/receipts/vonage"
    assert form["client-ref"] == message().idempotency_key
    assert receipt.provider_id.startswith("1D0000000")
    assert (receipt.segments, receipt.encoding) == (1, "gsm-7")


async def test_a_text_outside_gsm_7_is_sent_as_unicode(stand_in: StartStandIn) -> None:
    server = stand_in(vonage_api)
    driver = vonage(server)
    body = f"Tu código de Acme es {CODE}. Caduca en 5 minutos."
    receipt = await driver.send(message(body=body))
    await driver.close()
    form = server.calls[0].form()
    assert form["type"] == "unicode"
    assert form["text"] == body
    assert receipt.encoding == "ucs-2"


async def test_a_long_text_keeps_the_first_parts_message_id(stand_in: StartStandIn) -> None:
    server = stand_in(vonage_api)
    driver = vonage(server)
    receipt = await driver.send(message(body=f"Your Acme code is {CODE}. " + "x" * 200))
    await driver.close()
    assert receipt.segments == 2
    assert receipt.provider_id.startswith("1D00000000")


async def test_the_sender_is_taken_verbatim_and_from_may_name_it(
    stand_in: StartStandIn,
) -> None:
    server = stand_in(vonage_api)
    number = vonage(server, sender="15550001111")
    named = vonage(server, sender="", extra="&from=AcmeBank")
    await number.send(message())
    await named.send(message())
    await number.close()
    await named.close()
    assert [call.form()["from"] for call in server.calls] == ["15550001111", "AcmeBank"]


async def test_no_callback_is_asked_for_that_could_not_be_verified(
    stand_in: StartStandIn,
) -> None:
    """Without signature_secret= every receipt would be refused: Vonage is given none."""
    server = stand_in(vonage_api)
    driver = vonage(server)
    await driver.send(message())
    await driver.close()
    assert "callback" not in server.calls[0].form()


async def test_no_callback_is_passed_without_a_public_url_or_past_100_characters(
    stand_in: StartStandIn,
) -> None:
    server = stand_in(vonage_api)
    without = vonage(server, public=None)
    too_long = vonage(server, public="https://otp.example.com/" + "p" * 80)
    await without.send(message())
    await too_long.send(message())
    await without.close()
    await too_long.close()
    assert all("callback" not in call.form() for call in server.calls)


async def test_an_idempotency_key_longer_than_a_client_ref_is_left_out(
    stand_in: StartStandIn,
) -> None:
    server = stand_in(vonage_api)
    driver = vonage(server)
    await driver.send(msgspec.structs.replace(message(), idempotency_key="k" * 41))
    await driver.close()
    assert "client-ref" not in server.calls[0].form()


@pytest.mark.parametrize(("to", "error", "code"), [
    (INVALID, PermanentDeliveryError, "3"),
    (BARRED, PermanentDeliveryError, "7"),
    (THROTTLED, TemporaryDeliveryError, "1"),
    (NO_CREDIT, BrokenDriverError, "9"),
    (BUSY, TemporaryDeliveryError, None),
    (DOWN, TemporaryDeliveryError, None),
])
async def test_vonage_answers_map_to_outcomes(stand_in: StartStandIn, to: str,
                                              error: type[Exception], code: str | None) -> None:
    driver = vonage(stand_in(vonage_api))
    with pytest.raises(error) as raised:
        await driver.send(message(to=to))
    await driver.close()
    assert type(raised.value) is error
    assert getattr(raised.value, "provider_code", None) == code
    assert to.removeprefix("+") not in str(raised.value), "the number leaked into the error"
    assert CODE not in str(raised.value), "the text leaked into the error"


async def test_a_429_carries_vonages_retry_after(stand_in: StartStandIn) -> None:
    driver = vonage(stand_in(vonage_api))
    with pytest.raises(TemporaryDeliveryError) as raised:
        await driver.send(message(to=BUSY))
    await driver.close()
    assert raised.value.retry_after == 3


async def test_bad_credentials_inside_a_200_mean_a_broken_driver(
    stand_in: StartStandIn,
) -> None:
    driver = vonage(stand_in(vonage_api), secret="wrong")
    with pytest.raises(BrokenDriverError) as raised:
        await driver.send(message())
    await driver.close()
    assert raised.value.provider_code == "4"
    assert "wrong" not in str(raised.value)


async def test_a_401_means_a_broken_driver(stand_in: StartStandIn) -> None:
    driver = vonage(stand_in(lambda call: Reply.json(401, {"title": "Unauthorized"})))
    with pytest.raises(BrokenDriverError):
        await driver.send(message())
    await driver.close()


async def test_a_hang_past_the_timeout_is_an_unknown_outcome(stand_in: StartStandIn) -> None:
    driver = vonage(stand_in(vonage_api))
    with pytest.raises(UnknownOutcomeError):
        await Bounded(driver, 5).send(message(to=HANGS))
    await driver.close()


@pytest.mark.parametrize("url", [
    "vonage://@AcmeInc", f"vonage://{KEY}@AcmeInc", f"vonage://{KEY}:{SECRET}@",
    f"vonage://{KEY}:{SECRET}@AcmeInc?colour=red",
    f"vonage://{KEY}:{SECRET}@AcmeInc?signature_method=crc32",
    f"vonage://{KEY}:{SECRET}@AcmeInc?base_url=ftp://x",
])
def test_a_bad_vonage_url_is_refused_without_showing_the_secret(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_driver(url, context())
    assert SECRET not in str(raised.value)


def test_the_driver_shows_its_url_masked() -> None:
    raw = f"vonage://{KEY}:{SECRET}@AcmeInc?signature_secret={SIGNATURE_SECRET}"
    driver = open_driver(raw, context())
    assert SECRET not in driver.url()
    assert SIGNATURE_SECRET not in driver.url()
    assert SECRET not in repr(driver)
    assert driver.url(privacy=False) == raw


def dlr(status: str = "delivered", err: str = "0", message_id: str = "0A0000001234567B",
        timestamp: int = NOW) -> dict[str, str]:
    """A delivery receipt's fields as Vonage sends them (with signing on)."""
    return {"msisdn": TO.removeprefix("+"), "to": "AcmeInc", "network-code": "310004",
            "messageId": message_id, "price": "0.03330000", "status": status,
            "scts": "2701150800", "err-code": err, "api-key": KEY,
            "message-timestamp": "2027-01-15 08:00:00", "timestamp": str(timestamp),
            "nonce": "ec11dd3e-1e7f-4db5-9467-82b02cd223b9"}


def sdk_signed(fields: dict[str, str], method: str = "sha256",
               secret: str = SIGNATURE_SECRET) -> dict[str, str]:
    """``fields`` with the ``sig`` the official SDK computes for an HMAC method."""
    auth = Auth(api_key=KEY, signature_secret=secret, signature_method=method)  # type: ignore[arg-type]
    return {**fields, "sig": auth.sign_params(dict(fields)).upper()}


def md5hash_signed(fields: dict[str, str], secret: str = SIGNATURE_SECRET) -> dict[str, str]:
    """``fields`` signed by Vonage's default ``md5hash`` method, as Vonage documents it
    (the current SDK signs only the HMAC methods): MD5 of ``&name=value`` for each field
    sorted, ``&`` and ``=`` in values replaced by ``_``, then the secret."""
    text = "".join(f"&{k}={v.replace('&', '_').replace('=', '_')}"
                   for k, v in sorted(fields.items()))
    return {**fields, "sig": hashlib.md5((text + secret).encode()).hexdigest()}


def as_get(fields: dict[str, str]) -> ReceiptRequest:
    url = f"{PUBLIC}/v1/receipts/vonage?{urlencode(fields)}"
    return ReceiptRequest("GET", url, {}, fields, b"")


def as_form(fields: dict[str, str]) -> ReceiptRequest:
    return ReceiptRequest("POST", f"{PUBLIC}/v1/receipts/vonage",
                          {"content-type": "application/x-www-form-urlencoded"}, {},
                          urlencode(fields).encode())


def as_json(fields: dict[str, str]) -> ReceiptRequest:
    return ReceiptRequest("POST", f"{PUBLIC}/v1/receipts/vonage",
                          {"content-type": "application/json"}, {},
                          json.dumps(fields).encode())


def receiver(method: str | None = "sha256") -> VonageDriver:
    extra = f"&signature_method={method}" if method else ""
    driver = open_driver(f"vonage://{KEY}:{SECRET}@AcmeInc?signature_secret="
                         f"{SIGNATURE_SECRET}{extra}", context())
    assert isinstance(driver, VonageDriver)
    return driver


@pytest.mark.parametrize("method", ["md5", "sha1", "sha256", "sha512"])
@pytest.mark.parametrize("shape", [as_get, as_form, as_json])
async def test_a_receipt_signed_by_the_vonage_sdk_is_read(
    method: str, shape: Callable[[dict[str, str]], ReceiptRequest],
) -> None:
    driver = receiver(method)
    [receipt] = await driver.read_receipts(shape(sdk_signed(dlr(), method)))
    await driver.close()
    assert (receipt.provider_id, receipt.status, receipt.error_code) == (
        "0A0000001234567B", "delivered", None)


async def test_a_receipt_signed_with_the_default_md5_hash_is_read() -> None:
    driver = receiver(None)
    [receipt] = await driver.read_receipts(as_get(md5hash_signed(dlr())))
    await driver.close()
    assert receipt.status == "delivered"


async def test_values_holding_ampersands_and_equals_signs_verify() -> None:
    driver = receiver()
    fields = {**dlr(), "client-ref": "a=b&c"}
    [receipt] = await driver.read_receipts(as_form(sdk_signed(fields)))
    await driver.close()
    assert receipt.status == "delivered"


@pytest.mark.parametrize(("status", "err", "seen", "code"), [
    ("delivered", "0", "delivered", None), ("failed", "6", "failed", "6"),
    ("rejected", "14", "failed", "14"), ("expired", "1", "failed", "1"),
    ("accepted", "0", "sent", None), ("buffered", "0", "sent", None),
])
async def test_vonage_delivery_statuses_map_to_receipts(status: str, err: str, seen: str,
                                                        code: str | None) -> None:
    driver = receiver()
    [receipt] = await driver.read_receipts(as_get(sdk_signed(dlr(status, err))))
    await driver.close()
    assert (receipt.status, receipt.error_code) == (seen, code)


async def test_forged_unsigned_tampered_and_stale_receipts_are_forbidden() -> None:
    driver = receiver()
    signed = sdk_signed(dlr())
    forged = sdk_signed(dlr(), secret="not-the-secret")
    unsigned = dlr()
    tampered = {**signed, "status": "failed"}
    stale = sdk_signed(dlr(timestamp=NOW - 301))
    other_method = sdk_signed(dlr(), "sha1")
    for fields in (forged, unsigned, tampered, stale, other_method):
        with pytest.raises(Forbidden):
            await driver.read_receipts(as_get(fields))
    with pytest.raises(Forbidden):
        await driver.read_receipts(as_get({**signed, "sig": "é" * 64}))
    await driver.close()


async def test_without_a_signature_secret_every_receipt_is_forbidden() -> None:
    driver = open_driver(f"vonage://{KEY}:{SECRET}@AcmeInc", context())
    with pytest.raises(Forbidden, match="signature_secret"):
        await driver.read_receipts(as_get(sdk_signed(dlr())))  # type: ignore[attr-defined]
    await driver.close()


async def test_a_signed_receipt_without_a_message_id_is_not_vonages() -> None:
    driver = receiver()
    fields = dlr()
    del fields["messageId"]
    with pytest.raises(InvalidRequest):
        await driver.read_receipts(as_get(sdk_signed(fields)))
    with pytest.raises(InvalidRequest):
        await driver.read_receipts(ReceiptRequest("POST", PUBLIC, {}, {}, b"{not json"))
    await driver.close()


async def test_a_vonage_receipt_through_the_api_marks_the_code_delivered(
    stand_in: StartStandIn, make_client: Callable[..., object],
) -> None:
    """End to end: a code sent through the Vonage stand-in, then Vonage's GET delivery
    receipt, signed by the SDK, moves its channel to delivered; an unsigned one is a 403
    problem and changes nothing."""
    import asyncio

    from otpgate import apikeys
    from tests.integration.conftest import START, runtime_of

    server = stand_in(vonage_api)
    url = (f"vonage://{KEY}:{SECRET}@AcmeInc?base_url={server.url}"
           f"&signature_secret={SIGNATURE_SECRET}&signature_method=sha512")
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
        message_id = f"1D00000000{len(server.calls[0].body):07d}"
        fields = dlr(message_id=message_id, timestamp=int(START))
        unsigned = await client.get("/v1/receipts/vonage", params=fields)
        assert unsigned.status_code == 403
        assert unsigned.headers["content-type"] == "application/problem+json"
        [channel] = (await client.get(f"/v1/otp/{otp['id']}", headers=auth)).json()["channels"]
        assert channel["status"] == "sent"
        taken = await client.get("/v1/receipts/vonage", params=sdk_signed(fields, "sha512"))
        assert taken.json() == {"received": True, "moved": 1}
        [channel] = (await client.get(f"/v1/otp/{otp['id']}", headers=auth)).json()["channels"]
        assert (channel["status"], channel["driver"]) == ("delivered", "vonage")
