"""Identifiers: opaque, unguessable, URL-safe."""

from __future__ import annotations

import base64
import re
import secrets

OTP_ID_PATTERN = r"otp_[A-Za-z0-9_-]{22}"
_OTP_ID = re.compile(OTP_ID_PATTERN, re.ASCII)


def new_otp_id() -> str:
    return "otp_" + secrets.token_urlsafe(16)


def b64url(raw: bytes) -> str:
    """``raw`` as unpadded base64url (JWTs, key thumbprints, check values, ids)."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def is_otp_id(value: str) -> bool:
    return bool(_OTP_ID.fullmatch(value))
