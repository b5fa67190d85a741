"""``GET /sync/status`` and ``GET /sync/statistics`` (REFERENCE.md, "Monitoring API") on real
queue rows, including rows whose times other tools wrote."""

from __future__ import annotations

import json
from datetime import timedelta

from django.conf import settings as django_settings
from django.utils import timezone

from syncq.models import SyncQueueItem
from syncq.selectors import queue_statistics, queue_status
from tests.api_support import API, as_text, when, write_times
from tests.factories import (
    queue_item_backing_off,
    queue_item_exceeded,
    queue_item_pending,
    queue_item_synced,
    queue_item_syncing,
)

# --- /sync/status -----------------------------------------------------------------------------


@API
def test_status_has_every_key_with_the_real_counts(viewer):
    """GET /sync/status is queue_status() and ``agent`` (null outside agent mode): every
    reference key, counts of the rows made."""
    queue_item_exceeded(description="failed one")
    queue_item_exceeded(description="failed two")
    queue_item_synced()
    queue_item_syncing()
    queue_item_backing_off()
    queue_item_pending(description="fresh one")
    queue_item_pending(description="fresh two")

    response = viewer.get("/sync/status")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "sync_worker", "queue", "totals", "agent"}
    assert body["status"] == "ok"
    assert set(body["sync_worker"]) == {
        "is_running",
        "sync_interval",
        "uptime_seconds",
        "last_sync_time",
    }
    assert body["sync_worker"]["is_running"] is False
    assert body["sync_worker"]["sync_interval"] == django_settings.SYNC_INTERVAL_SECONDS
    assert body["sync_worker"]["uptime_seconds"] == 0
    latest = SyncQueueItem.objects.order_by("-last_sync_attempt").first().last_sync_attempt
    assert when(body["sync_worker"]["last_sync_time"]) == latest
    assert body["queue"] == {
        "pending": 3,
        "syncing": 1,
        "synced": 1,
        "failed": 2,
        "waiting": 0,
        "conflict": 0,
    }
    assert body["totals"] == {"total_synced": 1, "total_failed": 2}
    assert body == {**json.loads(json.dumps(queue_status())), "agent": None}


@API
def test_status_of_an_empty_queue(viewer):
    """An empty queue answers zeros and a null last_sync_time, not an error."""
    body = viewer.get("/sync/status").json()
    assert body["queue"] == {
        "pending": 0,
        "syncing": 0,
        "synced": 0,
        "failed": 0,
        "waiting": 0,
        "conflict": 0,
    }
    assert body["totals"] == {"total_synced": 0, "total_failed": 0}
    assert body["sync_worker"]["last_sync_time"] is None


# --- /sync/statistics -------------------------------------------------------------------------


@API
def test_statistics_has_every_key_with_the_real_figures(viewer):
    """GET /sync/statistics wraps queue_statistics() with the rows' counts and errors."""
    queue_item_exceeded(description="a", error="VH locked")
    queue_item_exceeded(description="b", error="VH locked")
    queue_item_exceeded(description="c", error="disk full")
    queue_item_backing_off(error="VH locked")
    queue_item_synced()
    queue_item_pending()

    response = viewer.get("/sync/statistics")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "statistics"}
    assert body["status"] == "ok"
    stats = body["statistics"]
    assert set(stats) == {
        "counts",
        "oldest_pending_age_seconds",
        "synced_last_hour",
        "synced_last_day",
        "sync_seconds",
        "sync_seconds_last_hour",
        "sync_seconds_last_day",
        "top_errors",
        "verify",
    }
    assert stats["counts"] == {
        "pending": 2,
        "syncing": 0,
        "synced": 1,
        "max_retries_exceeded": 3,
        "waiting": 0,
        "conflict": 0,
    }
    assert stats["synced_last_hour"] == 1
    assert stats["synced_last_day"] == 1
    assert set(stats["sync_seconds"]) == {"mean", "p95", "sample"}
    assert stats["sync_seconds"]["sample"] == 1
    assert set(stats["sync_seconds_last_day"]) == {"median", "p95", "sample"}
    assert stats["sync_seconds_last_day"]["sample"] == 1
    assert stats["top_errors"] == [
        {"error": "VH locked", "count": 3},
        {"error": "disk full", "count": 1},
    ]
    assert isinstance(stats["oldest_pending_age_seconds"], int | float)
    expected = queue_statistics()
    assert stats["counts"] == expected["counts"]
    assert stats["top_errors"] == expected["top_errors"]


@API
def test_statistics_of_an_empty_queue(viewer):
    """No pending and no synced item: the age and the timings are null, counts zero."""
    stats = viewer.get("/sync/statistics").json()["statistics"]
    assert stats["oldest_pending_age_seconds"] is None
    assert stats["sync_seconds"] is None
    assert (stats["synced_last_hour"], stats["synced_last_day"]) == (0, 0)
    assert stats["top_errors"] == []


@API
def test_statistics_windows_on_timestamps_written_by_other_tools(viewer):
    """synced_last_hour/day, the oldest pending age and the timings are right whatever mix of
    T/space separators and Z/+00:00 suffixes the rows were written with."""
    now = timezone.now().replace(microsecond=0)
    synced_ago = [
        (timedelta(minutes=30), "T-Z"),  # hour and day
        (timedelta(minutes=30), "space+00"),  # hour and day
        (timedelta(minutes=45), "space"),  # hour and day
        (timedelta(hours=5), "T-Z"),  # day only (as text, 'T' sorts after ' ')
        (timedelta(hours=5), "T+00"),  # day only
        (timedelta(hours=25), "T-Z"),  # neither (as text it would pass the day's cutoff)
        (timedelta(days=2), "space"),  # neither
    ]
    for number, (ago, style) in enumerate(synced_ago):
        item = queue_item_synced(description=f"synced {number}", haven_id=100 + number)
        done = now - ago
        write_times(
            item.id,
            synced_at=as_text(done, style),
            created_at=as_text(done - timedelta(seconds=60), style),
        )
    older = queue_item_pending(description="pending for three hours")
    newer = queue_item_pending(description="pending for two hours")
    write_times(older.id, created_at=as_text(now - timedelta(hours=3), "T-Z"))
    write_times(newer.id, created_at=as_text(now - timedelta(hours=2), "space"))

    stats = viewer.get("/sync/statistics").json()["statistics"]

    assert stats["synced_last_hour"] == 3
    assert stats["synced_last_day"] == 5
    assert stats["counts"]["synced"] == 7
    assert stats["sync_seconds"] == {"mean": 60.0, "p95": 60.0, "sample": 7}
    elapsed = (timezone.now() - now).total_seconds()
    age = stats["oldest_pending_age_seconds"]
    assert 3 * 3600 - 1 <= age <= 3 * 3600 + elapsed + 1
