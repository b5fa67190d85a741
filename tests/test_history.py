"""Each attempt of a queue item is kept with its outcome, and each operator retry is recorded
with who made it, from where, and how many items it changed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from discoveries.haven.files import haven_file_create
from syncq.models import AttemptOutcome, OperatorAction, SyncAttempt, SyncQueueItem, SyncStatus
from syncq.services import queue_items_retry, queue_prune, sync_batch
from tests.conftest import haven_at, make_discovery

WITH_HAVEN = pytest.mark.django_db(transaction=True, databases=["default", "haven"])


@WITH_HAVEN
def test_failed_then_synced_attempts_are_both_kept(tmp_path, settings):
    """A failure (VH missing) and the later success are two attempts, with outcome and error."""
    path = tmp_path / "VH-Database.db"
    with haven_at(path, settings):
        discovery = make_discovery(description="first fails, then lands")
        assert sync_batch().retrying == 1
        haven_file_create(path, with_demo_data=True)
        SyncQueueItem.objects.filter(discovery=discovery).update(
            next_retry_after=timezone.now() - timedelta(seconds=1)
        )
        assert sync_batch().synced == 1

    item = SyncQueueItem.objects.get(discovery=discovery)
    attempts = list(item.attempts.order_by("number"))
    assert [(a.number, a.outcome) for a in attempts] == [
        (1, AttemptOutcome.RETRYING),
        (2, AttemptOutcome.SYNCED),
    ]
    assert "missing" in attempts[0].error
    assert attempts[1].error is None
    assert attempts[1].haven_discovery_id == item.haven_discovery_id
    assert all(a.duration_ms >= 0 and a.started_at <= timezone.now() for a in attempts)


@WITH_HAVEN
def test_the_last_failure_is_recorded_as_exceeded(tmp_path, settings):
    """The max_attempts-th failure is kept as outcome exceeded."""
    with haven_at(tmp_path / "absent.db", settings):
        discovery = make_discovery(description="never lands")
        SyncQueueItem.objects.filter(discovery=discovery).update(max_attempts=1)
        assert sync_batch().exceeded == 1
    (attempt,) = SyncAttempt.objects.filter(queue_item__discovery=discovery)
    assert attempt.outcome == AttemptOutcome.EXCEEDED


@WITH_HAVEN
def test_history_is_pruned_with_its_synced_item(haven_db):
    """Pruning a synced item removes its attempts too."""
    make_discovery(description="old news")
    assert sync_batch().synced == 1
    SyncQueueItem.objects.update(synced_at=timezone.now() - timedelta(days=60))
    assert SyncAttempt.objects.count() == 1

    assert queue_prune(older_than_days=30) == 1

    assert SyncAttempt.objects.count() == 0


@pytest.mark.django_db
def test_api_retries_are_recorded_with_their_user_and_count():
    """A bulk retry through the API is recorded: who, via api, retry, how many items."""
    user = get_user_model().objects.create_superuser("ops", "ops@example.org", "pw")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    items = [
        SyncQueueItem.objects.get(discovery=make_discovery(description=f"stuck {n}"))
        for n in range(3)
    ]
    SyncQueueItem.objects.filter(id__in=[i.id for i in items]).update(
        sync_status=SyncStatus.MAX_RETRIES_EXCEEDED, sync_attempts=10
    )

    response = client.post("/sync/retry", {"status": "max_retries_exceeded"}, format="json")

    assert response.json()["reset"] == 3
    (action,) = OperatorAction.objects.all()
    assert (action.actor, action.actor_name, action.source, action.action) == (
        user,
        "ops",
        "api",
        "retry",
    )
    assert action.items_changed == 3
    assert action.detail == {"status": "max_retries_exceeded"}


@pytest.mark.django_db
def test_a_retry_that_changes_nothing_is_not_recorded():
    """Retrying only synced or unknown items changes nothing and records nothing."""
    item = SyncQueueItem.objects.get(discovery=make_discovery())
    SyncQueueItem.objects.filter(id=item.id).update(sync_status=SyncStatus.SYNCED)

    report = queue_items_retry(ids=[item.id, 999_999], source="admin")

    assert report.reset == [] and OperatorAction.objects.count() == 0
