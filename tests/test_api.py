"""The Control Room HTTP API (REFERENCE.md, "Monitoring API") driven through DRF's
APIClient on real queue rows: shapes, authentication and permissions, retries, statistics on
rows written by other tools, /health, and the OpenAPI schema and docs."""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.staticfiles import finders
from django.core.cache import cache
from django.db import connection, connections
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from discoveries.haven.models import HavenDiscovery
from syncq.models import SyncQueueItem, SyncStatus
from syncq.selectors import queue_statistics, queue_status
from syncq.services import (
    queue_item_fail,
    queue_item_succeed,
    queue_items_claim,
    sync_batch,
)
from tests.conftest import haven_at, make_discovery

API = pytest.mark.django_db
WITH_HAVEN = pytest.mark.django_db(transaction=True, databases=["default", "haven"])

ITEM_KEYS = {
    "id",
    "discovery_id",
    "sync_status",
    "sync_attempts",
    "max_attempts",
    "last_sync_attempt",
    "next_retry_after",
    "sync_error",
    "haven_discovery_id",
    "created_at",
    "synced_at",
    "discovery",
}
DISCOVERY_SUMMARY_KEYS = {
    "id",
    "discovery_type",
    "system_name",
    "location",
    "username",
    "submission_timestamp",
}
FAILED_ITEM_KEYS = {
    "queue_id",
    "discovery_id",
    "sync_attempts",
    "sync_error",
    "created_at",
    "last_sync_attempt",
    "system_name",
    "location",
    "discovery_type",
    "username",
}
HEALTH_KEYS = {
    "status",
    "bot_online",
    "sync_worker_running",
    "timestamp",
    "database",
    "haven_database",
    "worker",
}
MISSING_ID = 987_654


# --- users and clients ------------------------------------------------------------------------


def _user(name: str, *codenames: str, superuser: bool = False):
    """A user holding the ``syncq`` permissions ``codenames`` (or a superuser)."""
    model = get_user_model()
    if superuser:
        return model.objects.create_superuser(name, f"{name}@example.org", "pw-for-tests")
    user = model.objects.create_user(name, f"{name}@example.org", "pw-for-tests")
    for codename in codenames:
        user.user_permissions.add(
            Permission.objects.get(codename=codename, content_type__app_label="syncq")
        )
    return user


def _client(user=None) -> APIClient:
    """An APIClient sending ``user``'s DRF token, or no credentials when ``user`` is None."""
    client = APIClient()
    if user is not None:
        token = Token.objects.create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def admin():
    """A client authenticated by token as a superuser."""
    return _client(_user("root", superuser=True))


@pytest.fixture
def viewer():
    """A client authenticated by token as a user with view_syncqueueitem only."""
    return _client(_user("viewer", "view_syncqueueitem"))


# --- queue rows made through the services -----------------------------------------------------
# Each builder claims the only due item (its own); build exceeded, synced, syncing and
# backing-off items before fresh pending ones.


def _item(discovery) -> SyncQueueItem:
    return SyncQueueItem.objects.get(discovery_id=discovery.id)


def _claim_only(item: SyncQueueItem) -> tuple[str, SyncQueueItem]:
    token, items = queue_items_claim(limit=100)
    assert [i.id for i in items] == [item.id], "the builder's item must be the only due one"
    return token, items[0]


def _exceeded(description: str = "gave up", error: str = "VH-Database.db is missing", **kw):
    """An item in ``max_retries_exceeded`` after its one allowed attempt failed."""
    item = _item(make_discovery(description=description, **kw))
    SyncQueueItem.objects.filter(id=item.id).update(max_attempts=1)
    token, claimed = _claim_only(item)
    assert (
        queue_item_fail(item=claimed, token=token, error=error) == SyncStatus.MAX_RETRIES_EXCEEDED
    )
    item.refresh_from_db()
    return item


def _backing_off(description: str = "in backoff", error: str = "VH said no"):
    """A ``pending`` item whose first attempt failed: not due until its backoff ends."""
    item = _item(make_discovery(description=description))
    token, claimed = _claim_only(item)
    assert queue_item_fail(item=claimed, token=token, error=error) == SyncStatus.PENDING
    item.refresh_from_db()
    assert item.next_retry_after > timezone.now()
    return item


