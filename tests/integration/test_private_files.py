"""The embedded database and the secret key are private to the user running otpgate."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from otpgate.config import build
from otpgate.runtime import Runtime
from otpgate.service import OtpRequest


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("permissive_umask")
async def test_the_data_dir_is_0700_and_every_file_in_it_0600_under_umask_022(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "var"
    runtime = await Runtime.open(build({"data_dir": data_dir, "dev": True}))
    try:
        await runtime.service.request(OtpRequest(to="+14155550123"))
        modes = {p.name: _mode(p) for p in data_dir.iterdir()}
    finally:
        await runtime.close()
    assert _mode(data_dir) == 0o700
    assert {"otpgate.db", "otpgate.db-wal", "otpgate.db-shm", "otpgate.db-writer.lock",
            "secret.key"} <= set(modes)
    assert {name: mode for name, mode in modes.items() if mode != 0o600} == {}


@pytest.mark.usefixtures("permissive_umask")
async def test_an_existing_data_dir_open_to_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    runtime = await Runtime.open(build({"data_dir": data_dir, "dev": True}))
    await runtime.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(data_dir) in w and "755" in w for w in warnings), warnings
    assert _mode(data_dir) == 0o755, "an operator's choice is left as it is"
