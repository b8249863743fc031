"""``otpgate.aws.receipts.handler``: providers' delivery receipts
(``POST``/``GET /v1/receipts/{driver}``), behind the same HTTP API.

A function of its own — with the few permissions receipts need and a concurrency of its
own, so that a provider's burst of callbacks cannot starve the API — serving the same app
as ``otpgate.aws.api``: the receipt routes are the app's, not a copy of them.
"""

from __future__ import annotations

import functools
from typing import Any

from otpgate.aws.api import ApiHost


@functools.cache
def _host() -> ApiHost:
    return ApiHost.open()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point."""
    return _host().invoke(event, context)
