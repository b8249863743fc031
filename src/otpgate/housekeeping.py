"""What happens to OTPs without a caller: expiry of codes whose time is up, purges of what
retention allows, and failing a code no channel could deliver (``FailureWatcher``, which
consumes ``delivery_failed`` events)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from otpgate.bus.base import Subscription
from otpgate.clock import Clock
from otpgate.core import endings
from otpgate.core.otp import DeliveryStatus, Status
from otpgate.core.policy import Policy
from otpgate.events import CloudEvent, EventType, Filter
from otpgate.store.base import Store

log = logging.getLogger(__name__)

FAILURES = Subscription(name="lifecycle.delivery_failed",
                        filter=Filter.of(type=EventType.DELIVERY_FAILED.value))
"""Where ``FailureWatcher`` reads ``delivery_failed`` events."""


async def expire(store: Store, recipient_key: str, now: float, policy: Policy) -> int:
    """Expire the recipient's due codes (publishing ``expired`` events); how many died."""
    return await store.transact(recipient_key, lambda s: endings.decide_expire(s, now, policy))


@dataclass(slots=True)
class Housekeeping:
    """Sweeps over the store that any number of processes may run at once."""

    store: Store
    clock: Clock
    policy: Policy

    async def expire(self, recipient_key: str) -> int:
        return await expire(self.store, recipient_key, self.clock.now(), self.policy)

    async def expire_due(self, limit: int = 500) -> int:
        """Expire every code whose time is up (publishing ``expired`` events)."""
        total = 0
        for key in await self.store.due(self.clock.now(), limit):
            total += await self.expire(key)
        return total

    async def purge(self, retention: float) -> int:
        """Forget OTPs finished more than ``retention`` seconds ago, and recipients idle for
        longer than anything the policy remembers (codes, sends, failures, locks)."""
        now, policy = self.clock.now(), self.policy
        horizon = max(policy.max_ttl, policy.send_window, policy.recipient_send_window,
                      policy.lock_time, policy.delay_cap)
        return await self.store.purge(now - retention, now - horizon)

    async def fail_if_undeliverable(self, otp_id: str, send_no: int) -> bool:
        """Mark the OTP ``failed`` when every channel of its send ``send_no`` — its
        fallback steps too — failed for good; True if it did."""
        otp = await self.store.get(otp_id)
        if otp is None or otp.status is not Status.PENDING or otp.send_count != send_no:
            return False
        failed = {d.channel for d in await self.store.deliveries(otp_id)
                  if d.send_no == send_no and d.status is DeliveryStatus.FAILED}
        if not {*otp.channels, *(step.channel for step in otp.steps)} <= failed:
            return False
        now, policy = self.clock.now(), self.policy
        return await self.store.transact(otp.recipient, lambda s: endings.decide_fail(
            s, otp_id, send_no, now, policy)) is not None


class FailureWatcher:
    """Consumes ``delivery_failed`` events and fails OTPs that cannot be delivered."""

    subscription = FAILURES

    def __init__(self, housekeeping: Housekeeping) -> None:
        self._housekeeping = housekeeping

    async def handle(self, event: CloudEvent) -> None:
        otp_id, send_no = event.data.get("otp_id"), event.data.get("send_no")
        if not isinstance(otp_id, str) or not isinstance(send_no, int):
            log.error("delivery_failed event %s without otp_id/send_no; ignored", event.id)
            return
        if await self._housekeeping.fail_if_undeliverable(otp_id, send_no):
            log.info("otp %s failed: no channel of send %d could be delivered",
                     otp_id, send_no)
