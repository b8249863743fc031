"""Twilio Verify services: a ServiceSid (``VA`` + 32 hex) and what its codes get — a
purpose, a brand, a code length, a TTL, and whether a verification may bring its own code.

Services come from the TOML file (``[services.VA…]``) and from ``otpgate services create``,
which keeps them in ``services.json`` in the data dir; that file is read again whenever it
changes, so a running server knows a new service at once. The TOML file wins for a sid
both name. A sid configured nowhere works all the same: it gets the defaults, with the
sid (lowercased, as purposes are) as its purpose — an app moving from Twilio with its
ServiceSid needs no set-up at all.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from otpgate.config import ServiceSettings, Settings
from otpgate.core import intake
from otpgate.core.policy import Policy
from otpgate.errors import ConfigurationError, InvalidRequest
from otpgate.files import FILE_MODE, private_dir

log = logging.getLogger(__name__)

SID_PATTERN = r"VA[0-9a-f]{32}"
_SID = re.compile(SID_PATTERN, re.ASCII)
_NAME = re.compile(r"[\x20-\x7e]{1,64}", re.ASCII)
FILE_NAME = "services.json"


@dataclass(frozen=True, slots=True)
class Service:
    """A service as its verifications use it; ``None`` values are the defaults."""

    sid: str
    purpose: str
    name: str | None = None
    brand: str | None = None
    code_length: int | None = None
    ttl: int | None = None
    custom_code: bool = False
    configured: bool = False
    """False for a sid configured nowhere (it gets every default)."""


def is_sid(value: str) -> bool:
    return bool(_SID.fullmatch(value))


def new_sid() -> str:
    return "VA" + secrets.token_hex(16)


def default(sid: str) -> Service:
    """What a sid configured nowhere gets."""
    return Service(sid=sid, purpose=sid.lower())


def check(sid: str, settings: ServiceSettings, policy: Policy) -> Service:
    """The service ``settings`` describe, checked against ``policy``;
    ``ConfigurationError`` naming the sid and the bad value."""
    if not is_sid(sid):
        raise ConfigurationError(f"service {sid!r}: a ServiceSid is VA and 32 lowercase hex "
                                 "digits")
    try:
        if settings.name is not None and not _NAME.fullmatch(settings.name):
            raise InvalidRequest("name must be 1 to 64 printable ASCII characters", "name")
        purpose = intake.parse_purpose(settings.purpose) if settings.purpose else sid.lower()
        brand = intake.parse_brand(settings.brand)
        if settings.code_length is not None:
            policy.code_length(settings.code_length)
        if settings.ttl is not None:
            policy.ttl(settings.ttl)
    except InvalidRequest as exc:
        raise ConfigurationError(f"service {sid}: {exc.detail}") from None
    return Service(sid=sid, purpose=purpose, name=settings.name, brand=brand,
                   code_length=settings.code_length, ttl=settings.ttl,
                   custom_code=settings.custom_code, configured=True)


def file_of(settings: Settings) -> Path:
    return settings.data_dir / FILE_NAME


def read_file(path: Path) -> dict[str, ServiceSettings]:
    """The services kept in ``path`` (none if there is no such file)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return msgspec.json.decode(raw, type=dict[str, ServiceSettings])
    except msgspec.DecodeError as exc:
        raise ConfigurationError(f"{path} is not a services file: {exc}") from None


class Registry:
    """The services in effect: the TOML file's over the data dir's file's (re-read when it
    changes), every other sid getting the defaults."""

    def __init__(self, configured: Mapping[str, ServiceSettings], path: Path | None,
                 policy: Policy) -> None:
        self._policy = policy
        self._configured = {sid: check(sid, s, policy) for sid, s in configured.items()}
        self._path = path
        self._seen: tuple[int, int] | None = None
        self._kept: dict[str, Service] = {}
        self._refresh()

    @classmethod
    def of(cls, settings: Settings) -> Registry:
        return cls(settings.services, file_of(settings), settings.policy)

    def get(self, sid: str) -> Service:
        """The service of ``sid`` (a valid sid: see ``is_sid``)."""
        if (found := self._configured.get(sid)) is not None:
            return found
        self._refresh()
        return self._kept.get(sid) or default(sid)

    def all(self) -> list[Service]:
        """Every configured service, by sid."""
        self._refresh()
        return sorted({**self._kept, **self._configured}.values(), key=lambda s: s.sid)

    def _refresh(self) -> None:
        if self._path is None:
            return
        try:
            stat = self._path.stat()
            seen: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            seen = None
        except OSError:
            return
        if seen == self._seen:
            return
        try:
            kept = {sid: check(sid, s, self._policy) for sid, s in read_file(self._path).items()}
        except ConfigurationError as exc:
            log.error("services file not used: %s", exc.detail)
            return
        self._seen, self._kept = seen, kept


def create(path: Path, settings: ServiceSettings, policy: Policy) -> Service:
    """Make a new sid for ``settings``, checked, and keep it in the services file
    ``path`` (written whole, then moved into place)."""
    sid = new_sid()
    service = check(sid, settings, policy)
    kept = read_file(path)
    kept[sid] = settings
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(msgspec.json.format(msgspec.json.encode(kept), indent=2) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return service
