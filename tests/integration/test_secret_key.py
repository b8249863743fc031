"""The master secret and the database it was made with: another key, a deleted key file, a
corrupt one, a weak one — each refused by every command, with what happened and what to do."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from otpgate.cli import main
from otpgate.config import build
from otpgate.runtime import Runtime
from tests.e2e.server import free_port

FIRST = "VWcB8phfd2Ho-6rqn0IABFVAVe-Mv-aGOFNo6hGhkgY"  # random, tests only
OTHER = "4fedfc15e87f0c7d608e8c13c2d55a3e50a3e0a1bf7d8caf5e42e84c0cc34339"  # random too


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An embedded database whose key lives in ``var/secret.key`` (no variable)."""
    return {"OTPGATE_DATA_DIR": str(tmp_path / "var"), "OTPGATE_LOG_LEVEL": "warning",
            "OTPGATE_SECRET_KEY": ""}


def key_file(env: dict[str, str]) -> Path:
    return Path(env["OTPGATE_DATA_DIR"]) / "secret.key"


@pytest.mark.parametrize("command", [["keys", "list"], ["send", "--to", "+14155550123"],
                                     ["unlock", "--to", "+14155550123"],
                                     ["verify", "--to", "+14155550123", "--code", "123456"]])
def test_every_command_refuses_another_key_than_the_databases(
    env: dict[str, str], command: list[str],
) -> None:
    assert run({**env, "OTPGATE_SECRET_KEY": FIRST}, "keys", "list")[0] == 0
    code, out = run({**env, "OTPGATE_SECRET_KEY": OTHER}, *command)
    assert code == 1
    assert "is not the one the database" in out
    assert "start with the original key" in out
    assert FIRST not in out and OTHER not in out


@pytest.mark.timeout(30)  # a server that does not refuse would listen for good
def test_serve_refuses_another_key_before_it_listens(env: dict[str, str]) -> None:
    assert run({**env, "OTPGATE_SECRET_KEY": FIRST}, "keys", "list")[0] == 0
    code, out = run({**env, "OTPGATE_SECRET_KEY": OTHER}, "serve", "--dev", "--port",
                    str(free_port()), "--data-dir", env["OTPGATE_DATA_DIR"])
    assert code == 1
    assert "is not the one the database" in out
    assert "listening" not in out


def test_a_deleted_key_file_is_not_silently_replaced(env: dict[str, str]) -> None:
    code, out = run(env, "send", "--to", "+14155550123")
    assert code == 0, out
    kept = key_file(env).read_bytes()
    key_file(env).unlink()
    code, out = run(env, "send", "--to", "+14155550123", "--purpose", "again")
    assert code == 1
    assert "secret.key is missing" in out
    assert "restore" in out
    assert not key_file(env).exists(), "a new key file was left behind"
    key_file(env).write_bytes(kept)
    os.chmod(key_file(env), 0o600)
    code, out = run(env, "send", "--to", "+14155550123", "--purpose", "again")
    assert code == 0, out
    assert json.loads(out)["outcome"] == "created"


def test_a_fresh_data_directory_gets_a_key_file_and_keeps_its_check(
    env: dict[str, str],
) -> None:
    assert run(env, "keys", "list")[0] == 0
    assert key_file(env).stat().st_mode & 0o777 == 0o600
    assert run(env, "keys", "list")[0] == 0


@pytest.mark.parametrize("content", [b"\xff\xd8\xff\xe0" + bytes(range(28)), b"c2VjcmV0\n",
                                     b""], ids=["binary", "truncated", "empty"])
def test_a_corrupt_key_file_is_a_clear_error_not_a_traceback(
    env: dict[str, str], content: bytes,
) -> None:
    key_file(env).parent.mkdir(parents=True)
    key_file(env).write_bytes(content)
    os.chmod(key_file(env), 0o600)
    code, out = run(env, "keys", "list")
    assert code == 1
    assert "corrupt or truncated" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("weak", ["passwordpasswordpassword", "0" * 32, "00" * 32])
def test_a_weak_secret_key_is_refused_at_start(env: dict[str, str], weak: str) -> None:
    code, out = run({**env, "OTPGATE_SECRET_KEY": weak}, "keys", "list")
    assert code == 1
    assert "OTPGATE_SECRET_KEY" in out
    assert "secrets.token_urlsafe(32)" in out


async def test_a_running_process_says_loudly_when_its_key_file_is_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    runtime = await Runtime.open(build({"data_dir": tmp_path, "dev": True}))
    try:
        runtime.watch_secret_file()
        assert "deleted" not in caplog.text
        written = (tmp_path / "secret.key").read_text().strip()
        (tmp_path / "secret.key").unlink()
        with caplog.at_level(logging.ERROR):
            runtime.watch_secret_file()
            runtime.watch_secret_file()
    finally:
        await runtime.close()
    assert caplog.text.count("was deleted while otpgate runs") == 1
    assert written not in caplog.text


def test_secrets_rotate_lists_and_retires_and_the_key_check_still_refuses_another_key(
    env: dict[str, str],
) -> None:
    env = {**env, "OTPGATE_SECRET_KEY": FIRST}
    code, out = run(env, "secrets", "rotate")
    assert code == 0, out
    kid = out.split()[2]
    listed = json.loads(run(env, "secrets", "list")[1])
    assert [(e["kid"], e["current"]) for e in listed][-1] == (kid, True)
    root = listed[0]["kid"]
    assert listed[0]["source"] == "secret key" and listed[0]["retirable_from"]
    code, out = run(env, "secrets", "retire", kid)
    assert code == 1 and "current code key" in out
    code, out = run(env, "secrets", "retire", root)
    assert code == 1 and "may still be alive" in out
    code, out = run(env, "secrets", "retire", "nothex")
    assert code == 1 and "8 hex" in out
    # a code sent now is digested with the new key, and another master secret is still
    # refused by the check value the store keeps
    assert run(env, "send", "--to", "+14155550123")[0] == 0
    code, out = run({**env, "OTPGATE_SECRET_KEY": OTHER}, "secrets", "list")
    assert code == 1 and "is not the one the database" in out
    assert FIRST not in out
