"""Each attempt of a queue item is kept with its outcome, and each operator retry is recorded
with who made it, from where, and how many items it changed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from discoveries.haven.files import haven_file_create
from syncq.models import AttemptOutcome, OperatorAction, SyncAttempt, SyncQueueItem
from syncq.services import queue_items_retry, queue_prune, sync_batch
from tests.api_support import token_client
from tests.conftest import haven_at
from tests.factories import discovery_make, queue_item_exceeded, queue_item_synced, user_make

WITH_HAVEN = pytest.mark.django_db(transaction=True, databases=["default", "haven"])


@WITH_HAVEN
def test_failed_then_synced_attempts_are_both_kept(tmp_path, settings):
    """A failure (VH missing) and the later success are two attempts, with outcome and error."""
    path = tmp_path / "VH-Database.db"
    with haven_at(path, settings):
        discovery = discovery_make(description="first fails, then lands")
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
    settings.SYNC_MAX_ATTEMPTS = 1
    with haven_at(tmp_path / "absent.db", settings):
        discovery = discovery_make(description="never lands")
        assert sync_batch().exceeded == 1
    (attempt,) = SyncAttempt.objects.filter(queue_item__discovery=discovery)
    assert attempt.outcome == AttemptOutcome.EXCEEDED


@WITH_HAVEN
def test_history_is_pruned_with_its_synced_item(haven_db):
    """Pruning a synced item removes its attempts too."""
    discovery_make(description="old news")
    assert sync_batch().synced == 1
    SyncQueueItem.objects.update(synced_at=timezone.now() - timedelta(days=60))
    assert SyncAttempt.objects.count() == 1

    assert queue_prune(older_than_days=30) == 1

    assert SyncAttempt.objects.count() == 0


@pytest.mark.django_db
def test_api_retries_are_recorded_with_their_user_and_count():
    """A bulk retry through the API is recorded: who, via api, retry, how many items."""
    user = user_make("ops", superuser=True)
    client = token_client(user)
    for n in range(3):
        queue_item_exceeded(description=f"stuck {n}")

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
    item = queue_item_synced()

    report = queue_items_retry(ids=[item.id, 999_999], source="admin")

    assert report.reset == [] and OperatorAction.objects.count() == 0
