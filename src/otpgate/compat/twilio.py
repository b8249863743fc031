"""Twilio Verify v2 as its official SDKs read it: form bodies in; the Verification and
VerificationCheck resources, their sids and Twilio's error answers out.

Sids. A Verification sid is ``VE`` and 32 hex digits: the 16 random bytes of the OTP id
through a block cipher keyed from the master secret (AES-256 on one block, a keyed
permutation). Each OTP so has one sid, stable across resends and processes, that leads
back to it without a table — and a sid tells nothing of the OTP id to whoever lacks the
key. Send attempts (``VL…``) and tenants, shown as accounts (``AC…``), get keyed digests.

Resources carry every property the SDK's resource classes read, ``null`` where otpgate
has nothing to say (``lookup`` is ``{}``, ``sna`` and ``sna_attempts_error_codes`` are
``null``, as Twilio answers when it looked nothing up and the channel is not silent
network auth); times are
``YYYY-MM-DDTHH:MM:SSZ``. Errors are ``{"code", "message", "more_info", "status"}`` —
deliberately not RFC 9457, which the SDK would read as another kind of error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from otpgate.core import ids
from otpgate.core.otp import Otp
from otpgate.errors import InvalidRequest

CHANNELS: Mapping[str, str] = {"sms": "sms", "call": "voice", "email": "email",
                               "whatsapp": "whatsapp"}
"""Twilio's channel names → otpgate's (``sna`` and ``auto`` have no counterpart)."""
_TWILIO_NAME = {ours: theirs for theirs, ours in CHANNELS.items()}
MORE_INFO = "https://www.twilio.com/docs/errors/"

INVALID_PARAMETER = 60200
MAX_CHECK_ATTEMPTS = 60202
MAX_SEND_ATTEMPTS = 60203
AUTHENTICATE = 20003
NOT_FOUND = 20404
METHOD_NOT_ALLOWED = 20004
INTERNAL = 20500
UNAVAILABLE = 20503
_ENCODER = msgspec.json.Encoder()
_MAX_FIELDS = 64


def error_body(code: int, message: str, status: int) -> bytes:
    """Twilio's error answer."""
    return _ENCODER.encode({"code": code, "message": message,
                            "more_info": f"{MORE_INFO}{code}", "status": status})


def timestamp(ts: float) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ``, as Twilio writes ``date_created``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(ts)))


class Sids:
    """Verification, attempt and account sids under keys derived from ``key`` (the
    keyring's digest key: the sids change with the master secret, as everything does)."""

    __slots__ = ("_block", "_mac")

    def __init__(self, key: bytes) -> None:
        def derive(info: bytes) -> bytes:
            return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                        info=info).derive(key)

        self._block = derive(b"otpgate.twilio.verification-sid.v1")
        self._mac = derive(b"otpgate.twilio.sid-digest.v1")

    def verification(self, otp_id: str) -> str:
        raw = base64.urlsafe_b64decode(otp_id.removeprefix("otp_") + "==")
        if len(raw) != 16:
            raise ValueError("not an OTP id otpgate made")
        # One block through AES is a keyed permutation of 16 bytes: ECB is exactly that.
        box = Cipher(algorithms.AES(self._block), modes.ECB()).encryptor()  # noqa: S305
        return "VE" + (box.update(raw) + box.finalize()).hex()

    def otp_id(self, sid: str) -> str | None:
        """The OTP id a ``VE`` sid stands for; ``None`` for anything else."""
        if len(sid) != 34 or not sid.startswith("VE"):
            return None
        try:
            sealed = bytes.fromhex(sid[2:])
        except ValueError:
            return None
        if sid[2:] != sealed.hex():  # lowercase hex only, as Twilio writes it
            return None
        box = Cipher(algorithms.AES(self._block), modes.ECB()).decryptor()  # noqa: S305
        raw = box.update(sealed) + box.finalize()
        otp_id = "otp_" + ids.b64url(raw)
        return otp_id if ids.is_otp_id(otp_id) else None

    def attempt(self, otp_id: str, send_no: int) -> str:
        return "VL" + self._digest(f"attempt|{otp_id}|{send_no}")

    def account(self, tenant: str) -> str:
        return "AC" + self._digest(f"account|{tenant}")

    def _digest(self, text: str) -> str:
        return hmac.new(self._mac, text.encode(), hashlib.sha256).hexdigest()[:32]


class Form:
    """A form-encoded body: each name at most once."""

    __slots__ = ("_fields",)

    def __init__(self, body: bytes) -> None:
        try:
            pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True,
                              max_num_fields=_MAX_FIELDS, errors="strict")
        except (UnicodeDecodeError, ValueError):
            raise InvalidRequest("the body must be form-encoded (application/"
                                 "x-www-form-urlencoded), at most 64 fields", "body") from None
        fields: dict[str, str] = {}
        for name, value in pairs:
            if name in fields:
                raise InvalidRequest(f"{name} is given twice", name)
            fields[name] = value
        self._fields = fields

    def get(self, name: str) -> str | None:
        """The value of ``name``; an empty one counts as none."""
        return self._fields.get(name) or None

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise InvalidRequest(f"{name} is required", name)
        return value


def channel_of(twilio_name: str) -> str:
    """otpgate's channel for Twilio's ``Channel``; ``InvalidRequest`` for one it has none
    for (``sna``, ``auto``)."""
    try:
        return CHANNELS[twilio_name]
    except KeyError:
        raise InvalidRequest(f"Channel must be one of {', '.join(CHANNELS)}",
                             "Channel") from None


def twilio_channel(otp: Otp) -> str:
    first = otp.channels[0] if otp.channels else "sms"
    return _TWILIO_NAME.get(first, first)


@dataclass(frozen=True, slots=True)
class Shown:
    """What a resource says about an OTP besides the OTP itself."""

    sid: str
    service_sid: str
    account_sid: str
    to: str
    url: str
    amount: str | None = None
    payee: str | None = None


def verification(otp: Otp, shown: Shown, sids: Sids) -> dict[str, Any]:
    """The Verification resource of ``otp``."""
    channel = twilio_channel(otp)
    sent = otp.sent_at or [otp.created_at]
    return {
        "sid": shown.sid, "service_sid": shown.service_sid, "account_sid": shown.account_sid,
        "to": shown.to, "channel": channel, "status": otp.status.value,
        "valid": otp.status.value == "approved", "lookup": {}, "amount": shown.amount,
        "payee": shown.payee,
        "send_code_attempts": [
            {"attempt_sid": sids.attempt(otp.id, n), "channel": channel,
             "time": timestamp(at)} for n, at in enumerate(sent, start=1)],
        "date_created": timestamp(otp.created_at), "date_updated": timestamp(otp.updated_at),
        "sna": None, "url": shown.url,
    }


def verification_check(otp: Otp, shown: Shown, status: str,
                       updated_at: float) -> dict[str, Any]:
    """The VerificationCheck resource of ``otp`` once an answer left it ``status``
    (``sna_attempts_error_codes`` is ``null``: the channel was not silent network auth)."""
    return {
        "sid": shown.sid, "service_sid": shown.service_sid, "account_sid": shown.account_sid,
        "to": shown.to, "channel": twilio_channel(otp), "status": status,
        "valid": status == "approved", "amount": shown.amount, "payee": shown.payee,
        "date_created": timestamp(otp.created_at), "date_updated": timestamp(updated_at),
        "sna_attempts_error_codes": None,
    }


def encode(resource: Mapping[str, Any]) -> bytes:
    return _ENCODER.encode(resource)
