"""The AWS End User Messaging SMS driver (``pinpoint-sms-voice-v2``) against a local
stand-in speaking that API's JSON 1.0 protocol: moto has no ``pinpoint-sms-voice-v2``
at all (only the older ``pinpoint``), so the AWS SDK is pointed at the stand-in through
``endpoint_url``. The stand-in checks SigV4 for ``sms-voice`` as AWS does (recomputed
with botocore's signer), reads the ``X-Amz-Target`` operation and the JSON body, and
answers successes and the documented errors with their ``Reason``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from otpgate.clock import FrozenClock
from otpgate.drivers import open_driver
from otpgate.drivers.aws_sms import AwsSmsDriver
from otpgate.errors import (
    BrokenDriverError,
    ConfigurationError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    UnknownOutcomeError,
)
from tests.providers.aws import REGION, json_error, signed_by_us
from tests.providers.conftest import CODE, TO, context, email_message, message
from tests.providers.stand_in import Call, Handler, Reply, StandIn

pytestmark = pytest.mark.usefixtures("aws_credentials")
StartStandIn = Callable[[Handler], StandIn]
POOL = "pool-0123456789abcdef0123456789abcdef"
ERRORS: dict[str, tuple[int, str, str | None]] = {
    "+14155550110": (400, "ThrottlingException", None),
    "+14155550111": (500, "InternalServerException", None),
    "+14155550112": (402, "ServiceQuotaExceededException", "DAILY_DESTINATION_CALL_LIMIT"),
    "+14155550113": (402, "ServiceQuotaExceededException",
                     "MONTHLY_SPEND_LIMIT_REACHED_FOR_TEXT"),
    "+14155550114": (400, "ValidationException", "INVALID_PARAMETER"),
    "+14155550115": (400, "ValidationException", "DESTINATION_COUNTRY_BLOCKED"),
    "+14155550116": (409, "ConflictException", "DESTINATION_PHONE_NUMBER_OPTED_OUT"),
    "+14155550117": (409, "ConflictException", "DESTINATION_PHONE_NUMBER_NOT_VERIFIED"),
    "+14155550118": (409, "ConflictException", "RESOURCE_NOT_ACTIVE"),
    "+14155550119": (404, "ResourceNotFoundException", None),
    "+14155550120": (403, "AccessDeniedException", "ACCOUNT_DISABLED"),
}
HANGS = "+14155550121"


def sms_voice_api(call: Call) -> Reply:
    """End User Messaging SMS as it answers SendTextMessage (JSON 1.0 over POST /)."""
    if not signed_by_us(call, "sms-voice"):
        return json_error(400, "UnrecognizedClientException",
                          "The security token included in the request is invalid.")
    if (call.path, call.headers.get("x-amz-target")) != (
            "/", "PinpointSMSVoiceV2.SendTextMessage"):
        return json_error(400, "UnknownOperationException", "unknown operation")
    if call.headers.get("content-type") != "application/x-amz-json-1.0":
        return json_error(400, "SerializationException", "not JSON 1.0")
    body = call.json()
    to = body.get("DestinationPhoneNumber", "")
    if to in ERRORS:
        status, code, reason = ERRORS[to]
        extra = {"Reason": reason} if reason else {}
        return json_error(status, code, f"cannot send to {to}", **extra)
    return Reply.json(200, {"MessageId": "8b3e1c2d-aws-sms-id"},
                      delay=2.0 if to == HANGS else 0.0)


def aws_sms(server: StandIn, query: str = f"&origination={POOL}",
            clock: FrozenClock | None = None) -> AwsSmsDriver:
    ctx = context()
    if clock is not None:
        ctx = dataclasses.replace(ctx, clock=clock)
    driver = open_driver(f"aws-sms://?region={REGION}&endpoint_url={server.url}{query}", ctx)
    assert isinstance(driver, AwsSmsDriver)
    return driver


async def test_a_text_message_is_sent_as_the_api_expects_it(stand_in: StartStandIn) -> None:
    server = stand_in(sms_voice_api)
    clock = FrozenClock(1_800_000_000.0)
    driver = aws_sms(server, f"&origination={POOL}&configuration_set=otp&max_price=0.50",
                     clock=clock)
    receipt = await driver.send(message())  # the code expires 300 s from the clock's now
    await driver.close()
    assert (receipt.provider_id, receipt.segments, receipt.encoding) == (
        "8b3e1c2d-aws-sms-id", 1, "gsm-7")
    [call] = server.calls
    assert signed_by_us(call, "sms-voice")
    body = call.json()
    assert body["DestinationPhoneNumber"] == TO
    assert body["OriginationIdentity"] == POOL
    assert body["MessageType"] == "TRANSACTIONAL"
    assert CODE in body["MessageBody"]
    assert body["TimeToLive"] == 300
    assert (body["ConfigurationSetName"], body["MaxPrice"]) == ("otp", "0.50")


async def test_without_an_origination_aws_picks_one_and_the_ttl_stays_in_bounds(
    stand_in: StartStandIn,
) -> None:
    server = stand_in(sms_voice_api)
    clock = FrozenClock(1_800_000_299.0)  # one second left: AWS takes at least five
    driver = aws_sms(server, "", clock=clock)
    await driver.send(message())
    await driver.close()
    body = server.calls[0].json()
    assert "OriginationIdentity" not in body
    assert "ConfigurationSetName" not in body
    assert body["TimeToLive"] == 5


@pytest.mark.parametrize(("to", "error", "code"), [
    ("+14155550110", TemporaryDeliveryError, "ThrottlingException"),
    ("+14155550111", TemporaryDeliveryError, "InternalServerException"),
    ("+14155550112", TemporaryDeliveryError,
     "ServiceQuotaExceededException.DAILY_DESTINATION_CALL_LIMIT"),
    ("+14155550113", BrokenDriverError,
     "ServiceQuotaExceededException.MONTHLY_SPEND_LIMIT_REACHED_FOR_TEXT"),
    ("+14155550114", PermanentDeliveryError, "ValidationException.INVALID_PARAMETER"),
    ("+14155550115", PermanentDeliveryError, "ValidationException.DESTINATION_COUNTRY_BLOCKED"),
    ("+14155550116", PermanentDeliveryError,
     "ConflictException.DESTINATION_PHONE_NUMBER_OPTED_OUT"),
    ("+14155550117", PermanentDeliveryError,
     "ConflictException.DESTINATION_PHONE_NUMBER_NOT_VERIFIED"),
    ("+14155550118", BrokenDriverError, "ConflictException.RESOURCE_NOT_ACTIVE"),
    ("+14155550119", BrokenDriverError, "ResourceNotFoundException"),
    ("+14155550120", BrokenDriverError, "AccessDeniedException.ACCOUNT_DISABLED"),
])
async def test_end_user_messaging_errors_map_to_outcomes_by_code_and_reason(
    stand_in: StartStandIn, to: str, error: type[Exception], code: str,
) -> None:
    driver = aws_sms(stand_in(sms_voice_api))
    with pytest.raises(error) as raised:
        await driver.send(message(to=to))
    await driver.close()
    assert type(raised.value) is error
    assert getattr(raised.value, "provider_code", None) == code
    assert to not in str(raised.value)


async def test_credentials_aws_refuses_mean_a_broken_driver(
    stand_in: StartStandIn, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    driver = aws_sms(stand_in(sms_voice_api))
    with pytest.raises(BrokenDriverError) as raised:
        await driver.send(message())
    await driver.close()
    assert raised.value.provider_code == "UnrecognizedClientException"


async def test_a_hang_past_the_timeout_is_an_unknown_outcome(stand_in: StartStandIn) -> None:
    driver = aws_sms(stand_in(sms_voice_api), "&timeout=0.5")
    with pytest.raises(UnknownOutcomeError):
        await driver.send(message(to=HANGS))
    await driver.close()


async def test_a_refused_connection_is_temporary() -> None:
    driver = open_driver("aws-sms://?region=us-east-1&endpoint_url=http://127.0.0.1:9",
                         context())
    with pytest.raises(TemporaryDeliveryError) as raised:
        await driver.send(message())
    await driver.close()
    assert not isinstance(raised.value, UnknownOutcomeError)


async def test_an_email_is_refused_as_permanent(stand_in: StartStandIn) -> None:
    server = stand_in(sms_voice_api)
    driver = aws_sms(server)
    with pytest.raises(PermanentDeliveryError):
        await driver.send(email_message())
    await driver.close()
    assert server.calls == []


@pytest.mark.parametrize("url", [
    "aws-sms://KEY:SECRET@?region=us-east-1", "aws-sms://+15550001111?region=us-east-1",
    "aws-sms://?region=us-east-1&max_price=lots", "aws-sms://?region=us-east-1&colour=red",
    "aws-sms://?region=us-east-1&timeout=500",
])
def test_a_bad_aws_sms_url_is_refused_without_showing_a_secret(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_driver(url, context())
    assert "SECRET" not in str(raised.value)


def test_the_driver_is_named_after_its_scheme_and_declares_sms_only() -> None:
    driver = open_driver(f"aws-sms://?region=us-east-1&origination={POOL}", context())
    assert (driver.name, driver.channels) == ("aws-sms", frozenset({"sms"}))
    assert driver.url() == f"aws-sms://?region=us-east-1&origination={POOL}"
