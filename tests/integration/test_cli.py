"""The command line, run in-process against an embedded database in a temporary folder."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from otpgate.cli import main

SECRET = "VWcB8phfd2Ho-6rqn0IABFVAVe-Mv-aGOFNo6hGhkgY"  # random, tests only


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"OTPGATE_DATA_DIR": str(tmp_path / "var"), "OTPGATE_SECRET_KEY": SECRET,
            "OTPGATE_LOG_LEVEL": "warning"}


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_send_queues_a_code_and_verify_by_recipient_counts_a_wrong_answer(
    env: dict[str, str], tmp_path: Path
) -> None:
    code, out = run(env, "send", "--to", "+14155550123", "--purpose", "login")
    assert code == 0, out
    sent = json.loads(out)
    assert sent["to"] == "+1415•••0123"
    assert sent["outcome"] == "created"
    # Queued in the outbox for whichever server or worker runs next.
    with sqlite3.connect(tmp_path / "var" / "otpgate.db") as conn:
        assert conn.execute("SELECT count(*) FROM otps").fetchone()[0] == 1
    code, out = run(env, "verify", "--to", "+14155550123", "--purpose", "login",
                    "--code", "000000")
    assert code == 1
    assert json.loads(out) == {"valid": False, "status": "pending", "attempts_left": 4}


def test_verify_by_an_unknown_id_fails_with_a_message(env: dict[str, str]) -> None:
    code, out = run(env, "verify", "--id", "otp_" + "x" * 22, "--code", "123456")
    assert code == 1
    assert "no OTP with this id" in out


def test_verify_needs_exactly_one_of_id_and_recipient(env: dict[str, str]) -> None:
    code, out = run(env, "verify", "--code", "123456")
    assert code == 2
    assert "exactly one of --id and --to" in out


def test_a_malformed_recipient_is_refused_with_the_reason(env: dict[str, str]) -> None:
    code, out = run(env, "send", "--to", "+1 415 555 O123")
    assert code == 1
    assert "E.164" in out


def test_keys_are_created_once_listed_without_secrets_and_revoked(env: dict[str, str]) -> None:
    code, plaintext = run(env, "keys", "create", "--name", "checkout")
    assert code == 0
    plaintext = plaintext.strip()
    assert plaintext.startswith("og_")
    code, out = run(env, "keys", "list")
    [listed] = json.loads(out)
    assert listed["name"] == "checkout"
    assert listed["revoked_at"] is None
    assert plaintext.split("_")[-1] not in out
    assert run(env, "keys", "revoke", listed["id"])[0] == 0
    assert json.loads(run(env, "keys", "list")[1])[0]["revoked_at"] is not None
    code, out = run(env, "keys", "revoke", listed["id"])
    assert code == 1
    assert "no active key" in out


def test_serve_outside_dev_mode_refuses_the_capture_driver_before_listening(
    env: dict[str, str],
) -> None:
    code, out = run(env, "serve", "--no-dev", "--port", "1")
    assert code == 1
    assert "capture driver" in out


def test_a_bad_setting_is_reported_not_raised(env: dict[str, str]) -> None:
    code, out = run({**env, "OTPGATE_POLICY_MAX_ATTEMPTS": "lots"}, "keys", "list")
    assert code == 1
    assert "OTPGATE_POLICY_MAX_ATTEMPTS" in out


def test_a_code_sent_before_any_server_ever_ran_is_kept_for_the_dispatcher(
    env: dict[str, str], tmp_path: Path
) -> None:
    code, out = run({**env, "OTPGATE_DEV": "true"}, "send", "--to", "+14155550199")
    assert code == 0, out
    with sqlite3.connect(tmp_path / "var" / "otpgate.db") as conn:
        queued = conn.execute("SELECT subscription FROM deliveries").fetchall()
    assert queued == [("dispatch.capture",)]
