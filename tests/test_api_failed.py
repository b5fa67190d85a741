"""``GET /sync/failed?limit=`` (REFERENCE.md, "Monitoring API"): the items that used up their
attempts, newest first, in the old clients' shape; ``limit`` 1 to 200."""

from __future__ import annotations

import pytest

from tests.api_support import API, FAILED_ITEM_KEYS, when
from tests.factories import (
    queue_item_backing_off,
    queue_item_exceeded,
    queue_item_pending,
    queue_item_synced,
)


@API
def test_failed_lists_exceeded_items_in_the_reference_shape(viewer):
    """GET /sync/failed lists only max_retries_exceeded items, newest first, with every
    reference key and the discovery's values."""
    first = queue_item_exceeded(description="first", error="first error", location="Alpha Prime")
    second = queue_item_exceeded(
        description="second", error="second error", username="Someone Else"
    )
    queue_item_synced()
    queue_item_backing_off()
    queue_item_pending()

    response = viewer.get("/sync/failed")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "failed_items", "count"}
    assert body["status"] == "ok"
    assert body["count"] == 2
    assert [row["queue_id"] for row in body["failed_items"]] == [second.id, first.id]
    for row, item in zip(body["failed_items"], [second, first], strict=True):
        assert set(row) == FAILED_ITEM_KEYS
        discovery = item.discovery
        assert row["discovery_id"] == discovery.id
        assert row["sync_attempts"] == 1
        assert row["sync_error"] == item.sync_error
        assert when(row["created_at"]) == item.created_at
        assert when(row["last_sync_attempt"]) == item.last_sync_attempt
        assert row["system_name"] == "Demo Alpha"
        assert row["location"] == discovery.location
        assert row["discovery_type"] == "🏛️"
        assert row["username"] == discovery.username
    assert body["failed_items"][0]["username"] == "Someone Else"
    assert body["failed_items"][1]["sync_error"] == "first error"


@API
def test_failed_limit_takes_the_newest(viewer):
    """?limit=2 of three failed items returns the two newest and counts them."""
    items = [queue_item_exceeded(description=f"failed {n}") for n in range(3)]
    body = viewer.get("/sync/failed", {"limit": 2}).json()
    assert [row["queue_id"] for row in body["failed_items"]] == [items[2].id, items[1].id]
    assert body["count"] == 2


@API
def test_failed_limit_defaults_to_20_and_is_capped_at_200(viewer):
    """Without ?limit 20 items come back; a limit above 200 is served as 200, not refused."""
    for n in range(201):
        queue_item_exceeded(description=f"failed {n}", error="gone")

    default = viewer.get("/sync/failed")
    capped = viewer.get("/sync/failed", {"limit": 500})

    assert default.status_code == 200
    assert len(default.json()["failed_items"]) == 20
    assert capped.status_code == 200
    assert len(capped.json()["failed_items"]) == 200
    assert viewer.get("/sync/failed", {"limit": 200}).json()["count"] == 200


@API
@pytest.mark.parametrize("limit", ["0", "-1", "abc", "1.5"])
def test_failed_with_a_bad_limit_answers_400_naming_limit(limit, viewer):
    """limit zero, negative or not an integer is a 400 whose body names `limit`."""
    queue_item_exceeded()
    response = viewer.get("/sync/failed", {"limit": limit})
    assert response.status_code == 400
    body = response.json()
    assert isinstance(body.get("limit"), list) and body["limit"], body
