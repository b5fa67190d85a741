"""The sync queue in the Django admin, driven through the test client on real rows: the list's
columns and query count, the retry and reset actions (selection, "select all", confirmation,
refusals), permissions, and the record each action leaves."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pytest_django.asserts import assertContains

from syncq import admin as queue_admin
from syncq.display import retry_due_text
from syncq.models import OperatorAction, SyncAttempt, SyncQueueItem, SyncStatus
from tests.factories import (
    queue_item_backing_off,
    queue_item_exceeded,
    queue_item_synced,
    queue_item_syncing,
)

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:syncq_syncqueueitem_changelist")
EXCEEDED = SyncStatus.MAX_RETRIES_EXCEEDED


def failed(sync_error: str = "HavenUnavailable: VH-Database.db is missing") -> SyncQueueItem:
    """An item out of attempts: all ten failed with ``sync_error``."""
    return queue_item_exceeded(attempts=10, error=sync_error, description="a tower that failed")


def action_post(client, action: str, ids, url: str = CHANGELIST, **extra):
    """POST ``action`` from the changelist as its Go button does, following the redirect."""
    data = {"action": action, "index": 0, "_selected_action": [str(i) for i in ids], **extra}
    return client.post(url, data, follow=True)


def shown_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def viewer(client, staff_viewer):
    """The admin's session of staff who may view the queue, not change it (unlike the API
    tests' ``viewer``, a token client)."""
    client.force_login(staff_viewer)
    return client


def test_list_query_count_does_not_grow_with_rows(admin_client, django_assert_max_num_queries):
    """The list page runs no more queries for 100 rows than for 5."""
    for n in range(5):
        failed(sync_error=f"MappingError: no planet {n % 3}")
    with CaptureQueriesContext(connection) as five:
        assert admin_client.get(CHANGELIST).status_code == 200
    for n in range(95):
        if n % 2:
            failed(sync_error=f"MappingError: no planet {n % 3}")
        else:
            queue_item_backing_off(error=f"MappingError: no planet {n % 3}")
    with django_assert_max_num_queries(len(five)):
        response = admin_client.get(CHANGELIST)
    assertContains(response, "100 queue items")


def test_list_shows_coloured_state_attempts_and_humanized_retry(admin_client):
    """Each row shows its state as a coloured badge, attempts / max and when it retries."""
    failed()
    queue_item_backing_off(attempts=2, retry_in=timedelta(seconds=170))
    queue_item_backing_off(attempts=1, retry_in=timedelta(0))  # due again: made last
    html = admin_client.get(CHANGELIST).content.decode()
    assert "in 3 min" in html
    assert "due now" in html
    assert "2 / 10" in html
    assert "10 / 10" in html
    assert 'sync-state-max_retries_exceeded" style="background:#c53030' in html
    assert 'sync-state-pending" style="background:#b7791f' in html
    assert 'name="action"' in html


def test_list_shortens_errors_and_the_detail_page_shows_all_of_it(admin_client):
    """A long error is cut to 80 characters in the list and shown whole, with the item's
    attempts, on its page."""
    error = "SyncError: " + "x" * 150 + " THE END"
    item = failed(sync_error=error)
    SyncAttempt.objects.create(
        queue_item=item,
        number=1,
        started_at=timezone.now(),
        duration_ms=42,
        outcome="exceeded",
        error="attempt one broke",
    )
    listing = admin_client.get(CHANGELIST).content.decode()
    assert error[:79] + "…" in listing
    assert "THE END" not in listing
    detail = admin_client.get(reverse("admin:syncq_syncqueueitem_change", args=[item.id]))
    page = detail.content.decode()
    assert error in page
    assert "attempt one broke" in page
    assert 'name="sync_status"' not in page


def test_error_filter_lists_the_commonest_errors_and_filters_by_one(admin_client):
    """The error filter offers the most common texts first and narrows the list to one."""
    for _ in range(3):
        failed(sync_error="HavenSchemaError: no column x")
    other = failed(sync_error="MappingError: unknown planet")
    response = admin_client.get(CHANGELIST)
    choices = [
        c["display"]
        for spec in response.context["cl"].filter_specs
        for c in spec.choices(response.context["cl"])
        if spec.title == "error text"
    ]
    assert choices[1:3] == ["HavenSchemaError: no column x (3)", "MappingError: unknown planet (1)"]
    filtered = admin_client.get(CHANGELIST, {"error": "MappingError: unknown planet"})
    assert [i.id for i in filtered.context["cl"].result_list] == [other.id]


def test_retry_selected_resets_only_the_ticked_rows(admin_client):
    """Retry selected makes the ticked items pending and due, leaves the others, says how many
    and records the action with source admin."""
    first, second, untouched = failed(), failed(), failed()
    response = action_post(admin_client, "retry_selected", [first.id, second.id])
    assert "Retried 2 queue items." in shown_messages(response)
    for item in (first, second):
        item.refresh_from_db()
        assert (item.sync_status, item.sync_attempts, item.sync_error) == ("pending", 0, None)
    untouched.refresh_from_db()
    assert untouched.sync_status == EXCEEDED
    record = OperatorAction.objects.get()
    assert (record.source, record.action, record.items_changed) == ("admin", "retry", 2)
    assert record.actor_name == "admin"


def test_synced_and_syncing_items_are_refused_with_a_warning(admin_client):
    """Synced and syncing items in the selection stay as they are, and a warning says how
    many were refused."""
    exceeded = failed()
    synced = queue_item_synced(haven_id=7)
    syncing = queue_item_syncing(attempts=3)
    response = action_post(admin_client, "retry_selected", [exceeded.id, synced.id, syncing.id])
    messages = shown_messages(response)
    assert "Retried 1 queue item." in messages
    assert any(m.startswith("Refused 2 queue items that are synced or syncing") for m in messages)
    synced.refresh_from_db()
    syncing.refresh_from_db()
    assert (synced.sync_status, synced.sync_attempts) == ("synced", 1)
    assert (syncing.sync_status, syncing.sync_attempts) == ("syncing", 3)
    assert OperatorAction.objects.get().items_changed == 1


def test_reset_attempts_makes_items_due_and_keeps_their_error(admin_client):
    """Reset attempts gives items 0 attempts and makes them due at once, keeps the last
    error, refuses synced items and records a reset_attempts action."""
    waiting = queue_item_backing_off(attempts=5, retry_in=timedelta(hours=1), error="Timeout")
    exceeded = failed()
    synced = queue_item_synced(attempts=2, haven_id=3)
    response = action_post(admin_client, "reset_attempts", [waiting.id, exceeded.id, synced.id])
    messages = shown_messages(response)
    assert "Reset the attempts of 2 queue items." in messages
    assert any(m.startswith("Refused 1 queue item that is synced") for m in messages)
    waiting.refresh_from_db()
    exceeded.refresh_from_db()
    synced.refresh_from_db()
    assert (waiting.sync_status, waiting.sync_attempts, waiting.next_retry_after) == (
        "pending",
        0,
        None,
    )
    assert waiting.sync_error == "Timeout"
    assert (exceeded.sync_status, exceeded.sync_attempts) == ("pending", 0)
    assert exceeded.sync_error.startswith("HavenUnavailable")
    assert (synced.sync_status, synced.sync_attempts) == ("synced", 2)
    record = OperatorAction.objects.get()
    assert (record.source, record.action, record.items_changed) == ("admin", "reset_attempts", 2)


def test_retry_all_exceeded_confirms_then_retries_every_exceeded_item(admin_client):
    """Retry all exceeded needs no ticked row, shows the count first and changes nothing until
    confirmed; then every exceeded item is retried and pending ones keep their attempts."""
    exceeded = [failed() for _ in range(3)]
    waiting = queue_item_backing_off(attempts=3)
    page = admin_client.post(CHANGELIST, {"action": "retry_all_exceeded", "index": 0})
    assert page.status_code == 200
    assert page.templates[0].name == "admin/syncq/syncqueueitem/action_confirmation.html"
    assert page.context["changing"] == 3
    assert 'id="queue-action-total">3<' in page.content.decode()
    assert SyncQueueItem.objects.filter(sync_status=EXCEEDED).count() == 3
    assert not OperatorAction.objects.exists()

    form = {
        "action": "retry_all_exceeded",
        "select_across": "1",
        "_selected_action": page.context["selected"],
        "post": "yes",
    }
    response = admin_client.post(CHANGELIST, form, follow=True)
    assert "Retried 3 exceeded queue items." in shown_messages(response)
    assert set(SyncQueueItem.objects.filter(sync_status="pending", sync_attempts=0)) == set(
        exceeded
    )
    waiting.refresh_from_db()
    assert waiting.sync_attempts == 3
    assert OperatorAction.objects.get().items_changed == 3


