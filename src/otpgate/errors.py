"""The one error tree of otpgate.

```
OtpgateError
 ├── ConfigurationError            bad settings, unknown URL scheme, missing extra
 ├── InvalidRequest                a field the caller sent is wrong (422)
 │    ├── InvalidRecipient         not an E.164 number nor an e-mail address
 │    ├── GeoBlocked               the recipient's country is not allowed (422)
 │    └── NumberTypeRefused        premium-rate, pager, fixed-line for SMS, ... (422)
 ├── NotFound                      no OTP with that id (404)
 ├── Unauthorized                  missing or unknown API key (401)
 ├── Forbidden                     a key or a signature that may not do this (403)
 ├── Conflict                      an Idempotency-Key reused with another body (422)
 ├── RateLimited(retry_after, rule) a send limit, a delay after failures, or a lock (429)
 │    ├── PumpingBlocked           the number's prefix is blocked for SMS pumping (429)
 │    └── BudgetExceeded           a daily spend budget is used up (429)
 ├── StoreError                    the store could not be reached or is corrupt
 ├── BusError                      the bus could not be reached
 ├── SealError                     a sealed payload was tampered with or the key is wrong
 ├── Deferred(wait)                a handler's event is not due yet: delivered again then
 └── DeliveryError                 a driver could not deliver
      ├── TemporaryDeliveryError   try again later (with backoff), maybe on another driver
      │    └── UnknownOutcomeError  no answer: the provider may have accepted the message
      ├── PermanentDeliveryError   never retry this message on this driver (the number)
      ├── BrokenDriverError        the driver is misconfigured (credentials): not the number
      └── SendExpired              the code would expire before it could go out: not sent
```

Each error carries a stable ``slug`` used as the problem+json ``type``.
"""

from __future__ import annotations


class OtpgateError(Exception):
    """Base of every error otpgate raises on purpose."""

    slug = "internal"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ConfigurationError(OtpgateError):
    slug = "configuration"


class InvalidRequest(OtpgateError):
    """A request field is wrong; ``field`` names it where known."""

    slug = "invalid-request"

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class InvalidRecipient(InvalidRequest):
    slug = "invalid-recipient"

    def __init__(self, detail: str, field: str = "to") -> None:
        super().__init__(detail, field)


class GeoBlocked(InvalidRequest):
    """The recipient's country may not be sent to (on this channel); ``rule`` is ``geo``."""

    slug = "geo-blocked"

    def __init__(self, detail: str, field: str = "to") -> None:
        super().__init__(detail, field)
        self.rule = "geo"


class NumberTypeRefused(InvalidRequest):
    """A number of a type codes are not sent to; ``rule`` is ``number-type``."""

    slug = "number-type"

    def __init__(self, detail: str, field: str = "to") -> None:
        super().__init__(detail, field)
        self.rule = "number-type"


class NotFound(OtpgateError):
    slug = "not-found"


class Unauthorized(OtpgateError):
    slug = "unauthorized"


class Forbidden(OtpgateError):
    slug = "forbidden"


class CrossOriginRefused(Forbidden):
    """A browser request from an origin the server (or the API key) does not allow."""

    slug = "cross-origin-refused"


class Conflict(OtpgateError):
    slug = "idempotency-key-reused"


class RateLimited(OtpgateError):
    """Too many requests; ``retry_after`` is in whole seconds (>= 1); ``rule`` names the
    limit that refused (``send-limit``, ``recipient-lock``, ...), where there is one."""

    slug = "rate-limited"

    def __init__(self, detail: str, retry_after: int, rule: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after = max(1, int(retry_after))
        self.rule = rule


class PumpingBlocked(RateLimited):
    slug = "pumping"


class BudgetExceeded(RateLimited):
    slug = "budget"


class StoreError(OtpgateError):
    slug = "store-unavailable"


class BusError(OtpgateError):
    slug = "bus-unavailable"


class SealError(OtpgateError):
    slug = "seal"


class Deferred(OtpgateError):
    """Raised by a bus handler for an event that is not due yet (a fallback step waiting
    for its time): the bus puts the delivery back for ``wait`` seconds (at most its backoff
    cap, or 15 minutes on SQS, at a time) without counting it as a delivery, and logs it at
    debug level only — it is no failure."""

    slug = "deferred"

    def __init__(self, detail: str, wait: float) -> None:
        super().__init__(detail)
        self.wait = max(0.0, wait)


class DeliveryError(OtpgateError):
    slug = "delivery"

    def __init__(self, detail: str, provider_code: str | None = None) -> None:
        super().__init__(detail)
        self.provider_code = provider_code


class TemporaryDeliveryError(DeliveryError):
    """The driver may succeed later; ``retry_after`` is a hint in seconds."""

    slug = "delivery-temporary"

    def __init__(
        self, detail: str, provider_code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(detail, provider_code)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    slug = "delivery-permanent"


class UnknownOutcomeError(TemporaryDeliveryError):
    """The provider did not answer (a timeout after the request was written): it may have
    accepted the message. Retried with the same idempotency key, so a duplicate is the
    same code."""

    slug = "delivery-unknown"


class BrokenDriverError(DeliveryError):
    """The provider refused the driver itself (bad credentials, a suspended account): the
    driver is at fault, not the recipient. The send moves on to the next driver."""

    slug = "driver-broken"


class SendExpired(DeliveryError):
    """The code would expire before this send could go out (a driver's pace): it is
    recorded ``expired`` and never sent."""

    slug = "send-expired"
