"""``Idempotency-Key`` for ``POST /v1/otp``: the same key within 24 h gets the first answer.

Keys are scoped by tenant and caller (the API key id, or ``dev`` in keyless dev mode) and
stored as a hash, never as sent. A request is fingerprinted by the SHA-256 of its canonical
body (the decoded body re-encoded, so whitespace and key order do not matter). Only 202
answers are kept: a refused request can be retried with the same key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from otpgate.core.lifecycle import Requested
from otpgate.errors import Conflict, InvalidRequest
from otpgate.store.base import Keep, Remembered

HEADER = "Idempotency-Key"
TTL = 24 * 3600.0
KEY_PATTERN = r"[\x20-\x7e]{1,255}"
_KEY = re.compile(KEY_PATTERN, re.ASCII)


def parse_key(raw: str | None) -> str | None:
    """The header's value if it is 1 to 255 printable ASCII characters; 422 otherwise."""
    if raw is None:
        return None
    if not _KEY.fullmatch(raw):
        raise InvalidRequest(f"{HEADER} must be 1 to 255 printable ASCII characters", HEADER)
    return raw


def slot(tenant: str, caller: str, key: str) -> str:
    """Where the answer for ``key`` of ``caller`` (a key id) in ``tenant`` is kept."""
    digest = hashlib.sha256(f"{tenant}\x00{caller}\x00{key}".encode()).hexdigest()
    return f"idem:{digest}"


def fingerprint(canonical_body: bytes) -> str:
    return hashlib.sha256(canonical_body).hexdigest()


def same_request(kept: Remembered, print_: str) -> Remembered:
    """``kept``, if it answered the same request; ``Conflict`` otherwise."""
    if kept.fingerprint != print_:
        raise Conflict(f"this {HEADER} was used for a different request in the last 24 hours")
    return kept


def keeper(slot_: str, print_: str, now: float,
           encode: Callable[[Requested], bytes]) -> Keep[Requested]:
    """What the store keeps, in the request's own transaction, for this key: the 202."""
    return Keep(slot=slot_, ttl=TTL,
                answer=lambda result: Remembered(print_, 202, encode(result), now))
