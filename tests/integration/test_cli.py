"""The command line, run in-process against an embedded database in a temporary folder."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from otpgate import config
from otpgate.cli import main
from otpgate.core import recipients
from otpgate.core.lifecycle import Change
from otpgate.core.otp import RecipientState
from otpgate.runtime import Runtime

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
    assert plaintext.removeprefix(f"og_{listed['id']}_") not in out
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


def test_routes_prints_the_table_and_the_chain_a_number_would_get(env: dict[str, str]) -> None:
    env = {**env, "OTPGATE_DRIVERS_SMS": "console://,console://?name=backup",
           "OTPGATE_ROUTES": "sms:+44=backup,console"}
    code, out = run(env, "routes")
    assert code == 0, out
    assert out.splitlines() == ["sms       +44        backup -> console",
                                "sms       default    console -> backup"]
    code, out = run(env, "routes", "--to", "+447912345678")
    assert (code, out.strip()) == (0, "sms       backup -> console")
    code, out = run(env, "routes", "--to", "+14155550123")
    assert (code, out.strip()) == (0, "sms       console -> backup")


def test_routes_refuses_a_table_naming_an_unknown_driver(env: dict[str, str]) -> None:
    env = {**env, "OTPGATE_DRIVERS_SMS": "console://", "OTPGATE_ROUTES": "sms:+44=ghost"}
    code, out = run(env, "routes")
    assert code == 1
    assert "'ghost'" in out and "not configured" in out


def test_keys_are_made_for_a_tenant_and_listed_with_it(env: dict[str, str]) -> None:
    assert run(env, "keys", "create", "--name", "ops", "--tenant", "acme", "--admin")[0] == 0
    assert run(env, "keys", "create", "--name", "shop")[0] == 0
    listed = json.loads(run(env, "keys", "list")[1])
    assert [(k["name"], k["tenant"], k["admin"]) for k in listed] == [
        ("ops", "acme", True), ("shop", "default", False)]
    code, out = run(env, "keys", "create", "--name", "x", "--tenant", "Not A Tenant")
    assert code == 2
    assert "tenant" in out


def test_send_and_verify_act_for_the_tenant_they_are_given(env: dict[str, str]) -> None:
    sent = json.loads(run(env, "send", "--to", "+14155550123", "--tenant", "acme")[1])
    code, out = run(env, "verify", "--id", sent["id"], "--code", "000000")
    assert (code, "no OTP with this id" in out) == (1, True)
    code, out = run(env, "verify", "--id", sent["id"], "--code", "000000", "--tenant", "acme")
    assert json.loads(out) == {"id": sent["id"], "valid": False, "status": "pending",
                               "attempts_left": 4}


def test_unlock_ends_a_lock_and_says_what_it_undid(env: dict[str, str]) -> None:
    settings = config.from_env(env)

    async def lock() -> None:
        runtime = await Runtime.open(settings)
        key = recipients.parse("+14155550123").key(runtime.keyring.digest_key)

        def locked(state: RecipientState | None) -> Change[None]:
            now = runtime.clock.now()
            state = state or RecipientState.empty(key)
            state.streak, state.last_failure_at, state.locked_until = 100, now, now + 86400
            return Change(None, state)

        try:
            await runtime.backend.store.transact(key, locked)
        finally:
            await runtime.close()

    asyncio.run(lock())
    code, out = run(env, "send", "--to", "+14155550123")
    assert code == 1 and "retry after 86400 s" in out
    code, out = run(env, "unlock", "--to", "+14155550123")
    assert code == 0, out
    assert json.loads(out) == {"to": "+1415•••0123", "tenant": "default", "was_locked": True,
                               "failures": 100}
    assert run(env, "send", "--to", "+14155550123")[0] == 0


def test_client_keys_are_made_with_origins_and_listed_with_their_scopes(
    env: dict[str, str],
) -> None:
    code, out = run(env, "keys", "create", "--name", "web", "--client",
                    "--origin", "https://app.example")
    assert code == 0, out
    assert run(env, "keys", "create", "--name", "ro", "--scope", "otp:read")[0] == 0
    listed = {k["name"]: k for k in json.loads(run(env, "keys", "list")[1])}
    assert listed["web"]["kind"] == "client"
    assert listed["web"]["scopes"] == ["otp:send", "otp:verify"]
    assert listed["web"]["origins"] == ["https://app.example"]
    assert listed["ro"]["kind"] == "server" and listed["ro"]["scopes"] == ["otp:read"]
    code, out = run(env, "keys", "create", "--name", "bad", "--client", "--admin")
    assert code == 1 and "client key" in out
    code, out = run(env, "keys", "create", "--name", "bad", "--origin", "https://a.example")
    assert code == 1 and "client keys" in out


def test_a_rotation_prints_a_new_key_and_is_listed_until_finished(env: dict[str, str]) -> None:
    old = run(env, "keys", "create", "--name", "shop")[1].strip()
    key_id = old.split("_")[1]
    code, new = run(env, "keys", "rotate", key_id, "--expire", "2h")
    assert code == 0, new
    new = new.strip()
    assert new.startswith(f"og_{key_id}_") and new != old
    [listed] = json.loads(run(env, "keys", "list")[1])
    assert listed["previous_secret_until"] is not None
    code, out = run(env, "keys", "rotate", key_id)
    assert code == 1 and "--finish" in out
    code, out = run(env, "keys", "rotate", key_id, "--finish")
    assert code == 0 and "finished" in out
    assert json.loads(run(env, "keys", "list")[1])[0]["previous_secret_until"] is None
    code, out = run(env, "keys", "rotate", "ffffffff")
    assert code == 1 and "no active key" in out


def test_routes_marks_a_least_cost_route_and_orders_a_numbers_chain_by_price(
    env: dict[str, str], tmp_path: Path,
) -> None:
    path = tmp_path / "otpgate.toml"
    path.write_text("""
[drivers]
sms = ["console://", "console://?name=backup"]

[[routes]]
channel = "sms"
drivers = ["console", "backup"]
strategy = "cost"

[prices.console]
"*" = 0.05
[prices.backup]
GB = 0.03
"*" = 0.06
""")
    env = {k: v for k, v in env.items() if not k.startswith("OTPGATE_DRIVERS_")}
    env = {**env, "OTPGATE_CONFIG": str(path)}
    code, out = run(env, "routes")
    assert (code, out.strip()) == (0, "sms       default    console -> backup  (least cost)")
    code, out = run(env, "routes", "--to", "+447912345678")
    assert (code, out.strip()) == (0, "sms       backup -> console")
    code, out = run(env, "routes", "--to", "+14155550123")
    assert (code, out.strip()) == (0, "sms       console -> backup")
