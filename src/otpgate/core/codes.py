"""One-time codes: generation with ``secrets``, HMAC digests bound to the OTP id.

The store keeps only ``digest(key, otp_id, code)``; the key lives outside the store.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable

from otpgate.errors import InvalidRequest

MIN_LENGTH = 4
"""The shortest code an operator may allow (``Policy.min_code_length``)."""
POLICY_MIN_LENGTH = 6
"""The shortest code a request may ask for unless the operator lowers it (NIST, ASVS)."""
MAX_LENGTH = 10
DEFAULT_LENGTH = 6

CodeGenerator = Callable[[int], str]
"""Makes a code of the given number of digits."""

CODE_PATTERN = rf"[0-9]{{{MIN_LENGTH},{MAX_LENGTH}}}"
_CODE_SHAPE = re.compile(CODE_PATTERN, re.ASCII)


def generate_code(length: int = DEFAULT_LENGTH) -> str:
    """A uniformly random code of ``length`` ASCII digits; leading zeros are kept."""
    check_length(length)
    return f"{secrets.randbelow(10**length):0{length}d}"


def check_length(length: int, shortest: int = MIN_LENGTH) -> None:
    """``InvalidRequest`` unless ``length`` is an integer from ``shortest`` to 10."""
    if isinstance(length, bool) or not isinstance(length, int):
        raise InvalidRequest("code_length must be an integer", "code_length")
    if not max(shortest, MIN_LENGTH) <= length <= MAX_LENGTH:
        raise InvalidRequest(
            f"code_length must be between {max(shortest, MIN_LENGTH)} and {MAX_LENGTH}",
            "code_length")


def check_submitted(code: object) -> str:
    """Return ``code`` if it is shaped like a code (ASCII digits only), else raise.

    Unicode digits (``"١٢٣٤"``), spaces and zero-width characters are refused rather
    than normalised: nothing is stripped silently.
    """
    if not isinstance(code, str) or not _CODE_SHAPE.fullmatch(code):
        raise InvalidRequest(
            f"code must be {MIN_LENGTH} to {MAX_LENGTH} ASCII digits", "code"
        )
    return code


def digest(key: bytes, otp_id: str, code: str) -> bytes:
    """HMAC-SHA256 of the code, bound to the OTP it belongs to."""
    msg = b"otpgate.code.v1\x00" + otp_id.encode() + b"\x00" + code.encode()
    return hmac.new(key, msg, hashlib.sha256).digest()


def delivery_digest(key: bytes, otp_id: str, message: str) -> bytes:
    """HMAC-SHA256 of a message another service handed over for delivery (its code, or its
    whole text), bound to the OTP: kept to tell a retried hand-over from a new message.
    Its own domain, so that it can never pass for the digest of a code otpgate checks."""
    msg = b"otpgate.delivery.v1\x00" + otp_id.encode() + b"\x00" + message.encode()
    return hmac.new(key, msg, hashlib.sha256).digest()


def matches(key: bytes, otp_id: str, code: str, stored: bytes) -> bool:
    """Constant-time comparison of a submitted code against a stored digest."""
    return hmac.compare_digest(digest(key, otp_id, code), stored)
