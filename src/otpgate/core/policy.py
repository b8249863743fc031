"""The rules an OTP lives by. Defaults follow common practice for SMS codes, and NIST SP
800-63B rev 4 §3.2.2 for failures (at most 100 consecutive ones before a lock)."""

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
    recipient_max_sends: int = 10
    """Codes sent per recipient, whatever the purpose, within ``recipient_send_window``."""
    recipient_send_window: int = 3600
    delay_after: int = 10
    """Consecutive wrong answers (per recipient, across codes and purposes) from which each
    new code waits ``delay_base`` seconds after the last failure, doubling per further
    failure, up to ``delay_cap``."""
    delay_base: int = 60
    delay_cap: int = 3600
    lock_after: int = 100
    """Consecutive wrong answers that lock the recipient for ``lock_time`` seconds (or until
    an operator unlocks it)."""
    lock_time: int = 86400
    default_code_length: int = codes.DEFAULT_LENGTH
    min_code_length: int = codes.POLICY_MIN_LENGTH
    """The shortest code a request may ask for; an operator may lower it to
    ``codes.MIN_LENGTH`` (4)."""

    def __post_init__(self) -> None:
        if not 0 < self.min_ttl <= self.default_ttl <= self.max_ttl:
            raise ConfigurationError("TTLs must satisfy 0 < min <= default <= max")
        for name in ("max_attempts", "max_sends", "send_window", "recipient_max_sends",
                     "recipient_send_window", "delay_after", "delay_base", "lock_after",
                     "lock_time"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"policy {name} must be >= 1")
        if self.resend_cooldown < 0:
            raise ConfigurationError("policy resend_cooldown must be >= 0")
        if self.delay_cap < self.delay_base:
            raise ConfigurationError("policy delay_cap must be >= delay_base")
        if not codes.MIN_LENGTH <= self.min_code_length <= codes.MAX_LENGTH:
            raise ConfigurationError(f"policy min_code_length must be between "
                                     f"{codes.MIN_LENGTH} and {codes.MAX_LENGTH}")
        try:
            self.code_length(self.default_code_length)
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

    def code_length(self, requested: int | None) -> int:
        """The code length to use for a request: ``min_code_length`` to 10 digits."""
        length = self.default_code_length if requested is None else requested
        codes.check_length(length, self.min_code_length)
        return length

    def send_delay(self, streak: int) -> int:
        """Seconds a new code waits after the last of ``streak`` consecutive failures:
        none below ``delay_after``, then ``delay_base`` doubling per failure, capped."""
        if streak < self.delay_after:
            return 0
        doublings = min(streak - self.delay_after, 32)
        return min(self.delay_cap, self.delay_base << doublings)
