"""``aws-sms://`` — SMS through AWS End User Messaging SMS (the ``pinpoint-sms-voice-v2``
API) ``SendTextMessage`` (aiobotocore; ``pip install 'otpgate[aws]'``).

Credentials: the standard AWS chain (see ``otpgate.drivers.aws``) of an identity allowed
``sms-voice:SendTextMessage``. The origination identity — a phone number, sender id or
pool (its id or ARN), registered for the destination countries (10DLC, toll-free,
sender id registration) — must be set up in the End User Messaging SMS console, and the
account out of the SMS sandbox (or the destinations verified in it)::

    aws-sms://?region=us-east-1&origination=pool-0123456789abcdef
    aws-sms://?region=eu-west-1&origination=ACME&configuration_set=otp&max_price=0.50
    aws-sms://?region=us-east-1&origination=+15550001111&endpoint_url=http://127.0.0.1:5000

Options: ``origination=`` (``OriginationIdentity``; without it AWS picks one of the
account's), ``configuration_set=`` (for its event destinations), ``max_price=`` (USD per
message part), and ``region=``, ``endpoint_url=``, ``timeout=``.

Call: ``SendTextMessage(DestinationPhoneNumber=+E.164, OriginationIdentity, MessageBody,
MessageType=TRANSACTIONAL, TimeToLive=the seconds the code has left)`` — AWS stops trying
to hand the message on once the code has expired; the answer's ``MessageId`` is kept.
Receipts: none — End User Messaging reports deliveries through a configuration set's
event destinations (SNS, CloudWatch, Firehose), not a per-message callback.

Answers → outcomes (End User Messaging SMS API reference, ``SendTextMessage`` errors and
their ``Reason``; then the table shared by every AWS driver):

- temporary: ``ThrottlingException``, ``InternalServerException``,
  ``ServiceQuotaExceededException`` (daily limits).
- broken: ``ServiceQuotaExceededException.MONTHLY_SPEND_LIMIT_REACHED_FOR_TEXT``; other
  ``ConflictException`` reasons (the origination identity's state or type);
  ``ResourceNotFoundException`` (no such origination identity or configuration set);
  ``AccessDeniedException`` (``ACCOUNT_DISABLED``, ``INSUFFICIENT_ACCOUNT_REPUTATION``).
- permanent: ``ValidationException`` (``INVALID_PARAMETER``, ``CANNOT_PARSE``,
  ``DESTINATION_COUNTRY_BLOCKED``, ``INVALID_IDENTITY_FOR_DESTINATION_COUNTRY``,
  ``PRICE_OVER_THRESHOLD``, ...); ``ConflictException`` with the reason
  ``DESTINATION_PHONE_NUMBER_OPTED_OUT``, ``DESTINATION_PHONE_NUMBER_NOT_VERIFIED``,
  ``DESTINATION_COUNTRY_BLOCKED_BY_PROTECT_CONFIGURATION`` or
  ``DESTINATION_PHONE_NUMBER_BLOCKED_BY_PROTECT_NUMBER_OVERRIDE``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from otpgate.clock import Clock
from otpgate.core.messages import segments
from otpgate.drivers import aws
from otpgate.drivers.base import Driver, DriverContext, Message, SendReceipt
from otpgate.errors import PermanentDeliveryError
from otpgate.urls import Url

if TYPE_CHECKING:
    from types_aiobotocore_pinpoint_sms_voice_v2.client import PinpointSMSVoiceV2Client
    from types_aiobotocore_pinpoint_sms_voice_v2.type_defs import (
        SendTextMessageRequestTypeDef,
    )

CHANNELS: Final = frozenset({"sms"})
_OPTIONS = frozenset({"origination", "configuration_set", "max_price"})
_USAGE = ("aws-sms://?region=REGION&origination=IDENTITY[&configuration_set=NAME]"
          "[&max_price=0.50] (see the driver table)")
_TTL = (5, 259_200)
"""``TimeToLive`` bounds, in seconds."""
_NUMBER_REFUSED = ("DESTINATION_PHONE_NUMBER_OPTED_OUT", "DESTINATION_PHONE_NUMBER_NOT_VERIFIED",
                   "DESTINATION_COUNTRY_BLOCKED_BY_PROTECT_CONFIGURATION",
                   "DESTINATION_PHONE_NUMBER_BLOCKED_BY_PROTECT_NUMBER_OVERRIDE")
_CODES: aws.Codes = {
    **dict.fromkeys(("ThrottlingException", "InternalServerException",
                     "ServiceQuotaExceededException"), "temporary"),
    "ServiceQuotaExceededException.MONTHLY_SPEND_LIMIT_REACHED_FOR_TEXT": "broken",
    "ValidationException": "permanent",
    **dict.fromkeys((f"ConflictException.{reason}" for reason in _NUMBER_REFUSED),
                    "permanent"),
    **dict.fromkeys(("ConflictException", "ResourceNotFoundException",
                     "AccessDeniedException"), "broken"),
}


class AwsSmsDriver:
    """Sends SMS through AWS End User Messaging from one origination identity."""

    channels = CHANNELS

    def __init__(self, *, name: str, client: aws.Lazy[PinpointSMSVoiceV2Client],
                 origination: str | None, configuration_set: str | None,
                 max_price: str | None, clock: Clock, raw_url: Url) -> None:
        self.name = name
        self._client = client
        self._origination = origination
        self._configuration_set = configuration_set
        self._max_price = max_price
        self._clock = clock
        self._raw = raw_url

    async def send(self, message: Message) -> SendReceipt:
        if message.channel != "sms":
            raise PermanentDeliveryError(f"{self.name} sends SMS only")
        request = self._request(message)
        answer = await aws.call(self.name, "SendTextMessage", self._client,
                                lambda client: client.send_text_message(**request), _CODES)
        encoding, parts = segments(message.body)
        return SendReceipt(answer["MessageId"], parts, encoding.value)

    def _request(self, message: Message) -> SendTextMessageRequestTypeDef:
        left = math.ceil(message.expires_at - self._clock.now())
        request: SendTextMessageRequestTypeDef = {
            "DestinationPhoneNumber": message.to, "MessageBody": message.body,
            "MessageType": "TRANSACTIONAL", "TimeToLive": min(max(left, _TTL[0]), _TTL[1])}
        if self._origination:
            request["OriginationIdentity"] = self._origination
        if self._configuration_set:
            request["ConfigurationSetName"] = self._configuration_set
        if self._max_price:
            request["MaxPrice"] = self._max_price
        return request

    def url(self, privacy: bool = True) -> str:
        return self._raw.masked if privacy else self._raw.raw

    async def close(self) -> None:
        await self._client.close()


def from_url(url: Url, ctx: DriverContext) -> Driver:
    options = aws.aws_options(url, _OPTIONS, _USAGE)
    session = aws.session(options, "aws-sms")
    settings = aws.config(options)
    client: aws.Lazy[PinpointSMSVoiceV2Client] = aws.Lazy(lambda: session.create_client(
        "pinpoint-sms-voice-v2", region_name=options.get("region"),
        endpoint_url=options.get("endpoint_url"), config=settings))
    return AwsSmsDriver(
        name=ctx.name, client=client, origination=options.get("origination") or None,
        configuration_set=options.get("configuration_set") or None,
        max_price=aws.price(options, "aws-sms"), clock=ctx.clock, raw_url=url)
