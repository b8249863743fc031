"""``ses://`` — e-mail through Amazon SES v2 ``SendEmail`` (aiobotocore; ``pip install
'otpgate[aws]'``).

Credentials: the standard AWS chain (see ``otpgate.drivers.aws``) of an identity allowed
``ses:SendEmail`` on the sender's identity. The sender's domain (or address) must be a
verified SES identity in the region, and the account out of the SES sandbox — in the
sandbox, SES takes only verified recipients::

    ses://?region=eu-west-1&from=no-reply@acme.example
    ses://?region=us-east-1&from=Acme%20%3Cno-reply@acme.example%3E&configuration_set=otp
    ses://?region=us-east-1&from=no-reply@acme.example&endpoint_url=http://127.0.0.1:5000

Options: ``from=`` (required: an address, or ``Name <address>``), ``configuration_set=``
(SES's configuration set, e.g. for its event destinations), and ``region=``,
``endpoint_url=``, ``timeout=``.

Call: ``SendEmail(FromEmailAddress, Destination.ToAddresses=[to], Content.Simple={Subject,
Body.Text, Body.Html, Headers=[Auto-Submitted: auto-generated]})``, all UTF-8; the
answer's ``MessageId`` is kept. Receipts: none — SES reports deliveries and bounces
through a configuration set's event destinations (SNS, EventBridge, Firehose), not a
per-message callback, and otpgate does not subscribe to them.

Answers → outcomes (SES API v2 reference, ``SendEmail`` errors; then the table shared by
every AWS driver):

- temporary: ``TooManyRequestsException`` (429), ``LimitExceededException`` (the sending
  quota or rate).
- permanent: ``MessageRejected`` (the message's content; in the sandbox, an unverified
  recipient), ``BadRequestException`` (invalid input).
- broken: ``AccountSuspendedException``, ``SendingPausedException``,
  ``MailFromDomainNotVerifiedException``, ``NotFoundException`` (no such configuration
  set).
"""

from __future__ import annotations

import email.utils
from typing import TYPE_CHECKING, Final

from otpgate.drivers import aws
from otpgate.drivers.base import Driver, DriverContext, Message, SendReceipt
from otpgate.errors import ConfigurationError, PermanentDeliveryError
from otpgate.urls import Url

if TYPE_CHECKING:
    from types_aiobotocore_sesv2.client import SESV2Client
    from types_aiobotocore_sesv2.type_defs import BodyTypeDef, SendEmailRequestTypeDef

CHANNELS: Final = frozenset({"email"})
_OPTIONS = frozenset({"from", "configuration_set"})
_USAGE = "ses://?region=REGION&from=ADDRESS[&configuration_set=NAME] (see the driver table)"
_CODES: aws.Codes = {
    **dict.fromkeys(("TooManyRequestsException", "LimitExceededException"), "temporary"),
    **dict.fromkeys(("MessageRejected", "BadRequestException"), "permanent"),
    **dict.fromkeys(("AccountSuspendedException", "SendingPausedException",
                     "MailFromDomainNotVerifiedException", "NotFoundException"), "broken"),
}


class SesDriver:
    """Sends e-mail through SES v2 from one verified sender."""

    channels = CHANNELS

    def __init__(self, *, name: str, client: aws.Lazy[SESV2Client], sender: str,
                 configuration_set: str | None, raw_url: Url) -> None:
        self.name = name
        self._client = client
        self._sender = sender
        self._configuration_set = configuration_set
        self._raw = raw_url

    async def send(self, message: Message) -> SendReceipt:
        if message.channel != "email":
            raise PermanentDeliveryError(f"{self.name} sends e-mail only")
        request = self._request(message)
        answer = await aws.call(self.name, "SendEmail", self._client,
                                lambda client: client.send_email(**request), _CODES)
        return SendReceipt(answer["MessageId"])

    def _request(self, message: Message) -> SendEmailRequestTypeDef:
        body: BodyTypeDef = {"Text": {"Data": message.body, "Charset": "UTF-8"}}
        if message.html is not None:
            body["Html"] = {"Data": message.html, "Charset": "UTF-8"}
        request: SendEmailRequestTypeDef = {
            "FromEmailAddress": self._sender,
            "Destination": {"ToAddresses": [message.to]},
            "Content": {"Simple": {
                "Subject": {"Data": message.subject or "", "Charset": "UTF-8"},
                "Body": body,
                "Headers": [{"Name": "Auto-Submitted", "Value": "auto-generated"}],
            }},
        }
        if self._configuration_set:
            request["ConfigurationSetName"] = self._configuration_set
        return request

    def url(self, privacy: bool = True) -> str:
        return self._raw.masked if privacy else self._raw.raw

    async def close(self) -> None:
        await self._client.close()


def from_url(url: Url, ctx: DriverContext) -> Driver:
    options = aws.aws_options(url, _OPTIONS, _USAGE)
    sender = options.get("from", "")
    _, address = email.utils.parseaddr(sender)
    local, at, domain = address.rpartition("@")
    if not (local and at and "." in domain):
        raise ConfigurationError(f"the ses driver needs from= as an address; {_USAGE}")
    session = aws.session(options, "ses")
    settings = aws.config(options)
    client: aws.Lazy[SESV2Client] = aws.Lazy(lambda: session.create_client(
        "sesv2", region_name=options.get("region"),
        endpoint_url=options.get("endpoint_url"), config=settings))
    return SesDriver(name=ctx.name, client=client, sender=sender,
                     configuration_set=options.get("configuration_set"), raw_url=url)
