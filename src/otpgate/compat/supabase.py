"""Supabase Auth's Send-SMS hook, as Supabase Auth builds and signs it.

Supabase Auth (``internal/hooks``) POSTs JSON ``{"metadata": {...}, "user": {...},
"sms": {"otp", "phone", "sms_type"}}`` and signs it as a Standard Webhook: ``webhook-id``
(a new one per attempt), ``webhook-timestamp`` and ``webhook-signature`` — one ``v1,…``
signature per configured secret, joined by ``", "`` — and gives up after 5 s. The phone is
``sms.phone``, else ``user.phone``, written as digits without ``+``. A hook answers
``{}``; a refusal is ``{"error": {"http_code", "message"}}``, which Supabase Auth hands to
its own caller (it reads the body of a 200 only).

``OTPGATE_SUPABASE_HOOK_SECRET`` holds the hook's secret as Supabase shows it
(``v1,whsec_<base64>``); several, comma-separated (or ``|``-separated, as Supabase's own
setting), while one is rotated out: a request passes when one of its signatures verifies
under one of them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from otpgate.errors import ConfigurationError, InvalidRequest, Unauthorized

TOLERANCE = 300.0
"""Seconds a request's timestamp may be away from now (Standard Webhooks' five minutes)."""
MIN_SECRET_BYTES = 16
_SIGNATURE = re.compile(r"v1,([A-Za-z0-9+/]+={0,2})", re.ASCII)
_ENCODER = msgspec.json.Encoder()
OK = b"{}"


class _Sms(msgspec.Struct):
    otp: str | None = None
    phone: str | None = None
    sms_type: str | None = None


class _User(msgspec.Struct):
    phone: str | None = None


class _Payload(msgspec.Struct):
    """The parts of the payload otpgate reads (Supabase sends more; it is ignored)."""

    sms: _Sms | None = None
    user: _User | None = None


@dataclass(frozen=True, slots=True)
class SendSms:
    """What the hook asks for: send ``otp`` to ``phone`` (E.164)."""

    phone: str
    otp: str
    sms_type: str | None

    @property
    def purpose(self) -> str:
        """``supabase``, or ``supabase.mfa`` and the like for the SMS of other flows."""
        kind = self.sms_type if self.sms_type and re.fullmatch(
            r"[a-z0-9_]{1,32}", self.sms_type) else None
        return f"supabase.{kind}" if kind else "supabase"


def parse_secrets(text: str) -> list[bytes]:
    """The keys of ``v1,whsec_…`` secrets, comma- or ``|``-separated;
    ``ConfigurationError`` for anything else."""
    keys = []
    for part in re.split(r"[,|]", text):
        part = part.strip()
        if part in ("", "v1"):
            continue
        keys.append(_key(part))
    if not keys:
        raise ConfigurationError("OTPGATE_SUPABASE_HOOK_SECRET holds no secret: give it as "
                                 "Supabase shows it, v1,whsec_…")
    return keys


def _key(secret: str) -> bytes:
    if not secret.startswith("whsec_"):
        raise ConfigurationError("OTPGATE_SUPABASE_HOOK_SECRET: each secret is v1,whsec_ "
                                 "followed by base64, as Supabase shows it")
    encoded = secret.removeprefix("whsec_").rstrip("=")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError("OTPGATE_SUPABASE_HOOK_SECRET: a secret's part after "
                                 "whsec_ is not base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigurationError(f"OTPGATE_SUPABASE_HOOK_SECRET: a secret must hold at least "
                                 f"{MIN_SECRET_BYTES} bytes")
    return key


def verify(keys: list[bytes], headers: Mapping[str, str], body: bytes, now: float) -> None:
    """``Unauthorized`` unless the Standard Webhooks signature of ``body`` verifies under
    one of ``keys`` with a timestamp within five minutes of ``now``."""
    webhook_id = headers.get("webhook-id", "")
    raw_time = headers.get("webhook-timestamp", "")
    signatures = _SIGNATURE.findall(headers.get("webhook-signature", ""))
    if not webhook_id or not raw_time.isascii() or not raw_time.isdigit() or not signatures:
        raise Unauthorized("the hook request is not signed as a Standard Webhook")
    if abs(now - int(raw_time)) > TOLERANCE:
        raise Unauthorized("the hook request's webhook-timestamp is too far from now")
    presented = [raw for s in signatures if (raw := _decoded(s)) is not None]
    signed = f"{webhook_id}.{raw_time}.".encode() + body
    for key in keys:
        expected = hmac.new(key, signed, hashlib.sha256).digest()
        for signature in presented:
            if hmac.compare_digest(expected, signature):
                return
    raise Unauthorized("the hook request's signature does not verify")


def _decoded(signature: str) -> bytes | None:
    try:
        return base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return None


def parse(body: bytes) -> SendSms:
    """The hook's request; ``InvalidRequest`` when it is not one."""
    try:
        payload = msgspec.json.decode(body, type=_Payload)
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise InvalidRequest("the hook payload is not Supabase's Send-SMS JSON",
                             "sms") from None
    sms = payload.sms or _Sms()
    phone = sms.phone or (payload.user.phone if payload.user else None)
    if not phone:
        raise InvalidRequest("the hook payload names no phone (sms.phone or user.phone)",
                             "sms.phone")
    if not sms.otp:
        raise InvalidRequest("the hook payload carries no code (sms.otp)", "sms.otp")
    return SendSms(phone=phone if phone.startswith("+") else "+" + phone, otp=sms.otp,
                   sms_type=sms.sms_type)


def refusal(http_code: int, message: str) -> bytes:
    """A refusal Supabase Auth passes on to its caller with ``http_code``."""
    return _ENCODER.encode({"error": {"http_code": http_code, "message": message}})
