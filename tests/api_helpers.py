"""Shared by the Control Room API tests (``tests/test_api_*.py``): the keys old clients read,
users and token clients with the ``syncq`` permissions, the ``admin`` and ``viewer`` fixtures
(a test module that uses them names this module in ``pytest_plugins``), and queue rows in each
state made through the services. The helpers keep the names they had in the one test module
they came from.

PYTEST_DONT_REWRITE: the test modules import this one before ``pytest_plugins`` registers it,
too late for pytest to rewrite its asserts; the marker says so, and spares the warning."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from syncq.models import SyncQueueItem, SyncStatus
from syncq.services import queue_item_fail, queue_item_succeed, queue_items_claim
from tests.conftest import make_discovery

API = pytest.mark.django_db
WITH_HAVEN = pytest.mark.django_db(transaction=True, databases=["default", "haven"])

#: The keys of the answers (README, "The Control Room API"; REFERENCE.md, "Monitoring API").
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


# --- timestamps as other tools write them -----------------------------------------------------


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
