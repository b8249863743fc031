"""What reading a provider's callback takes where the provider does not sign it: a secret
``token`` in the callback URL (Clickatell, Infobip's per-message webhooks, Sinch without
HMAC callbacks), and a JSON body read without trusting its shape.

The driver takes the secret as ``callback_token=`` in its URL, appends it as ``?token=…`` to
the callback URL it gives the provider (or the README tells the operator to set that URL in
the provider's portal), and compares the ``token`` of every callback with it in constant
time. A callback without it, or with another, is ``Forbidden``. The token is a secret: it
is masked wherever the driver's URL is shown (its option name holds ``token``).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from otpgate.drivers.base import ReceiptRequest
from otpgate.errors import ConfigurationError, Forbidden, InvalidRequest

OPTION = "callback_token"
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,256}", re.ASCII)


def token_of(options: Mapping[str, str]) -> str | None:
    """The ``callback_token=`` option: 16-256 URL-safe characters, or ``None``."""
    token = options.get(OPTION)
    if token is None:
        return None
    if not _TOKEN.fullmatch(token):
        raise ConfigurationError(
            f"{OPTION} must be 16-256 of A-Z, a-z, 0-9, '.', '_', '~' and '-'")
    return token


def with_token(receipt_url: str | None, token: str | None) -> str | None:
    """The callback URL to give the provider: ``receipt_url`` with ``?token=…``; ``None``
    without a public URL or a token (a callback that could not be verified is not asked
    for)."""
    if not receipt_url or not token:
        return None
    return f"{receipt_url}{'&' if '?' in receipt_url else '?'}token={token}"


def check_token(request: ReceiptRequest, token: str | None, provider: str) -> None:
    """``Forbidden`` unless the callback's ``token`` is the driver's."""
    if not token:
        raise Forbidden(f"{provider} takes no receipts without {OPTION}= in its URL")
    given = request.query.get("token", "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise Forbidden("the callback's token does not match")


def json_object(body: bytes, what: str) -> dict[str, Any]:
    """``body`` as a JSON object; ``InvalidRequest`` naming ``what`` otherwise."""
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise InvalidRequest(f"{what} is a JSON object") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} is a JSON object")
    return value
