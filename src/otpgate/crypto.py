"""Key material: one master secret, from which the code-digest key, the sealing key, the
seal key id and the key's check value are derived (HKDF-SHA256, one ``info`` each). The
secret lives outside the store: in ``OTPGATE_SECRET_KEY``, or, in embedded mode, in a 0600
file beside the database.

A master secret is at least 32 random bytes, given as hex or as strict base64url;
``parse_secret`` refuses anything else, and values that cannot be random (all one byte, few
distinct bytes, nothing but printable text — a password, not a key). The check value is
kept in the database (``Store.keep_key_check``) so that a process started with another key
refuses to run instead of making every pending code unverifiable.

Sealed payloads are ChaCha20-Poly1305 with a random 96-bit nonce and associated data that
binds them to one OTP send, prefixed by a key id so that keys can be rotated.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
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
_MIN_DISTINCT = 16
"""Distinct byte values a 32-byte secret must hold (random ones hold about 30; fewer than
16 happens by chance with a probability below 10^-10)."""
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+", re.ASCII)
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]+", re.ASCII)
_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}", re.ASCII)
HOW_TO_MAKE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


class Sealed(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a dispatch event carries for its dispatcher alone: the address and the code,
    and — for a message another service wrote (``OtpService.deliver``) — its text, which
    holds the code too."""

    to: str
    code: str
    body: str | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class Keyring:
    """Keys derived from the master secret; ``repr`` never shows them."""

    digest_key: bytes
    seal_key: bytes
    kid: bytes
    check: str
    """A value derived from the master secret that reveals nothing of it, kept in the
    database to tell the key it was made with from any other."""

    @classmethod
    def from_secret(cls, master: bytes) -> Keyring:
        """The keyring of ``master`` (its strength is checked where secrets come in:
        ``parse_secret``, ``read_secret``)."""
        if len(master) < SECRET_BYTES:
            raise ConfigurationError(f"the secret key must be at least {SECRET_BYTES} bytes")
        check = _derive(master, b"otpgate.key-check.v1")[:16]
        return cls(
            digest_key=_derive(master, b"otpgate.digest.v1"),
            seal_key=_derive(master, b"otpgate.seal.v1"),
            kid=_derive(master, b"otpgate.kid.v1")[:_KID],
            check="v1:" + base64.urlsafe_b64encode(check).decode().rstrip("="),
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
    """A secret given as hex or as strict base64url (padded or not, as ``otpgate`` and
    ``secrets.token_urlsafe`` write it), of at least 32 random bytes; ``ConfigurationError``
    for anything else."""
    text = text.strip()
    raw: bytes | None = None
    if _HEX.fullmatch(text):
        raw = bytes.fromhex(text)
    elif _HEX_DIGITS.fullmatch(text):
        raw = None  # hex with a digit lost or added: never read it as base64 instead
    elif _B64URL.fullmatch(text):
        bare = text.rstrip("=")
        try:
            raw = base64.urlsafe_b64decode(bare + "=" * (-len(bare) % 4))
        except (ValueError, binascii.Error):
            raw = None
        # Canonical only: no stray bits in the last character, padding right or absent.
        if raw is not None and base64.urlsafe_b64encode(raw).decode() not in (
                text, text + "=" * (-len(text) % 4)):
            raw = None
    if raw is None:
        raise ConfigurationError(
            f"the secret key must be hex or base64url (no other characters) of at least "
            f"{SECRET_BYTES} random bytes; make one with: {HOW_TO_MAKE}")
    check_strength(raw)
    return raw


def check_strength(raw: bytes) -> None:
    """``ConfigurationError`` unless ``raw`` could be ``SECRET_BYTES`` or more random bytes."""
    if len(raw) < SECRET_BYTES:
        problem = f"it holds {len(raw)} bytes, not at least {SECRET_BYTES}"
    elif len(set(raw)) == 1:
        problem = "every byte is the same"
    elif len(set(raw)) < _MIN_DISTINCT:
        problem = f"it holds only {len(set(raw))} distinct byte values"
    elif all(0x20 <= b < 0x7f for b in raw):
        problem = "it is printable text (a password?), not random bytes"
    else:
        return
    raise ConfigurationError(
        f"the secret key is refused: {problem}; make a random one with: {HOW_TO_MAKE}")


def read_secret(path: Path) -> bytes | None:
    """The secret of the key file ``path`` (``None`` if there is none), with a warning when
    others may read it; ``ConfigurationError`` — saying what to do — if it is unreadable,
    binary, truncated or otherwise not a key."""
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"cannot read the secret key file {path}: "
                                 f"{exc.strerror or exc}") from None
    if mode & 0o077:
        log.warning("secret key file %s is readable by others (mode %o)", path, mode)
    try:
        return parse_secret(data.decode("ascii"))
    except (UnicodeDecodeError, ConfigurationError) as exc:
        why = "it is binary, not text" if isinstance(exc, UnicodeDecodeError) else \
            exc.detail.split(";")[0]
        raise ConfigurationError(
            f"the secret key file {path} is corrupt or truncated ({why}): restore it from "
            f"your backup, or set OTPGATE_SECRET_KEY to the key it held") from None


def create_secret(path: Path) -> bytes:
    """Create the key file ``path`` (mode 0600) with a new secret, with a warning; if
    another process creates it first, its secret is the one returned."""
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
        theirs = read_secret(path)
        if theirs is None:
            raise ConfigurationError(f"the secret key file {path} vanished as it was "
                                     "made; try again") from None
        return theirs
    finally:
        tmp.unlink()
    log.warning(
        "generated a new secret key in %s; keep it safe and out of backups of the "
        "database — without it, pending codes cannot be verified", path
    )
    return secret


def load_or_create_secret(path: Path) -> bytes:
    """Read the secret file, creating it (mode 0600) on first use with a warning."""
    found = read_secret(path)
    return found if found is not None else create_secret(path)
