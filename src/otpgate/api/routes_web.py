"""otpgate's pages and their assets, all served from the package (no CDN):

- ``/docs``: the OpenAPI document in Swagger UI, whose files come from the
  ``swagger-ui-bundle-v2`` package (``/docs/assets/…``);
- ``/dashboard``: charts of the figures ``/dashboard/data`` gives (``routes_ops``); the page
  itself holds no data, so it is served to anyone and asks for an admin key when needed;
- ``/dev/inbox/events`` (dev mode): the captured messages as server-sent events, for the
  live inbox (``routes_dev``);
- ``/_static/…``: the pages' own scripts and styles.

Pages allow only same-origin scripts, styles and connections, and no framing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Annotated

import msgspec
from litestar import MediaType, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.handlers import HTTPRouteHandler
from litestar.params import HeaderParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.router import Router
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

from otpgate.api import ApiContext
from otpgate.api.schemas import MessageOut
from otpgate.capture.base import CapturedMessage
from otpgate.clock import isoformat

STATIC = Path(str(resources.files("otpgate.api") / "static"))
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
POLL_SECONDS = 0.5
"""How often an open inbox looks for new messages (one read of the capture sink)."""
STREAM_SECONDS = 15.0
"""How long one event stream lasts before the browser reconnects (so that a server that
stops is not held up by open inboxes)."""
_LIST = 200
_ENCODER = msgspec.json.Encoder()


class _MessageEvent(MessageOut):
    subject: str | None = None


def page(name: str) -> Response[bytes]:
    return Response((STATIC / name).read_bytes(), media_type=MediaType.HTML,
                    headers=PAGE_HEADERS)


async def _nosniff(response: Response[object]) -> Response[object]:
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def asset_routers() -> list[Router]:
    cache = CacheControlHeader(max_age=3600)
    return [
        create_static_files_router("/_static", [STATIC], name="otpgate-static",
                                   cache_control=cache, after_request=_nosniff),
        create_static_files_router("/docs/assets", [Path(str(swagger_ui_path))],
                                   name="swagger-ui", cache_control=cache,
                                   after_request=_nosniff),
    ]


def pages() -> list[HTTPRouteHandler]:
    @get("/docs", include_in_schema=False)
    async def docs() -> Response[bytes]:
        return page("docs.html")

    @get("/dashboard", include_in_schema=False)
    async def dashboard() -> Response[bytes]:
        return page("dashboard.html")

    return [docs, dashboard]


def inbox_events(ctx: ApiContext) -> HTTPRouteHandler:
    """``GET /dev/inbox/events``: every captured message once, oldest first, then each new
    one as it is captured (``Last-Event-ID`` resumes after the message it names)."""

    @get("/dev/inbox/events", include_in_schema=False)
    async def events(last_event_id: Annotated[str | None, HeaderParameter(
            name="last-event-id", required=False)] = None) -> ServerSentEvent:
        return ServerSentEvent(_stream(ctx, last_event_id), headers={
            "Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return events


async def _stream(ctx: ApiContext, last: str | None) -> AsyncIterator[ServerSentEventMessage]:
    sink = ctx.runtime.backend.capture
    seen: set[str] = set()
    loop = asyncio.get_running_loop()
    ends = loop.time() + STREAM_SECONDS
    first = True
    while loop.time() < ends:
        found = await sink.list(None, _LIST)  # newest first
        if first and last is not None:
            ids = [m.id for m in found]
            seen.update(ids[ids.index(last):] if last in ids else ())
        for message in reversed(found):
            if message.id not in seen:
                seen.add(message.id)
                yield ServerSentEventMessage(data=_event(message), id=message.id,
                                             event="message")
        if first:
            first = False
            yield ServerSentEventMessage(data="{}", event="caught-up", retry=500)
        await asyncio.sleep(POLL_SECONDS)


def _event(message: CapturedMessage) -> str:
    return _ENCODER.encode(_MessageEvent(
        message.id, message.otp_id, message.to, message.channel, message.body,
        isoformat(message.sent_at), subject=message.subject)).decode()
