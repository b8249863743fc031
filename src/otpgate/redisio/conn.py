"""One Redis client for a backend URL, with every call bounded and its failures typed.

```
redis://[[user]:password@]host[:port][/db][?options]
rediss://…                               TLS (redis-py's ssl_* options pass through)
redis+cluster://[[user]:password@]host:port[,host:port…][?options]   seed nodes
redis+sentinel://[[user]:password@]host:port[,host:port…]/service[/db][?options]
```
otpgate's own options: ``shards=N`` (see ``otpgate.redisio.keys``; default 1, and 16
on Cluster) and ``prefix=NAME`` (default ``otpgate``).

Every call is bounded by ``timeout`` (``OTPGATE_STORE_TIMEOUT``): a Redis that is down,
loading its data or hung becomes a ``StoreError`` (or ``BusError``) within it, never a
hang. Connections that broke are replaced on the next call, so a process recovers by
itself when Redis returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol, cast
from urllib.parse import urlencode

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    NoScriptError,
    RedisClusterException,
    RedisError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from otpgate import urls
from otpgate.errors import ConfigurationError, OtpgateError, StoreError
from otpgate.redisio.keys import Keys
from otpgate.redisio.pipeline import Arg, BatchFailed, PipelineClient, Pipeliner
from otpgate.redisio.scripts import script

log = logging.getLogger(__name__)

OWN_OPTIONS = ("shards", "prefix")
_FAILURES = (TimeoutError, RedisError, RedisClusterException, OSError, BatchFailed)
CLUSTER_SHARDS = 16


class _Client(PipelineClient, Protocol):
    async def aclose(self) -> None: ...


class RedisConn:
    """The client, the key names, and bounded calls: ``script``, ``command``."""

    def __init__(self, client: _Client, keys: Keys, *, timeout: float, cluster: bool,
                 masked_url: str) -> None:
        self._client = client
        self.keys = keys
        self.timeout = timeout
        self.cluster = cluster
        self.masked_url = masked_url
        self._sent: set[str] = set()
        """Scripts sent whole once (which loads them); later calls send their SHA."""
        self._calls = Pipeliner(client, timeout)

    async def script(self, name: str, keys: Sequence[str], args: Sequence[Arg], *,
                     error: type[OtpgateError] = StoreError) -> Any:
        """Run the Lua script ``name`` (sent whole the first time, which loads it)."""
        found = script(name)
        try:
            if name not in self._sent:
                self._sent.add(name)
                return await self._calls.call("EVAL", found.source, len(keys), *keys, *args)
            try:
                return await self._calls.call("EVALSHA", found.sha, len(keys), *keys, *args)
            except NoScriptError:  # a server that restarted, or another Cluster primary
                return await self._calls.call("EVAL", found.source, len(keys), *keys, *args)
        except _FAILURES as exc:
            raise self._failed(exc, error, self.timeout) from None

    async def scripts(self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Arg]]],
                      *, error: type[OtpgateError] = StoreError) -> list[Any]:
        """Run ``name`` once per (keys, args) in ``calls``, at once (so, pipelined)."""
        return list(await asyncio.gather(*(self.script(name, keys, args, error=error)
                                           for keys, args in calls)))

    async def command(self, *args: Arg, error: type[OtpgateError] = StoreError) -> Any:
        """One plain command, its reply as redis-py shapes it."""
        try:
            return await self._calls.call(*args)
        except _FAILURES as exc:
            raise self._failed(exc, error, self.timeout) from None

    async def blocking_read(self, stream: str, group: str, consumer: str, count: int,
                            block_ms: int, *, error: type[OtpgateError]) -> Any:
        """``XREADGROUP … BLOCK``: new entries of ``stream``, waiting up to ``block_ms``."""
        args: list[Arg] = ["XREADGROUP", "GROUP", group, consumer, "COUNT", count,
                           "BLOCK", block_ms, "STREAMS", stream, ">"]
        options: dict[str, Any] = {}
        if self.cluster:  # spare redis-py a COMMAND GETKEYS per read
            options["target_nodes"] = cast(RedisCluster, self._client).get_node_from_key(
                stream)
        async with self.bounded(error, seconds=self.timeout + block_ms / 1000):
            return await self._client.execute_command(*args, **options)

    @contextlib.asynccontextmanager
    async def bounded(self, error: type[OtpgateError],
                      seconds: float | None = None) -> AsyncIterator[None]:
        """Within ``seconds`` (default: the store's timeout), every Redis failure raised
        as ``error`` (the pipelined calls are bounded by their batch)."""
        limit = self.timeout if seconds is None else seconds
        try:
            async with asyncio.timeout(limit):
                yield
        except _FAILURES as exc:
            raise self._failed(exc, error, limit) from None

    @staticmethod
    def _failed(exc: BaseException, error: type[OtpgateError],
                limit: float) -> OtpgateError:
        if isinstance(exc, TimeoutError | RedisTimeoutError):
            return error(f"redis did not answer within {limit:g} s")
        if isinstance(exc, RedisConnectionError | OSError | BatchFailed):
            return error(f"redis cannot be reached ({type(exc).__name__})")
        log.warning("redis refused a call: %s: %s", type(exc).__name__, str(exc)[:300])
        return error(f"redis refused the call ({type(exc).__name__})")

    async def ping(self, error: type[OtpgateError] = StoreError) -> None:
        async with self.bounded(error):
            await self._client.execute_command("PING")

    async def close(self) -> None:
        with contextlib.suppress(RedisError, RedisClusterException, OSError):
            await self._client.aclose()


def connect(url: str, *, timeout: float = 2.0) -> RedisConn:
    """A ``RedisConn`` for a backend URL (nothing is connected until the first call)."""
    parsed = urls.parse(url)
    options = dict(parsed.query)
    own = {name: options.pop(name) for name in OWN_OPTIONS if name in options}
    cluster = parsed.scheme == "redis+cluster"
    try:
        shards = int(own.get("shards", CLUSTER_SHARDS if cluster else 1))
    except ValueError:
        raise ConfigurationError("shards= must be a whole number") from None
    keys = Keys(own.get("prefix", "otpgate"), shards)
    common: dict[str, Any] = {
        "socket_timeout": timeout, "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 1), "username": parsed.user or None,
        "password": parsed.password or None,
    }
    client: _Client
    if parsed.scheme in ("redis", "rediss"):
        base = url.split("?", 1)[0]
        plain = f"{base}?{urlencode(options)}" if options else base
        client = Redis.from_url(plain, socket_timeout=timeout,
                                socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 1))
    elif cluster:
        _no_options(parsed.scheme, options)
        nodes = [ClusterNode(host, port) for host, port in _seeds(parsed)]
        client = RedisCluster(startup_nodes=nodes, **common)
    elif parsed.scheme == "redis+sentinel":
        _no_options(parsed.scheme, options)
        service, _, db = parsed.path.strip("/").partition("/")
        if not service:
            raise ConfigurationError("redis+sentinel://HOST:PORT[,HOST:PORT…]/SERVICE[/DB]")
        sentinel = Sentinel(_seeds(parsed), socket_timeout=timeout,  # type: ignore[no-untyped-call]
                            socket_connect_timeout=timeout)
        client = sentinel.master_for(service, db=int(db or 0), **common)
    else:
        raise ConfigurationError(f"not a Redis URL: {urls.mask(url)!r}")
    return RedisConn(client, keys, timeout=timeout, cluster=cluster,
                     masked_url=urls.mask(url))


def _no_options(scheme: str, options: dict[str, str]) -> None:
    if options:
        raise ConfigurationError(f"{scheme}:// does not know the options {sorted(options)}; "
                                 f"it takes {', '.join(OWN_OPTIONS)}")


def _seeds(parsed: urls.Url) -> list[tuple[str, int]]:
    """``host:port[,host:port…]`` of a cluster or sentinel URL."""
    if parsed.port is not None:
        return [(parsed.host, parsed.port)]
    seeds = []
    for part in parsed.host.split(","):
        host, colon, port = part.strip().rpartition(":")
        if not colon or not port.isdigit() or not host:
            raise ConfigurationError(f"a seed is HOST:PORT, not {part!r}")
        seeds.append((host.strip("[]"), int(port)))
    return seeds
