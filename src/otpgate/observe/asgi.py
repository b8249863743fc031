"""The one ASGI wrapper around the whole HTTP app: a request id, the HTTP metrics, the
request's span and its log context, for every request (unknown routes included).

It wraps Litestar's own handler (``Litestar.asgi_handler``), so it sees the route template
the router matched (``scope["path_template"]``; ``unmatched`` when none did) and the status
every answer starts with. ``X-Request-Id`` is taken from the request when it is a plain
token of up to 64 characters, made up otherwise (unique, not secret: a random prefix per
process and a counter), and sent back on the answer.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from typing import Any

from litestar.types import ASGIApp

from otpgate.observe import context, metrics, tracing

HEADER = b"x-request-id"
_TOKEN = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
_MAX_SERIES = 4096
_OTP_PATH = re.compile(r"/v1/otp/(otp_[A-Za-z0-9_-]{1,40})(?:/|$)")


class Observed:
    """``app`` with request ids, metrics, spans and log context (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._prefix = secrets.token_hex(4)
        self._serial = itertools.count(1)
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = self._request_id(scope)
        status = 500

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (HEADER, rid.encode())]
            await send(message)

        found = _OTP_PATH.match(scope["path"])
        bound = context.request_id.set(rid)
        named = context.otp_id.set(found[1]) if found else None
        try:
            if not tracing.enabled():
                try:
                    await self.app(scope, receive, sending)
                finally:
                    self._count(scope, status, started)
                return
            await self._traced(scope, receive, sending, rid, started, lambda: status)
        finally:
            if named is not None:
                context.otp_id.reset(named)
            context.request_id.reset(bound)

    async def _traced(self, scope: Any, receive: Any, send: Any, rid: str,
                      started: float, status: Any) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        with tracing.span(method, tracing.SERVER, tracing.incoming(headers), {
                "http.request.method": method, "otpgate.request_id": rid}) as span:
            try:
                await self.app(scope, receive, send)
            finally:
                route = self._count(scope, status(), started)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status())

    def _request_id(self, scope: Any) -> str:
        for name, value in scope["headers"]:
            if name == HEADER and _TOKEN.fullmatch(value):
                return str(value.decode("ascii"))
        return f"{self._prefix}{next(self._serial):08x}"

    def _count(self, scope: Any, status: int, started: float) -> str:
        """Count the answer (the series' children are kept: a lookup per request, no
        label lock)."""
        route: str = scope.get("path_template") or "unmatched"
        key = (route, scope["method"], status)
        series = self._series.get(key)
        if series is None:
            series = (metrics.HTTP_REQUESTS.labels(route, key[1], str(status)),
                      metrics.HTTP_DURATION.labels(route))
            if len(self._series) < _MAX_SERIES:
                self._series[key] = series
        series[0].inc()
        series[1].observe(time.perf_counter() - started)
        return route
