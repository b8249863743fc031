"""The failover benchmark runs and counts right (a short outage; speed is never asserted
here — the figures are the benchmark's)."""

from __future__ import annotations

from benchmarks.failover import run


async def test_the_failover_benchmark_measures_a_short_outage_and_loses_nothing() -> None:
    figures = await run(rate=40, outage=1.0, heal_wait=0)
    assert figures["codes_not_sent"] == 0
    assert figures["codes"] >= 60
    assert figures["first_503_to_first_secondary_send_ms"] >= 0
    moved = figures["per_code_503_to_secondary_ms"]
    assert moved["count"] == figures["primary_calls_during_outage"] > 0