def _synced(description: str = "done", haven_id: int = 41):
    """A ``synced`` item (recorded as written to VH row ``haven_id``; VH itself untouched)."""
    item = _item(make_discovery(description=description))
    token, claimed = _claim_only(item)
    assert queue_item_succeed(
        item=claimed, token=token, haven_discovery_id=haven_id, how="written", unresolved=None
    )
    item.refresh_from_db()
    return item


def _syncing(description: str = "in flight"):
    """An item a worker holds now (``syncing`` under a live lease)."""
    item = _item(make_discovery(description=description))
    _claim_only(item)
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.SYNCING
    return item


def _pending(description: str = "waiting"):
    return _item(make_discovery(description=description))


def _due_ids() -> set[int]:
    """Ids a claim takes now; they become ``syncing``, so call it last on those items."""
    _, items = queue_items_claim(limit=1000)
    return {i.id for i in items}


def _when(value: str | None) -> datetime | None:
    return parse_datetime(value) if value is not None else None


def _sql_reset(item_id: int) -> None:
    """The operators' retry UPDATE of REFERENCE.md, as written."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE sync_queue SET sync_status = 'pending', sync_attempts = 0,"
            " sync_error = NULL WHERE id = %s",
            [item_id],
        )


# --- authentication and permissions -----------------------------------------------------------

READ_URLS = ["/sync/status", "/sync/statistics", "/sync/failed", "/sync/items/"]


@API
@pytest.mark.parametrize("url", READ_URLS)
def test_reads_without_credentials_answer_401_with_www_authenticate(url):
    """Every /sync read without credentials is 401 and says how to authenticate."""
    response = APIClient().get(url)
    assert response.status_code == 401
    assert response.headers.get("WWW-Authenticate")


@API
@pytest.mark.parametrize("url", READ_URLS)
def test_reads_with_an_unknown_token_answer_401(url):
    """A token that names no user is refused with 401, not treated as anonymous."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert client.get(url).status_code == 401


@API
@pytest.mark.parametrize("url", READ_URLS)
def test_reads_by_a_user_without_permission_answer_403(url):
    """An authenticated user lacking view_syncqueueitem gets 403 on every read."""
    assert _client(_user("nobody")).get(url).status_code == 403


@API
@pytest.mark.parametrize("url", READ_URLS)
def test_view_permission_is_enough_to_read(url, viewer):
    """view_syncqueueitem alone lets a user read every /sync endpoint."""
    assert viewer.get(url).status_code == 200


@API
def test_item_detail_needs_credentials_and_view_permission(viewer):
    """/sync/items/{id}/ is 401 anonymous, 403 without permission and 200 with it."""
    item = _pending()
    url = f"/sync/items/{item.id}/"
    assert APIClient().get(url).status_code == 401
    assert _client(_user("nobody")).get(url).status_code == 403
    assert viewer.get(url).status_code == 200


@API
def test_view_only_user_cannot_retry_and_nothing_changes(viewer):
    """A view-only user's retries (single and bulk) are 403 and leave the item as it was."""
    item = _exceeded()
    assert viewer.post(f"/sync/retry/{item.id}").status_code == 403
    assert viewer.post("/sync/retry", {"ids": [item.id]}, format="json").status_code == 403
    assert (
        viewer.post("/sync/retry", {"status": "max_retries_exceeded"}, format="json").status_code
        == 403
    )
    item.refresh_from_db()
    assert (item.sync_status, item.sync_attempts) == (SyncStatus.MAX_RETRIES_EXCEEDED, 1)


@API
def test_retries_without_credentials_answer_401():
    """Anonymous retries are 401 and change nothing."""
    item = _exceeded()
    client = APIClient()
    assert client.post(f"/sync/retry/{item.id}").status_code == 401
    assert client.post("/sync/retry", {"ids": [item.id]}, format="json").status_code == 401
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED


@API
def test_change_permission_lets_a_user_retry():
    """change_syncqueueitem is what a retry needs (no superuser required)."""
    item = _exceeded()
    client = _client(_user("operator", "view_syncqueueitem", "change_syncqueueitem"))
    assert client.post(f"/sync/retry/{item.id}").status_code == 200
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.PENDING


@API
def test_session_authentication_is_accepted():
    """A logged-in Django session (the browsable API) authenticates like a token."""
    client = APIClient()
    client.force_login(_user("session-viewer", "view_syncqueueitem"))
    assert client.get("/sync/status").status_code == 200


