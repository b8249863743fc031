"""Key material: derived keys, sealed payloads, the secret file."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from otpgate.core import codes
from otpgate.crypto import (
    CodeKey,
    Keyring,
    Sealed,
    check_strength,
    load_or_create_secret,
    parse_secret,
    read_secret,
    seal_aad,
)
from otpgate.errors import ConfigurationError, SealError

MASTER = bytes(range(32))
PAYLOAD = Sealed(to="+14155550123", code="123456")


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.from_secret(MASTER)


def test_a_sealed_payload_opens_with_the_same_key_and_send(keyring: Keyring) -> None:
    aad = seal_aad("otp_a", 1)
    assert keyring.open(keyring.seal(PAYLOAD, aad), aad) == PAYLOAD


def test_a_sealed_payload_opens_with_a_keyring_made_again_from_the_same_secret(
    keyring: Keyring,
) -> None:
    aad = seal_aad("otp_a", 1)
    assert Keyring.from_secret(MASTER).open(keyring.seal(PAYLOAD, aad), aad) == PAYLOAD


def test_sealing_twice_gives_different_boxes(keyring: Keyring) -> None:
    aad = seal_aad("otp_a", 1)
    assert keyring.seal(PAYLOAD, aad) != keyring.seal(PAYLOAD, aad)


def test_a_sealed_payload_shows_neither_number_nor_code(keyring: Keyring) -> None:
    box = keyring.seal(PAYLOAD, seal_aad("otp_a", 1))
    raw = base64.urlsafe_b64decode(box)
    for secret in ("4155550123", "123456"):
        assert secret not in box
        assert secret.encode() not in raw


def _flip(box: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(box))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("index", [0, 4, 15, 16, 20, -1])
def test_a_tampered_box_is_refused(keyring: Keyring, index: int) -> None:
    aad = seal_aad("otp_a", 1)
    with pytest.raises(SealError):
        keyring.open(_flip(keyring.seal(PAYLOAD, aad), index), aad)


@pytest.mark.parametrize("other", [seal_aad("otp_b", 1), seal_aad("otp_a", 2), ""])
def test_a_box_is_refused_for_another_otp_or_send(keyring: Keyring, other: str) -> None:
    with pytest.raises(SealError):
        keyring.open(keyring.seal(PAYLOAD, seal_aad("otp_a", 1)), other)


def test_a_box_is_refused_under_another_key(keyring: Keyring) -> None:
    aad = seal_aad("otp_a", 1)
    with pytest.raises(SealError, match="another key"):
        Keyring.from_secret(b"x" * 32).open(keyring.seal(PAYLOAD, aad), aad)


@pytest.mark.parametrize("box", ["", "not base64!", "AAAA", "a"])
def test_garbage_is_refused_as_a_seal_error(keyring: Keyring, box: str) -> None:
    with pytest.raises(SealError):
        keyring.open(box, seal_aad("otp_a", 1))


@pytest.mark.parametrize("keep", [0, 4, 5, 15, 16, 31])
def test_a_truncated_box_is_refused_as_a_seal_error(keyring: Keyring, keep: int) -> None:
    aad = seal_aad("otp_a", 1)
    raw = base64.urlsafe_b64decode(keyring.seal(PAYLOAD, aad))
    short = base64.urlsafe_b64encode(raw[:keep]).decode()
    try:
        keyring.open(short, aad)
    except SealError:
        pass
    except Exception as exc:
        pytest.fail(f"BUG: a box cut to {keep} bytes raised {type(exc).__name__}: {exc}, "
                    "not SealError")
    else:
        pytest.fail("a truncated box was opened")


def test_the_keyring_repr_shows_only_the_key_id(keyring: Keyring) -> None:
    text = repr(keyring)
    assert text == f"Keyring(kid={keyring.kid.hex()})"
    for key in (keyring.digest_key, keyring.seal_key, MASTER):
        assert key.hex() not in text
        assert repr(key) not in text
    assert "digest_key" not in text
    assert "seal_key" not in text


def test_derived_keys_differ_from_each_other_and_from_the_secret(keyring: Keyring) -> None:
    assert len({keyring.digest_key, keyring.seal_key, MASTER[:32]}) == 3
    assert len(keyring.kid) == 4
    assert Keyring.from_secret(b"y" * 32).kid != keyring.kid


def test_a_secret_shorter_than_thirty_two_bytes_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        Keyring.from_secret(b"x" * 31)
    assert Keyring.from_secret(b"x" * 32).kid


def test_parse_secret_reads_hex() -> None:
    assert parse_secret(MASTER.hex()) == MASTER
    assert parse_secret("  " + MASTER.hex().upper() + "\n") == MASTER


def test_parse_secret_reads_base64url_as_otpgate_writes_it() -> None:
    secret = bytes(range(224, 256))  # encodes with '-' and '_'
    text = base64.urlsafe_b64encode(secret).decode()
    assert "-" in text or "_" in text
    assert parse_secret(text) == secret
    assert parse_secret(text + "\n") == secret


def test_parse_secret_reads_unpadded_base64url() -> None:
    secret = bytes(range(100, 132))
    text = base64.urlsafe_b64encode(secret).decode().rstrip("=")
    try:
        parsed = parse_secret(text)
    except ConfigurationError:
        parsed = b""
    assert parsed == secret, (
        "BUG: parse_secret refuses unpadded base64url, the form secrets.token_urlsafe(32) "
        "prints, although OTPGATE_SECRET_KEY is documented as 'base64url or hex'"
    )


@pytest.mark.parametrize("text", ["", "00" * 15, base64.urlsafe_b64encode(b"x" * 15).decode(),
                                  "short", "   "])
def test_parse_secret_refuses_short_input(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_secret(text)


def test_the_secret_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "var" / "secret.key"
    first = load_or_create_secret(path)
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = path.read_bytes()
    assert load_or_create_secret(path) == first
    assert path.read_bytes() == written
    assert parse_secret(path.read_text()) == first


def test_each_new_secret_file_holds_a_new_secret(tmp_path: Path) -> None:
    assert load_or_create_secret(tmp_path / "a") != load_or_create_secret(tmp_path / "b")


def test_an_existing_hex_secret_file_is_read_as_is(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_text(MASTER.hex() + "\n")
    os.chmod(path, 0o600)
    assert load_or_create_secret(path) == MASTER


def test_a_secret_file_readable_by_others_is_read_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "secret.key"
    path.write_text(MASTER.hex())
    os.chmod(path, 0o644)
    assert load_or_create_secret(path) == MASTER
    assert "readable by others" in caplog.text
    assert MASTER.hex() not in caplog.text


def test_creating_a_secret_file_never_logs_the_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    secret = load_or_create_secret(tmp_path / "secret.key")
    assert "generated a new secret key" in caplog.text
    assert base64.urlsafe_b64encode(secret).decode() not in caplog.text
    assert secret.hex() not in caplog.text


# -- strength of the master secret ----------------------------------------------------------


@pytest.mark.parametrize("text", [
    "passwordpasswordpassword",                      # the audit's: junk taken as base64
    "0" * 32,                                         # 32 hex zeros: 16 zero bytes
    "00" * 32,                                        # 32 zero bytes
    "ab" * 32,                                        # one byte, repeated
    "0123456789abcdef" * 4,                           # 8 distinct byte values
    b"otpgate test secret 0 1 2 3 4 5!".hex(),        # text, hex-encoded
    base64.urlsafe_b64encode(b"correct horse battery staple!!!!").decode(),  # text
    secrets.token_urlsafe(32) + "!",                  # junk after the key
    secrets.token_urlsafe(32)[:20] + " " + "A" * 23,  # junk inside it
    "+" + secrets.token_urlsafe(32)[1:],              # not base64url
    secrets.token_hex(31),                            # 31 random bytes
    secrets.token_hex(32)[:-1],                       # odd hex
], ids=["password", "hex-zeros-16", "zeros-32", "one-byte", "eight-values", "hex-text",
        "base64-text", "junk-after", "junk-inside", "plus", "short", "odd-hex"])
def test_weak_or_loosely_encoded_secrets_are_refused(text: str) -> None:
    with pytest.raises(ConfigurationError, match="secret key"):
        parse_secret(text)


def test_a_base64url_secret_with_stray_bits_in_its_last_character_is_refused() -> None:
    text = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    # 43 characters carry 258 bits: the last character's two low bits must be zero.
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(text[-1])
    stray = text[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[
        last | 1]
    with pytest.raises(ConfigurationError):
        parse_secret(stray)


@pytest.mark.parametrize("make", [
    lambda raw: base64.urlsafe_b64encode(raw).decode(),
    lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("="),
    lambda raw: raw.hex(),
    lambda raw: raw.hex().upper(),
    lambda raw: f"  {raw.hex()}\n",
])
def test_random_secrets_are_read_in_either_strict_encoding(make: Any) -> None:
    raw = secrets.token_bytes(32)
    assert parse_secret(make(raw)) == raw


def test_many_random_secrets_are_never_refused_as_weak() -> None:
    for _ in range(2000):
        check_strength(secrets.token_bytes(32))


def test_the_seal_key_id_is_derived_with_the_hkdf_not_hashed_from_the_master() -> None:
    keyring = Keyring.from_secret(MASTER)
    assert keyring.kid != hashlib.sha256(b"otpgate.kid\x00" + MASTER).digest()[:4]
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"otpgate.kid.v1")
    assert keyring.kid == hkdf.derive(MASTER)[:4]


def test_the_key_check_value_is_stable_per_secret_and_tells_secrets_apart() -> None:
    keyring = Keyring.from_secret(MASTER)
    assert keyring.check == Keyring.from_secret(MASTER).check
    assert keyring.check != Keyring.from_secret(secrets.token_bytes(32)).check
    assert keyring.check.startswith("v1:")
    for secret in (MASTER, keyring.digest_key, keyring.seal_key, keyring.kid):
        assert secret.hex() not in keyring.check
        assert base64.urlsafe_b64encode(secret).decode().rstrip("=") not in keyring.check


# -- the key file ---------------------------------------------------------------------------


@pytest.mark.parametrize("content", [
    b"\x8f\x00\xff\xfe" + os.urandom(28),   # binary
    base64.urlsafe_b64encode(os.urandom(32))[:20] + b"\n",  # truncated
    b"",                                    # emptied
], ids=["binary", "truncated", "empty"])
def test_a_corrupt_or_truncated_key_file_is_a_clear_error(tmp_path: Path,
                                                          content: bytes) -> None:
    path = tmp_path / "secret.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigurationError, match="corrupt or truncated") as err:
        read_secret(path)
    assert "restore it from your backup" in err.value.detail
    assert str(path) in err.value.detail


def test_a_missing_key_file_reads_as_none(tmp_path: Path) -> None:
    assert read_secret(tmp_path / "secret.key") is None


def _rotated(keyring: Keyring) -> CodeKey:
    kid = secrets.token_bytes(4)
    fresh = keyring.unwrap(kid, keyring.wrap(kid, secrets.token_bytes(32)))
    keyring.adopt((fresh, *keyring.code_keys))
    return fresh


def test_the_master_secrets_own_digests_are_bare_hmacs_as_before(keyring: Keyring) -> None:
    digest = keyring.code_digest("otp_a", "123456")
    assert digest == codes.digest(keyring.digest_key, "otp_a", "123456")
    assert keyring.code_matches("otp_a", "123456", digest)
    assert not keyring.code_matches("otp_a", "123457", digest)
    assert not keyring.code_matches("otp_b", "123456", digest)


def test_after_a_rotation_digests_name_their_key_and_old_ones_still_match(
    keyring: Keyring,
) -> None:
    old_digest = keyring.code_digest("otp_a", "123456")
    aad = seal_aad("otp_a", 1)
    old_sealed = keyring.seal(PAYLOAD, aad)
    fresh = _rotated(keyring)
    new_digest = keyring.code_digest("otp_b", "654321")
    assert len(new_digest) == 36 and new_digest[:4] == fresh.kid
    assert keyring.code_matches("otp_b", "654321", new_digest)
    assert not keyring.code_matches("otp_b", "654320", new_digest)
    assert keyring.code_matches("otp_a", "123456", old_digest)
    assert keyring.open(old_sealed, aad) == PAYLOAD
    new_sealed = keyring.seal(PAYLOAD, aad)
    assert base64.urlsafe_b64decode(new_sealed)[:4] == fresh.kid
    assert keyring.open(new_sealed, aad) == PAYLOAD
    # the recipient index stays the master secret's
    assert keyring.digest_key == Keyring.from_secret(MASTER).digest_key


def test_a_retired_key_checks_nothing_it_made(keyring: Keyring) -> None:
    old_digest = keyring.code_digest("otp_a", "123456")
    aad = seal_aad("otp_a", 1)
    old_sealed = keyring.seal(PAYLOAD, aad)
    fresh = _rotated(keyring)
    keyring.adopt((fresh,))
    assert not keyring.code_matches("otp_a", "123456", old_digest)
    with pytest.raises(SealError):
        keyring.open(old_sealed, aad)
    # a digest naming a key never held matches nothing
    assert not keyring.code_matches("otp_a", "123456", b"\x00" * 4 + old_digest)


def test_a_wrapped_code_key_opens_only_with_its_master_secret_and_id(
    keyring: Keyring,
) -> None:
    kid = b"\x01\x02\x03\x04"
    wrapped = keyring.wrap(kid, b"k" * 32)
    assert keyring.unwrap(kid, wrapped).digest_key == keyring.unwrap(kid, wrapped).digest_key
    assert b"k" * 32 not in base64.urlsafe_b64decode(wrapped)
    with pytest.raises(SealError):
        Keyring.from_secret(secrets.token_bytes(32)).unwrap(kid, wrapped)
    with pytest.raises(SealError):
        keyring.unwrap(b"\x01\x02\x03\x05", wrapped)
    assert "k" * 32 not in repr(keyring.unwrap(kid, wrapped))
