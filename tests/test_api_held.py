"""Items held back from VH, as the API and ``manage.py syncq_status`` show them: ``GET
/sync/waiting`` and ``GET /sync/conflicts`` (``/sync/failed``'s shape and ``limit``, plus what
holds each item back) and the ``waiting`` and ``conflict`` counts of ``GET /sync/status``. Items
are made waiting or in conflict by real sync batches over the sample VH files."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from syncq.models import SyncQueueItem
from tests.api_support import (
    CONFLICT_ITEM_KEYS,
    WAITING_ITEM_KEYS,
    WITH_HAVEN,
    token_client,
    when,
)
from tests.factories import (
    queue_item_exceeded,
    queue_item_in_conflict,
    queue_item_synced_to_vh,
    queue_item_waiting,
    user_make,
)

# --- /sync/waiting ------------------------------------------------------------------------------


@WITH_HAVEN
def test_waiting_lists_waiting_items_with_reason_nearest_names_and_since(viewer, sample_haven_db):
    """GET /sync/waiting lists only waiting items, newest first, each with /sync/failed's keys,
    the reason, the nearest names VH has and when it last looked."""
    queue_item_synced_to_vh()
    first = queue_item_waiting(system_name="Ocul", location="Erren", username="Ana")
    second = queue_item_waiting()

    response = viewer.get("/sync/waiting")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "waiting_items", "count"}
    assert (body["status"], body["count"]) == ("ok", 2)
    assert [row["queue_id"] for row in body["waiting_items"]] == [second.id, first.id]
    for row in body["waiting_items"]:
        assert set(row) == WAITING_ITEM_KEYS
        assert row["sync_attempts"] == 0
    near, far = body["waiting_items"][1], body["waiting_items"][0]
    assert near["reason"] == "system 'Ocul' is not in the Control Room"
    assert near["suggestions"] == ["Oculi"]
    assert (near["system_name"], near["location"], near["username"]) == ("Ocul", "Erren", "Ana")
    assert near["discovery_id"] == first.discovery_id
    assert near["sync_error"] == SyncQueueItem.objects.get(id=first.id).sync_error
    assert "'ORACLE ZETA'" in far["reason"]
    item = SyncQueueItem.objects.get(id=second.id)
    assert when(far["since"]).isoformat() == item.metadata["waiting"]["since"]
    assert when(far["last_sync_attempt"]) == item.last_sync_attempt


@WITH_HAVEN
def test_waiting_limit_takes_the_newest_and_a_bad_one_is_refused(viewer, sample_haven_db):
    """?limit=1 gives the newest waiting item; limit 0 is a 400 naming `limit`."""
    queue_item_waiting(description="older")
    newest = queue_item_waiting(description="newer")
    body = viewer.get("/sync/waiting", {"limit": 1}).json()
    assert [row["queue_id"] for row in body["waiting_items"]] == [newest.id]
    refused = viewer.get("/sync/waiting", {"limit": 0})
    assert refused.status_code == 400 and "limit" in refused.json()


# --- /sync/conflicts ----------------------------------------------------------------------------


@WITH_HAVEN
def test_conflicts_list_both_versions_of_each_row(viewer, sample_haven_db):
    """GET /sync/conflicts lists the items in conflict, newest first, with the VH row, the
    operation and both versions; a delete has no version of ours."""
    edited = queue_item_in_conflict(sample_haven_db, description="edited one")
    deleted = queue_item_in_conflict(sample_haven_db, ours=None, description="deleted one")
    queue_item_waiting()

    response = viewer.get("/sync/conflicts")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "conflict_items", "count"}
    assert body["count"] == 2
    assert [row["queue_id"] for row in body["conflict_items"]] == [deleted.id, edited.id]
    for row in body["conflict_items"]:
        assert set(row) == CONFLICT_ITEM_KEYS
        assert row["theirs"]["description"] == "Curated by the Control Room."
        assert when(row["at"]) is not None
    removal, edit = body["conflict_items"]
    assert (removal["operation"], removal["ours"]) == ("delete", None)
    assert removal["haven_discovery_id"] == deleted.haven_discovery_id
    assert edit["operation"] == "write"
    assert edit["haven_discovery_id"] == edited.haven_discovery_id
    assert edit["ours"]["description"] == "Our correction."
    assert edit["ours"]["discovery_type"] == edit["theirs"]["discovery_type"]


@pytest.mark.django_db
def test_held_listings_need_the_view_permission():
    """/sync/waiting and /sync/conflicts answer as /sync/failed: 401 without credentials, 403
    without "Can view queue item", 200 with it (and empty lists on an empty queue)."""
    nobody = token_client(user_make("nobody"))
    reader = token_client(user_make("reader", perms=["syncq.view_syncqueueitem"]))
    for url, key in (("/sync/waiting", "waiting_items"), ("/sync/conflicts", "conflict_items")):
        assert token_client().get(url).status_code == 401
        assert nobody.get(url).status_code == 403
        answer = reader.get(url)
        assert answer.status_code == 200
        assert answer.json() == {"status": "ok", key: [], "count": 0}


# --- /sync/status and manage.py syncq_status ----------------------------------------------------


@WITH_HAVEN
def test_status_counts_waiting_and_conflict_items_apart_from_the_old_keys(viewer, sample_haven_db):
    """/sync/status's queue gains waiting and conflict; the reference's four keep their
    meaning, so neither kind counts as pending or failed."""
    queue_item_exceeded(description="gave up")
    queue_item_in_conflict(sample_haven_db)
    queue_item_waiting(description="one")
    queue_item_waiting(description="two")
    body = viewer.get("/sync/status").json()
    assert body["queue"] == {
        "pending": 0,
        "syncing": 0,
        "synced": 0,
        "failed": 1,
        "waiting": 2,
        "conflict": 1,
    }
    assert body["totals"] == {"total_synced": 0, "total_failed": 1}


@WITH_HAVEN
def test_syncq_status_prints_the_new_counts_and_the_first_waiting_reason(capsys, sample_haven_db):
    """manage.py syncq_status names the waiting and conflict counts, why the first waiting
    item waits with the nearest names, and where conflicts are settled."""
    queue_item_in_conflict(sample_haven_db)
    first = queue_item_waiting(system_name="Ocul", location="Erren")
    queue_item_waiting()
    call_command("syncq_status")
    out = capsys.readouterr().out
    assert "0 failed (max retries exceeded), 2 waiting for their place in VH, 1 in conflict" in out
    assert (
        f"first waiting: queue item {first.id} (discovery {first.discovery_id}): system 'Ocul' "
        "is not in the Control Room; nearest in the Control Room: 'Oculi'" in out
    )
    assert "conflicts: choose a version on each item in the admin" in out


@pytest.mark.django_db
def test_syncq_status_of_a_queue_with_nothing_held_back(capsys):
    """With nothing waiting or in conflict the command says 0 of each and names no item."""
    call_command("syncq_status")
    out = capsys.readouterr().out
    assert "0 waiting for their place in VH, 0 in conflict" in out
    assert "first waiting" not in out and "conflicts:" not in out