# --- /sync/status and /sync/statistics --------------------------------------------------------


@API
def test_status_has_every_key_with_the_real_counts(viewer):
    """GET /sync/status is queue_status(): every reference key, counts of the rows made."""
    _exceeded("failed one")
    _exceeded("failed two")
    _synced()
    _syncing()
    _backing_off()
    _pending("fresh one")
    _pending("fresh two")

    response = viewer.get("/sync/status")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "sync_worker", "queue", "totals"}
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
    assert _when(body["sync_worker"]["last_sync_time"]) == latest
    assert body["queue"] == {"pending": 3, "syncing": 1, "synced": 1, "failed": 2}
    assert body["totals"] == {"total_synced": 1, "total_failed": 2}
    assert body == json.loads(json.dumps(queue_status()))


@API
def test_status_of_an_empty_queue(viewer):
    """An empty queue answers zeros and a null last_sync_time, not an error."""
    body = viewer.get("/sync/status").json()
    assert body["queue"] == {"pending": 0, "syncing": 0, "synced": 0, "failed": 0}
    assert body["totals"] == {"total_synced": 0, "total_failed": 0}
    assert body["sync_worker"]["last_sync_time"] is None


@API
def test_statistics_has_every_key_with_the_real_figures(viewer):
    """GET /sync/statistics wraps queue_statistics() with the rows' counts and errors."""
    _exceeded("a", error="VH locked")
    _exceeded("b", error="VH locked")
    _exceeded("c", error="disk full")
    _backing_off(error="VH locked")
    _synced()
    _pending()

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
        "top_errors",
    }
    assert stats["counts"] == {
        "pending": 2,
        "syncing": 0,
        "synced": 1,
        "max_retries_exceeded": 3,
    }
    assert stats["synced_last_hour"] == 1
    assert stats["synced_last_day"] == 1
    assert set(stats["sync_seconds"]) == {"mean", "p95", "sample"}
    assert stats["sync_seconds"]["sample"] == 1
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


def _as_text(moment: datetime, style: str) -> str:
    """``moment`` (UTC) as other tools write it: T or space, with Z, +00:00 or nothing."""
    moment = moment.astimezone(UTC)
    return {
        "T-Z": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "T+00": moment.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        "space": moment.strftime("%Y-%m-%d %H:%M:%S"),
        "space+00": moment.strftime("%Y-%m-%d %H:%M:%S+00:00"),
    }[style]


def _write_times(item_id: int, **columns: str) -> None:
    """Overwrite timestamp columns with raw text, as another tool would."""
    assignments = ", ".join(f"{name} = %s" for name in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE sync_queue SET {assignments} WHERE id = %s", [*columns.values(), item_id]
        )


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
        item = _synced(f"synced {number}", haven_id=100 + number)
        done = now - ago
        _write_times(
            item.id,
            synced_at=_as_text(done, style),
            created_at=_as_text(done - timedelta(seconds=60), style),
        )
    older = _pending("pending for three hours")
    newer = _pending("pending for two hours")
    _write_times(older.id, created_at=_as_text(now - timedelta(hours=3), "T-Z"))
    _write_times(newer.id, created_at=_as_text(now - timedelta(hours=2), "space"))

    stats = viewer.get("/sync/statistics").json()["statistics"]

    assert stats["synced_last_hour"] == 3
    assert stats["synced_last_day"] == 5
    assert stats["counts"]["synced"] == 7
    assert stats["sync_seconds"] == {"mean": 60.0, "p95": 60.0, "sample": 7}
    elapsed = (timezone.now() - now).total_seconds()
    age = stats["oldest_pending_age_seconds"]
    assert 3 * 3600 - 1 <= age <= 3 * 3600 + elapsed + 1


# --- /sync/failed -----------------------------------------------------------------------------


@API
def test_failed_lists_exceeded_items_in_the_reference_shape(viewer):
    """GET /sync/failed lists only max_retries_exceeded items, newest first, with every
    reference key and the discovery's values."""
    first = _exceeded("first", error="first error", location="Alpha Prime")
    second = _exceeded("second", error="second error", username="Someone Else")
    _synced()
    _backing_off()
    _pending()

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
        assert _when(row["created_at"]) == item.created_at
        assert _when(row["last_sync_attempt"]) == item.last_sync_attempt
        assert row["system_name"] == "Demo Alpha"
        assert row["location"] == discovery.location
        assert row["discovery_type"] == "🏛️"
        assert row["username"] == discovery.username
    assert body["failed_items"][0]["username"] == "Someone Else"
    assert body["failed_items"][1]["sync_error"] == "first error"


