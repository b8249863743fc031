"""Ory Kratos' HTTP courier, as its default request template renders a message.

Kratos (``courier/http_channel.go``) renders each message with the Jsonnet template of
``courier.channels[].request_config.body``; the default (``httpRequestConfig`` in
``embedx/config.schema.json``) gives ``{"recipient", "template_type", "to",
"recovery_code", "recovery_url", "verification_url", "verification_code", "subject",
"body"}``. ``body`` is the text Kratos' own templates wrote (``Your login code is: …``):
otpgate sends it as it is — to a phone number by SMS, to an e-mail address by e-mail with
its ``subject`` — so the operator's Kratos templates stay in force. The code, where the
body names it in a field of its own, travels sealed with the text. Other fields a custom
template adds are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

from otpgate.core import codes
from otpgate.errors import InvalidRequest

_TEMPLATE = re.compile(r"[a-z0-9_]{1,48}", re.ASCII)


class _Body(msgspec.Struct):
    recipient: str | None = None
    template_type: str | None = None
    body: str | None = None
    subject: str | None = None
    recovery_code: str | None = None
    verification_code: str | None = None


@dataclass(frozen=True, slots=True)
class CourierMessage:
    recipient: str
    body: str
    subject: str | None
    code: str | None
    template_type: str | None

    @property
    def purpose(self) -> str:
        """``kratos.<template type>`` (``kratos.login_code_valid``, …), or ``kratos``."""
        kind = self.template_type
        return f"kratos.{kind}" if kind and _TEMPLATE.fullmatch(kind) else "kratos"


def parse(raw: bytes) -> CourierMessage:
    """The message a courier request carries; ``InvalidRequest`` when it is none."""
    try:
        found = msgspec.json.decode(raw, type=_Body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise InvalidRequest("the body is not Kratos' courier JSON (recipient, body, ...)",
                             "body") from None
    if not found.recipient:
        raise InvalidRequest("the courier message names no recipient", "recipient")
    if not found.body:
        raise InvalidRequest("the courier message has no body", "body")
    code = next((c for c in (found.verification_code, found.recovery_code)
                 if c and _is_code(c)), None)
    return CourierMessage(recipient=found.recipient, body=found.body,
                          subject=found.subject or None, code=code,
                          template_type=found.template_type)


def _is_code(value: str) -> bool:
    try:
        codes.check_submitted(value)
    except InvalidRequest:
        return False
    return True
