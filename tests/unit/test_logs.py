"""Log lines: JSON objects or text, with the bound ids, never a code or a number."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from otpgate.observe import context, logs

SECRETS = ("+14155550123", "4155550123", "123456", "98765432", "jane.doe@example.com",
           "jane.doe%40example.com", "%2B447700900123")


def record(msg: str, *args: object, exc: BaseException | None = None,
           **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("otpgate.test", logging.WARNING, __file__, 1, msg, args,
                             (type(exc), exc, exc.__traceback__) if exc else None)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


def boom() -> BaseException:
    try:
        raise RuntimeError("provider said: +14155550123 got code 123456")
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize("format", ["json", "text"])
def test_codes_numbers_and_addresses_never_come_out(format: str) -> None:
    formatter = logs.formatter(format)
    lines = [
        formatter.format(record("sent %s to %s", "123456", "+14155550123")),
        formatter.format(record("code 98765432 for jane.doe@example.com")),
        formatter.format(record("GET /v1/dev/messages?to=%2B447700900123&x="
                                "jane.doe%40example.com")),
        formatter.format(record("national (415) 555-0123, bare 4155550123")),
        formatter.format(record("failed", exc=boom())),
        formatter.format(record("with extras", to="+14155550123", code="123456")),
    ]
    for line in lines:
        for secret in SECRETS:
            assert secret not in line, (secret, line)
    assert "•••" in lines[0]


def test_a_json_line_is_one_object_with_ts_level_msg_and_the_bound_ids() -> None:
    formatter = logs.formatter("json")
    with context.bound(request_id="req-1", otp_id="otp_abc", event_id="ev-1",
                       driver="twilio"):
        line = formatter.format(record("sending %s", "now"))
    assert "\n" not in line
    body = json.loads(line)
    assert body["msg"] == "sending now" and body["level"] == "warning"
    assert body["ts"].endswith("Z") and body["logger"] == "otpgate.test"
    assert (body["request_id"], body["otp_id"], body["event_id"], body["driver"]) == (
        "req-1", "otp_abc", "ev-1", "twilio")
    bare = json.loads(formatter.format(record("nothing bound")))
    assert "request_id" not in bare and "driver" not in bare
    failed = json.loads(formatter.format(record("failed", exc=boom())))
    assert "RuntimeError" in failed["exc"] and "123456" not in failed["exc"]


def test_the_text_line_names_the_bound_ids() -> None:
    with context.bound(request_id="req-2", otp_id=None):
        line = logs.formatter("text").format(record("hello"))
    assert line.endswith("WARNING otpgate.test: hello [request_id=req-2]")


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text or json"):
        logs.formatter("xml")


def test_configure_sends_records_through_the_formatter(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    root.handlers[:] = []
    try:
        logs.configure("json", "info")
        logging.getLogger("otpgate.x").info("code %s", "654321")
        sys.stderr.flush()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    out = capsys.readouterr().err.strip().splitlines()[-1]
    assert json.loads(out)["msg"] == "code •••"
