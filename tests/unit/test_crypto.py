"""Key material: derived keys, sealed payloads, the secret file."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from otpgate.crypto import Keyring, Sealed, load_or_create_secret, parse_secret, seal_aad
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
