"""Key material: one master secret, from which the code-digest key and the sealing key
are derived (HKDF-SHA256). The secret lives outside the store: in ``OTPGATE_SECRET_KEY``,
or, in embedded mode, in a 0600 file beside the database.

Sealed payloads are ChaCha20-Poly1305 with a random 96-bit nonce and associated data that
binds them to one OTP send, prefixed by a key id so that keys can be rotated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from otpgate.errors import ConfigurationError, SealError
from otpgate.files import private_dir

log = logging.getLogger(__name__)

SECRET_BYTES = 32
_NONCE = 12
_KID = 4


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


class Sealed(msgspec.Struct, frozen=True):
    """What a dispatch event carries for its dispatcher alone."""

    to: str
    code: str


@dataclass(frozen=True, slots=True)
class Keyring:
    """Keys derived from the master secret; ``repr`` never shows them."""

    digest_key: bytes
    seal_key: bytes
    kid: bytes

    @classmethod
    def from_secret(cls, master: bytes) -> Keyring:
        if len(master) < 16:
            raise ConfigurationError("the secret key must be at least 16 bytes")
        return cls(
            digest_key=_derive(master, b"otpgate.digest.v1"),
            seal_key=_derive(master, b"otpgate.seal.v1"),
            kid=hashlib.sha256(b"otpgate.kid\x00" + master).digest()[:_KID],
        )

    def __repr__(self) -> str:
        return f"Keyring(kid={self.kid.hex()})"

    def seal(self, payload: Sealed, aad: str) -> str:
        nonce = os.urandom(_NONCE)
        box = ChaCha20Poly1305(self.seal_key).encrypt(
            nonce, msgspec.msgpack.encode(payload), aad.encode()
        )
        return base64.urlsafe_b64encode(self.kid + nonce + box).decode()

    def open(self, sealed: str, aad: str) -> Sealed:
        try:
            raw = base64.urlsafe_b64decode(sealed.encode())
        except (binascii.Error, ValueError):
            raise SealError("sealed payload is not base64") from None
        if len(raw) < _KID + _NONCE + 16:
            raise SealError("sealed payload is truncated")
        kid, nonce, box = raw[:_KID], raw[_KID : _KID + _NONCE], raw[_KID + _NONCE :]
        if kid != self.kid:
            raise SealError("sealed with another key")
        try:
            plain = ChaCha20Poly1305(self.seal_key).decrypt(nonce, box, aad.encode())
        except InvalidTag:
            raise SealError("sealed payload was altered or belongs to another send") from None
        return msgspec.msgpack.decode(plain, type=Sealed)


def seal_aad(otp_id: str, send_no: int) -> str:
    return f"otpgate.seal.v1|{otp_id}|{send_no}"


def parse_secret(text: str) -> bytes:
    """A secret given as urlsafe base64 (as ``otpgate`` writes it) or as hex."""
    text = text.strip()
    try:
        if all(c in "0123456789abcdefABCDEF" for c in text):
            raw = bytes.fromhex(text)
        else:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) >= 16:
        return raw
    raise ConfigurationError("the secret key must be >= 16 bytes, base64url or hex")


def load_or_create_secret(path: Path) -> bytes:
    """Read the secret file, creating it (mode 0600) on first use with a warning."""
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("secret key file %s is readable by others (mode %o)", path, mode)
        return parse_secret(path.read_text())
    private_dir(path.parent)
    secret = secrets.token_bytes(SECRET_BYTES)
    # Written aside and linked into place, so that a process starting at the same moment
    # either sees no file or a whole one, and exactly one secret wins.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.urlsafe_b64encode(secret).decode() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return parse_secret(path.read_text())
    finally:
        tmp.unlink()
    log.warning(
        "generated a new secret key in %s; keep it safe and out of backups of the "
        "database — without it, pending codes cannot be verified", path
    )
    return secret
