"""CloudEvents 1.0 envelope (JSON structured mode) and otpgate's event types.

Extension attributes ``channel`` and ``driver`` let subscriptions filter dispatch events
the way an SNS filter policy would, without opening ``data``; ``traceparent`` (the
CloudEvents distributed tracing extension) carries the W3C trace context of the work that
published the event, so that its handling continues the same trace.
"""

from __future__ import annotations

import enum
import itertools
import os
import secrets
from typing import Any

import msgspec

from otpgate.clock import isoformat

SPECVERSION = "1.0"
DEFAULT_SOURCE = "urn:otpgate"


class EventType(enum.StrEnum):
    REQUESTED = "otpgate.otp.requested.v1"
    DISPATCH = "otpgate.otp.dispatch.v1"
    SENT = "otpgate.otp.sent.v1"
    DELIVERED = "otpgate.otp.delivered.v1"
    DELIVERY_FAILED = "otpgate.otp.delivery_failed.v1"
    APPROVED = "otpgate.otp.approved.v1"
    VERIFICATION_FAILED = "otpgate.otp.verification_failed.v1"
    EXPIRED = "otpgate.otp.expired.v1"
    CANCELED = "otpgate.otp.canceled.v1"
    LOCKED = "otpgate.otp.locked.v1"
    RULE_WOULD_BLOCK = "otpgate.rule.would_block.v1"
    RULE_BLOCKED = "otpgate.rule.blocked.v1"


class CloudEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A CloudEvents 1.0 event. ``data`` never holds a plain code or a full number,
    except the sealed payload of a dispatch event."""

    id: str
    source: str
    type: str
    time: str
    subject: str
    data: dict[str, Any]
    specversion: str
    datacontenttype: str = "application/json"
    channel: str | msgspec.UnsetType = msgspec.UNSET
    driver: str | msgspec.UnsetType = msgspec.UNSET
    traceparent: str | msgspec.UnsetType = msgspec.UNSET

    def attributes(self) -> dict[str, str]:
        """Context attributes a subscription may filter on."""
        attrs = {"type": self.type, "source": self.source, "subject": self.subject}
        if isinstance(self.channel, str):
            attrs["channel"] = self.channel
        if isinstance(self.driver, str):
            attrs["driver"] = self.driver
        return attrs


class _EventIds:
    """Unique event ids, cheaply: 64 random bits per process, then a counter.

    Event ids need to be unique per source, not secret; a fresh prefix after ``fork`` keeps
    processes apart. A dot, not a hyphen, joins the two: log masking leaves digits after a
    dot alone, and would mask a counter such as ``-4521`` (shaped like a code), leaving an
    operator no id to replay.
    """

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}.{next(self._counter):x}"


_next_id = _EventIds()
os.register_at_fork(after_in_child=_next_id.renew)


def new(
    type_: EventType,
    subject: str,
    data: dict[str, Any],
    now: float,
    *,
    source: str = DEFAULT_SOURCE,
    channel: str | None = None,
    driver: str | None = None,
) -> CloudEvent:
    return CloudEvent(
        id=_next_id(),
        source=source,
        type=type_.value,
        time=isoformat(now),
        subject=subject,
        data=data,
        specversion=SPECVERSION,
        datacontenttype="application/json",
        channel=msgspec.UNSET if channel is None else channel,
        driver=msgspec.UNSET if driver is None else driver,
    )


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(CloudEvent)


def encode(event: CloudEvent) -> bytes:
    return _encoder.encode(event)


def decode(raw: bytes | str) -> CloudEvent:
    return _decoder.decode(raw)


class Filter(msgspec.Struct, frozen=True):
    """Matches events whose attributes take one of the listed values, for every key given
    (an SNS filter policy on message attributes, without the numeric operators)."""

    rules: dict[str, tuple[str, ...]] = {}

    @classmethod
    def of(cls, **rules: str | tuple[str, ...] | list[str]) -> Filter:
        norm = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in rules.items()}
        return cls(rules=norm)

    def matches(self, event: CloudEvent) -> bool:
        attrs = event.attributes()
        return all(attrs.get(k) in allowed for k, allowed in self.rules.items())
