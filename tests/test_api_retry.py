"""``POST /sync/retry/{queue_id}`` and ``POST /sync/retry`` (REFERENCE.md, "Monitoring API"):
what a retry resets and refuses, the old clients' 404 and 409 bodies, bulk bodies, the
throttle, and one rule shared with the operators' SQL and the sync."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection

from discoveries.haven.models import HavenDiscovery
from syncq.models import SyncQueueItem, SyncStatus
from syncq.services import sync_batch
from tests.api_support import API, MISSING_ID, WITH_HAVEN, due_ids, token_client
from tests.factories import (
    queue_item_backing_off,
    queue_item_exceeded,
    queue_item_synced,
    queue_item_syncing,
)

# --- POST /sync/retry/{queue_id} --------------------------------------------------------------


@API
def test_retry_of_an_exceeded_item_resets_it_and_makes_it_due(admin):
    """A retry of a max_retries_exceeded item answers 200 with the reference keys and leaves
    it pending, attempts 0, error cleared and due now."""
    item = queue_item_exceeded()
    assert due_ids() == set()

    response = admin.post(f"/sync/retry/{item.id}")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert isinstance(body["message"], str) and body["message"]
    assert body["queue_id"] == item.id
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.PENDING
    assert item.sync_attempts == 0
    assert item.sync_error is None
    assert item.next_retry_after is None
    assert due_ids() == {item.id}


@API
def test_retry_of_a_pending_item_in_backoff_makes_it_due_now(admin):
    """A pending item waiting out its backoff is reset and due at once."""
    item = queue_item_backing_off()
    assert due_ids() == set()
    response = admin.post(f"/sync/retry/{item.id}")
    assert response.status_code == 200
    assert response.json()["queue_id"] == item.id
    item.refresh_from_db()
    assert (item.sync_attempts, item.sync_error, item.next_retry_after) == (0, None, None)
    assert due_ids() == {item.id}


@API
def test_retry_of_an_unknown_id_is_404(admin):
    """Retrying an id that names no item is 404 with status "error", not "ok"."""
    response = admin.post(f"/sync/retry/{MISSING_ID}")
    assert response.status_code == 404
    body = response.json()
    assert body["status"] == "error"
    assert isinstance(body["message"], str) and body["message"]


@API
@pytest.mark.parametrize("make", [queue_item_synced, queue_item_syncing], ids=["synced", "syncing"])
def test_retry_of_a_synced_or_syncing_item_is_409_and_changes_nothing(make, admin):
    """A synced item, or one a worker holds now, is refused with 409 and left untouched."""
    item = make()
    fields = ("sync_status", "sync_attempts", "lease_token", "synced_at", "haven_discovery_id")
    before = SyncQueueItem.objects.values(*fields).get(id=item.id)

    response = admin.post(f"/sync/retry/{item.id}")

    assert response.status_code == 409
    body = response.json()
    assert body["status"] == "error"
    assert isinstance(body["message"], str) and body["message"]
    assert SyncQueueItem.objects.values(*fields).get(id=item.id) == before


@API
@pytest.mark.parametrize("path", ["/sync/retry/abc", "/sync/retry/null,null"])
def test_retry_of_a_non_integer_id_is_a_json_404(path, admin):
    """A retry path whose id is not a number is a 404 in JSON, not Django's HTML page
    (schemathesis: POST /sync/retry/null,null answered text/html)."""
    response = admin.post(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")


# --- POST /sync/retry (bulk) ------------------------------------------------------------------


@API
def test_bulk_retry_by_ids_resets_refuses_and_reports_missing(admin):
    """ids naming an exceeded, a synced and no item: one reset, one refused with its state,
    one missing."""
    exceeded = queue_item_exceeded()
    synced = queue_item_synced()

    response = admin.post(
        "/sync/retry", {"ids": [exceeded.id, synced.id, MISSING_ID]}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "reset": 1,
        "reset_ids": [exceeded.id],
        "refused": {str(synced.id): "synced"},
        "missing": [MISSING_ID],
    }
    exceeded.refresh_from_db()
    assert (exceeded.sync_status, exceeded.sync_attempts) == (SyncStatus.PENDING, 0)
    synced.refresh_from_db()
    assert synced.sync_status == SyncStatus.SYNCED


@API
def test_bulk_retry_by_status_resets_every_exceeded_item_only(admin):
    """{"status": "max_retries_exceeded"} resets each exceeded item and nothing else."""
    first, second = queue_item_exceeded(description="one"), queue_item_exceeded(description="two")
    waiting = queue_item_backing_off()
    queue_item_synced()

    response = admin.post("/sync/retry", {"status": "max_retries_exceeded"}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["reset"] == 2
    assert sorted(body["reset_ids"]) == sorted([first.id, second.id])
    assert body["refused"] == {}
    assert body["missing"] == []
    assert due_ids() == {first.id, second.id}, "the item in backoff is still waiting"
    waiting.refresh_from_db()
    assert waiting.sync_attempts == 1


@API
def test_bulk_retry_by_status_pending_ends_every_backoff(admin):
    """{"status": "pending"} makes every pending item due now and leaves exceeded ones."""
    exceeded = queue_item_exceeded()
    waiting = queue_item_backing_off()
    response = admin.post("/sync/retry", {"status": "pending"}, format="json")
    assert response.status_code == 200
    assert response.json()["reset_ids"] == [waiting.id]
    assert due_ids() == {waiting.id}
    exceeded.refresh_from_db()
    assert exceeded.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED


@API
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ids": [1], "status": "max_retries_exceeded"},
        {"ids": []},
        {"ids": "1,2"},
        {"ids": ["one"]},
        {"ids": None},
        {"status": "synced"},
        {"status": "syncing"},
        {"status": "everything"},
        {"status": None},
    ],
    ids=[
        "neither",
        "both",
        "empty-ids",
        "ids-string",
        "ids-not-integers",
        "ids-null",
        "status-synced",
        "status-syncing",
        "status-unknown",
        "status-null",
    ],
)
def test_bulk_retry_with_a_bad_body_answers_400_and_changes_nothing(body, admin):
    """Both, neither, or bad values of ids/status are a 400, and no item is reset."""
    item = queue_item_exceeded()
    response = admin.post("/sync/retry", body, format="json")
    assert response.status_code == 400, response.content
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED


@API
def test_bulk_retry_with_a_non_json_body_answers_400(admin):
    """A body that is not JSON is a 400, not a 500."""
    response = admin.post("/sync/retry", data="{not json", content_type="application/json")
    assert response.status_code == 400


@API
def test_bulk_retry_with_a_form_of_many_ids_answers_json(admin):
    """A form body with more ids fields than Django parses (1,000) gets a JSON answer, never
    Django's HTML 400 (schemathesis: multipart POST /sync/retry answered text/html)."""
    item = queue_item_exceeded()
    response = admin.post("/sync/retry", {"ids": [item.id] * 1001}, format="multipart")
    assert response.status_code < 500
    assert response["Content-Type"].startswith("application/json"), response.content[:200]


