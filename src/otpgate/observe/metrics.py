"""Prometheus metrics: every family otpgate exports, and the figures the dashboard shows.

The families are prometheus-client objects of this module, process-wide as the library
means them to be (its registry is process-wide too). ``otpgate serve --workers N`` points
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's own variable) at a fresh directory before
it starts the server processes, so that each process writes its samples there and whichever
process answers ``GET /metrics`` reports the sum of all (``exposition``).

Counters end ``_total``, durations are ``_seconds`` histograms, gauges are set when a scrape
asks (``observe_backlog``, ``observe_breakers``). Labels hold driver, channel, route and
subscription names, ISO country codes and outcomes — never a number, an address or a code.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import phonenumbers
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from otpgate.breaker import BreakerState
from otpgate.events import CloudEvent, EventType

if TYPE_CHECKING:  # the bus counts its dead letters here: no import back at run time
    from otpgate.breaker import BreakerView
    from otpgate.bus.base import Backlog

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter(
    "otpgate_http_requests", "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"])
HTTP_DURATION = Histogram(
    "otpgate_http_request_duration_seconds", "Time to answer an HTTP request, by route.",
    ["route"])
OTPS = Counter(
    "otpgate_otps", "OTP lifecycle outcomes (requested, resent, approved, "
    "verification_failed, expired, canceled, locked, failed), by the recipient's country.",
    ["outcome", "country"])
SENDS = Counter(
    "otpgate_sends", "Provider calls, by driver, channel, destination country and outcome "
    "(sent, temporary, permanent, broken, unknown).",
    ["driver", "channel", "country", "outcome"])
SEND_DURATION = Histogram(
    "otpgate_send_duration_seconds", "Time a provider call took, by driver.", ["driver"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
QUEUE_DEPTH = Gauge(
    "otpgate_queue_depth", "Deliveries not yet acknowledged, by bus subscription.",
    ["subscription"], multiprocess_mode="livemostrecent")
QUEUE_AGE = Gauge(
    "otpgate_queue_oldest_age_seconds", "Seconds the oldest due delivery has waited, by "
    "bus subscription.", ["subscription"], multiprocess_mode="livemostrecent")
DEAD_LETTERS = Counter(
    "otpgate_dead_letters", "Events moved to the dead-letter queue, by subscription.",
    ["subscription"])
BREAKER = Gauge(
    "otpgate_breaker_state", "Circuit breaker per driver: 0 closed, 1 half-open, 2 open "
    "(the worst of the live processes).", ["driver"], multiprocess_mode="livemax")
RULE_BLOCKS = Counter(
    "otpgate_rule_blocks", "Requests refused by an abuse rule, by rule.", ["rule"])
RULE_WOULD_BLOCK = Counter(
    "otpgate_rule_would_block", "Requests an abuse rule in monitor mode would have refused, "
    "by rule.", ["rule"])
PUMPING_BLOCKS = Counter(
    "otpgate_pumping_blocks", "Requests refused because their number prefix (the number "
    "without its last 3 digits) is blocked for SMS pumping, by prefix.", ["prefix"])
WEBHOOKS = Counter(
    "otpgate_webhook_deliveries", "Outgoing webhook attempts, by outcome (delivered, "
    "failed).", ["outcome"])

_AUDIT_HELP = {
    "otpgate_verify_failures": ("Wrong answers to a live code, by tenant.", ("tenant",)),
    "otpgate_verify_uncounted": ("Answers that counted nothing, by tenant and reason.",
                                 ("tenant", "reason")),
    "otpgate_recipient_locks": ("Recipients locked by consecutive failures.", ("tenant",)),
    "otpgate_recipient_unlocks": ("Operators' unlocks.", ("tenant",)),
    "otpgate_api_key_uses": ("Requests an API key authenticated, by key id.", ("key_id",)),
    "otpgate_api_key_failures": ("Requests refused for their key, by reason.", ("reason",)),
}
AUDIT = {f"{name}_total": Counter(name, text, list(labels))
         for name, (text, labels) in _AUDIT_HELP.items()}
"""The security counters of ``otpgate.audit``, by the names it counts them under."""

_BREAKER_VALUE = {BreakerState.CLOSED: 0.0, BreakerState.HALF_OPEN: 1.0,
                  BreakerState.OPEN: 2.0}
_OUTCOME_OF = {
    EventType.APPROVED.value: "approved",
    EventType.VERIFICATION_FAILED.value: "verification_failed",
    EventType.EXPIRED.value: "expired",
    EventType.CANCELED.value: "canceled",
    EventType.LOCKED.value: "locked",
}


def country_of(masked: str) -> str:
    """The ISO country of a masked recipient (``+1415•••0123`` → ``US``; ``email`` for an
    address, ``unknown`` where the prefix names none). The country code and the leading
    digits the mask keeps are enough for a country, and the mask is all that events hold.
    The last digits it keeps stand in as 5s, like the hidden ones: they hardly ever tell
    a country, and so numbers that differ only there (every new number of a busy day)
    share one cached answer instead of one parse each."""
    if "@" in masked:
        return "email"
    head, _, tail = masked.partition("•")
    tail = tail.lstrip("•")
    return _country_of(head.lstrip("+"), masked.count("•") + len(tail),
                       not tail or tail.isdigit())


@functools.lru_cache(maxsize=4096)
def _country_of(head: str, rest: int, digits_only: bool) -> str:
    digits = head + "5" * rest
    if not digits_only or not digits.isdigit():
        return "unknown"
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse("+" + digits))
    except phonenumbers.NumberParseException:
        region = None
    if not region or region == "001":
        for length in (1, 2, 3):
            regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(digits[:length]))
            if regions:
                region = regions[0]
                break
    return region if region and region != "001" else "unknown"


def count_events(events: Iterable[CloudEvent], failed: int = 0, country: str = "") -> None:
    """Count the OTP outcomes a committed change published (``failed``: OTPs it failed,
    which have no event of their own)."""
    for event in events:
        outcome = _OUTCOME_OF.get(event.type)
        if event.type == EventType.REQUESTED.value:
            outcome = "requested" if event.data.get("send_count") == 1 else "resent"
        if outcome is not None:
            OTPS.labels(outcome, country_of(str(event.data.get("to", "")))).inc()
    if failed:
        OTPS.labels("failed", country or "unknown").inc(failed)


def audited(name: str, labels: dict[str, str]) -> None:
    """Count a security event ``otpgate.audit`` counted (an unknown name is ignored)."""
    family = AUDIT.get(name)
    if family is not None:
        family.labels(**labels).inc()


def observe_backlog(backlog: Sequence[Backlog]) -> None:
    for entry in backlog:
        QUEUE_DEPTH.labels(entry.subscription).set(entry.depth)
        QUEUE_AGE.labels(entry.subscription).set(entry.oldest_due_age)


def observe_breakers(views: Sequence[BreakerView], drivers: Iterable[str]) -> None:
    """Breaker states; a driver without a breaker yet (never called here) is closed."""
    seen = {view.driver: view for view in views}
    for name in drivers:
        view = seen.get(name)
        BREAKER.labels(name).set(_BREAKER_VALUE[view.state] if view else 0.0)


def breaker_value(state: BreakerState) -> float:
    return _BREAKER_VALUE[state]


def registry() -> CollectorRegistry:
    """What a scrape reports: every process's samples in multi-process mode, else this
    process's (with the standard process and Python collectors)."""
    if os.environ.get(MULTIPROC_DIR):
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged
    return REGISTRY


