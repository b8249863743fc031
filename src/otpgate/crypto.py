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

Code keys rotate (``otpgate secrets rotate``): each ``CodeKey`` has a 4-byte id and its own
digest, sealing and token-signing keys. The first is the master secret's own (its digests
are the bare 32-byte HMACs of earlier releases); later ones are random keys the store
keeps wrapped (ChaCha20-Poly1305 under a key derived from the master secret, so the store
alone reveals none of them), and their digests carry their id: ``kid || HMAC``. New codes
use the current key; a digest, a sealed payload or a token made with an older key still
checks out with it until that key is retired. What identifies a recipient in the store
(``digest_key``: recipient keys, Twilio sids, token subjects) stays the master secret's,
so that a rotation loses no recipient's limits or locks.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from otpgate.core import codes, ids
from otpgate.errors import ConfigurationError, SealError
from otpgate.files import private_dir

log = logging.getLogger(__name__)

SECRET_BYTES = 32
_NONCE = 12
_KID = 4
_MAC = 32
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


@dataclass(frozen=True, slots=True, repr=False)
class CodeKey:
    """One generation of the keys codes are digested, sealed and tokens signed with."""

    kid: bytes
    digest_key: bytes
    seal_key: bytes
    signing_key: Ed25519PrivateKey
    root: bool = False
    """The master secret's own generation: its digests carry no key id."""

    @classmethod
    def derive(cls, material: bytes, kid: bytes, *, root: bool = False) -> CodeKey:
        return cls(kid=kid, digest_key=_derive(material, b"otpgate.digest.v1"),
                   seal_key=_derive(material, b"otpgate.seal.v1"),
                   signing_key=Ed25519PrivateKey.from_private_bytes(
                       _derive(material, b"otpgate.token-signing.v1")),
                   root=root)

    def __repr__(self) -> str:
        return f"CodeKey(kid={self.kid.hex()})"


@dataclass(slots=True, eq=False)
class Keyring:
    """Keys derived from the master secret, and the code keys (current first); ``repr``
    never shows them."""

    digest_key: bytes
    """The master secret's digest key: recipient keys, Twilio sids, token subjects, and
    the digests of the first code key."""
    seal_key: bytes
    kid: bytes
    check: str
    """A value derived from the master secret that reveals nothing of it, kept in the
    database to tell the key it was made with from any other."""
    wrap_key: bytes
    """Wraps the code keys the store keeps."""
    subject_key: bytes
    """Keys the ``sub`` of verification tokens."""
    code_keys: tuple[CodeKey, ...]
    """Current first; the master secret's own among them until retired."""
    root_key: CodeKey

    @classmethod
    def from_secret(cls, master: bytes) -> Keyring:
        """The keyring of ``master`` (its strength is checked where secrets come in:
        ``parse_secret``, ``read_secret``), with the master secret's own code key alone."""
        if len(master) < SECRET_BYTES:
            raise ConfigurationError(f"the secret key must be at least {SECRET_BYTES} bytes")
        check = _derive(master, b"otpgate.key-check.v1")[:16]
        root = CodeKey.derive(master, _derive(master, b"otpgate.kid.v1")[:_KID], root=True)
        return cls(
            digest_key=root.digest_key, seal_key=root.seal_key, kid=root.kid,
            check="v1:" + ids.b64url(check),
            wrap_key=_derive(master, b"otpgate.code-key-wrap.v1"),
            subject_key=_derive(master, b"otpgate.token-subject.v1"),
            code_keys=(root,), root_key=root,
        )

    def __repr__(self) -> str:
        return f"Keyring(kid={self.kid.hex()})"

    @property
    def current(self) -> CodeKey:
        return self.code_keys[0]

    def adopt(self, keys: tuple[CodeKey, ...]) -> None:
        """Use ``keys`` (current first) from now on; a process swaps them in whole."""
        if not keys:
            raise ConfigurationError("a keyring needs at least one code key")
        self.code_keys = keys

    def code_key(self, kid: bytes) -> CodeKey | None:
        for key in self.code_keys:
            if hmac.compare_digest(key.kid, kid):
                return key
        return None

    def code_digest(self, otp_id: str, code: str) -> bytes:
        """The digest to keep of ``code``: the current key's, naming its id."""
        key = self.current
        mac = codes.digest(key.digest_key, otp_id, code)
        return mac if key.root else key.kid + mac

    def delivery_digest(self, otp_id: str, message: str) -> bytes:
        key = self.current
        mac = codes.delivery_digest(key.digest_key, otp_id, message)
        return mac if key.root else key.kid + mac

    def code_matches(self, otp_id: str, code: str, stored: bytes) -> bool:
        """Whether ``code`` is the one ``stored`` digests (constant time), with the key the
        digest names (a bare 32-byte digest: the master secret's own); ``False`` for a
        key no longer held."""
        if len(stored) == _MAC:
            key: CodeKey | None = self.root_key if self.root_key in self.code_keys else None
            mac = stored
        else:
            key, mac = self.code_key(stored[:_KID]), stored[_KID:]
        if key is None:
            return False
        return hmac.compare_digest(codes.digest(key.digest_key, otp_id, code), mac)

    def seal(self, payload: Sealed, aad: str) -> str:
        key, nonce = self.current, os.urandom(_NONCE)
        box = ChaCha20Poly1305(key.seal_key).encrypt(
            nonce, msgspec.msgpack.encode(payload), aad.encode()
        )
        return base64.urlsafe_b64encode(key.kid + nonce + box).decode()

    def open(self, sealed: str, aad: str) -> Sealed:
        try:
            raw = base64.urlsafe_b64decode(sealed.encode())
        except (binascii.Error, ValueError):
            raise SealError("sealed payload is not base64") from None
        if len(raw) < _KID + _NONCE + 16:
            raise SealError("sealed payload is truncated")
        kid, nonce, box = raw[:_KID], raw[_KID : _KID + _NONCE], raw[_KID + _NONCE :]
        key = self.code_key(kid)
        if key is None:
            raise SealError("sealed with another key")
        try:
            plain = ChaCha20Poly1305(key.seal_key).decrypt(nonce, box, aad.encode())
        except InvalidTag:
            raise SealError("sealed payload was altered or belongs to another send") from None
        return msgspec.msgpack.decode(plain, type=Sealed)

    def wrap(self, kid: bytes, material: bytes) -> str:
        """``material`` of the code key ``kid``, sealed for the store."""
        nonce = os.urandom(_NONCE)
        box = ChaCha20Poly1305(self.wrap_key).encrypt(nonce, material, b"otpgate.ck.v1|" + kid)
        return base64.urlsafe_b64encode(nonce + box).decode()

    def unwrap(self, kid: bytes, wrapped: str) -> CodeKey:
        """The code key ``kid`` from what ``wrap`` made; ``SealError`` if it was made
        with another master secret or altered."""
        try:
            raw = base64.urlsafe_b64decode(wrapped.encode())
            material = ChaCha20Poly1305(self.wrap_key).decrypt(
                raw[:_NONCE], raw[_NONCE:], b"otpgate.ck.v1|" + kid)
        except (binascii.Error, ValueError, InvalidTag):
            raise SealError("a stored code key does not open with this secret") from None
        return CodeKey.derive(material, kid)


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
