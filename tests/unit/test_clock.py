"""Timestamps as the API and events write them."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from otpgate.clock import FrozenClock, isoformat


def reference(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_isoformat_writes_what_datetime_writes(ts: float) -> None:
    assert isoformat(ts) == reference(ts)


def test_isoformat_at_the_edges_of_a_second() -> None:
    assert isoformat(1_800_000_000.0) == "2027-01-15T08:00:00.000Z"
    assert isoformat(1_799_999_999.9996) == "2027-01-15T07:59:59.999Z"
    assert isoformat(1_800_000_000.9999996) == "2027-01-15T08:00:01.000Z"


def test_a_frozen_clock_moves_only_when_told() -> None:
    clock = FrozenClock(100.0)
    assert clock.now() == 100.0
    clock.advance(2.5)
    clock.advance(-0.5)
    assert clock.now() == 102.0
    clock.set(5.0)
    assert clock.now() == 5.0
