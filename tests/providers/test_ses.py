"""The SES driver against moto in server mode (the e-mail moto kept, the request its
recorder saw, MessageRejected for an unverified sender), and against a local stand-in
speaking SES v2's REST-JSON protocol for the errors moto never gives; the stand-in checks
SigV4 as AWS does."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from aiobotocore.session import get_session

from otpgate.drivers import open_driver
from otpgate.drivers.ses import SesDriver
from otpgate.errors import (
    BrokenDriverError,
    ConfigurationError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    UnknownOutcomeError,
)
from tests.providers.aws import REGION, MotoServer, json_error, signed_by_us
from tests.providers.conftest import CODE, EMAIL, context, email_message, message
from tests.providers.stand_in import Call, Handler, Reply, StandIn

SENDER = "no-reply@acme.example"
StartStandIn = Callable[[Handler], StandIn]


def ses(endpoint: str, query: str = "", sender: str = SENDER) -> SesDriver:
    driver = open_driver(f"ses://?region={REGION}&from={sender}&endpoint_url={endpoint}"
                         f"{query}", context())
    assert isinstance(driver, SesDriver)
    return driver


async def verify_domain(moto: MotoServer, domain: str = "acme.example") -> None:
    async with get_session().create_client("sesv2", region_name=REGION,
                                           endpoint_url=moto.url) as client:
        await client.create_email_identity(EmailIdentity=domain)


async def test_an_email_is_sent_with_its_text_and_html_parts(moto: MotoServer) -> None:
    await verify_domain(moto)
    driver = ses(moto.url, sender="Acme%20%3Cno-reply@acme.example%3E")
    receipt = await driver.send(email_message())
    await driver.close()
    [kept] = moto.models("ses", "Message")
    assert (kept["id"], kept["source"]) == (receipt.provider_id, f"Acme <{SENDER}>")
    assert kept["destinations"] == {"ToAddresses": [EMAIL]}
    assert kept["subject"] == "Your Acme verification code"
    [sent] = moto.requests("/v2/email/outbound-emails")
    request = json.loads(sent["body"])
    assert request["FromEmailAddress"] == f"Acme <{SENDER}>"
    assert request["Destination"] == {"ToAddresses": [EMAIL]}
    simple = request["Content"]["Simple"]
    assert simple["Subject"] == {"Data": "Your Acme verification code", "Charset": "UTF-8"}
    assert f"verification code is {CODE}." in simple["Body"]["Text"]["Data"]
    assert f"<strong>{CODE}</strong>" in simple["Body"]["Html"]["Data"]
    assert simple["Body"]["Html"]["Charset"] == "UTF-8"
    assert simple["Headers"] == [{"Name": "Auto-Submitted", "Value": "auto-generated"}]
    assert "ConfigurationSetName" not in request
    assert f"/{REGION}/ses/aws4_request" in sent["headers"]["Authorization"]


async def test_the_configuration_set_goes_with_each_message(moto: MotoServer) -> None:
    await verify_domain(moto)
    driver = ses(moto.url, "&configuration_set=otp-events")
    await driver.send(email_message())
    await driver.close()
    [sent] = moto.requests("/v2/email/outbound-emails")
    assert json.loads(sent["body"])["ConfigurationSetName"] == "otp-events"


async def test_a_sender_ses_has_not_verified_is_rejected_as_permanent(
    moto: MotoServer,
) -> None:
    driver = ses(moto.url)
    with pytest.raises(PermanentDeliveryError) as raised:
        await driver.send(email_message())
    await driver.close()
    assert raised.value.provider_code == "MessageRejected"
    assert "acme.example" not in str(raised.value)
    assert EMAIL not in str(raised.value)
    assert moto.models("ses", "Message") == []


ERRORS = {
    "busy": (429, "TooManyRequestsException"), "quota": (400, "LimitExceededException"),
    "suspended": (400, "AccountSuspendedException"), "paused": (400, "SendingPausedException"),
    "mailfrom": (400, "MailFromDomainNotVerifiedException"),
    "noset": (404, "NotFoundException"), "bad": (400, "BadRequestException"),
    "rejected": (400, "MessageRejected"), "down": (503, "ServiceUnavailable"),
}


def ses_api(call: Call) -> Reply:
    """SES v2 as it answers SendEmail: SigV4 checked, JSON in and out."""
    if not signed_by_us(call, "ses"):
        return json_error(403, "UnrecognizedClientException", "The security token is invalid")
    if (call.method, call.path) != ("POST", "/v2/email/outbound-emails"):
        return json_error(404, "NotFoundException", "no such resource")
    to = call.json()["Destination"]["ToAddresses"][0]
    if (error := ERRORS.get(to.partition("@")[0])) is not None:
        return json_error(*error, f"cannot send to {to}")
    return Reply.json(200, {"MessageId": "0100018c-ses-id"},
                      delay=2.0 if to.startswith("hang@") else 0.0)


@pytest.mark.usefixtures("aws_credentials")
@pytest.mark.parametrize(("local", "error"), [
    ("busy", TemporaryDeliveryError), ("quota", TemporaryDeliveryError),
    ("down", TemporaryDeliveryError), ("suspended", BrokenDriverError),
    ("paused", BrokenDriverError), ("mailfrom", BrokenDriverError),
    ("noset", BrokenDriverError), ("bad", PermanentDeliveryError),
    ("rejected", PermanentDeliveryError),
])
async def test_ses_errors_map_to_outcomes(stand_in: StartStandIn, local: str,
                                          error: type[Exception]) -> None:
    driver = ses(stand_in(ses_api).url)
    with pytest.raises(error) as raised:
        await driver.send(email_message(to=f"{local}@example.com"))
    await driver.close()
    assert type(raised.value) is error
    assert getattr(raised.value, "provider_code", None) == ERRORS[local][1]
    assert f"{local}@" not in str(raised.value)


@pytest.mark.usefixtures("aws_credentials")
async def test_the_stand_in_takes_a_send_signed_with_the_chains_credentials(
    stand_in: StartStandIn,
) -> None:
    driver = ses(stand_in(ses_api).url)
    assert (await driver.send(email_message())).provider_id == "0100018c-ses-id"
    await driver.close()


async def test_credentials_aws_refuses_mean_a_broken_driver(
    stand_in: StartStandIn, aws_credentials: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    driver = ses(stand_in(ses_api).url)
    with pytest.raises(BrokenDriverError) as raised:
        await driver.send(email_message())
    await driver.close()
    assert raised.value.provider_code == "UnrecognizedClientException"


@pytest.mark.usefixtures("aws_credentials")
async def test_a_hang_past_the_timeout_is_an_unknown_outcome(stand_in: StartStandIn) -> None:
    driver = ses(stand_in(ses_api).url, "&timeout=0.5")
    with pytest.raises(UnknownOutcomeError):
        await driver.send(email_message(to="hang@example.com"))
    await driver.close()


async def test_an_sms_is_refused_as_permanent() -> None:
    driver = ses("http://127.0.0.1:9")
    with pytest.raises(PermanentDeliveryError):
        await driver.send(message())
    await driver.close()


@pytest.mark.parametrize("url", [
    "ses://?region=us-east-1", "ses://?region=us-east-1&from=nobody",
    "ses://KEY:SECRET@?region=us-east-1&from=a@b.example",
    "ses://?region=us-east-1&from=a@b.example&colour=red",
    "ses://?region=us-east-1&from=a@b.example&endpoint_url=ftp://x",
])
def test_a_bad_ses_url_is_refused_without_showing_a_secret(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_driver(url, context())
    assert "SECRET" not in str(raised.value)


def test_the_driver_is_named_and_declares_email_only() -> None:
    driver = open_driver(f"ses://?region=eu-west-1&from={SENDER}&name=ses-eu", context())
    assert (driver.name, driver.channels) == ("ses-eu", frozenset({"email"}))
    assert driver.url() == f"ses://?region=eu-west-1&from={SENDER}&name=ses-eu"
