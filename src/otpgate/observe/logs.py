"""Log lines as text or JSON (``OTPGATE_LOG_FORMAT=json|text``), masked at the formatter.

JSON (python-json-logger): one object per line with ``ts`` (RFC 3339, UTC), ``level``,
``msg``, ``logger``, and — where they apply — ``request_id``, ``otp_id``, ``event_id`` and
``driver`` (``otpgate.observe.context``), ``exc`` for a traceback, and any ``extra=``
fields. Text: ``ts level logger: msg [request_id=… otp_id=…]``.

Whatever a record holds, the formatter masks its text before it is written: numbers,
addresses and anything shaped like a code (``mask``: ``otpgate.redact.scrub``), on top of
what ``redact.install`` already masks as records are made. ``uvicorn``'s own loggers go through
the same formatter (``uvicorn_config``), in every server process.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from otpgate import redact
from otpgate.observe import context

FORMATS = ("text", "json")
Mask = Callable[[str], str]

mask: Mask = redact.scrub
"""The one masking hook the formatters call: the project's (``otpgate.redact``)."""


def _ts(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return value


class JsonLines(JsonFormatter):
    """One JSON object per record, every string in it masked."""

    def __init__(self) -> None:
        super().__init__("{message}", style="{", json_ensure_ascii=False,
                         rename_fields={"message": "msg", "exc_info": "exc"})

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        found: dict[str, Any] = {}
        super().add_fields(found, record, message_dict)
        log_data["ts"] = _ts(record.created)
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data.update({name: _masked(value) for name, value in found.items()})
        log_data.update(context.current())  # our own ids: nothing to mask


class TextLines(logging.Formatter):
    """``ts level logger: msg [ids]``, masked."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        bound = " ".join(f"{k}={v}" for k, v in context.current().items())
        line = f"{_ts(record.created)} {mask(super().format(record))}"
        return f"{line} [{bound}]" if bound else line


def formatter(format: str = "text") -> logging.Formatter:
    """The formatter for ``format`` (``text`` or ``json``)."""
    if format not in FORMATS:
        raise ValueError(f"OTPGATE_LOG_FORMAT is text or json, not {format!r}")
    return JsonLines() if format == "json" else TextLines()


def configure(format: str = "text", level: str = "info") -> None:
    """Send every log record of this process to stderr through ``formatter(format)`` —
    unless logging has handlers already (as ``logging.basicConfig``: whoever set them up,
    a test runner or an embedding program, keeps them)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(format))
    root.addHandler(handler)


def uvicorn_config(format: str, level: str) -> dict[str, Any]:
    """``logging.config.dictConfig`` for uvicorn's server processes: the same formatter for
    otpgate's records and uvicorn's own."""
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"otpgate": {"()": formatter, "format": format}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "otpgate",
                                "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {name: {"handlers": [], "propagate": True}
                    for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }
