"""``GET /sync/items/`` and ``GET /sync/items/{id}/`` (README, "The Control Room API"): each item
with its discovery's summary, cursor pages, and the filters."""

from __future__ import annotations

import base64
from datetime import UTC, timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from syncq.models import SyncQueueItem
from tests.api_support import (
    API,
    DISCOVERY_SUMMARY_KEYS,
    ITEM_KEYS,
    MISSING_ID,
    as_text,
    when,
    write_times,
)
from tests.factories import (
    queue_item_exceeded,
    queue_item_pending,
    queue_item_synced,
    queue_item_syncing,
)


@API
def test_item_detail_has_every_key_with_the_real_values(viewer):
    """GET /sync/items/{id}/ returns the item with its discovery summary and error."""
    item = queue_item_exceeded(description="detail", error="OperationalError: database is locked")
    discovery = item.discovery

    response = viewer.get(f"/sync/items/{item.id}/")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == ITEM_KEYS
    assert body["id"] == item.id
    assert body["discovery_id"] == discovery.id
    assert body["sync_status"] == "max_retries_exceeded"
    assert (body["sync_attempts"], body["max_attempts"]) == (1, 1)
    assert when(body["last_sync_attempt"]) == item.last_sync_attempt
    assert body["next_retry_after"] is None
    assert body["sync_error"] == "OperationalError: database is locked"
    assert body["haven_discovery_id"] is None
    assert when(body["created_at"]) == item.created_at
    assert body["synced_at"] is None
    summary = body["discovery"]
    assert set(summary) == DISCOVERY_SUMMARY_KEYS
    assert summary["id"] == discovery.id
    assert summary["discovery_type"] == "🏛️"
    assert summary["system_name"] == "Demo Alpha"
    assert summary["location"] == "Alpha Prime"
    assert summary["username"] == "Tester"
    assert when(summary["submission_timestamp"]) == discovery.submission_timestamp


@API
def test_item_detail_of_a_synced_item_names_its_vh_row(viewer):
    """A synced item shows its VH id and synced_at, and no error."""
    item = queue_item_synced(haven_id=77)
    body = viewer.get(f"/sync/items/{item.id}/").json()
    assert body["sync_status"] == "synced"
    assert body["haven_discovery_id"] == 77
    assert when(body["synced_at"]) == item.synced_at
    assert body["sync_error"] is None


@API
def test_item_detail_of_an_unknown_id_is_404(viewer):
    """An id that names no queue item is 404."""
    assert viewer.get(f"/sync/items/{MISSING_ID}/").status_code == 404


@API
@pytest.mark.parametrize("item_id", [2**63 - 1, 2**63, 10**30])
def test_item_detail_of_an_id_no_database_holds_is_404(viewer, item_id):
    """An id at or past 2^63−1 (what SQLite and PostgreSQL store) is a JSON 404, never a 500."""
    queue_item_pending()
    response = viewer.get(f"/sync/items/{item_id}/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")


def _all_pages(client: APIClient, params: dict | None = None) -> list[dict]:
    """Follow the cursor pagination's `next` links; returns every item seen."""
    response = client.get("/sync/items/", params or {})
    assert response.status_code == 200, response.content
    seen: list[dict] = []
    for _ in range(100):
        body = response.json()
        assert set(body) == {"next", "previous", "results"}
        seen.extend(body["results"])
        if body["next"] is None:
            return seen
        response = client.get(body["next"])
        assert response.status_code == 200
    raise AssertionError("pagination did not end")


@API
def test_items_list_is_cursor_paginated_and_complete(viewer):
    """Walking the cursor pages yields every item exactly once, each in the item shape."""
    made = {
        queue_item_exceeded(description="e").id,
        queue_item_synced().id,
        queue_item_syncing().id,
    }
    made |= {queue_item_pending(description=f"p{n}").id for n in range(30)}
    seen = _all_pages(viewer)
    assert sorted(row["id"] for row in seen) == sorted(made)
    assert all(set(row) == ITEM_KEYS for row in seen)
    first = viewer.get("/sync/items/").json()
    assert first["previous"] is None


@API
def test_items_filter_by_status_and_discovery(viewer):
    """?status= keeps one state and ?discovery_id= one discovery's item."""
    exceeded = queue_item_exceeded()
    synced = queue_item_synced()
    pending = queue_item_pending()
    by_status = _all_pages(viewer, {"status": "max_retries_exceeded"})
    assert [row["id"] for row in by_status] == [exceeded.id]
    by_discovery = _all_pages(viewer, {"discovery_id": synced.discovery_id})
    assert [row["id"] for row in by_discovery] == [synced.id]
    assert {row["id"] for row in _all_pages(viewer, {"status": "pending"})} == {pending.id}


@API
def test_items_filter_by_since_and_until_on_created_at(viewer):
    """?since= and ?until= (ISO 8601, Z or +00:00) bound created_at."""
    now = timezone.now()
    old, middle, new = (queue_item_pending(description=f"day {n}") for n in (3, 2, 1))
    for item, days in ((old, 3), (middle, 2), (new, 1)):
        SyncQueueItem.objects.filter(id=item.id).update(created_at=now - timedelta(days=days))
    since = (now - timedelta(days=2, hours=1)).isoformat()
    until = (now - timedelta(days=1, hours=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    assert {row["id"] for row in _all_pages(viewer, {"since": since})} == {middle.id, new.id}
    assert {row["id"] for row in _all_pages(viewer, {"until": until})} == {old.id, middle.id}
    both = _all_pages(viewer, {"since": since, "until": until})
    assert [row["id"] for row in both] == [middle.id]


@API
def test_bounds_before_year_1000_compare_as_times(viewer):
    """A bound in year 999 is before every item, not after: its text is zero-padded."""
    item = queue_item_pending(description="now")
    assert [row["id"] for row in _all_pages(viewer, {"since": "0999-01-01T00:00:00Z"})] == [item.id]
    assert _all_pages(viewer, {"until": "0999-01-01T00:00:00Z"}) == []


@API
def test_items_since_filter_on_timestamps_written_by_other_tools(viewer):
    """?since= compares times, not text: a 'T…Z' row older than the bound is left out."""
    now = timezone.now().replace(microsecond=0)
    older = queue_item_pending(description="five hours")
    newer = queue_item_pending(description="three hours")
    write_times(older.id, created_at=as_text(now - timedelta(hours=5), "T-Z"))
    write_times(newer.id, created_at=as_text(now - timedelta(hours=3), "space"))
    since = (now - timedelta(hours=4)).isoformat()
    assert [row["id"] for row in _all_pages(viewer, {"since": since})] == [newer.id]


@API
@pytest.mark.parametrize(
    "params",
    [
        {"status": "done"},
        {"status": "failed"},
        {"since": "yesterday"},
        {"until": "2026-13-45"},
        {"until": "null"},
        {"discovery_id": "abc"},
    ],
)
def test_items_with_a_bad_filter_answer_400(params, viewer):
    """A status that is not a state, or a since/until that is not a date, is a 400."""
    queue_item_pending()
    assert viewer.get("/sync/items/", params).status_code == 400


@API
@pytest.mark.parametrize("position", ["p=abc", "p=", "p=1.5", "r=1&p=abc"])
def test_a_cursor_whose_position_is_not_an_id_is_invalid(admin, position):
    """A well-encoded cursor with a position that is not an id answers 404 Invalid cursor."""
    cursor = base64.b64encode(position.encode()).decode()
    response = admin.get("/sync/items/", {"cursor": cursor})
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid cursor"}
