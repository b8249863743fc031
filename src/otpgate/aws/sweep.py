"""``otpgate.aws.sweep.handler``: housekeeping, on a schedule and on failures.

On its schedule (an EventBridge rule, every minute) it expires the codes whose time is up
(publishing ``expired`` events) and republishes the events of outbox items that a crash
left between their transaction and their publish. Fed by the failure queue (the events
topic, filtered on ``delivery_failed``), it fails the OTPs that no channel could deliver,
as ``otpgate worker``'s failure watcher does. Items past their time are deleted by the
table's TTL, so it purges nothing itself.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from otpgate.aws.batch import Batch
from otpgate.aws.host import RuntimeHost
from otpgate.bus.sns_sqs import SnsSqsBus
from otpgate.clock import Clock
from otpgate.errors import ConfigurationError
from otpgate.housekeeping import FailureWatcher

log = logging.getLogger(__name__)


class SweepHost(RuntimeHost):
    bus: SnsSqsBus
    failures: Batch

    @classmethod
    def open(cls, env: Mapping[str, str] | None = None,
             clock: Clock | None = None) -> SweepHost:
        host = super().open(env, clock)
        assert isinstance(host, SweepHost)
        bus = host.runtime.backend.bus
        if not isinstance(bus, SnsSqsBus):
            host.close()
            raise ConfigurationError("the sweep function needs a dynamodb:// store")
        host.bus = bus
        watcher = FailureWatcher(host.runtime.housekeeping)
        host.failures = Batch(watcher.handle, host.runtime.limits, bus.sqs)
        return host

    def invoke(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if "Records" in event:
            return self.run(self.failures(event))
        return self.run(self.sweep())

    async def sweep(self) -> dict[str, Any]:
        expired = await self.runtime.housekeeping.expire_due()
        republished = await self.bus.republish()
        if expired or republished:
            log.info("sweep: %d code(s) expired, %d outbox item(s) republished", expired,
                     republished)
        return {"expired": expired, "republished": republished}


@functools.cache
def _host() -> SweepHost:
    return SweepHost.open()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point: a scheduled event, or an SQS batch of failures."""
    return _host().invoke(event, context)
