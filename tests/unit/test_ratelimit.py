"""The sliding-log rate limit: exact windows, counted in timestamps."""

from __future__ import annotations

import pytest

from otpgate.ratelimit.algorithms import SlidingLog

T0 = 1_800_000_000.0
LOG = SlidingLog(limit=3, window=60)


def test_an_entry_stays_until_just_before_its_window_ends() -> None:
    assert LOG.prune([T0], T0 + 59.999) == [T0]


def test_an_entry_leaves_at_exactly_its_time_plus_the_window() -> None:
    assert LOG.prune([T0], T0 + 60) == []
    assert LOG.prune([T0, T0 + 1], T0 + 60) == [T0 + 1]


def test_prune_keeps_no_more_than_the_limit_newest_entries() -> None:
    assert LOG.prune([T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4], T0 + 5) == [T0 + 2, T0 + 3, T0 + 4]


def test_prune_does_not_change_the_log_it_is_given() -> None:
    log = [T0, T0 + 30]
    LOG.prune(log, T0 + 100)
    assert log == [T0, T0 + 30]


@pytest.mark.parametrize(("size", "left"), [(0, 3), (1, 2), (2, 1), (3, 0), (5, 0)])
def test_remaining_counts_what_the_log_still_allows(size: int, left: int) -> None:
    assert LOG.remaining([T0] * size) == left


def test_retry_after_is_one_second_while_room_is_left() -> None:
    assert LOG.retry_after([], T0) == 1
    assert LOG.retry_after([T0, T0], T0) == 1


def test_retry_after_is_the_whole_seconds_until_the_oldest_counted_entry_leaves() -> None:
    log = [T0, T0 + 10, T0 + 20]
    assert LOG.retry_after(log, T0 + 20) == 40
    assert LOG.retry_after(log, T0 + 20.5) == 40  # 39.5 s, rounded up
    assert LOG.retry_after(log, T0 + 59.9) == 1
    assert LOG.retry_after(log, T0 + 60) == 1


def test_retry_after_looks_at_the_limit_newest_entries_of_a_long_log() -> None:
    log = [T0 - 50, T0, T0 + 10, T0 + 20]
    assert LOG.retry_after(log, T0 + 20) == 40


def test_after_waiting_retry_after_one_more_event_is_allowed() -> None:
    log = [T0 + 0.5, T0 + 10, T0 + 20]
    now = T0 + 30
    later = now + LOG.retry_after(log, now)
    assert LOG.remaining(LOG.prune(log, later)) >= 1
    assert LOG.remaining(LOG.prune(log, later - 1)) == 0
