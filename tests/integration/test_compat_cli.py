"""``otpgate services create|list``, and a server refusing settings the compatibility
surfaces cannot use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otpgate.api.app import create_app
from otpgate.errors import ConfigurationError
from tests.integration.conftest import settings
from tests.integration.test_cli import env, run

__all__ = ["env"]  # the fixture


def test_a_service_made_on_the_command_line_is_listed_with_its_settings(
        env: dict[str, str], tmp_path: Path) -> None:
    code, sid = run(env, "services", "create", "--name", "Checkout", "--purpose", "checkout",
                    "--brand", "Acme Pay", "--ttl", "120", "--custom-code")
    assert code == 0, sid
    sid = sid.strip()
    assert sid.startswith("VA") and len(sid) == 34
    code, out = run(env, "services", "list")
    assert json.loads(out) == [{"sid": sid, "name": "Checkout", "purpose": "checkout",
                                "brand": "Acme Pay", "code_length": None, "ttl": 120,
                                "custom_code": True}]
    assert (tmp_path / "var" / "services.json").stat().st_mode & 0o077 == 0


def test_a_service_the_policy_refuses_is_not_made(env: dict[str, str]) -> None:
    code, out = run(env, "services", "create", "--code-length", "4")
    assert code == 1 and "code_length" in out
    assert json.loads(run(env, "services", "list")[1]) == []


@pytest.mark.parametrize("changes", [
    {"supabase_hook_secret": "whsec_not-base64!"},
    {"supabase_hook_secret": "v1,secret"},
    {"services": {"VA" + "0" * 32: {"ttl": 3600}}},
    {"services": {"VAnot-a-sid": {}}},
])
def test_the_app_refuses_to_start_with_settings_its_surfaces_cannot_use(
        tmp_path: Path, changes: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        create_app(settings(tmp_path, **changes))


def test_serve_stops_before_listening_on_a_malformed_hook_secret(env: dict[str, str]) -> None:
    code, out = run({**env, "OTPGATE_SUPABASE_HOOK_SECRET": "v1,nope"}, "serve", "--dev",
                    "--port", "1")
    assert code == 1 and "OTPGATE_SUPABASE_HOOK_SECRET" in out