def test_select_across_applies_to_every_filtered_row_after_confirmation(admin_client, monkeypatch):
    """With "select all" under a filter, the action asks first, then changes every matching
    row, also those beyond the visible page, and none outside the filter."""
    monkeypatch.setattr(queue_admin.SyncQueueItemAdmin, "list_per_page", 2)
    exceeded = [failed() for _ in range(5)]
    others = [queue_item_backing_off(attempts=4) for _ in range(2)]
    url = f"{CHANGELIST}?sync_status__exact={EXCEEDED}"
    page = admin_client.post(
        url,
        {
            "action": "retry_selected",
            "index": 0,
            "select_across": "1",
            "_selected_action": [exceeded[0].id],
        },
    )
    assert page.status_code == 200
    assert page.context["total"] == 5
    assert "matching the current filters" in page.content.decode()
    assert SyncQueueItem.objects.filter(sync_status=EXCEEDED).count() == 5

    response = admin_client.post(
        url,
        {
            "action": "retry_selected",
            "select_across": "1",
            "_selected_action": [exceeded[0].id],
            "post": "yes",
        },
        follow=True,
    )
    assert "Retried 5 queue items." in shown_messages(response)
    assert not SyncQueueItem.objects.filter(sync_status=EXCEEDED).exists()
    assert all(
        o.sync_attempts == 4 for o in SyncQueueItem.objects.filter(id__in=[o.id for o in others])
    )
    record = OperatorAction.objects.get()
    assert (record.source, record.items_changed) == ("admin", 5)


def test_a_large_selection_asks_for_confirmation(admin_client, monkeypatch):
    """Ticking more rows than the confirmation threshold shows the count before any change."""
    monkeypatch.setattr(queue_admin, "CONFIRM_ABOVE", 2)
    items = [failed() for _ in range(3)]
    page = admin_client.post(
        CHANGELIST,
        {"action": "reset_attempts", "index": 0, "_selected_action": [i.id for i in items]},
    )
    assert page.context["total"] == 3
    assert SyncQueueItem.objects.filter(sync_status=EXCEEDED).count() == 3


def test_view_only_staff_see_no_actions_and_cannot_post_one(viewer):
    """A user who may only view the queue gets no action menu, and a forged action POST
    changes nothing and records nothing."""
    item = failed()
    listing = viewer.get(CHANGELIST)
    assert listing.status_code == 200
    assert str(item.id) in listing.content.decode()
    assert 'name="action"' not in listing.content.decode()
    for action in ("retry_selected", "retry_all_exceeded", "reset_attempts"):
        action_post(viewer, action, [item.id])
        viewer.post(
            CHANGELIST,
            {"action": action, "_selected_action": [item.id], "post": "yes", "select_across": "1"},
        )
    item.refresh_from_db()
    assert (item.sync_status, item.sync_attempts) == (EXCEEDED, 10)
    assert not OperatorAction.objects.exists()


def test_retry_text_reads_as_an_operator_would():
    """The next-retry column says due now, in N min/h, or — when the worker will not retry."""
    now = timezone.now()
    item = SyncQueueItem(sync_status="pending", sync_attempts=2, max_attempts=10)
    text = retry_due_text
    item.next_retry_after = now + timedelta(minutes=2, seconds=30)
    assert text(item, now) == "in 3 min"
    item.next_retry_after = now + timedelta(hours=2)
    assert text(item, now) == "in 2 h"
    item.sync_attempts = 0
    assert text(item, now) == "due now"
    item.sync_attempts = 10
    assert text(item, now) == "—"
    item.sync_status, item.sync_attempts = EXCEEDED, 3
    assert text(item, now) == "—"
