"""The rules an OTP lives by. Defaults follow common practice for SMS codes."""

from __future__ import annotations

from dataclasses import dataclass

from otpgate.core import codes
from otpgate.errors import ConfigurationError, InvalidRequest


@dataclass(frozen=True, slots=True)
class Policy:
    """Limits applied to every OTP; all durations in seconds."""

    default_ttl: int = 300
    min_ttl: int = 30
    max_ttl: int = 600
    max_attempts: int = 5
    """Wrong answers one OTP takes before it dies (kept across resends)."""
    resend_cooldown: int = 30
    max_sends: int = 5
    """Codes sent per (recipient, purpose) within ``send_window``."""
    send_window: int = 600
    max_failures: int = 10
    """Wrong answers per recipient, across codes and purposes, within ``failure_window``."""
    failure_window: int = 3600
    default_code_length: int = codes.DEFAULT_LENGTH

    def __post_init__(self) -> None:
        if not 0 < self.min_ttl <= self.default_ttl <= self.max_ttl:
            raise ConfigurationError("TTLs must satisfy 0 < min <= default <= max")
        for name in ("max_attempts", "max_sends", "send_window", "max_failures",
                     "failure_window"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"policy {name} must be >= 1")
        if self.resend_cooldown < 0:
            raise ConfigurationError("policy resend_cooldown must be >= 0")
        try:
            codes.check_length(self.default_code_length)
        except InvalidRequest as exc:
            raise ConfigurationError(f"policy default_code_length: {exc.detail}") from None

    def ttl(self, requested: int | None) -> int:
        """The TTL to use for a request, refusing what lies outside the bounds."""
        if requested is None:
            return self.default_ttl
        if isinstance(requested, bool) or not isinstance(requested, int):
            raise InvalidRequest("ttl_seconds must be an integer", "ttl_seconds")
        if not self.min_ttl <= requested <= self.max_ttl:
            raise InvalidRequest(
                f"ttl_seconds must be between {self.min_ttl} and {self.max_ttl}",
                "ttl_seconds",
            )
        return requested