@API
def test_failed_limit_takes_the_newest(viewer):
    """?limit=2 of three failed items returns the two newest and counts them."""
    items = [_exceeded(f"failed {n}") for n in range(3)]
    body = viewer.get("/sync/failed", {"limit": 2}).json()
    assert [row["queue_id"] for row in body["failed_items"]] == [items[2].id, items[1].id]
    assert body["count"] == 2


@API
def test_failed_limit_defaults_to_20_and_is_capped_at_200(viewer):
    """Without ?limit 20 items come back; a limit above 200 is served as 200, not refused."""
    for n in range(201):
        make_discovery(description=f"failed {n}")
    SyncQueueItem.objects.update(
        sync_status=SyncStatus.MAX_RETRIES_EXCEEDED, sync_attempts=10, sync_error="gone"
    )

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
    _exceeded()
    response = viewer.get("/sync/failed", {"limit": limit})
    assert response.status_code == 400
    body = response.json()
    assert isinstance(body.get("limit"), list) and body["limit"], body


# --- /sync/items/ -----------------------------------------------------------------------------


@API
def test_item_detail_has_every_key_with_the_real_values(viewer):
    """GET /sync/items/{id}/ returns the item with its discovery summary and error."""
    item = _exceeded("detail", error="OperationalError: database is locked")
    discovery = item.discovery

    response = viewer.get(f"/sync/items/{item.id}/")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == ITEM_KEYS
    assert body["id"] == item.id
    assert body["discovery_id"] == discovery.id
    assert body["sync_status"] == "max_retries_exceeded"
    assert (body["sync_attempts"], body["max_attempts"]) == (1, 1)
    assert _when(body["last_sync_attempt"]) == item.last_sync_attempt
    assert body["next_retry_after"] is None
    assert body["sync_error"] == "OperationalError: database is locked"
    assert body["haven_discovery_id"] is None
    assert _when(body["created_at"]) == item.created_at
    assert body["synced_at"] is None
    summary = body["discovery"]
    assert set(summary) == DISCOVERY_SUMMARY_KEYS
    assert summary["id"] == discovery.id
    assert summary["discovery_type"] == "🏛️"
    assert summary["system_name"] == "Demo Alpha"
    assert summary["location"] == "Alpha Prime"
    assert summary["username"] == "Tester"
    assert _when(summary["submission_timestamp"]) == discovery.submission_timestamp


@API
def test_item_detail_of_a_synced_item_names_its_vh_row(viewer):
    """A synced item shows its VH id and synced_at, and no error."""
    item = _synced(haven_id=77)
    body = viewer.get(f"/sync/items/{item.id}/").json()
    assert body["sync_status"] == "synced"
    assert body["haven_discovery_id"] == 77
    assert _when(body["synced_at"]) == item.synced_at
    assert body["sync_error"] is None


@API
def test_item_detail_of_an_unknown_id_is_404(viewer):
    """An id that names no queue item is 404."""
    assert viewer.get(f"/sync/items/{MISSING_ID}/").status_code == 404


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
    made = {_exceeded("e").id, _synced().id, _syncing().id}
    made |= {_pending(f"p{n}").id for n in range(30)}
    seen = _all_pages(viewer)
    assert sorted(row["id"] for row in seen) == sorted(made)
    assert all(set(row) == ITEM_KEYS for row in seen)
    first = viewer.get("/sync/items/").json()
    assert first["previous"] is None


@API
def test_items_filter_by_status_and_discovery(viewer):
    """?status= keeps one state and ?discovery_id= one discovery's item."""
    exceeded = _exceeded()
    synced = _synced()
    pending = _pending()
    by_status = _all_pages(viewer, {"status": "max_retries_exceeded"})
    assert [row["id"] for row in by_status] == [exceeded.id]
    by_discovery = _all_pages(viewer, {"discovery_id": synced.discovery_id})
    assert [row["id"] for row in by_discovery] == [synced.id]
    assert {row["id"] for row in _all_pages(viewer, {"status": "pending"})} == {pending.id}


