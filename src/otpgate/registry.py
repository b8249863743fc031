"""The one registry of URL schemes: which module opens each backend and driver, and which
extra brings its dependencies. Modules are imported only when a URL names them.

It knows schemes and extras, nothing of what they open: ``otpgate.backends`` and
``otpgate.drivers`` call ``load`` and type what they get.
"""

from __future__ import annotations

import importlib
from typing import Any

from otpgate.errors import ConfigurationError
from otpgate.urls import mask

Table = dict[str, tuple[str, str | None]]
"""scheme -> ("module:callable", the extra that brings its dependencies)"""

BACKENDS: Table = {
    "memory": ("otpgate.backends:open_memory", None),
    "sqlite": ("otpgate.backends:open_sqlite", None),
    "dynamodb": ("otpgate.backends:open_dynamodb", "aws"),
}
DRIVERS: Table = {
    "capture": ("otpgate.drivers.capture:from_url", None),
    "console": ("otpgate.drivers.console:from_url", None),
    "twilio": ("otpgate.drivers.twilio:from_url", None),
    "vonage": ("otpgate.drivers.vonage:from_url", None),
    "plivo": ("otpgate.drivers.plivo:from_url", None),
    "telnyx": ("otpgate.drivers.telnyx:from_url", None),
    "sinch": ("otpgate.drivers.sinch:from_url", None),
    "infobip": ("otpgate.drivers.infobip:from_url", None),
    "clickatell": ("otpgate.drivers.clickatell:from_url", None),
    "webhook+https": ("otpgate.drivers.webhook:from_url", None),
    "webhook+http": ("otpgate.drivers.webhook:from_url", None),
    "smtp": ("otpgate.drivers.smtp:from_url", "smtp"),
    "sns": ("otpgate.drivers.sns:from_url", "aws"),
    "ses": ("otpgate.drivers.ses:from_url", "aws"),
    "aws-sms": ("otpgate.drivers.aws_sms:from_url", "aws"),
}


def load(table: Table, url: str, family: str) -> Any:
    """The callable registered for ``url``'s scheme; ``ConfigurationError`` naming the
    known schemes, or the extra to install, otherwise."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in table:
        known = ", ".join(sorted(table))
        raise ConfigurationError(f"unknown {family} scheme in {mask(url)!r}; known: {known}")
    target, extra = table[scheme]
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"; pip install 'otpgate[{extra}]'" if extra else ""
        raise ConfigurationError(f"{family} {scheme!r} cannot be loaded: {exc}{hint}") from None
    return getattr(module, attr)
