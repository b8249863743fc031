"""Dev mode: what the capture driver "sent", as JSON (``/v1/dev/messages``) and as a page
(``/dev/inbox``). Mounted only when captures are allowed; otherwise these paths are 404.

The page is live: its script (``static/inbox.js``) reads ``/dev/inbox/events`` (server-sent
events, ``routes_web``) and shows each new message within a second, in a thread per
recipient, its code highlighted with copy and verify buttons, and a form that requests a
code. Without scripts it is the same list rendered on the server (every value escaped),
refreshed every few seconds.
"""

from __future__ import annotations

from html import escape
from typing import Annotated, Any

import msgspec
from litestar import MediaType, Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromQuery, QueryParameter

from otpgate.api import ApiContext, auth
from otpgate.api.problems import MEDIA_TYPE as PROBLEM
from otpgate.api.routes_web import PAGE_HEADERS
from otpgate.api.schemas import MessageOut, Problem
from otpgate.capture.base import CapturedMessage
from otpgate.clock import isoformat
from otpgate.core import recipients
from otpgate.errors import InvalidRecipient, InvalidRequest

REFRESH_SECONDS = 3
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_MAX_ID = 200
_ENCODER = msgspec.json.Encoder()


def _address(to: str | None) -> str | None:
    """The recipient filter; ``?to=+1415…`` typed unencoded arrives as a leading space,
    which this dev-only route takes for the plus it was."""
    if to is None:
        return None
    if to.startswith(" ") and to[1:2].isdigit():
        to = "+" + to[1:]
    return recipients.parse(to).address


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_LIMIT):
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}", "limit")
    return int(raw)


def _before(raw: str | None) -> str | None:
    if raw is not None and not (0 < len(raw) <= _MAX_ID and raw.isprintable()):
        raise InvalidRequest("before must be the id of a message", "before")
    return raw


def messages_handler(ctx: ApiContext) -> HTTPRouteHandler:
    """``GET /v1/dev/messages?to=…&limit=…&before=…``: captured messages, newest first,
    a page at a time (``before`` = the last id of the previous page)."""

    @get("/dev/messages", operation_id="devMessages", summary="Captured messages (dev mode)",
         responses={200: ResponseSpec(list[MessageOut], description="Newest first",
                                      generate_examples=False),
                    422: ResponseSpec(Problem, description="to is not a valid recipient, "
                                      "or limit or before is malformed",
                                      media_type=PROBLEM, generate_examples=False)})
    async def dev_messages(
        request: Request[Any, Any, Any],
        to: FromQuery[str | None] = None,
        limit: Annotated[str | None, QueryParameter(
            name="limit", required=False,
            description=f"at most this many (default {DEFAULT_LIMIT}, at most "
                        f"{MAX_LIMIT})")] = None,
        before: Annotated[str | None, QueryParameter(
            name="before", required=False,
            description="only messages captured before the message with this id (the "
                        "last of the previous page); an unknown id gives an empty page")] = None,
    ) -> Response[bytes]:
        # Captures are not kept per tenant: outside dev mode (OTPGATE_ALLOW_CAPTURE) only
        # an admin key may read them.
        auth.require_admin(auth.caller(request, ctx.settings.dev))
        found = await ctx.runtime.backend.capture.list(_address(to), _limit(limit),
                                                       _before(before))
        body = _ENCODER.encode([
            MessageOut(m.id, m.otp_id, m.to, m.channel, m.body, isoformat(m.sent_at))
            for m in found])
        return Response(body, media_type=MediaType.JSON)

    return dev_messages


def inbox_handler(ctx: ApiContext) -> HTTPRouteHandler:
    """``GET /dev/inbox``: the same messages as an HTML page with a filter form."""

    @get("/dev/inbox", include_in_schema=False)
    async def dev_inbox(to: FromQuery[str | None] = None) -> Response[str]:
        error: str | None = None
        found: list[CapturedMessage] = []
        try:
            found = await ctx.runtime.backend.capture.list(_address(to or None))
        except InvalidRecipient as exc:
            error = exc.detail
        return Response(render_inbox(found, to or "", error),
                        status_code=200 if error is None else 422,
                        media_type=MediaType.HTML,
                        headers=PAGE_HEADERS)

    return dev_inbox


def render_inbox(messages: list[CapturedMessage], to: str, error: str | None) -> str:
    """The inbox page; every value that came from outside is escaped."""
    rows = "".join(_row(m) for m in messages) or (
        '<tr><td colspan="5" class="empty">No messages yet.</td></tr>')
    notice = f'<p class="error">{escape(error)}</p>' if error else ""
    return _PAGE.format(refresh=REFRESH_SECONDS, to=escape(to, quote=True), notice=notice,
                        rows=rows)


def _row(m: CapturedMessage) -> str:
    subject = f"<strong>{escape(m.subject)}</strong><br>" if m.subject else ""
    return (f"<tr><td>{escape(isoformat(m.sent_at))}</td><td>{escape(m.to)}</td>"
            f"<td>{escape(m.channel)}</td><td>{subject}<pre>{escape(m.body)}</pre></td>"
            f"<td><code>{escape(m.otp_id)}</code></td></tr>")


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<noscript><meta http-equiv="refresh" content="{refresh}"></noscript>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>otpgate dev inbox</title>
<link rel="stylesheet" href="/_static/page.css">
<script src="/_static/inbox.js" defer></script>
</head>
<body>
<header class="top">
<h1>otpgate dev inbox</h1>
<nav><a href="/dev/inbox" aria-current="page">Inbox</a><a href="/dashboard">Dashboard</a>
<a href="/docs">API docs</a></nav>
<span class="spacer"></span><span id="status" class="pill">connecting…</span>
</header>
<p class="banner">Dev mode: these messages were captured, not sent.</p>
<form id="try" class="try">
<label>To <input name="to" required size="30"
 placeholder="+14155550123 or jane@example.com"></label>
<label>Channel <select name="channel"><option value="">default</option><option>sms</option>
<option>email</option><option>whatsapp</option><option>voice</option></select></label>
<button class="primary" type="submit">Send a code</button>
<output id="try-result"></output>
</form>
{notice}
<div class="inbox"><ul id="threads" class="threads"></ul>
<section id="messages" class="messages"></section></div>
<noscript>
<form method="get" action="/dev/inbox">
<label>Recipient <input name="to" value="{to}" placeholder="+14155550123"></label>
<button type="submit">Filter</button> <a href="/dev/inbox">All</a>
</form>
<table class="plain">
<thead><tr><th>Sent</th><th>To</th><th>Channel</th><th>Message</th><th>OTP</th></tr></thead>
<tbody>{rows}</tbody>
</table>
</noscript>
</body>
</html>
"""
