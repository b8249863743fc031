"""Delivery receipts: a provider's callback, read and verified by its driver, applied to the
send ledger (``otpgate.core.receipts.decide_receipt``, atomically in the store).

A receipt for a message otpgate does not know is answered as taken (so the provider does
not retry it for days) and logged once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from otpgate.clock import Clock
from otpgate.core.otp import DeliveryStatus
from otpgate.core.receipts import ReceiptNews, decide_receipt
from otpgate.drivers.base import Receipt, ReceiptReader, ReceiptRequest
from otpgate.errors import NotFound
from otpgate.store.base import Store

log = logging.getLogger(__name__)

_STATUS = {"sent": DeliveryStatus.SENT, "delivered": DeliveryStatus.DELIVERED,
           "failed": DeliveryStatus.FAILED}
_REMEMBERED_UNKNOWN = 4096


@dataclass(slots=True)
class ReceiptDesk:
    """Takes the callbacks of every driver that reads receipts."""

    store: Store
    clock: Clock
    readers: Callable[[str], ReceiptReader | None]
    """The receipt reader of the driver with this name, if it has one."""
    _unknown: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict)

    async def take(self, driver: str, request: ReceiptRequest) -> int:
        """Verify and apply one callback; how many sends it moved. ``NotFound`` for a
        driver that takes no receipts, ``Forbidden`` when the callback does not verify."""
        reader = self.readers(driver)
        if reader is None:
            raise NotFound(f"no driver named {driver!r} takes delivery receipts")
        moved = 0
        for receipt in await reader.read_receipts(request):
            moved += await self._apply(driver, receipt)
        return moved

    async def _apply(self, driver: str, receipt: Receipt) -> int:
        news = ReceiptNews(driver=driver, provider_id=receipt.provider_id,
                           status=_STATUS[receipt.status], error_code=receipt.error_code,
                           at=self.clock.now())
        if news.status is DeliveryStatus.SENT:
            return 0  # an intermediate report: the ledger knows the send went out
        moved = await self.store.record_receipt(
            driver, receipt.provider_id, lambda row, otp: decide_receipt(row, otp, news))
        if moved is None:
            self._unknown_once(driver, receipt.provider_id)
            return 0
        log.info("receipt from %s: send %s:%d:%s is now %s on %s", driver, moved.otp_id,
                 moved.send_no, moved.channel, moved.status.value, moved.driver)
        return 1

    def _unknown_once(self, driver: str, provider_id: str) -> None:
        key = (driver, provider_id)
        if key in self._unknown:
            return
        self._unknown[key] = None
        if len(self._unknown) > _REMEMBERED_UNKNOWN:
            self._unknown.popitem(last=False)
        log.info("receipt from %s for message %s changed nothing (unknown, or already "
                 "final)", driver, provider_id)
