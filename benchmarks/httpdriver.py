"""``bench+http://HOST:PORT/PATH`` — a driver for the dispatch benchmarks only: it POSTs each
message as JSON to the provider stand-in (``benchmarks/provider.py``) over a pool of
keep-alive connections and maps the answer onto the outcomes.

``client=raw`` (the default) is the load generator's own HTTP/1.1 connection
(``benchmarks.loadgen``) in a plain pool: it costs tens of microseconds a request, so the
figures measure the dispatcher. ``client=httpx`` uses one pooled ``httpx.AsyncClient``, as the
provider drivers do; with httpcore 1.0.9 its pool spends time linear in its connections on
every request (``_assign_requests_to_connections``), which shows at the concurrency the
benchmark runs at.

No credentials, nothing of the message but its ids leaves: ``{"otp_id", "send_no",
"channel", "idempotency_key", "chars"}``. Loopback only. ``benchmarks/cli.py`` registers
the scheme before running the ``otpgate`` command line.
"""

from __future__ import annotations

import asyncio
import json

import httpx

from benchmarks.loadgen import ProtocolError, _Connection
from otpgate.drivers.base import COMMON_OPTIONS, Driver, DriverContext, Message, SendReceipt
from otpgate.errors import (
    ConfigurationError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    UnknownOutcomeError,
)
from otpgate.urls import Url

SCHEME = "bench+http"
CHANNELS = frozenset({"sms", "email"})


class _RawPool:
    """Idle keep-alive connections to one origin, opened as needed."""

    def __init__(self, host: str, port: int, path: str, timeout: float) -> None:
        self._host, self._port, self._path, self._timeout = host, port, path, timeout
        self._idle: list[_Connection] = []

    async def post(self, body: bytes) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            _, conn = await loop.create_connection(_Connection, self._host, self._port)
        request = (f"POST {self._path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                   ).encode() + body
        try:
            async with asyncio.timeout(self._timeout):
                status, answer, close = await conn.send(request, loop)
        except BaseException:
            if conn.transport is not None:
                conn.transport.abort()
            raise
        if close:
            conn.transport.close()  # type: ignore[union-attr]
        else:
            self._idle.append(conn)
        return status, answer

    async def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()


class BenchHttpDriver:
    """POSTs to the stand-in; 2xx sent, 429 and 5xx temporary, other 4xx permanent, a
    timeout unknown."""

    channels = CHANNELS

    def __init__(self, host: str, port: int, path: str, name: str, timeout: float = 10.0,
                 client: str = "raw") -> None:
        self.name = name
        self._endpoint = f"http://{host}:{port}{path}"
        self._raw = _RawPool(host, port, path, timeout) if client == "raw" else None
        self._httpx = None if client == "raw" else httpx.AsyncClient(
            timeout=timeout, limits=httpx.Limits(max_connections=2000,
                                                 max_keepalive_connections=2000))

    async def send(self, message: Message) -> SendReceipt:
        body = json.dumps({"otp_id": message.otp_id, "send_no": message.send_no,
                           "channel": message.channel,
                           "idempotency_key": message.idempotency_key,
                           "chars": len(message.body)}).encode()
        try:
            status, answer = await self._post(body)
        except TimeoutError:
            raise UnknownOutcomeError("the stand-in did not answer in time") from None
        except (OSError, ProtocolError, httpx.TransportError) as exc:
            raise TemporaryDeliveryError(f"stand-in unreachable: {type(exc).__name__}") from None
        if status == 429 or status >= 500:
            raise TemporaryDeliveryError(f"stand-in answered {status}")
        if status >= 400:
            raise PermanentDeliveryError(f"stand-in answered {status}")
        return SendReceipt(str(json.loads(answer)["id"]))

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        if self._raw is not None:
            return await self._raw.post(body)
        assert self._httpx is not None
        try:
            answer = await self._httpx.post(self._endpoint, content=body,
                                            headers={"content-type": "application/json"})
        except httpx.TimeoutException:
            raise TimeoutError from None
        return answer.status_code, answer.content

    def url(self, privacy: bool = True) -> str:
        return f"{SCHEME}://{self._endpoint.removeprefix('http://')}"

    async def close(self) -> None:
        if self._raw is not None:
            await self._raw.close()
        if self._httpx is not None:
            await self._httpx.aclose()


def from_url(url: Url, ctx: DriverContext) -> Driver:
    """``bench+http://127.0.0.1:PORT/messages[?timeout=S&client=raw|httpx]``."""
    usage = "bench+http://127.0.0.1:PORT/messages[?timeout=S&client=raw|httpx]"
    url.check_options(COMMON_OPTIONS | {"timeout", "client"}, usage)
    if url.host not in ("127.0.0.1", "localhost") or url.port is None:
        raise ConfigurationError("bench+http:// talks to a loopback stand-in only")
    client = url.option("client") or "raw"
    if client not in ("raw", "httpx"):
        raise ConfigurationError(f"bench+http:// client is raw or httpx; {usage}")
    return BenchHttpDriver(url.host, url.port, url.path or "/messages", ctx.name or "bench",
                           float(url.option("timeout") or 10.0), client)
