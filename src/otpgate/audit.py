"""Security events: wrong answers, answers that counted nothing, locks, unlocks, refusals,
API-key use and API-key failures — each logged on the ``otpgate.audit`` logger and counted.

Log lines name the OTP id, the key id, the tenant and the masked recipient; never a code,
a full number or address, or a key's secret. Counters are named as a Prometheus exposition
will show them (``otpgate_…_total``, with labels), and ``Audit.counters`` reads them all,
so a ``/metrics`` route needs nothing else. They count in this process only.

Counters (labels in brackets):

- ``otpgate_verify_failures_total{tenant}``: wrong answers to a live code;
- ``otpgate_verify_uncounted_total{tenant,reason}``: answers that counted nothing, because
  they met no live code (``no-code``: none pending, a locked recipient, a dead code) or were
  the right code of a code approved already (``approved``);
- ``otpgate_recipient_locks_total{tenant}``: recipients locked by consecutive failures;
- ``otpgate_recipient_unlocks_total{tenant}``: operators' unlocks;
- ``otpgate_rule_blocks_total{rule}``: requests refused by a limit or an abuse rule, by
  rule (the Prometheus family is ``observe.metrics.RULE_BLOCKS``);
- ``otpgate_rule_would_block_total{rule}``: requests a rule in monitor mode let through
  that it would have refused (``observe.metrics.RULE_WOULD_BLOCK``);
- ``otpgate_api_key_uses_total{key_id}``: requests an API key authenticated;
- ``otpgate_api_key_failures_total{reason}``: requests refused for their key (``missing``,
  ``malformed``, ``refused`` — unknown, wrong secret or revoked).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

from otpgate.clock import isoformat
from otpgate.observe import metrics

Labels = tuple[tuple[str, str], ...]

VERIFY_FAILURES = "otpgate_verify_failures_total"
VERIFY_UNCOUNTED = "otpgate_verify_uncounted_total"
LOCKS = "otpgate_recipient_locks_total"
UNLOCKS = "otpgate_recipient_unlocks_total"
RULE_BLOCKS = "otpgate_rule_blocks_total"
WOULD_BLOCK = "otpgate_rule_would_block_total"
KEY_USES = "otpgate_api_key_uses_total"
KEY_FAILURES = "otpgate_api_key_failures_total"
COUNTERS = (VERIFY_FAILURES, VERIFY_UNCOUNTED, LOCKS, UNLOCKS, RULE_BLOCKS, WOULD_BLOCK,
            KEY_USES, KEY_FAILURES)

log = logging.getLogger("otpgate.audit")


class Audit:
    """Logs and counts security events; one per runtime, shared by its parts."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, Labels]] = Counter()

    def count(self, name: str, **labels: str) -> None:
        self._counts[(name, tuple(sorted(labels.items())))] += 1
        metrics.audited(name, labels)  # for /metrics, summed over every server process

    def value(self, name: str, **labels: str) -> int:
        """The counter ``name`` with exactly ``labels`` (0 if never counted)."""
        return self._counts[(name, tuple(sorted(labels.items())))]

    def total(self, name: str) -> int:
        """The counter ``name`` summed over all its labels."""
        return sum(n for (counter, _), n in self._counts.items() if counter == name)

    def counters(self) -> Mapping[str, Mapping[Labels, int]]:
        """Every counter, by name, then by labels (a copy)."""
        out: dict[str, dict[Labels, int]] = {name: {} for name in COUNTERS}
        for (name, labels), n in self._counts.items():
            out.setdefault(name, {})[labels] = n
        return out

    def wrong_answer(self, otp_id: str, tenant: str, attempts_left: int) -> None:
        self.count(VERIFY_FAILURES, tenant=tenant)
        log.info("wrong answer for %s (tenant %s): %d attempt(s) left", otp_id, tenant,
                 attempts_left)

    def uncounted(self, tenant: str, reason: str) -> None:
        self.count(VERIFY_UNCOUNTED, tenant=tenant, reason=reason)
        log.debug("an answer counted nothing (tenant %s): %s", tenant, reason)

    def locked(self, otp_id: str, tenant: str, to_masked: str, failures: int,
               until: float) -> None:
        self.count(LOCKS, tenant=tenant)
        log.warning("recipient %s (tenant %s) locked until %s after %d consecutive wrong "
                    "answers, the last for %s", to_masked, tenant, isoformat(until), failures,
                    otp_id)

    def unlocked(self, tenant: str, to_masked: str, was_locked: bool, failures: int,
                 by: str) -> None:
        self.count(UNLOCKS, tenant=tenant)
        log.warning("recipient %s (tenant %s) unlocked by %s (%s, %d consecutive wrong "
                    "answers forgotten)", to_masked, tenant, by,
                    "it was locked" if was_locked else "it was not locked", failures)

    def refused(self, rule: str | None, tenant: str, to_masked: str) -> None:
        """A request refused by ``rule``; ``to_masked`` is what the rule counted, masked
        (a recipient, an address's network, a key id, a prefix's label)."""
        self.count(RULE_BLOCKS, rule=rule or "other")
        metrics.RULE_BLOCKS.labels(rule or "other").inc()
        log.info("a request for %s (tenant %s) refused: %s", to_masked, tenant,
                 rule or "limit")

    def would_block(self, rule: str, tenant: str, subject: str) -> None:
        """A rule in monitor mode let a request through that it would have refused."""
        self.count(WOULD_BLOCK, rule=rule)
        metrics.RULE_WOULD_BLOCK.labels(rule).inc()
        log.warning("rule %s (monitor mode) would have refused a request for %s (tenant %s)",
                    rule, subject, tenant)

    def key_used(self, key_id: str, tenant: str, *, fresh: bool) -> None:
        """A request authenticated by ``key_id``; ``fresh`` when the store was asked (not
        the cache), which is logged at info, every other use at debug."""
        self.count(KEY_USES, key_id=key_id)
        log.log(logging.INFO if fresh else logging.DEBUG, "api key %s (tenant %s) used",
                key_id, tenant)

    def key_failed(self, reason: str, key_id: str | None = None) -> None:
        self.count(KEY_FAILURES, reason=reason)
        log.warning("api key refused (%s)%s", reason,
                    f": key id {key_id}" if key_id is not None else "")
