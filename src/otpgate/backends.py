"""Backends by URL: each store paired with the bus its outbox feeds and its capture sink.

``open_backend(url, clock, options)`` finds the opener through ``otpgate.registry``;
openers import their modules lazily, so a backend's dependencies load only when a URL
names it. Adding a backend is one opener here and one line in the registry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from otpgate import registry
from otpgate.bus.base import Bus
from otpgate.capture.base import CaptureSink
from otpgate.clock import Clock
from otpgate.errors import ConfigurationError
from otpgate.ratelimit.cells import Limiter, MemoryLimiter
from otpgate.ratelimit.pace import Pace
from otpgate.store.base import Store

PaceMaker = Callable[[str, float, int], Pace]
"""(driver name, rate, burst) → the pace that driver's senders share."""


@dataclass(slots=True)
class Backend:
    """A store, the bus its outbox feeds, and where captured messages go."""

    store: Store
    bus: Bus
    capture: CaptureSink
    close: Callable[[], Awaitable[None]]
    embedded: bool = False
    """Everything in this machine's memory or files (no server shared with others)."""
    limiter: Limiter = field(default_factory=MemoryLimiter)
    """Where the abuse rules keep their counts (``otpgate.ratelimit``), next to the store."""
    pace: PaceMaker | None = None
    """Where the backend is shared by processes (Redis), the paces they share; ``None``:
    each process paces its own sends."""


async def open_backend(url: str, clock: Clock, **options: Any) -> Backend:
    """Open the backend ``url`` names; ``options`` are backend-specific tuning."""
    opener = registry.load(registry.BACKENDS, url, "backend")
    backend: Backend = await opener(url, clock, **options)
    return backend


async def open_memory(url: str, clock: Clock, **options: Any) -> Backend:
    """``memory://``: everything in this process, gone when it exits."""
    from otpgate.bus.memory import MemoryBus
    from otpgate.capture.memory import MemoryCaptureSink
    from otpgate.store.memory import MemoryStore

    bus = MemoryBus(clock, poll_interval=options.get("poll_interval", 0.05),
                    drain_timeout=float(options.get("drain_timeout", 1.0)))
    store = MemoryStore(bus, clock)

    async def close() -> None:
        await bus.stop()

    return Backend(store=store, bus=bus, capture=MemoryCaptureSink(), close=close,
                   embedded=True)


async def open_sqlite(url: str, clock: Clock, **options: Any) -> Backend:
    """``sqlite:///path/to/otpgate.db``: one file, WAL, the outbox in the same database.

    Options: ``poll_interval`` (s, how often to look for other processes' events),
    ``batch_size`` (units per group commit), ``busy_timeout_ms``, ``drain_timeout`` (s, for
    in-flight handlers on stop).
    """
    from otpgate.bus.sqlite_outbox import SqliteOutboxBus
    from otpgate.capture.sqlite import SqliteCaptureSink
    from otpgate.ratelimit.backends import SqliteLimiter
    from otpgate.sqlite.db import Database
    from otpgate.store.sqlite import SqliteStore, database_path

    db_options = {k: int(options[k]) for k in ("batch_size", "busy_timeout_ms")
                  if k in options}
    db = await Database.open(database_path(url), **db_options)
    bus = SqliteOutboxBus(db, clock, poll_interval=float(options.get("poll_interval", 0.2)),
                          drain_timeout=float(options.get("drain_timeout", 5.0)))
    store = SqliteStore(db, bus, clock)

    async def close() -> None:
        await bus.stop()
        await db.close()

    return Backend(store=store, bus=bus, capture=SqliteCaptureSink(db), close=close,
                   embedded=True, limiter=SqliteLimiter(db))


