"""The Lua scripts, each with the shared prelude in front, by name (``lua/<name>.lua``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: bytes
    sha: str


@cache
def script(name: str) -> Script:
    folder = resources.files("otpgate.redisio") / "lua"
    source = ((folder / "prelude.lua").read_bytes() + b"\n"
              + (folder / f"{name}.lua").read_bytes())
    return Script(name, source, hashlib.sha1(source, usedforsecurity=False).hexdigest())
