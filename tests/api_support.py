"""Shared by the Control Room API tests (``tests/test_api_*.py``): their database marks, the
keys old clients read, a token client, which items a claim would take, and timestamps written
as other tools write them. Users and queue rows come from :mod:`tests.factories`; the ``admin``
and ``viewer`` clients are fixtures of ``tests/conftest.py``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.utils.dateparse import parse_datetime
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from syncq.services import queue_items_claim

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
#: /sync/waiting's and /sync/conflicts' items: /sync/failed's keys and what holds them back.
WAITING_ITEM_KEYS = FAILED_ITEM_KEYS | {"reason", "suggestions", "since"}
CONFLICT_ITEM_KEYS = FAILED_ITEM_KEYS | {
    "haven_discovery_id",
    "operation",
    "ours",
    "theirs",
    "theirs_deleted",
    "at",
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


def token_client(user=None) -> APIClient:
    """An APIClient sending ``user``'s DRF token (made here), or no credentials when ``user``
    is None."""
    client = APIClient()
    if user is not None:
        token = Token.objects.create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def due_ids() -> set[int]:
    """Ids a claim takes now; they become ``syncing``, so call it last on those items."""
    _, items = queue_items_claim(limit=1000)
    return {i.id for i in items}


def when(value: str | None) -> datetime | None:
    """A date-time the API answered, parsed (None stays None)."""
    return parse_datetime(value) if value is not None else None


def as_text(moment: datetime, style: str) -> str:
    """``moment`` (UTC) as other tools write it: T or space, with Z, +00:00 or nothing."""
    moment = moment.astimezone(UTC)
    return {
        "T-Z": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "T+00": moment.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        "space": moment.strftime("%Y-%m-%d %H:%M:%S"),
        "space+00": moment.strftime("%Y-%m-%d %H:%M:%S+00:00"),
    }[style]


def write_times(item_id: int, **columns: str) -> None:
    """Overwrite timestamp columns of queue item ``item_id`` with raw text, as another tool
    would."""
    assignments = ", ".join(f"{name} = %s" for name in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE sync_queue SET {assignments} WHERE id = %s", [*columns.values(), item_id]
        )