@API
def test_items_filter_by_since_and_until_on_created_at(viewer):
    """?since= and ?until= (ISO 8601, Z or +00:00) bound created_at."""
    now = timezone.now()
    old, middle, new = (_pending(f"day {n}") for n in (3, 2, 1))
    for item, days in ((old, 3), (middle, 2), (new, 1)):
        SyncQueueItem.objects.filter(id=item.id).update(created_at=now - timedelta(days=days))
    since = (now - timedelta(days=2, hours=1)).isoformat()
    until = (now - timedelta(days=1, hours=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    assert {row["id"] for row in _all_pages(viewer, {"since": since})} == {middle.id, new.id}
    assert {row["id"] for row in _all_pages(viewer, {"until": until})} == {old.id, middle.id}
    both = _all_pages(viewer, {"since": since, "until": until})
    assert [row["id"] for row in both] == [middle.id]


@API
def test_items_since_filter_on_timestamps_written_by_other_tools(viewer):
    """?since= compares times, not text: a 'T…Z' row older than the bound is left out."""
    now = timezone.now().replace(microsecond=0)
    older = _pending("five hours")
    newer = _pending("three hours")
    _write_times(older.id, created_at=_as_text(now - timedelta(hours=5), "T-Z"))
    _write_times(newer.id, created_at=_as_text(now - timedelta(hours=3), "space"))
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
    _pending()
    assert viewer.get("/sync/items/", params).status_code == 400


# --- POST /sync/retry/{queue_id} --------------------------------------------------------------


@API
def test_retry_of_an_exceeded_item_resets_it_and_makes_it_due(admin):
    """A retry of a max_retries_exceeded item answers 200 with the reference keys and leaves
    it pending, attempts 0, error cleared and due now."""
    item = _exceeded()
    assert _due_ids() == set()

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
    assert _due_ids() == {item.id}


@API
def test_retry_of_a_pending_item_in_backoff_makes_it_due_now(admin):
    """A pending item waiting out its backoff is reset and due at once."""
    item = _backing_off()
    assert _due_ids() == set()
    response = admin.post(f"/sync/retry/{item.id}")
    assert response.status_code == 200
    assert response.json()["queue_id"] == item.id
    item.refresh_from_db()
    assert (item.sync_attempts, item.sync_error, item.next_retry_after) == (0, None, None)
    assert _due_ids() == {item.id}


@API
def test_retry_of_an_unknown_id_is_404(admin):
    """Retrying an id that names no item is 404 with status "error", not "ok"."""
    response = admin.post(f"/sync/retry/{MISSING_ID}")
    assert response.status_code == 404
    body = response.json()
    assert body["status"] == "error"
    assert isinstance(body["message"], str) and body["message"]


@API
@pytest.mark.parametrize("make", [_synced, _syncing], ids=["synced", "syncing"])
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
    exceeded = _exceeded()
    synced = _synced()

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
    first, second = _exceeded("one"), _exceeded("two")
    waiting = _backing_off()
    _synced()

    response = admin.post("/sync/retry", {"status": "max_retries_exceeded"}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["reset"] == 2
    assert sorted(body["reset_ids"]) == sorted([first.id, second.id])
    assert body["refused"] == {}
    assert body["missing"] == []
    assert _due_ids() == {first.id, second.id}, "the item in backoff is still waiting"
    waiting.refresh_from_db()
    assert waiting.sync_attempts == 1


@API
def test_bulk_retry_by_status_pending_ends_every_backoff(admin):
    """{"status": "pending"} makes every pending item due now and leaves exceeded ones."""
    exceeded = _exceeded()
    waiting = _backing_off()
    response = admin.post("/sync/retry", {"status": "pending"}, format="json")
    assert response.status_code == 200
    assert response.json()["reset_ids"] == [waiting.id]
    assert _due_ids() == {waiting.id}
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
    item = _exceeded()
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
    item = _exceeded()
    response = admin.post("/sync/retry", {"ids": [item.id] * 1001}, format="multipart")
    assert response.status_code < 500
    assert response["Content-Type"].startswith("application/json"), response.content[:200]


# --- one rule: the API, the operators' SQL and the sync -------------------------------------


@API
def test_operators_sql_and_the_api_reset_alike(admin, viewer):
    """An exceeded item reset by the operators' UPDATE is due like one reset by the API, and
    the API then shows both alike."""
    by_sql = _exceeded("reset by SQL")
    by_api = _exceeded("reset by the API")

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
    assert _due_ids() == {by_sql.id, by_api.id}


@WITH_HAVEN
def test_retry_of_an_exceeded_item_then_a_batch_syncs_it(haven_db):
    """An item that gave up, retried over the API, is written to VH by the next batch."""
    item = _exceeded("the tower came back", error="VH-Database.db was locked")
    admin = _client(_user("root", superuser=True))

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


# --- SYNC_API_PUBLIC_READ ---------------------------------------------------------------------


@API
def test_public_read_opens_only_status_and_statistics(settings):
    """SYNC_API_PUBLIC_READ lets anonymous GETs read the counts, never items or retries."""
    settings.SYNC_API_PUBLIC_READ = True
    item = _exceeded()
    anonymous = APIClient()

    status = anonymous.get("/sync/status")
    assert status.status_code == 200
    assert status.json()["queue"]["failed"] == 1
    statistics = anonymous.get("/sync/statistics")
    assert statistics.status_code == 200
    assert statistics.json()["statistics"]["counts"]["max_retries_exceeded"] == 1
    assert statistics.json()["statistics"]["top_errors"] == [], "no error texts for anonymous"

    assert anonymous.get("/sync/items/").status_code == 401
    assert anonymous.get(f"/sync/items/{item.id}/").status_code == 401
    assert anonymous.get("/sync/failed").status_code == 401
    assert anonymous.post(f"/sync/retry/{item.id}").status_code == 401
    assert anonymous.post("/sync/retry", {"ids": [item.id]}, format="json").status_code == 401
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED


@API
def test_public_read_is_off_by_default():
    """Without the setting, anonymous /sync/status and /sync/statistics are 401."""
    assert django_settings.SYNC_API_PUBLIC_READ is False
    assert APIClient().get("/sync/status").status_code == 401
    assert APIClient().get("/sync/statistics").status_code == 401


@API
def test_public_read_still_refuses_users_without_permission(settings):
    """Opening the counts to anonymous reads does not open the item list to weak users."""
    settings.SYNC_API_PUBLIC_READ = True
    client = _client(_user("nobody"))
    assert client.get("/sync/items/").status_code == 403
    assert client.get("/sync/failed").status_code == 403


# --- throttling -------------------------------------------------------------------------------


@API
def test_retries_are_throttled_at_the_configured_rate(settings):
    """With sync_retry at 2/min the third retry (single or bulk) is 429; reads go on."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}),
            "sync_retry": "2/min",
        },
    }
    cache.clear()
    item = _exceeded()
    admin = _client(_user("root", superuser=True))

    assert admin.post(f"/sync/retry/{item.id}").status_code == 200
    assert admin.post(f"/sync/retry/{item.id}").status_code == 200
    third = admin.post(f"/sync/retry/{item.id}")
    assert third.status_code == 429
    assert third.headers.get("Retry-After")
    assert admin.post("/sync/retry", {"ids": [item.id]}, format="json").status_code == 429
    assert admin.get("/sync/status").status_code == 200


@API
def test_retries_are_throttled_at_60_a_minute_by_default():
    """Without an override, the 61st retry within a minute is 429."""
    assert django_settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["sync_retry"] == "60/min"
    cache.clear()
    item = _exceeded()
    admin = _client(_user("root", superuser=True))
    codes = [admin.post(f"/sync/retry/{item.id}").status_code for _ in range(61)]
    assert codes == [200] * 60 + [429]


# --- /health ----------------------------------------------------------------------------------


def _no_paths(body_text: str, *paths) -> None:
    for path in paths:
        assert str(path) not in body_text
    values = json.loads(body_text)
    for key, value in values.items():
        if isinstance(value, str) and key != "timestamp":
            assert "/" not in value, (key, value)


def _keeper_path() -> str:
    return str(connections["default"].settings_dict["NAME"])


@WITH_HAVEN
def test_health_with_vh_present(haven_db):
    """No credentials needed: 200 healthy with every key; VH ok, worker stopped here."""
    response = APIClient().get("/health")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == HEALTH_KEYS
    assert body["status"] == "healthy"
    assert body["database"] == "ok"
    assert body["haven_database"] == "ok"
    assert body["worker"] == "stopped"
    assert body["sync_worker_running"] is False
    assert body["bot_online"] is False
    stamp = parse_datetime(body["timestamp"])
    assert stamp is not None and stamp.tzinfo is not None
    _no_paths(response.content.decode(), haven_db, haven_db.name, _keeper_path())


@API
def test_health_says_bot_online_after_a_heartbeat():
    """A fresh bot heartbeat in the shared cache makes bot_online true."""
    from syncq.selectors import BOT_HEARTBEAT_CACHE_KEY

    cache.set(BOT_HEARTBEAT_CACHE_KEY, timezone.now())
    assert APIClient().get("/health").json()["bot_online"] is True


@API
def test_health_while_vh_is_missing(tmp_path, settings):
    """A missing VH-Database.db is "missing" in a 200 answer; the file is not created and
    its path is not shown."""
    absent = tmp_path / "nowhere" / "VH-Database.db"
    with haven_at(absent, settings):
        response = APIClient().get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["haven_database"] == "missing"
    assert not absent.exists()
    assert not absent.parent.exists()
    _no_paths(response.content.decode(), absent, "nowhere", _keeper_path())


@WITH_HAVEN
def test_health_while_vh_is_locked_by_another_program(haven_db):
    """Another connection holding VH's write lock makes it "locked" (still 200); released,
    it is "ok" again."""
    other = sqlite3.connect(haven_db, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        response = APIClient().get("/health")
        assert response.status_code == 200
        assert response.json()["status"] == "healthy"
        assert response.json()["haven_database"] == "locked"
        _no_paths(response.content.decode(), haven_db, _keeper_path())
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert APIClient().get("/health").json()["haven_database"] == "ok"


@API
def test_health_with_vh_switched_off(settings):
    """USE_HAVEN_DATABASE=False is reported as "disabled", still healthy."""
    settings.USE_HAVEN_DATABASE = False
    response = APIClient().get("/health")
    assert response.status_code == 200
    assert response.json()["haven_database"] == "disabled"
    assert response.json()["status"] == "healthy"


@pytest.mark.django_db(transaction=True)
def test_health_is_503_only_when_keeper_db_is_unreachable(tmp_path):
    """keeper.db that cannot be opened makes /health 503 unhealthy/unreachable, without the
    path in the answer."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where keeper.db's folder should be")
    unreachable = blocker / "keeper.db"
    conn = connections["default"]
    old_name = conn.settings_dict["NAME"]
    conn.close()
    conn.settings_dict["NAME"] = str(unreachable)
    try:
        response = APIClient().get("/health")
    finally:
        conn.close()
        conn.settings_dict["NAME"] = old_name
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["database"] == "unreachable"
    _no_paths(response.content.decode(), unreachable, "not-a-folder", old_name)


# --- OpenAPI schema and docs ------------------------------------------------------------------

EXPECTED_OPERATIONS = {
    ("/health", "get"): {"200", "503"},
    ("/sync/status", "get"): {"200", "401", "403"},
    ("/sync/statistics", "get"): {"200", "401", "403"},
    ("/sync/failed", "get"): {"200", "400", "401", "403"},
    ("/sync/items/", "get"): {"200", "400", "401", "403"},
    ("/sync/items/{}/", "get"): {"200", "401", "403", "404"},
    ("/sync/retry/{}", "post"): {"200", "401", "403", "404", "409", "429"},
    ("/sync/retry", "post"): {"200", "400", "401", "403", "429"},
}


@API
def test_schema_is_public_openapi_listing_every_endpoint_and_its_errors():
    """/api/schema/ serves OpenAPI 3 JSON without credentials, with every endpoint and the
    error responses each can give."""
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    paths = {re.sub(r"\{[^}]+\}", "{}", path): ops for path, ops in schema["paths"].items()}
    problems = []
    for (path, method), codes in EXPECTED_OPERATIONS.items():
        operation = paths.get(path, {}).get(method)
        if operation is None:
            problems.append(f"{method.upper()} {path} missing")
        elif not codes <= set(operation["responses"]):
            missing = sorted(codes - set(operation["responses"]))
            problems.append(f"{method.upper()} {path} does not document {missing}")
    assert problems == []


@API
def test_docs_page_uses_only_local_static_files():
    """/api/docs/ is an HTML page whose scripts and styles are this site's static files."""
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    sources = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    scripts = re.findall(r"""<script[^>]*\ssrc\s*=\s*["']([^"']+)["']""", html)
    assert scripts, "the page loads no script"
    for url in sources:
        assert not re.match(r"(?i)(https?:)?//", url), f"external reference {url}"
    static = "/" + django_settings.STATIC_URL.strip("/") + "/"
    for url in scripts:
        if url.startswith(static):
            assert finders.find(url[len(static) :].split("?")[0]), f"{url} is not a static file"


# --- hostile requests and broken surroundings (found by probing the running server) ------------


@API
@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("post", "/sync/retry/9223372036854775808", None),
        ("post", "/sync/retry", {"ids": [99999999999999999999]}),
        ("get", "/sync/items/?discovery_id=9223372036854775808", None),
    ],
)
def test_ids_beyond_what_a_database_holds_are_refused_in_json(admin, method, url, body):
    """An id past 2^63−1 answers a JSON 404 or 400, never a server error."""
    response = (
        getattr(admin, method)(url, body, format="json") if body else getattr(admin, method)(url)
    )
    assert response.status_code in (400, 404)
    assert response["Content-Type"].startswith("application/json")


