"""Masking text that may hold a code or an address, before it is logged or kept at rest.

A driver's error can quote what it sent (an ``httpx`` status error names the URL, query
string included), and an exception's text ends up in logs, in the send ledger's ``error``
and in dead letters. ``scrub`` masks:

* e-mail addresses' local parts (``jane@example.com`` → ``j•••@example.com``, also when
  the ``@`` is written ``%40``);
* phone numbers: a ``+`` (or ``%2B``) and digits, or digit groups with separators holding
  7 digits or more (national formats: ``(415) 555-0123``, ``06 12 34 56 78``) → ``•••``;
* any other run of 4 to 10 digits, which could be a code → ``•••``.

Left alone: digits inside a word (ids, hex digests, ``2026-01-02T…``), dotted IPv4
addresses and the port after one (or after ``localhost`` or an IPv6 literal), and what is
masked already (``+1415•••0123``). ``describe`` (``otpgate.bus.base``: ledger errors,
events, dead letters) and every log record (``install``) go through it. It masks more
than it must (a port of another host, a year): in a log, that is the cheap side to err on.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

MASK = "•••"
_MIN_PHONE_DIGITS = 7

_LOCAL = r"[\w.!#$'*+/^`{|}~-]"
_EMAIL = re.compile(
    rf"(?<!{_LOCAL})(?P<local>{_LOCAL}+)(?P<at>@|%40)(?=[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{{2,}})")
_CLUSTER = re.compile(
    r"(?:\+|%2[bB]|(?<![\w•.]))\(?\d+(?:[ ().\-/]{1,2}\d+)*(?![\w•])")
"""Digits, maybe in groups with separators, not part of a word: a number, judged by
``_number``."""
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_HOST_BEFORE_PORT = re.compile(r"(?:\d{1,3}(?:\.\d{1,3}){3}|localhost|\])$")
_DIGIT_RUN = re.compile(r"(?<!\d)\d{4,10}(?!\d)")
_DIGIT = re.compile(r"\d")


def _number(match: re.Match[str]) -> str:
    found = match[0]
    if found[0] in "+%":
        return MASK
    if _IPV4.fullmatch(found):
        return found  # the address of a machine, not of a person
    start = match.start()
    if (start and match.string[start - 1] == ":" and found.isdigit() and len(found) <= 5
            and _HOST_BEFORE_PORT.search(match.string, 0, start - 1)):
        return found  # a port
    if len(_DIGIT.findall(found)) >= _MIN_PHONE_DIGITS:
        return MASK
    # A few short groups (a date, "5 of 10"): mask only what could be a code.
    return _DIGIT_RUN.sub(MASK, found)


def _email(match: re.Match[str]) -> str:
    return f"{match['local'][:1]}{MASK}{match['at']}"


def scrub(text: str) -> str:
    """``text`` with addresses, numbers and anything shaped like a code masked."""
    if "@" in text or "%40" in text:
        text = _EMAIL.sub(_email, text)
    return _CLUSTER.sub(_number, text)


_SCRUBBED = "_otpgate_scrubbed"


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask a log record in place: its message with its arguments, its exception text
    and its stack (uvicorn's access records keep their arguments, each masked)."""
    if getattr(record, _SCRUBBED, False):
        return record
    setattr(record, _SCRUBBED, True)
    if record.name == "uvicorn.access" and isinstance(record.args, tuple):
        record.args = tuple(scrub(a) if isinstance(a, str) else a for a in record.args)
    else:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: keep what can be shown, masked
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = scrub(message), ()
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    return record


_FACTORY_MARK = "_otpgate_scrubbing"


def install() -> None:
    """Mask every log record of this process from now on, whichever logger made it and
    whichever handler shows it: records are masked as they are made. Idempotent."""
    current = logging.getLogRecordFactory()
    if getattr(current, _FACTORY_MARK, False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return scrub_record(current(*args, **kwargs))

    setattr(factory, _FACTORY_MARK, True)
    logging.setLogRecordFactory(factory)
