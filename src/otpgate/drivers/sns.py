"""``sns://`` — SMS through Amazon SNS ``Publish`` to a phone number (aiobotocore;
``pip install 'otpgate[aws]'``).

Credentials: the standard AWS chain (see ``otpgate.drivers.aws``) of an identity allowed
``sns:Publish``. The account must be out of the SMS sandbox (or the numbers verified in
it), with a spend limit that covers the traffic; sender ids and origination numbers are
registered per country in AWS End User Messaging::

    sns://?region=us-east-1
    sns://?region=eu-west-1&sender_id=ACME&sms_type=Transactional&max_price=0.50
    sns://?region=us-east-1&endpoint_url=http://127.0.0.1:5000      # a local stand-in

Options: ``sender_id=`` (1–11 letters and digits, at least one letter), ``sms_type=``
(``Transactional`` — the default, for codes — or ``Promotional``), ``max_price=`` (USD
per message), and ``region=``, ``endpoint_url=``, ``timeout=``.

Call: ``Publish(PhoneNumber=+E.164, Message=text, MessageAttributes={
AWS.SNS.SMS.SMSType, AWS.SNS.SMS.SenderID, AWS.SNS.SMS.MaxPrice})``; the answer's
``MessageId`` is kept. Receipts: none — SNS reports SMS deliveries only to CloudWatch
Logs (delivery status logging), not to a callback URL.

Answers → outcomes (SNS API reference, ``Publish`` errors; then the table shared by every
AWS driver):

- temporary: ``Throttled`` (429), ``InternalError`` (500), ``KMSThrottling``.
- permanent: ``InvalidParameter``, ``ParameterValueInvalid``, ``ValidationException``
  (an invalid or unsupported number, a text too long), ``OptedOut``,
  ``EndpointDisabled``, ``NotFound``.
- broken: ``AuthorizationError`` (403), ``InvalidSecurity``, ``KMSDisabled``,
  ``KMSInvalidState``, ``KMSNotFound``, ``KMSOptInRequired``, ``KMSAccessDenied``,
  ``PlatformApplicationDisabled``.

``OptedOut`` means the number opted out of this account's SMS; SNS may also take a
``Publish`` to such a number and drop the message, which only its delivery log shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from otpgate.core.messages import segments
from otpgate.drivers import aws
from otpgate.drivers.base import Driver, DriverContext, Message, SendReceipt
from otpgate.errors import ConfigurationError, PermanentDeliveryError
from otpgate.urls import Url

if TYPE_CHECKING:
    from types_aiobotocore_sns.client import SNSClient

CHANNELS: Final = frozenset({"sms"})
_OPTIONS = frozenset({"sender_id", "sms_type", "max_price"})
_USAGE = ("sns://?region=REGION[&sender_id=ACME][&sms_type=Transactional|Promotional]"
          "[&max_price=0.50] (see the driver table)")
_CODES: aws.Codes = {
    **dict.fromkeys(("Throttled", "InternalError", "KMSThrottling"), "temporary"),
    **dict.fromkeys(("InvalidParameter", "ParameterValueInvalid", "ValidationException",
                     "OptedOut", "EndpointDisabled", "NotFound"), "permanent"),
    **dict.fromkeys(("AuthorizationError", "InvalidSecurity", "KMSDisabled",
                     "KMSInvalidState", "KMSNotFound", "KMSOptInRequired",
                     "KMSAccessDenied", "PlatformApplicationDisabled"), "broken"),
}
_SMS_TYPES = {"transactional": "Transactional", "promotional": "Promotional"}


class SnsDriver:
    """Publishes SMS through one AWS account and region."""

    channels = CHANNELS

    def __init__(self, *, name: str, client: aws.Lazy[SNSClient],
                 attributes: dict[str, Any], raw_url: Url) -> None:
        self.name = name
        self._client = client
        self._attributes = attributes
        self._raw = raw_url

    async def send(self, message: Message) -> SendReceipt:
        if message.channel != "sms":
            raise PermanentDeliveryError(f"{self.name} sends SMS only")
        answer = await aws.call(self.name, "Publish", self._client, lambda client: client.publish(
            PhoneNumber=message.to, Message=message.body,
            MessageAttributes=self._attributes), _CODES)
        encoding, parts = segments(message.body)
        return SendReceipt(answer["MessageId"], parts, encoding.value)

    def url(self, privacy: bool = True) -> str:
        return self._raw.masked if privacy else self._raw.raw

    async def close(self) -> None:
        await self._client.close()


def _attributes(options: dict[str, str]) -> dict[str, Any]:
    sms_type = _SMS_TYPES.get(options.get("sms_type", "transactional").lower())
    if sms_type is None:
        raise ConfigurationError("sns:// sms_type= is Transactional or Promotional")
    attributes: dict[str, Any] = {
        "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": sms_type}}
    if (sender := options.get("sender_id")) is not None:
        if not (sender.isascii() and sender.isalnum() and 1 <= len(sender) <= 11
                and any(c.isalpha() for c in sender)):
            raise ConfigurationError(
                "sns:// sender_id= is 1-11 letters and digits, at least one a letter")
        attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": sender}
    if (price := aws.price(options, "sns")) is not None:
        attributes["AWS.SNS.SMS.MaxPrice"] = {"DataType": "Number", "StringValue": price}
    return attributes


def from_url(url: Url, ctx: DriverContext) -> Driver:
    options = aws.aws_options(url, _OPTIONS, _USAGE)
    attributes = _attributes(options)
    session = aws.session(options, "sns")
    settings = aws.config(options)
    client: aws.Lazy[SNSClient] = aws.Lazy(lambda: session.create_client(
        "sns", region_name=options.get("region"), endpoint_url=options.get("endpoint_url"),
        config=settings))
    return SnsDriver(name=ctx.name, client=client, attributes=attributes, raw_url=url)
