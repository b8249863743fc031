"""The HTTP/1.1 protocol ``otpgate serve`` runs under uvicorn: its httptools protocol, with
the limits a server reachable before authentication needs and uvicorn lacks.

* The request line and headers of one request may hold ``max_head_bytes`` together
  (default 8 KiB) and ``max_headers`` header lines (default 64); beyond, the answer is
  431 and the connection is closed. Bytes are counted as they arrive, so an unfinished
  head cannot grow past the limit (and one read) in memory.
* A client has ``request_timeout`` seconds (default 10) from its connection — or, on a
  kept-alive connection, from the first byte of its next request — to send the whole
  request, head and body; past that the connection is answered 408 and closed, so slow
  headers or a body shorter than its ``Content-Length`` cannot hold a connection.
  Between requests uvicorn's keep-alive timeout (5 s) closes idle connections.

``ServerConfig`` is uvicorn's ``Config`` carrying these limits to every worker process.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from otpgate.api import problems

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_head_bytes: int = 8 * 1024
    max_headers: int = 64
    request_timeout: float = 10.0


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration with ``LimitedHttpProtocol`` and its ``limits``."""

    def __init__(self, app: Any, *, limits: HttpLimits, **options: Any) -> None:
        super().__init__(app, http=LimitedHttpProtocol, **options)
        self.limits = limits


class _HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing a head past the limits."""


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head limits and a deadline per request."""

    def __init__(self, config: uvicorn.Config, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: HttpLimits = getattr(config, "limits", HttpLimits())
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True
        """Waiting for (the rest of) a request's head."""
        self._head_bytes = 0
        self._refused: str | None = None

    # -- the deadline ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.limits.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._in_head and self._head_bytes == 0:
            self.transport.close()  # a connection that never sent a byte: just close it
            return
        log.info("closed a connection from %s that took longer than %g s to send its "
                 "request", _peer(self.client), self.limits.request_timeout)
        if self.cycle is not None and not self.cycle.response_complete:
            # The app waits for the body: it sees the client disconnect.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self._answer(408, "request-timeout",
                     f"the request did not arrive within {self.limits.request_timeout:g} s")

    # -- counting the head -------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            if self._deadline is None:
                self._arm()  # the next request on a kept-alive connection begins
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.limits.max_head_bytes \
                and not self.transport.is_closing():
            self._refuse(f"the request head is over {self.limits.max_head_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        if len(self.headers) > self.limits.max_headers:
            self._refused = f"the request has over {self.limits.max_headers} headers"
            raise _HeadTooLarge

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self.limits.max_head_bytes:
            self._refused = f"the request head is over {self.limits.max_head_bytes} bytes"
            raise _HeadTooLarge
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head, self._head_bytes = True, 0
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self._refused is not None:  # the parser stopped because a callback refused
            self._refuse(self._refused)
            return
        super().send_400_response(msg)

    def _refuse(self, reason: str) -> None:
        log.info("refused a request from %s: %s", _peer(self.client), reason)
        self._answer(431, "headers-too-large", reason)

    def _answer(self, status: int, slug: str, detail: str) -> None:
        """Answer with a problem and close, outside any ASGI cycle."""
        body = problems.encode(status, slug, detail)
        self.transport.write(b"".join([
            STATUS_LINE[status], b"content-type: ", problems.MEDIA_TYPE.encode(), b"\r\n",
            b"content-length: ", str(len(body)).encode(), b"\r\n",
            b"connection: close\r\n\r\n", body]))
        self.transport.close()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "?"
