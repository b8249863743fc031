"""What a log line is about: the request, OTP, event and driver in hand, as context
variables.

The API's middleware binds ``request_id`` (and ``otp_id`` for routes that name one), the
bus handlers bind ``event_id``, ``otp_id`` and ``driver``; the log formatters read them.
Each asyncio task has its own copy, so concurrent requests and deliveries never mix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("otpgate_request_id", default=None)
otp_id: ContextVar[str | None] = ContextVar("otpgate_otp_id", default=None)
event_id: ContextVar[str | None] = ContextVar("otpgate_event_id", default=None)
driver: ContextVar[str | None] = ContextVar("otpgate_driver", default=None)

FIELDS: tuple[tuple[str, ContextVar[str | None]], ...] = (
    ("request_id", request_id), ("otp_id", otp_id), ("event_id", event_id),
    ("driver", driver))
"""The names log lines give these values, in the order they are shown."""


def current() -> dict[str, str]:
    """The values bound here and now (unbound ones left out)."""
    return {name: value for name, var in FIELDS if (value := var.get()) is not None}


@contextmanager
def bound(**values: str | None) -> Iterator[None]:
    """Bind ``values`` (by the names of ``FIELDS``) for the duration of the block."""
    by_name = dict(FIELDS)
    tokens = [(by_name[name], by_name[name].set(value)) for name, value in values.items()
              if value is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
