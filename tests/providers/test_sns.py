"""The SNS driver against moto in server mode (what moto kept of each SMS, and the
request its recorder saw), and against a local stand-in speaking SNS's query protocol
for the answers moto never gives (throttling, server errors, refused credentials, a
hang); the stand-in checks SigV4 as AWS does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import parse_qs

import pytest

from otpgate.drivers import open_driver
from otpgate.drivers.sns import SnsDriver
from otpgate.errors import (
    BrokenDriverError,
    ConfigurationError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    UnknownOutcomeError,
)
from tests.providers.aws import MotoServer, query_error, signed_by_us
from tests.providers.conftest import CODE, TO, context, email_message, message
from tests.providers.stand_in import Call, Handler, Reply, StandIn

BUSY, DOWN, DENIED, OPTED_OUT, HANGS = (
    "+14155550104", "+14155550105", "+14155550106", "+14155550107", "+14155550108")
StartStandIn = Callable[[Handler], StandIn]


def sns(endpoint: str, query: str = "") -> SnsDriver:
    driver = open_driver(f"sns://?region=us-east-1&endpoint_url={endpoint}{query}", context())
    assert isinstance(driver, SnsDriver)
    return driver


def attributes(form: dict[str, list[str]]) -> dict[str, tuple[str, str]]:
    """``MessageAttributes`` as the query protocol carries them: name → (type, value)."""
    found = {}
    for n in range(1, 10):
        prefix = f"MessageAttributes.entry.{n}."
        if prefix + "Name" not in form:
            break
        found[form[prefix + "Name"][0]] = (form[prefix + "Value.DataType"][0],
                                           form[prefix + "Value.StringValue"][0])
    return found


async def test_an_sms_is_published_to_the_number_with_the_sms_attributes(
    moto: MotoServer,
) -> None:
    driver = sns(moto.url, "&sender_id=ACME&max_price=0.50")
    receipt = await driver.send(message())
    await driver.close()
    [sms] = moto.models("sns", "SMS")
    assert (sms["phone_number"], sms["message_id"]) == (TO, receipt.provider_id)
    assert CODE in sms["message"]
    [publish] = moto.requests()
    form = parse_qs(publish["body"])
    assert (form["Action"], form["PhoneNumber"]) == (["Publish"], [TO])
    assert attributes(form) == {
        "AWS.SNS.SMS.SMSType": ("String", "Transactional"),
        "AWS.SNS.SMS.SenderID": ("String", "ACME"),
        "AWS.SNS.SMS.MaxPrice": ("Number", "0.50"),
    }
    assert "/us-east-1/sns/aws4_request" in publish["headers"]["Authorization"]
    assert (receipt.segments, receipt.encoding) == (1, "gsm-7")


async def test_the_sdks_debug_logs_show_neither_the_number_nor_the_code(
    moto: MotoServer, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    driver = sns(moto.url)
    await driver.send(message())
    await driver.close()
    assert moto.models("sns", "SMS")
    assert TO not in caplog.text
    assert CODE not in caplog.text


async def test_many_sms_go_out_at_once_through_one_client(moto: MotoServer) -> None:
    driver = sns(moto.url)
    receipts = await asyncio.gather(*(driver.send(message(to=f"+1415555{n:04d}"))
                                      for n in range(20)))
    await driver.close()
    kept = moto.models("sns", "SMS")
    assert sorted(s["message_id"] for s in kept) == sorted(r.provider_id for r in receipts)
    assert {s["phone_number"] for s in kept} == {f"+1415555{n:04d}" for n in range(20)}


async def test_a_number_sns_finds_invalid_is_permanent_and_not_quoted(
    moto: MotoServer,
) -> None:
    driver = sns(moto.url)
    with pytest.raises(PermanentDeliveryError) as raised:
        await driver.send(message(to="+0123"))
    await driver.close()
    assert raised.value.provider_code == "InvalidParameter"
    assert "0123" not in str(raised.value)
    assert moto.models("sns", "SMS") == []


def sns_api(call: Call) -> Reply:
    """SNS as it answers Publish: SigV4 checked, a form body, XML answers."""
    if not signed_by_us(call, "sns"):
        return query_error(403, "InvalidClientTokenId",
                           "The security token included in the request is invalid.")
    form = {k: v[-1] for k, v in parse_qs(call.body.decode()).items()}
    if form.get("Action") != "Publish":
        return query_error(400, "InvalidAction", "unknown action")
    to = form.get("PhoneNumber", "")
    errors = {BUSY: (429, "Throttled", "Rate exceeded"),
              DOWN: (500, "InternalError", "Internal error"),
              DENIED: (403, "AuthorizationError", "not authorized to perform SNS:Publish"),
              OPTED_OUT: (400, "OptedOut", f"Phone number {to} is opted out")}
    if to in errors:
        return query_error(*errors[to])
    body = ('<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult>'
            "<MessageId>b3f1c0de-0000-4000-8000-000000000001</MessageId></PublishResult>"
            "<ResponseMetadata><RequestId>req-1</RequestId></ResponseMetadata>"
            "</PublishResponse>")
    return Reply(200, body.encode(), {"Content-Type": "text/xml"},
                 delay=2.0 if to == HANGS else 0.0)


@pytest.mark.usefixtures("aws_credentials")
@pytest.mark.parametrize(("to", "error", "code"), [
    (BUSY, TemporaryDeliveryError, "Throttled"),
    (DOWN, TemporaryDeliveryError, "InternalError"),
    (DENIED, BrokenDriverError, "AuthorizationError"),
    (OPTED_OUT, PermanentDeliveryError, "OptedOut"),
])
async def test_sns_errors_map_to_outcomes(stand_in: StartStandIn, to: str,
                                          error: type[Exception], code: str) -> None:
    server = stand_in(sns_api)
    driver = sns(server.url)
    with pytest.raises(error) as raised:
        await driver.send(message(to=to))
    await driver.close()
    assert type(raised.value) is error
    assert getattr(raised.value, "provider_code", None) == code
    assert to not in str(raised.value)
    [call] = server.calls
    assert parse_qs(call.body.decode())["PhoneNumber"] == [to]


@pytest.mark.usefixtures("aws_credentials")
async def test_the_stand_in_takes_a_publish_signed_with_the_chains_credentials(
    stand_in: StartStandIn,
) -> None:
    driver = sns(stand_in(sns_api).url)
    receipt = await driver.send(message())
    await driver.close()
    assert receipt.provider_id == "b3f1c0de-0000-4000-8000-000000000001"


async def test_credentials_aws_refuses_mean_a_broken_driver(
    stand_in: StartStandIn, aws_credentials: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    driver = sns(stand_in(sns_api).url)
    with pytest.raises(BrokenDriverError) as raised:
        await driver.send(message())
    await driver.close()
    assert raised.value.provider_code == "InvalidClientTokenId"
    assert "not-the-secret" not in str(raised.value)


async def test_no_credentials_in_the_chain_mean_a_broken_driver(
    stand_in: StartStandIn, aws_credentials: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    server = stand_in(sns_api)
    driver = sns(server.url)
    with pytest.raises(BrokenDriverError):
        await driver.send(message())
    await driver.close()
    assert server.calls == []


@pytest.mark.usefixtures("aws_credentials")
async def test_a_hang_past_the_timeout_is_an_unknown_outcome(stand_in: StartStandIn) -> None:
    driver = sns(stand_in(sns_api).url, "&timeout=0.5")
    with pytest.raises(UnknownOutcomeError):
        await driver.send(message(to=HANGS))
    await driver.close()


@pytest.mark.usefixtures("aws_credentials")
async def test_a_refused_connection_is_temporary() -> None:
    driver = sns("http://127.0.0.1:9")
    with pytest.raises(TemporaryDeliveryError) as raised:
        await driver.send(message())
    await driver.close()
    assert not isinstance(raised.value, UnknownOutcomeError)


async def test_an_email_is_refused_as_permanent() -> None:
    driver = sns("http://127.0.0.1:9")
    with pytest.raises(PermanentDeliveryError):
        await driver.send(email_message())
    await driver.close()


@pytest.mark.parametrize("url", [
    "sns://KEY:SECRET@?region=us-east-1", "sns://somewhere?region=us-east-1",
    "sns://?region=us-east-1&sms_type=Bulk", "sns://?region=us-east-1&sender_id=TOOLONGSENDER",
    "sns://?region=us-east-1&sender_id=123456", "sns://?region=us-east-1&sender_id=AC ME",
    "sns://?region=us-east-1&max_price=free", "sns://?region=us-east-1&max_price=-1",
    "sns://?region=us-east-1&colour=red", "sns://?region=us east",
    "sns://?region=us-east-1&endpoint_url=ftp://x", "sns://?region=us-east-1&timeout=0",
])
def test_a_bad_sns_url_is_refused_without_showing_a_secret(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_driver(url, context())
    assert "SECRET" not in str(raised.value)


def test_a_region_comes_from_the_url_or_the_aws_chain_and_is_required(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigurationError, match="region"):
        open_driver("sns://?sender_id=ACME", context())
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert open_driver("sns://?sender_id=ACME", context()).name == "sns"


def test_the_driver_shows_its_url_and_holds_no_secret() -> None:
    url = "sns://?region=eu-west-1&sender_id=ACME&sms_type=promotional"
    driver = open_driver(url, context())
    assert driver.url() == driver.url(privacy=False) == url
    assert (driver.name, driver.channels) == ("sns", frozenset({"sms"}))
