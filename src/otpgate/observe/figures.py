"""The dashboard's figures: what ``/metrics`` reports, summed the way the charts show it.

Read from the same registry as a scrape (every server process's samples under
``--workers N``), plus the bus's backlog and this process's breakers at this moment.
Counters stay cumulative; the page turns them into rates between two reads.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from prometheus_client import start_http_server

from otpgate.breaker import BreakerView
from otpgate.bus.base import Backlog, Bus
from otpgate.observe import metrics

if TYPE_CHECKING:
    from otpgate.runtime import Runtime

log = logging.getLogger(__name__)

TOP_PREFIXES = 10


async def refresh(bus: Bus, breakers: list[BreakerView], drivers: list[str]) -> list[Backlog]:
    """Set the gauges a scrape reports (queues, breakers); return the backlog read."""
    try:
        backlog = await bus.backlog()
    except Exception as exc:  # a scrape still reports what it can
        log.warning("metrics: the bus backlog cannot be read: %s", exc)
        backlog = []
    metrics.observe_backlog(backlog)
    metrics.observe_breakers(breakers, drivers)
    return backlog


def serve(host: str, port: int) -> None:
    """This process's metrics on ``http://host:port/`` (prometheus-client's own server, in
    a thread): for ``otpgate worker``, which serves no HTTP API."""
    start_http_server(port, addr=host)
    log.info("metrics on http://%s:%d/metrics", host, port)


async def keep_fresh(runtime: Runtime, every: float = 5.0) -> None:
    """Refresh the queue and breaker gauges now and then (no scrape asks this process's
    API to, as it has none)."""
    while True:
        await refresh(runtime.backend.bus, runtime.breakers.views(),
                      sorted(runtime.driver_urls))
        await asyncio.sleep(every)


def figures(backlog: list[Backlog], breakers: list[BreakerView], drivers: list[str],
            now: float) -> dict[str, Any]:
    found = metrics.samples()
    api = metrics.totals("otpgate_http_requests_total", ("route",), found)
    otps = metrics.totals("otpgate_otps_total", ("country", "outcome"), found)
    countries = sorted({country for country, _ in otps})
    conversion = []
    for country in countries:
        requested = otps.get((country, "requested"), 0.0)
        approved = otps.get((country, "approved"), 0.0)
        conversion.append({"country": country, "requested": requested, "approved": approved,
                           "rate": approved / requested if requested else None})
    prefixes = metrics.totals("otpgate_pumping_blocks_total", ("prefix",), found)
    top = sorted(prefixes.items(), key=lambda item: -item[1])[:TOP_PREFIXES]
    states = {view.driver: view.state.value for view in breakers}
    return {
        "time": now,
        "requests": sum(v for (route,), v in api.items() if route.startswith("/v1")),
        "sends": metrics.labelled(metrics.totals(
            "otpgate_sends_total", ("driver", "outcome"), found), "driver", "outcome"),
        "queues": [{"subscription": b.subscription, "depth": b.depth,
                    "oldest_due_age": round(b.oldest_due_age, 3)} for b in backlog],
        "conversion": conversion,
        "breakers": [{"driver": name, "state": states.get(name, "closed")}
                     for name in drivers],
        "blocked_prefixes": [{"prefix": prefix, "value": value}
                             for (prefix,), value in top],
        "rule_blocks": metrics.labelled(metrics.totals(
            "otpgate_rule_blocks_total", ("rule",), found), "rule"),
        "dead_letters": sum(metrics.totals(
            "otpgate_dead_letters_total", (), found).values()),
    }
