"""A driver's pace on Redis: one bucket per driver, shared by every process on the Redis
(see ``otpgate.ratelimit.pace`` and ``lua/pace.lua``)."""

from __future__ import annotations

from otpgate.errors import TemporaryDeliveryError
from otpgate.ratelimit.bucket import TokenBucket
from otpgate.ratelimit.pace import Slot
from otpgate.redisio.conn import RedisConn


class RedisPace:
    """``mps=`` of one driver across processes. The slot is timed by Redis's clock; a
    Redis that cannot be reached is a temporary failure of the send."""

    def __init__(self, conn: RedisConn, driver: str, rate: float, burst: int = 1) -> None:
        TokenBucket(rate, burst)  # the same checks of rate and burst
        self._conn = conn
        self._tag = f"{{{conn.keys.prefix}.pace.{driver}}}"
        self.rate, self.burst = rate, burst

    async def reserve(self, now: float, within: float) -> Slot:
        wait, taken = await self._conn.script(
            "pace", [self._tag], [repr(self.rate), str(self.burst), repr(max(0.0, within))],
            error=TemporaryDeliveryError)
        return Slot(float(wait), taken in (b"1", "1"))