def exposition() -> bytes:
    """The Prometheus text format of ``registry()``."""
    return generate_latest(registry())


def process_gone(pid: int | None = None) -> None:
    """Drop a finished process's live gauges (multi-process mode only)."""
    if os.environ.get(MULTIPROC_DIR):
        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]


def samples(prefix: str = "otpgate_") -> list[tuple[str, dict[str, str], float]]:
    """Every sample of otpgate's families as ``(name, labels, value)``."""
    found: list[tuple[str, dict[str, str], float]] = []
    for family in registry().collect():
        if family.name.startswith(prefix):
            found.extend((s.name, dict(s.labels), float(s.value)) for s in family.samples)
    return found


def totals(name: str, by: Sequence[str], found: Sequence[tuple[str, dict[str, str], float]]
           ) -> dict[tuple[str, ...], float]:
    """The samples named ``name`` summed over every label but ``by``."""
    summed: dict[tuple[str, ...], float] = {}
    for sample, labels, value in found:
        if sample == name:
            key = tuple(labels.get(label, "") for label in by)
            summed[key] = summed.get(key, 0.0) + value
    return summed


def labelled(values: dict[tuple[str, ...], float], *names: str) -> list[dict[str, Any]]:
    """``totals`` as a list of objects (for JSON)."""
    return [{**dict(zip(names, key, strict=True)), "value": value}
            for key, value in sorted(values.items())]
