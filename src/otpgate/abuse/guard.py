"""The abuse rules of one request, checked in one limiter call (``Limiter.apply``).

For a request for a code, ``Guard.admit`` builds one batch: a GCRA cell per rate rule that
applies (recipient, caller address, API key, number prefix, country, global, purpose,
caller keys, and the velocity of new countries and prefixes), the pumping guard's cells
for the prefix (its block, this hour's and the last hour's sends and verifications) and
the day's spend per country and per key. An enforced rule that refuses writes nothing
(see ``otpgate.ratelimit.cells``); a rule in ``monitor`` mode lets the request through
and records a would-block: the event ``otpgate.rule.would_block.v1``, the counter
``otpgate_rule_would_block_total{rule}`` and a log line.

The pumping guard (a prefix is the number without its last 3 digits): with at least
``pumping_min_sends`` sends in the last ``pumping_window`` (a sliding estimate over two
fixed windows), this one included, of which under ``pumping_min_verified`` were verified,
the prefix is blocked for ``pumping_block_for`` and ``otpgate.rule.blocked.v1`` says why.
A request's send is counted in its own batch; one that then sends nothing (coalesced
with the pending code, refused by the recipient's limits) takes it back with ``unsent``
— the only second limiter call a request may make —, and approvals count through
``verified``.

Cells are named by rule, tenant and a keyed digest of the subject, so no number, prefix,
address or key id is kept in the limiter's store in the clear; what logs, events and
metric labels show of a prefix is its country and a short digest of it, since the prefix
itself — the number but for 3 digits — with a masked number's last digits would give the
whole number away.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from otpgate import events
from otpgate.abuse import numbers
from otpgate.abuse.settings import AbuseSettings, Limit
from otpgate.abuse.testnumbers import TestNumbers
from otpgate.audit import Audit
from otpgate.core.limits import REFUSED
from otpgate.core.recipients import Kind, Recipient
from otpgate.errors import BudgetExceeded, OtpgateError, PumpingBlocked, RateLimited
from otpgate.events import CloudEvent, EventType
from otpgate.observe import metrics
from otpgate.ratelimit.cells import Count, Flag, Limiter, Op, Outcome, Peek, Put, Rate, Spend

log = logging.getLogger("otpgate.abuse")

PHONE_CHANNELS = frozenset({"sms", "voice", "whatsapp"})
PREFIX_HIDDEN = 3
DAY = 86400.0
SEEN_FOR = 30 * DAY
BUSY = "too many requests; try again later"
Publish = Callable[[list[CloudEvent]], Awaitable[None]]
"""Publishes events outside a request's own change (a refused request has none)."""


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks, as the rules see it: the API key, whether it is a client key (safe in
    an app: its caller's address is the connection's), the end user's address, and the
    caller's own keys (``rate_keys``)."""

    key_id: str = "dev"
    client: bool = False
    ip: str | None = None
    rate_keys: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WouldBlock:
    rule: str
    subject: str
    """Masked: what the rule counted, as logs may show it."""


@dataclass(slots=True)
class _Check:
    op: Op
    rule: str
    subject: str
    enforce: bool


def _span(seconds: float) -> str:
    """``43200`` → ``12 h`` (log masking would take a bare number of seconds for a code)."""
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def mask_ip(ip: str) -> str:
    """``203.0.113.7`` → ``203.0.113.•••``; IPv6 keeps its /48."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "•••"
    if address.version == 4:
        return ip.rpartition(".")[0] + ".•••"
    return str(ipaddress.ip_network(f"{ip}/48", strict=False).network_address) + "/48"


def limited_address(ip: str) -> str:
    """What a per-address rule counts: an IPv4 address (also written IPv4-mapped, as
    ``::ffff:a.b.c.d``), or an IPv6 address's /64 — one subscriber's usual allocation, which
    would otherwise give a caller 2**64 buckets; a zone id (``%eth0``) is dropped."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.version == 4:
        return str(address)
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


