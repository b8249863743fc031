"""``otpgate.aws.api.handler``: the whole HTTP API behind an API Gateway HTTP API
(payload format 2.0).

The very app ``otpgate serve`` runs (``otpgate.api.app.create_app``) serves every
request: Mangum turns the event into an ASGI request and the answer back into the
gateway's response, so statuses, headers and bodies are the ASGI app's own. The app's
lifespan (opening the runtime) runs once per cold start, on the environment's loop, not
once per request as Mangum would run it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import Any

from litestar import Litestar

from otpgate.api.app import create_app
from otpgate.aws.host import Host
from otpgate.clock import Clock
from otpgate.errors import ConfigurationError

TEXT_TYPES = ["text/", "application/json", "+json", "application/javascript"]
"""Content types answered as text (the rest base64-encoded, as the gateway wants)."""


class _Lifespan:
    """The ASGI lifespan of an app, started once and kept running."""

    def __init__(self, app: Litestar) -> None:
        self._app = app
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _step(self, message: str) -> None:
        await self._to_app.put({"type": f"lifespan.{message}"})
        answer = asyncio.ensure_future(self._from_app.get())
        assert self._task is not None
        await asyncio.wait({answer, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            answer.cancel()
            self._task.result()  # the app's own error
            raise ConfigurationError(f"the app ended during lifespan.{message}")
        reply = answer.result()
        if reply["type"] != f"lifespan.{message}.complete":
            raise ConfigurationError(reply.get("message") or f"lifespan.{message} failed")

    async def start(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": {}}
        self._task = asyncio.create_task(
            self._app(scope, self._to_app.get, self._from_app.put))  # type: ignore[arg-type]
        await self._step("startup")

    async def stop(self) -> None:
        if self._task is not None:
            await self._step("shutdown")
            await self._task


class ApiHost(Host):
    """The app, its started lifespan and the Mangum adapter of one environment."""

    app: Litestar
    _lifespan: _Lifespan
    _adapter: Any

    @classmethod
    def open(cls, env: Mapping[str, str] | None = None,
             clock: Clock | None = None) -> ApiHost:
        from mangum import Mangum

        settings, loop, clock = cls.prepare(env, clock)
        host = cls(settings, loop, clock)
        host.app = create_app(settings, clock=clock)
        host._lifespan = _Lifespan(host.app)
        try:
            host.run(host._lifespan.start())
        except BaseException:
            loop.close()
            raise
        host._adapter = Mangum(host.app, lifespan="off",  # type: ignore[arg-type]
                               text_mime_types=TEXT_TYPES)
        return host

    def invoke(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Answer one API Gateway event (the adapter runs it on this host's loop)."""
        asyncio.set_event_loop(self.loop)
        answer: dict[str, Any] = self._adapter(event, context)
        return answer

    def close(self) -> None:
        self.run(self._lifespan.stop())
        super().close()


@functools.cache
def _host() -> ApiHost:
    return ApiHost.open()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point."""
    return _host().invoke(event, context)