@API
@pytest.mark.parametrize("position", ["p=abc", "p=", "p=1.5", "r=1&p=abc"])
def test_a_cursor_whose_position_is_not_an_id_is_invalid(admin, position):
    """A well-encoded cursor with a position that is not an id answers 404 Invalid cursor."""
    cursor = base64.b64encode(position.encode()).decode()
    response = admin.get("/sync/items/", {"cursor": cursor})
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid cursor"}


@pytest.mark.django_db(transaction=True, databases=["default", "haven"])
def test_health_when_vh_is_not_a_database(tmp_path, settings):
    """A file at HAVEN_DB_PATH that is not SQLite is reported missing, with a 200."""
    garbage = tmp_path / "VH-Database.db"
    garbage.write_bytes(b"not a database at all " * 300)
    settings.HAVEN_DB_PATH = garbage
    response = APIClient().get("/health")
    assert response.status_code == 200
    assert response.json()["haven_database"] == "missing"


@pytest.mark.django_db(transaction=True, databases=["default", "haven"])
@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only file")
def test_health_when_vh_is_read_only(haven_db):
    """A write-protected VH file is reported locked: the sync cannot write it."""
    haven_db.chmod(0o444)
    try:
        assert APIClient().get("/health").json()["haven_database"] == "locked"
    finally:
        haven_db.chmod(0o644)