# --- the old clients' bodies and the retries' own rules ---------------------------------------


@API
def test_retry_answers_exactly_the_old_clients_bodies(admin):
    """200, 404 and 409 of POST /sync/retry/{id} carry only the old clients' keys, with
    messages that name the item."""
    exceeded = queue_item_exceeded()
    synced = queue_item_synced()

    ok = admin.post(f"/sync/retry/{exceeded.id}")
    missing = admin.post(f"/sync/retry/{MISSING_ID}")
    refused = admin.post(f"/sync/retry/{synced.id}")

    assert ok.json() == {
        "status": "ok",
        "message": f"queue item {exceeded.id} reset: due now",
        "queue_id": exceeded.id,
    }
    assert (missing.status_code, missing.json()) == (
        404,
        {"status": "error", "message": f"no queue item {MISSING_ID}"},
    )
    assert refused.status_code == 409
    assert set(refused.json()) == {"status", "message"}
    assert refused.json()["status"] == "error"
    assert str(synced.id) in refused.json()["message"]
    assert "synced" in refused.json()["message"]


@API
@pytest.mark.parametrize("queue_id", [2**63 - 1, 2**63, 10**30])
def test_retry_of_an_id_no_database_holds_is_the_old_clients_404(admin, queue_id):
    """An id at or past 2^63−1 names no item: 404 with the old clients' error body."""
    response = admin.post(f"/sync/retry/{queue_id}")
    assert response.status_code == 404
    assert response.json() == {"status": "error", "message": f"no queue item {queue_id}"}


