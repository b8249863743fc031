"""Reactions to delivery outcomes that change an OTP: when every channel of a send has
failed for good, the code can never arrive and the OTP becomes ``failed``."""

from __future__ import annotations

import logging

from otpgate.bus.base import Subscription
from otpgate.events import CloudEvent, EventType, Filter
from otpgate.service import Gateway

log = logging.getLogger(__name__)


class FailureWatcher:
    """Consumes ``delivery_failed`` events and fails OTPs that cannot be delivered."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def subscription(self, max_deliveries: int, lease: float) -> Subscription:
        return Subscription(
            name="lifecycle.delivery_failed",
            filter=Filter.of(type=EventType.DELIVERY_FAILED.value),
            handler=self.handle, max_deliveries=max_deliveries, lease=lease,
        )

    async def handle(self, event: CloudEvent) -> None:
        otp_id, send_no = event.data.get("otp_id"), event.data.get("send_no")
        if not isinstance(otp_id, str) or not isinstance(send_no, int):
            log.error("delivery_failed event %s without otp_id/send_no; ignored", event.id)
            return
        if await self._gateway.fail_if_undeliverable(otp_id, send_no):
            log.info("otp %s failed: no channel of send %d could be delivered",
                     otp_id, send_no)
