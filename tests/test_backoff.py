"""The retry schedule of the sync queue (REFERENCE.md, "Retry schedule")."""

from datetime import timedelta

import pytest

from syncq.backoff import MAX_RETRY_DELAY, retry_delay

REFERENCE_SCHEDULE = [30, 60, 120, 240, 480, 960, 1920, 3840, 7680]


def test_delays_follow_the_reference_schedule():
    """Failed attempts 1..9 wait 30 s, 60 s, 2 m, … 128 m with a base of 30 s."""
    delays = [retry_delay(n, base_seconds=30) for n in range(1, 10)]
    assert delays == [timedelta(seconds=s) for s in REFERENCE_SCHEDULE]


def test_setting_of_thirty_seconds_gives_the_reference_schedule(settings):
    """With SYNC_BASE_DELAY_SECONDS = 30 (the default) callers get the reference schedule."""
    settings.SYNC_BASE_DELAY_SECONDS = 30
    assert [retry_delay(n) for n in range(1, 10)] == [
        timedelta(seconds=s) for s in REFERENCE_SCHEDULE
    ]


def test_base_comes_from_the_setting(settings):
    """SYNC_BASE_DELAY_SECONDS sets the first wait, and each later wait doubles it."""
    settings.SYNC_BASE_DELAY_SECONDS = 7
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [
        timedelta(seconds=7),
        timedelta(seconds=14),
        timedelta(seconds=28),
        timedelta(seconds=56),
    ]


def test_explicit_base_wins_over_the_setting(settings):
    """A base passed by the caller is used instead of SYNC_BASE_DELAY_SECONDS."""
    settings.SYNC_BASE_DELAY_SECONDS = 7
    assert retry_delay(3, base_seconds=30) == timedelta(seconds=120)


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_numbers_start_at_one(attempt):
    """An attempt number below 1 is a caller's mistake and raises ValueError."""
    with pytest.raises(ValueError, match="start at 1"):
        retry_delay(attempt)


def test_huge_attempt_numbers_stay_representable():
    """A very large max_attempts gives a due time that still fits a datetime (no overflow)."""
    from django.utils import timezone

    now = timezone.now()
    due = now + retry_delay(1000)
    assert due - now >= retry_delay(9)


def test_delay_stops_doubling_at_a_week():
    """A long attempt table waits at most MAX_RETRY_DELAY, never past what a date can hold."""
    assert retry_delay(1000, base_seconds=86_400) == MAX_RETRY_DELAY == timedelta(days=7)
    assert retry_delay(15, base_seconds=30) == timedelta(seconds=30 * 2**14)