@API
def test_health_of_an_unmigrated_keeper_db_is_503(monkeypatch):
    """A keeper.db without the queue table (wrong path, never migrated) is down: 503."""
    from django.db import connection

    real_cursor = connection.cursor

    class NoQueueTable:
        def __init__(self):
            self.inner = real_cursor()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.inner.close()

        def execute(self, sql, params=None):
            if "sync_queue" in sql:
                from django.db import OperationalError

                raise OperationalError("no such table: sync_queue")
            return self.inner.execute(sql, params)

    monkeypatch.setattr(connection, "cursor", NoQueueTable)
    response = APIClient().get("/health")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


@API
def test_a_keeper_db_failure_during_a_request_answers_503_json(admin, monkeypatch):
    """keeper.db failing under a request (locked past its busy timeout) answers 503 JSON."""
    from django.db import OperationalError

    from syncq import api

    def locked(**kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(api, "queue_item_retry", locked)
    response = admin.post("/sync/retry/1")
    assert response.status_code == 503
    assert response.json()["status"] == "error"


@API
def test_a_broken_cache_neither_breaks_health_nor_blocks_retries(admin, monkeypatch):
    """With the cache failing, /health still answers (bot offline) and retries go through."""
    from django.core.cache import cache

    def broken(*args, **kwargs):
        raise OSError("cache directory is gone")

    item = _exceeded("retry me while the cache is down")
    monkeypatch.setattr(cache, "get", broken)
    monkeypatch.setattr(cache, "set", broken)
    monkeypatch.setattr(cache, "add", broken)
    health = APIClient().get("/health")
    assert health.status_code == 200 and health.json()["bot_online"] is False
    assert admin.post(f"/sync/retry/{item.id}").status_code == 200


@API
@pytest.mark.parametrize("url", ["/health/", "/sync", "/sync/", "/sync/nothing/here"])
def test_unknown_api_paths_answer_json_404(admin, url):
    """Paths near the API's that match nothing answer JSON, not Django's HTML page."""
    response = admin.get(url)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
