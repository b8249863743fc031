"""Schemathesis, with every check it has, against a real dev-mode server: no 5xx, no
answer its OpenAPI document does not describe, no value the document allows and the
service refuses (or the other way round) beyond what ``schemathesis.toml`` explains."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import server as srv

CONFIG = Path(__file__).with_name("schemathesis.toml")
ST = Path(sys.executable).with_name("st")


@pytest.mark.timeout(240)
def test_schemathesis_with_all_checks_finds_nothing(tmp_path: Path) -> None:
    server = srv.start(tmp_path / "var", tmp_path / "server.log",
                       {"OTPGATE_LOG_LEVEL": "warning"})
    try:
        run = subprocess.run(
            [str(ST), "--config-file", str(CONFIG), "run", f"{server.url}/openapi.json",
             "--checks", "all", "--max-examples", "20", "--seed", "1",
             # DELETE cancels a code, it does not remove it: GET answers it "canceled"
             # (the contract), which the stateful phase reaches once the document's
             # examples make real codes.
             "--exclude-checks", "use_after_free",
             "--generation-database", "none", "--no-color"],
            capture_output=True, text=True, timeout=200, check=False, cwd=tmp_path)
    finally:
        server.stop()
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert " passed" in run.stdout and "failure" not in run.stdout.lower(), report
    assert "Traceback" not in server.output(), server.output()
