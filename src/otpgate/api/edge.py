"""What every HTTP request meets before the routes, and every answer on its way out.

In:

* **Cross-site requests** (CSRF): a browser request whose ``Origin`` is neither the
  server's own (the ``Host`` it was sent to) nor one of ``server.allowed_origins`` is
  refused with 403, whatever its method — so a page elsewhere cannot make a visitor's
  browser request codes (a ``text/plain`` POST needs no preflight). A request without
  ``Origin`` (``curl``, servers) passes, unless ``Sec-Fetch-Site`` says a browser sent it
  from another site with a method that changes something.
* **DNS rebinding** (dev mode, which needs no key): the ``Host`` must be ``localhost``, an
  IP address (which no rebinding can forge), the name the server was bound to, or the host
  of an allowed origin; otherwise 421.
* **Server-to-server routes** (``/v2``, Twilio Verify's surface, and ``/hooks``): called
  by other services' servers, never by a browser — one that shows itself (an ``Origin``
  or a ``Sec-Fetch-Site``) is refused with 403, allowed origins included. Refusals under
  ``/v2`` are Twilio's error JSON, like everything there.
* **Browser apps** (CORS): the routes a client key may use (``POST /v1/otp``,
  ``/v1/verify``, ``/v1/otp/{id}/verify``) answer a preflight from any origin, and let a
  cross-site request through when it carries an ``Authorization`` header — the key guard
  then accepts it only with a client key bound to that origin (``otpgate keys create
  --client --origin …``), and the answer echoes the origin in
  ``Access-Control-Allow-Origin``. No cookie is ever read, so a page cannot borrow a
  visitor's credentials: it needs a key of its own.
* ``HEAD`` is answered as ``GET``, without the body.

Out, on every answer that does not set its own: ``Cache-Control: no-store`` (answers carry
codes, numbers and OTP states), ``X-Content-Type-Options: nosniff`` and a
``Content-Security-Policy`` that loads nothing and forbids framing; an ``Allow`` that
lists ``GET`` lists ``HEAD`` too.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any, cast
from urllib.parse import urlsplit

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from otpgate.api import auth, problems
from otpgate.compat import twilio
from otpgate.config import Settings
from otpgate.urls import origin_of

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SERVER_ONLY = ("/v2/", "/hooks/")
_OTHER_SITE = frozenset({b"cross-site", b"same-site"})
_CLIENT_ROUTES = re.compile(r"/v1/(?:otp|verify|otp/[^/]+/verify)", re.ASCII)
_PREFLIGHT = (
    (b"access-control-allow-methods", b"POST, OPTIONS"),
    (b"access-control-allow-headers", b"authorization, content-type, idempotency-key"),
    (b"access-control-max-age", b"600"),
)
_EXPOSED = (b"access-control-expose-headers", b"retry-after, idempotent-replayed")
_DEFAULTS = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _split_host(host: str) -> tuple[str, int | None]:
    """``(name, port)`` of a ``Host`` value (``[::1]:8080`` → ``("[::1]", 8080)``)."""
    name, colon, port = host.rpartition(":")
    if not colon or name.endswith(":") or (name.startswith("[") != name.endswith("]")):
        return host, None  # no port (a bare IPv6 address is not a valid Host anyway)
    return (name, int(port)) if port.isascii() and port.isdigit() else (host, -1)


class Edge:
    """An ASGI wrapper around the app's handler (see the module docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        server = settings.server
        self._origins = frozenset(o for o in map(origin_of, server.allowed_origins) if o)
        self._check_host = settings.dev
        bound = server.host.lower()
        if ":" in bound and not bound.startswith("["):
            bound = f"[{bound}]"
        self._names = frozenset({"localhost", bound, *(
            _split_host(urlsplit(o).netloc)[0] for o in self._origins)})

    async def __call__(self, asgi_scope: Scope, receive: Receive, send: Send) -> None:
        scope = cast("dict[str, Any]", asgi_scope)
        if scope["type"] != "http":
            await self.app(asgi_scope, receive, send)
            return
        host = origin = site = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"origin":
                origin = value
            elif name == b"sec-fetch-site":
                site = value
        path = scope.get("path", "")
        if self._check_host and not self._host_allowed(host):
            await _refuse(send, 421, "misdirected-request",
                          "this server does not answer for that Host", path)
            return
        if (origin is not None or site is not None) and path.startswith(_SERVER_ONLY):
            await _refuse(send, 403, "cross-origin-refused",
                          "this route is for other services' servers, not for browsers", path)
            return
        client_route = _CLIENT_ROUTES.fullmatch(path) is not None
        if client_route and origin is not None and scope["method"] == "OPTIONS" and any(
                n == b"access-control-request-method" for n, _ in scope["headers"]):
            await _preflight(send, origin)
            return
        if (origin is not None or site is not None) and self._cross_site(
                scope["method"], host, origin, site):
            seen = origin.decode("latin-1").lower() if origin is not None else None
            if not (client_route and seen is not None and origin_of(seen) == seen
                    and any(n == b"authorization" for n, _ in scope["headers"])):
                await _refuse(send, 403, "cross-origin-refused",
                              "requests from other sites' pages are refused; allow an "
                              "origin with OTPGATE_ALLOWED_ORIGINS", path)
                return
            scope[auth.CROSS_ORIGIN] = seen  # the key guard decides (``auth.admit``)
        head = scope["method"] == "HEAD"
        if head:
            asgi_scope = cast("Scope", {**scope, "method": "GET"})

        async def send_out(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = _with_defaults(message.get("headers", ()))
                message["headers"] = out
                echo = scope.get(auth.CORS_ORIGIN)
                if echo is not None:
                    out += [
                        (b"access-control-allow-origin", echo.encode("latin-1")),
                        (b"vary", b"Origin"), _EXPOSED]
            elif head and message["type"] == "http.response.body":
                message = {"type": "http.response.body", "body": b"",
                           "more_body": message.get("more_body", False)}
            await send(message)

        await self.app(asgi_scope, receive, send_out)

    def _host_allowed(self, raw: bytes | None) -> bool:
        if not raw:
            return False
        name, _ = _split_host(raw.decode("latin-1").lower())
        return name in self._names or _is_ip(name)

    def _cross_site(self, method: str, host: bytes | None, origin: bytes | None,
                    site: bytes | None) -> bool:
        if origin is not None:
            seen = origin.decode("latin-1").lower()
            if seen in self._origins:
                return False
            own = (host or b"").decode("latin-1").lower()
            return origin_of(seen) != seen or urlsplit(seen).netloc != own
        return method not in _SAFE_METHODS and site in _OTHER_SITE


def _with_defaults(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    # ASGI header names are lowercase (Litestar writes them so).
    out = list(headers)
    present = [name for name, _ in out]
    for default in _DEFAULTS:
        if default[0] not in present:
            out.append(default)
    if b"allow" in present:
        out = [(n, _with_head(v)) if n == b"allow" else (n, v) for n, v in out]
    return out


def _with_head(allow: bytes) -> bytes:
    methods = [m.strip() for m in allow.split(b",") if m.strip()]
    if b"GET" in methods and b"HEAD" not in methods:
        methods.append(b"HEAD")
    return b", ".join(sorted(methods))


async def _preflight(send: Send, origin: bytes) -> None:
    """A CORS preflight of a client route: any web origin may ask (the request itself
    needs a client key bound to it); anything else is refused."""
    seen = origin.decode("latin-1").lower()
    if origin_of(seen) != seen:
        await _refuse(send, 403, "cross-origin-refused", "the Origin is not a web origin",
                      "")
        return
    await send({"type": "http.response.start", "status": 204, "headers": _with_defaults([
        (b"access-control-allow-origin", seen.encode("latin-1")), (b"vary", b"Origin"),
        *_PREFLIGHT, (b"allow", b"OPTIONS, POST"), (b"content-length", b"0"),
    ])})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _refuse(send: Send, status: int, slug: str, detail: str, path: str) -> None:
    media, body = problems.MEDIA_TYPE, problems.encode(status, slug, detail)
    if path == "/v2" or path.startswith("/v2/"):
        media, body = "application/json", twilio.error_body(20000 + status, detail, status)
    await send({"type": "http.response.start", "status": status, "headers": _with_defaults([
        (b"content-type", media.encode()),
        (b"content-length", str(len(body)).encode()),
    ])})
    await send({"type": "http.response.body", "body": body, "more_body": False})