class Guard:
    """The rules of one runtime over its limiter; ``secret`` keys the cells' names."""

    __slots__ = ("_audit", "_limiter", "_limits", "_publish", "_secret", "settings",
                 "test_numbers")

    def __init__(self, settings: AbuseSettings, limiter: Limiter, secret: bytes,
                 audit: Audit | None = None, publish: Publish | None = None) -> None:
        self.settings = settings
        self._publish = publish
        self._limiter = limiter
        self._secret = secret
        self._audit = audit or Audit()
        self._limits = settings.limits()
        self.test_numbers = TestNumbers(settings.test_numbers)

    # -- names ---------------------------------------------------------------------------

    def _digest(self, text: str) -> str:
        mac = hmac.new(self._secret, f"otpgate.limits.v1|{text}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:12]).decode()

    def _cell(self, rule: str, tenant: str, subject: str) -> str:
        return f"{rule}:{self._digest(f'{tenant}|{subject}')}"

    def prefix_key(self, tenant: str, rcpt: Recipient) -> str:
        """The keyed name of the recipient's number prefix (empty for an address)."""
        if rcpt.kind is not Kind.PHONE:
            return ""
        return self._digest(f"prefix|{tenant}|{rcpt.address[:-PREFIX_HIDDEN]}")

    @staticmethod
    def prefix_label(rcpt: Recipient, prefix_key: str) -> str:
        return f"{rcpt.country or 'ZZ'}-{prefix_key[:8]}"

    # -- checks --------------------------------------------------------------------------

    def destination(self, rcpt: Recipient, channels: Sequence[str], tenant: str,
                    ) -> list[WouldBlock]:
        """Geo and number-type rules (no store involved): raise the refusal, or the
        would-blocks of the rules in monitor mode."""
        watched: list[WouldBlock] = []
        for mode, refusal in (
                (self.settings.geo_mode, numbers.geo_refusal(rcpt, channels, self.settings)),
                (self.settings.number_types_mode,
                 numbers.type_refusal(rcpt, channels, self.settings))):
            if refusal is None or mode == "off":
                continue
            if mode == "enforce":
                self._blocked(refusal.rule, tenant, rcpt.masked)
                raise refusal
            watched.append(WouldBlock(refusal.rule, rcpt.masked))
        return watched

    def _rate(self, checks: list[_Check], rule: str, tenant: str, subject: str,
              shown: str, limit: Limit | None = None) -> None:
        limit = limit or self._limits[rule]
        if limit.mode == "off":
            return
        enforce = limit.mode == "enforce"
        checks.append(_Check(Rate(self._cell(rule, tenant, subject), limit.limit,
                                  limit.window, enforce), rule, shown, enforce))

    async def admit(self, rcpt: Recipient, channels: Sequence[str], purpose: str,
                    tenant: str, who: Requester, now: float, *,
                    pumping: bool = True) -> list[CloudEvent]:
        """Check every rule for a request for a code; raise the refusal (``RateLimited``,
        ``PumpingBlocked``, ``BudgetExceeded``, ``GeoBlocked``, ``NumberTypeRefused``), or
        return the would-block events of the rules in monitor mode. Without ``pumping``
        the pumping guard stays out (codes whose verification otpgate never sees)."""
        watched = self.destination(rcpt, channels, tenant)
        checks: list[_Check] = []
        phone = rcpt.kind is Kind.PHONE
        country = (rcpt.country or "ZZ") if phone else "email"
        self._rate(checks, "recipient", tenant, rcpt.address, rcpt.masked)
        if who.ip is not None:
            self._rate(checks, "ip", tenant, limited_address(who.ip), mask_ip(who.ip))
        self._rate(checks, "key", tenant, who.key_id, who.key_id)
        self._rate(checks, "country", tenant, country, country)
        self._rate(checks, "global", tenant, "", "global")
        self._rate(checks, "purpose", tenant, purpose, purpose)
        for name, value in who.rate_keys.items():
            if (limit := self.settings.rate_keys.get(name)) is not None:
                self._rate(checks, f"rate-key:{name}", tenant, f"{name}={value}",
                           f"{name}:•••", limit)
        prefix = self.prefix_key(tenant, rcpt) if phone else ""
        label = self.prefix_label(rcpt, prefix) if phone else ""
        if phone:
            self._rate(checks, "prefix", tenant, prefix, label)
        first_velocity = len(checks)
        seen: list[tuple[str, str, Limit]] = []
        if phone:
            for rule, subject, shown in (("new-country", country, country),
                                         ("new-prefix", prefix, label)):
                limit = self._limits[rule]
                if limit.mode == "off":
                    continue
                checks.append(_Check(Count(self._cell(f"seen-{rule}", tenant, subject),
                                           SEEN_FOR), rule, shown, False))
                checks.append(_Check(Rate(self._cell(rule, tenant, subject), limit.limit,
                                          limit.window, False), rule, shown, False))
                seen.append((rule, shown, limit))
        pumping = pumping and phone and self.settings.pumping_mode != "off" and any(
            c in PHONE_CHANNELS for c in channels)
        first_pumping = len(checks)
        if pumping:
            enforce = self.settings.pumping_mode == "enforce"
            window = self.settings.pumping_window
            bucket = math.floor(now / window)
            block = self._cell("pump-block", tenant, prefix)
            checks.append(_Check(Flag(block, enforce), "pumping", label, enforce))
            for op in (Count(f"pump-sent:{prefix}:{bucket}", 2 * window),
                       Peek(f"pump-sent:{prefix}:{bucket - 1}"),
                       Peek(f"pump-ok:{prefix}:{bucket}"),
                       Peek(f"pump-ok:{prefix}:{bucket - 1}")):
                checks.append(_Check(op, "pumping", label, False))
        first_budget = len(checks)
        cost = self._cost(rcpt, channels) if phone else 0.0
        if cost > 0:
            budgets = self.settings.budgets
            enforce = budgets.mode == "enforce"
            day, left = math.floor(now / DAY), DAY - now % DAY
            caps = budgets.countries
            if budgets.mode != "off" and (cap := caps.get(country, caps.get("*"))) is not None:
                checks.append(_Check(Spend(self._cell(f"spend-country:{day}", tenant, country),
                                           cost, cap, left, enforce),
                                     "budget-country", country, enforce))
            caps = budgets.keys
            if budgets.mode != "off" and (cap := caps.get(who.key_id, caps.get("*"))) is not None:
                checks.append(_Check(Spend(self._cell(f"spend-key:{day}", tenant, who.key_id),
                                           cost, cap, left, enforce),
                                     "budget-key", who.key_id, enforce))
        if not checks:
            return self._events(watched, tenant, now)
        outcomes = await self._limiter.apply([c.op for c in checks], now)
        refusal: OtpgateError | None = None
        for check, outcome in zip(checks[:first_velocity], outcomes, strict=False):
            refusal = self._judge(check, outcome, tenant, watched) or refusal
        for index, (rule, shown, limit) in enumerate(seen):
            count, rate = outcomes[first_velocity + 2 * index: first_velocity + 2 * index + 2]
            if not rate.allowed and count.value - 1 < self.settings.established:
                if limit.mode == "enforce":
                    refusal = refusal or RateLimited(BUSY, math.ceil(rate.retry_after), rule)
                else:
                    watched.append(WouldBlock(rule, shown))
        if pumping:
            refusal = await self._pumping(
                checks[first_pumping], outcomes[first_pumping:first_pumping + 5], tenant,
                label, now, watched) or refusal
        for check, outcome in zip(checks[first_budget:], outcomes[first_budget:],
                                  strict=True):
            if not outcome.allowed:
                if check.enforce:
                    refusal = refusal or BudgetExceeded(
                        "the daily spend budget for these codes is used up; try again "
                        "tomorrow", math.ceil(outcome.retry_after), check.rule)
                else:
                    watched.append(WouldBlock(check.rule, check.subject))
        if refusal is not None:
            rule = getattr(refusal, "rule", None) or "other"
            self._blocked(rule, tenant, rcpt.masked if rule != "pumping" else label)
            if isinstance(refusal, PumpingBlocked):
                metrics.PUMPING_BLOCKS.labels(label).inc()
            await self.publish(self._events(watched, tenant, now))
            raise refusal
        return self._events(watched, tenant, now)

    def _judge(self, check: _Check, outcome: Outcome, tenant: str,
               watched: list[WouldBlock]) -> OtpgateError | None:
        if outcome.allowed:
            return None
        if not check.enforce:
            watched.append(WouldBlock(check.rule, check.subject))
            return None
        detail = REFUSED if check.rule == "recipient" else BUSY
        return RateLimited(detail, math.ceil(outcome.retry_after), check.rule)

    async def _pumping(self, flag: _Check, found: Sequence[Outcome], tenant: str,
                       label: str, now: float,
                       watched: list[WouldBlock]) -> OtpgateError | None:
        settings = self.settings
        block, sent, sent_before, ok, ok_before = found
        retry = settings.pumping_block_for
        if not block.allowed:  # blocked already
            if flag.enforce:
                return PumpingBlocked(BUSY, math.ceil(block.retry_after), "pumping")
            watched.append(WouldBlock("pumping", label))
            return None
        window = settings.pumping_window
        older = 1 - (now % window) / window
        sends = sent.value + sent_before.value * older  # this one included
        verified = ok.value + ok_before.value * older
        if sends < settings.pumping_min_sends or verified >= settings.pumping_min_verified * sends:
            return None
        cell = flag.op.key
        await self._limiter.apply([Put(cell, now + retry, retry)], now)
        why = {"rule": "pumping", "subject": label, "tenant": tenant,
               "mode": settings.pumping_mode, "sends": round(sends, 1),
               "verified": round(verified, 1), "window_seconds": window,
               "blocked_until": now + retry,
               "reason": f"{round(sends)} codes sent to this prefix in the last "
                         f"{_span(window)}, {round(verified)} verified (under "
                         f"{settings.pumping_min_verified:.0%})"}
        log.warning("number prefix %s (tenant %s) blocked for SMS pumping for %s: %s",
                    label, tenant, _span(retry), why["reason"])
        await self.publish([events.new(EventType.RULE_BLOCKED, label, why, now)])
        if flag.enforce:
            return PumpingBlocked(BUSY, math.ceil(retry), "pumping")
        watched.append(WouldBlock("pumping", label))
        return None

    def _cost(self, rcpt: Recipient, channels: Sequence[str]) -> float:
        prices = self.settings.prices
        price = prices.get(rcpt.country or "ZZ", prices.get("*"))
        if price is None:
            return 0.0
        return price * sum(1 for c in channels if c in PHONE_CHANNELS)

    async def admit_verify(self, tenant: str, who: Requester, now: float) -> None:
        """The caller-address rule of verify (client keys, or ``client_ip``)."""
        if who.ip is None:
            return
        checks: list[_Check] = []
        self._rate(checks, "ip-verify", tenant, limited_address(who.ip), mask_ip(who.ip))
        if not checks:
            return
        outcome = (await self._limiter.apply([checks[0].op], now))[0]
        watched: list[WouldBlock] = []
        refusal = self._judge(checks[0], outcome, tenant, watched)
        await self.publish(self._events(watched, tenant, now))
        if refusal is not None:
            self._blocked("ip-verify", tenant, mask_ip(who.ip))
            raise refusal

    async def unsent(self, prefix_key: str, now: float) -> None:
        """Take back the send ``admit`` counted for a request that sent nothing after all
        (coalesced with the pending code, or refused by the recipient's limits)."""
        if not prefix_key or self.settings.pumping_mode == "off":
            return
        window = self.settings.pumping_window
        bucket = math.floor(now / window)
        await self._limiter.apply(
            [Count(f"pump-sent:{prefix_key}:{bucket}", 2 * window, by=-1.0)], now)

    async def verified(self, tenant: str, prefix_key: str, now: float) -> None:
        """Count an approval for the pumping guard of the number's prefix."""
        if not prefix_key or self.settings.pumping_mode == "off":
            return
        window = self.settings.pumping_window
        bucket = math.floor(now / window)
        await self._limiter.apply([Count(f"pump-ok:{prefix_key}:{bucket}", 2 * window)], now)

    # -- records -------------------------------------------------------------------------

    def _blocked(self, rule: str, tenant: str, subject: str) -> None:
        self._audit.refused(rule, tenant, subject)

    def _events(self, watched: list[WouldBlock], tenant: str, now: float) -> list[CloudEvent]:
        out = []
        for one in watched:
            self._audit.would_block(one.rule, tenant, one.subject)
            out.append(events.new(EventType.RULE_WOULD_BLOCK, one.subject,
                                  {"rule": one.rule, "subject": one.subject,
                                   "tenant": tenant}, now))
        return out

    async def publish(self, batch: list[CloudEvent]) -> None:
        """Publish events outside a request's own change (set by the service)."""
        if batch and self._publish is not None:
            await self._publish(batch)