async def open_dynamodb(url: str, clock: Clock, **options: Any) -> Backend:
    """``dynamodb://TABLE?region=…&endpoint_url=…``: the store in one DynamoDB table, the
    bus on SNS topics (``topic_arn``, ``events_topic_arn``) and SQS queues, the capture
    sink in the table (see ``otpgate.aws.table`` for the URL's options).

    Options: ``topic_arn`` and ``events_topic_arn`` (required), ``max_deliveries``
    (the queues' ``maxReceiveCount``), ``retention`` (s, for the items' TTL),
    ``poll_interval`` (s, between empty receives of a local consumer).
    """
    from otpgate.aws.clients import Clients
    from otpgate.aws.resources import Topics
    from otpgate.aws.table import Location, Table
    from otpgate.bus.sns_sqs import SnsSqsBus
    from otpgate.capture.dynamodb import DynamoCaptureSink
    from otpgate.errors import ConfigurationError
    from otpgate.store.dynamodb import DynamoStore

    try:
        import aiobotocore  # noqa: F401
    except ImportError:
        raise ConfigurationError("the dynamodb backend needs the AWS SDK; "
                                 "pip install 'otpgate[aws]'") from None
    where = Location.from_url(url)
    dispatch, lifecycle = options.get("topic_arn"), options.get("events_topic_arn")
    if not dispatch or not lifecycle:
        raise ConfigurationError("a dynamodb:// store needs OTPGATE_TOPIC_ARN and "
                                 "OTPGATE_EVENTS_TOPIC_ARN (otpgate aws provision prints them)")
    clients = Clients(where.region, where.endpoint_url)
    try:
        table = Table(await clients.get("dynamodb"), where.table)
        bus = SnsSqsBus(table, await clients.get("sns"), await clients.get("sqs"),
                        Topics(str(dispatch), str(lifecycle)), clock,
                        queue_prefix=where.queue_prefix, create_queues=where.create_queues,
                        max_deliveries=int(options.get("max_deliveries", 8)),
                        poll_interval=float(options.get("poll_interval", 0.2)))
    except BaseException:
        await clients.close()
        raise
    store = DynamoStore(table, bus, clock,
                        retention=float(options.get("retention", 7 * 24 * 3600.0)))

    async def close() -> None:
        await bus.stop()
        await clients.close()

    from otpgate.ratelimit.backends import DynamoLimiter

    return Backend(store=store, bus=bus, capture=DynamoCaptureSink(table), close=close,
                   limiter=DynamoLimiter(table))


async def open_redis(url: str, clock: Clock, **options: Any) -> Backend:
    """``redis://``, ``rediss://``, ``redis+cluster://`` and ``redis+sentinel://`` (see
    ``otpgate.redisio.conn``): the store, the bus (Redis Streams) and the dev inbox in one
    Redis, shared by any number of processes on any machines.

    Options: ``timeout`` (s, ``OTPGATE_STORE_TIMEOUT``: every call's bound),
    ``poll_interval`` (s, how long a consumer waits on an idle stream before it looks for
    retries and expired leases again), ``drain_timeout`` (s, for in-flight handlers on
    stop; at most half a lease; 8 by default, so that a stop takes under 10 s).
    """
    try:
        from otpgate.bus.redis_routes import Routes
        from otpgate.bus.redis_streams import RedisStreamsBus
        from otpgate.capture.redis import RedisCaptureSink
        from otpgate.redisio.conn import connect
        from otpgate.redisio.pace import RedisPace
        from otpgate.store.redis import RedisStore
    except ImportError as exc:
        raise ConfigurationError(f"backend 'redis' cannot be loaded: {exc}; "
                                 "pip install 'otpgate[redis]'") from None

    conn = connect(url, timeout=float(options.get("timeout", 2.0)))
    routes = Routes(conn)
    bus = RedisStreamsBus(conn, routes, clock,
                          poll_interval=float(options.get("poll_interval", 0.2)),
                          drain_timeout=float(options.get("drain_timeout", 8.0)))

    async def close() -> None:
        await bus.stop()
        await conn.close()

    from otpgate.ratelimit.backends import RedisLimiter

    return Backend(store=RedisStore(conn, routes, clock), bus=bus,
                   capture=RedisCaptureSink(conn), close=close, embedded=False,
                   limiter=RedisLimiter(conn),
                   pace=lambda driver, rate, burst: RedisPace(conn, driver, rate, burst))
