"""Verification tokens: proof, for the integrator's other services, that a code was approved.

On ``approved`` the verify answer carries ``token``, a JWT signed with EdDSA (Ed25519, by
PyJWT over ``cryptography``) whose header names the signing key (``kid``: the key's RFC 7638
thumbprint). Claims:

* ``iss``: ``OTPGATE_PUBLIC_URL``, else ``otpgate``; ``aud``: the tenant of the key that
  verified; ``iat``, ``exp`` (``OTPGATE_TOKEN_TTL``, 300 s by default, at most 600);
* ``sub``: a keyed HMAC of the recipient (base64url) — stable for one recipient of one
  tenant, never the number or address, nor a plain hash of it (which a list of numbers
  would reverse);
* ``purpose`` and ``otp_id``.

The public keys are at ``GET /.well-known/jwks.json``. Signing keys are not stored: each
code key (``otpgate.crypto.CodeKey``) derives its own from its material, so they rotate
with ``otpgate secrets rotate`` — the new key signs at once, and an old one stays in the
JWKS (and verifies) until it is retired, which ``otpgate secrets retire`` allows only once
every token it signed has expired.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import jwt
from jwt.algorithms import OKPAlgorithm

from otpgate.clock import Clock
from otpgate.core.ids import b64url
from otpgate.crypto import CodeKey, Keyring
from otpgate.errors import ConfigurationError

DEFAULT_TTL = 300
MAX_TTL = 600
MIN_TTL = 60
ALGORITHM = "EdDSA"
DEFAULT_ISSUER = "otpgate"


def subject(key: bytes, tenant: str, recipient: str) -> str:
    """The ``sub`` of a recipient (``recipient`` is its key in the store, itself a keyed
    digest of the address): an HMAC under a key of its own."""
    mac = hmac.new(key, b"otpgate.sub.v1\x00" + tenant.encode() + b"\x00" + recipient.encode(),
                   hashlib.sha256)
    return b64url(mac.digest())


def _public_jwk(key: CodeKey) -> dict[str, Any]:
    jwk: dict[str, Any] = OKPAlgorithm.to_jwk(key.signing_key.public_key(), as_dict=True)
    thumb = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]},
                       separators=(",", ":"), sort_keys=True)
    return {"kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"], "use": "sig",
            "alg": ALGORITHM, "kid": b64url(hashlib.sha256(thumb.encode()).digest())}


class Tokens:
    """Signs verification tokens with the keyring's current code key; publishes the JWKS
    of every live one."""

    __slots__ = ("_clock", "_issuer", "_jwk_of", "_jwks", "_keyring", "_ttl")

    def __init__(self, keyring: Keyring, clock: Clock, *, issuer: str | None = None,
                 ttl: float = DEFAULT_TTL) -> None:
        if not MIN_TTL <= ttl <= MAX_TTL:
            raise ConfigurationError(
                f"OTPGATE_TOKEN_TTL must be {MIN_TTL} to {MAX_TTL} seconds, not {ttl:g}")
        self._keyring = keyring
        self._clock = clock
        self._issuer = (issuer or "").rstrip("/") or DEFAULT_ISSUER
        self._ttl = int(ttl)
        self._jwk_of: dict[bytes, dict[str, Any]] = {}
        self._jwks: tuple[tuple[bytes, ...], bytes] | None = None

    @property
    def issuer(self) -> str:
        return self._issuer

    def _jwk(self, key: CodeKey) -> dict[str, Any]:
        found = self._jwk_of.get(key.kid)
        if found is None:
            found = self._jwk_of[key.kid] = _public_jwk(key)
        return found

    def issue(self, *, otp_id: str, purpose: str, recipient: str, tenant: str) -> str:
        """The token of an approval of ``otp_id``."""
        now = int(self._clock.now())
        key = self._keyring.current
        claims = {"iss": self._issuer, "sub": subject(self._keyring.subject_key, tenant,
                                                      recipient),
                  "aud": tenant, "iat": now, "exp": now + self._ttl, "purpose": purpose,
                  "otp_id": otp_id}
        return jwt.encode(claims, key.signing_key, algorithm=ALGORITHM,
                          headers={"kid": self._jwk(key)["kid"]})

    def jwks(self) -> bytes:
        """``{"keys": [...]}`` of every live code key's public key, current first (JSON)."""
        keys = self._keyring.code_keys
        kids = tuple(k.kid for k in keys)
        if self._jwks is None or self._jwks[0] != kids:
            body = json.dumps({"keys": [self._jwk(k) for k in keys]},
                              separators=(",", ":")).encode()
            self._jwks = (kids, body)
        return self._jwks[1]