@API
def test_bulk_retry_takes_json_only_and_a_form_body_is_415(admin):
    """A bulk retry whose body is a form, not JSON, is 415 in DRF's shape and resets nothing."""
    item = queue_item_exceeded()
    response = admin.post("/sync/retry", {"status": "max_retries_exceeded"}, format="multipart")
    assert response.status_code == 415
    assert set(response.json()) == {"detail"}
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED


# --- throttling -------------------------------------------------------------------------------


@API
def test_retries_are_throttled_at_the_configured_rate(settings, root):
    """With sync_retry at 2/min the third retry (single or bulk) is 429; reads go on."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}),
            "sync_retry": "2/min",
        },
    }
    cache.clear()
    item = queue_item_exceeded()
    admin = token_client(root)

    assert admin.post(f"/sync/retry/{item.id}").status_code == 200
    assert admin.post(f"/sync/retry/{item.id}").status_code == 200
    third = admin.post(f"/sync/retry/{item.id}")
    assert third.status_code == 429
    assert third.headers.get("Retry-After")
    assert admin.post("/sync/retry", {"ids": [item.id]}, format="json").status_code == 429
    assert admin.get("/sync/status").status_code == 200


@API
def test_retries_are_throttled_at_60_a_minute_by_default(root):
    """Without an override, the 61st retry within a minute is 429."""
    assert django_settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["sync_retry"] == "60/min"
    cache.clear()
    item = queue_item_exceeded()
    admin = token_client(root)
    codes = [admin.post(f"/sync/retry/{item.id}").status_code for _ in range(61)]
    assert codes == [200] * 60 + [429]


# --- one rule: the API, the operators' SQL and the sync ---------------------------------------


def _sql_reset(item_id: int) -> None:
    """The operators' retry UPDATE of REFERENCE.md, as written."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE sync_queue SET sync_status = 'pending', sync_attempts = 0,"
            " sync_error = NULL WHERE id = %s",
            [item_id],
        )


@API
def test_operators_sql_and_the_api_reset_alike(admin, viewer):
    """An exceeded item reset by the operators' UPDATE is due like one reset by the API, and
    the API then shows both alike."""
    by_sql = queue_item_exceeded(description="reset by SQL")
    by_api = queue_item_exceeded(description="reset by the API")

    _sql_reset(by_sql.id)
    assert admin.post(f"/sync/retry/{by_api.id}").status_code == 200

    views = [viewer.get(f"/sync/items/{item.id}/").json() for item in (by_sql, by_api)]
    for view in views:
        assert (view["sync_status"], view["sync_attempts"], view["sync_error"]) == (
            "pending",
            0,
            None,
        )
    assert viewer.get("/sync/failed").json()["count"] == 0
    assert viewer.get("/sync/status").json()["queue"]["pending"] == 2
    assert due_ids() == {by_sql.id, by_api.id}


@WITH_HAVEN
def test_retry_of_an_exceeded_item_then_a_batch_syncs_it(haven_db, root):
    """An item that gave up, retried over the API, is written to VH by the next batch."""
    item = queue_item_exceeded(description="the tower came back", error="VH-Database.db was locked")
    admin = token_client(root)

    assert admin.post(f"/sync/retry/{item.id}").status_code == 200
    report = sync_batch()

    assert (report.claimed, report.synced) == (1, 1), report.errors
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.SYNCED
    assert item.sync_attempts == 1
    assert item.sync_error is None
    vh_row = HavenDiscovery.objects.get(description="the tower came back")
    assert item.haven_discovery_id == vh_row.id
    body = admin.get(f"/sync/items/{item.id}/").json()
    assert (body["sync_status"], body["haven_discovery_id"]) == ("synced", vh_row.id)
    assert admin.get("/sync/failed").json()["count"] == 0


@API
def test_json_nested_too_deeply_is_a_400_not_a_500(admin):
    """A bulk retry body nested 10,000 deep, which Python's JSON decoder cannot follow, is
    refused as a parse error in JSON, and nothing is retried."""
    queue_item_exceeded()
    body = "[" * 10000 + "]" * 10000
    response = admin.post("/sync/retry", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]
    assert SyncQueueItem.objects.filter(sync_status=SyncStatus.MAX_RETRIES_EXCEEDED).count() == 1
