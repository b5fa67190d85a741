"""The sync queue in the Django admin, driven through the test client on real rows: the list's
columns and query count, the retry and reset actions (selection, "select all", confirmation,
refusals), permissions, and the record each action leaves; items waiting for their place
("Write without a place") and in conflict with the Control Room (both versions, the two
choices), made by real sync batches over the sample VH files."""

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
from syncq.services import sync_batch
from tests.factories import (
    queue_item_backing_off,
    queue_item_exceeded,
    queue_item_in_conflict,
    queue_item_synced,
    queue_item_synced_to_vh,
    queue_item_syncing,
    queue_item_waiting,
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


# --- items held back from VH: waiting for a place, or in conflict with the Control Room ------

WITH_HAVEN = pytest.mark.django_db(transaction=True, databases=["default", "haven"])


def change_url(item: SyncQueueItem) -> str:
    return reverse("admin:syncq_syncqueueitem_change", args=[item.id])


def keep_url(item: SyncQueueItem, keep: str) -> str:
    return reverse("admin:syncq_syncqueueitem_keep", args=[item.id, keep])


def keep_post(client, item: SyncQueueItem, keep: str, **extra):
    """POST a conflict choice as the item's page does: with the version the page showed."""
    item.refresh_from_db()
    seen = item.metadata.get("conflict", {}).get("theirs_hash", "")
    return client.post(keep_url(item, keep), {"theirs_hash": seen}, **extra)


def vh_description(path, haven_id: int) -> str | None:
    import sqlite3

    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT description FROM discoveries WHERE id = ?", [haven_id]
        ).fetchone()
    conn.close()
    return row[0] if row else None


@WITH_HAVEN
def test_list_shows_waiting_and_conflict_items_with_their_badge_and_reason(
    admin_client, sample_haven_db
):
    """Waiting and conflict items have their own badge and filter choice; a waiting item's row
    says why it waits rather than only an error."""
    conflict = queue_item_in_conflict(sample_haven_db)
    waiting = queue_item_waiting()
    html = admin_client.get(CHANGELIST).content.decode()
    assert 'sync-state-waiting" style="background:#6b46c1' in html
    assert 'sync-state-conflict" style="background:#c05621' in html
    assert "Waiting for its place in VH" in html and "Conflict with the Control Room" in html
    assert "Waiting: " in html and "ORACLE ZETA" in html
    for state, item in ((SyncStatus.WAITING, waiting), (SyncStatus.CONFLICT, conflict)):
        filtered = admin_client.get(CHANGELIST, {"sync_status__exact": state})
        assert [i.id for i in filtered.context["cl"].result_list] == [item.id]


@WITH_HAVEN
def test_a_waiting_items_page_shows_the_reason_the_nearest_names_and_the_button(
    client, admin_client, sample_haven_db, staff_viewer
):
    """The page of a waiting item names what VH lacks and the nearest names it has, with
    "Write without a place" for operators who may change items, and without it for viewers."""
    item = queue_item_waiting(system_name="Ocul", location="Erren")
    page = admin_client.get(change_url(item)).content.decode()
    assert 'id="queue-waiting-reason"' in page and "Ocul" in page
    assert "<li>Oculi</li>" in page
    assert 'id="queue-write-unplaced"' in page
    assert reverse("admin:syncq_syncqueueitem_write_unplaced", args=[item.id]) in page
    client.force_login(staff_viewer)
    viewed = client.get(change_url(item)).content.decode()
    assert 'id="queue-waiting-reason"' in viewed
    assert 'id="queue-write-unplaced"' not in viewed


@WITH_HAVEN
def test_write_without_a_place_is_refused_where_the_file_checks_quoting_its_check(
    admin_client, control_room_schema_haven_db
):
    """On the Control Room's current schema the bulk action asks first, then reports the
    refusal with the file's CHECK; the item keeps waiting and nothing is recorded."""
    item = queue_item_waiting()
    page = admin_client.post(
        CHANGELIST, {"action": "write_unplaced", "index": 0, "_selected_action": [item.id]}
    )
    assert page.templates[0].name == "admin/syncq/syncqueueitem/action_confirmation.html"
    assert page.context["changing"] == 1
    assert "shows it nowhere" in page.content.decode()
    response = action_post(admin_client, "write_unplaced", [item.id], post="yes")
    (warning,) = shown_messages(response)
    assert warning.startswith(f"Not written without a place: queue item {item.id}: ")
    assert "CHECK" in warning and "system_id IS NOT NULL" in warning
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.WAITING
    assert not OperatorAction.objects.exists()


@WITH_HAVEN
def test_write_without_a_place_queues_waiting_items_and_refuses_others_with_the_reason(
    admin_client, sample_haven_db
):
    """On the older file the waiting item is queued and then written with no place; a synced
    item in the same selection is refused, saying it is not waiting."""
    synced = queue_item_synced_to_vh()
    item = queue_item_waiting()
    response = action_post(admin_client, "write_unplaced", [item.id, synced.id], post="yes")
    messages = shown_messages(response)
    assert "Queued 1 waiting queue item to be written without its place." in messages
    assert (
        f"Not written without a place: queue item {synced.id}: it is synced, not waiting for "
        "its place" in messages
    )
    record = OperatorAction.objects.get()
    assert (record.action, record.source, record.items_changed) == ("write_unplaced", "admin", 1)
    assert sync_batch().synced == 1
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.SYNCED
    assert item.metadata["location_resolved"] is False


@WITH_HAVEN
def test_write_without_a_place_from_the_items_page(admin_client, control_room_schema_haven_db):
    """The page's button does the same for one item: refused here, with the CHECK quoted."""
    item = queue_item_waiting()
    url = reverse("admin:syncq_syncqueueitem_write_unplaced", args=[item.id])
    assert admin_client.get(url).status_code == 405
    response = admin_client.post(url, follow=True)
    assert response.redirect_chain[-1][0] == change_url(item)
    (warning,) = shown_messages(response)
    assert "CHECK" in warning and "system_id IS NOT NULL" in warning
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.WAITING


@WITH_HAVEN
def test_a_conflicts_page_shows_both_versions_side_by_side_escaped(admin_client, sample_haven_db):
    """Both versions of the VH row are shown, only the columns that differ highlighted, and
    markup in either is shown as text."""
    item = queue_item_in_conflict(
        sample_haven_db,
        theirs="<script>alert('theirs')</script> Curated.",
        ours='Ours & "quoted" corrected.',
    )
    response = admin_client.get(change_url(item))
    page = response.content.decode()
    conflict = response.context["queue_conflict"]
    differing = {row["column"] for row in conflict["rows"] if row["differs"]}
    assert differing == {"description"}
    assert page.count('class="differs"') == 1
    assert '<tr class="differs" data-column="description">' in page
    assert "&lt;script&gt;alert(&#x27;theirs&#x27;)&lt;/script&gt; Curated." in page
    assert "Ours &amp; &quot;quoted&quot; corrected." in page
    assert "<script>alert(" not in page
    assert f"VH row #{conflict['haven_discovery_id']}" in page
    assert 'id="queue-keep-keeper"' in page and 'id="queue-keep-control-room"' in page


@WITH_HAVEN
def test_keeping_the_keeper_version_overwrites_the_control_rooms_row(admin_client, sample_haven_db):
    """ "Keep the keeper version" is recorded as the operator's choice and the next batch
    writes our edit over the row the operator saw."""
    item = queue_item_in_conflict(sample_haven_db)
    page = admin_client.get(change_url(item)).content.decode()
    assert f'name="theirs_hash" value="{item.metadata["conflict"]["theirs_hash"]}"' in page
    response = keep_post(admin_client, item, "keeper", follow=True)
    assert response.redirect_chain[-1][0] == change_url(item)
    assert any("keeper version will be written over VH row" in m for m in shown_messages(response))
    record = OperatorAction.objects.get(action="conflict_keep_keeper")
    assert (record.source, record.actor_name, record.items_changed) == ("admin", "admin", 1)
    assert sync_batch().synced == 1
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.SYNCED
    assert vh_description(sample_haven_db, item.haven_discovery_id) == "Our correction."


@WITH_HAVEN
def test_keeping_the_control_rooms_version_cancels_a_delete(admin_client, sample_haven_db):
    """On a delete in conflict, "Keep the Control Room's version" keeps their row and the
    discovery; the page said it was a delete."""
    item = queue_item_in_conflict(sample_haven_db, ours=None)
    page = admin_client.get(change_url(item)).content.decode()
    assert "The discovery is being deleted" in page and "Cancels the delete" in page
    response = keep_post(admin_client, item, "control_room", follow=True)
    assert any("the delete is cancelled" in m for m in shown_messages(response))
    assert sync_batch().synced == 1
    item.refresh_from_db()
    assert (item.sync_status, item.operation) == (SyncStatus.SYNCED, "write")
    assert vh_description(sample_haven_db, item.haven_discovery_id) == (
        "Curated by the Control Room."
    )


@WITH_HAVEN
def test_a_row_the_control_room_deleted_is_shown_and_can_be_written_again(
    admin_client, sample_haven_db
):
    """An edit of a row the Control Room deleted: the page says so, and keeping the keeper
    version writes the row again, once."""
    import sqlite3

    from syncq.services import discovery_update
    from tests.factories import discovery_make

    discovery = discovery_make(system_name="Oculi", location="Erren", location_type="planet")
    sync_batch()
    item = SyncQueueItem.objects.get(discovery=discovery)
    with sqlite3.connect(sample_haven_db) as conn:
        conn.execute("DELETE FROM discoveries WHERE id = ?", [item.haven_discovery_id])
    conn.close()
    discovery_update(discovery_id=discovery.id, changes={"tags": "edited"})
    assert sync_batch().conflict == 1
    item.refresh_from_db()
    page = admin_client.get(change_url(item)).content.decode()
    assert "the Control Room deleted its VH row" in page
    response = keep_post(admin_client, item, "keeper", follow=True)
    assert any("will be written again" in m for m in shown_messages(response))
    assert sync_batch().synced == 1
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.SYNCED


@WITH_HAVEN
def test_conflict_choices_are_post_only_for_operators_who_may_change_items(
    client, admin_client, sample_haven_db, staff_viewer
):
    """A GET changes nothing (405), view-only staff get 403 and no buttons, an unknown choice
    is 404, and choosing for an item no longer in conflict says so and changes nothing."""
    item = queue_item_in_conflict(sample_haven_db)
    assert admin_client.get(keep_url(item, "keeper")).status_code == 405
    assert admin_client.post(f"{change_url(item)}keep/nobody/").status_code == 404
    client.force_login(staff_viewer)
    assert 'id="queue-keep-keeper"' not in client.get(change_url(item)).content.decode()
    assert keep_post(client, item, "keeper").status_code == 403
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.CONFLICT
    assert not OperatorAction.objects.filter(action__startswith="conflict").exists()

    keep_post(admin_client, item, "control_room")
    again = keep_post(admin_client, item, "keeper", follow=True)
    assert f"Nothing changed: queue item {item.id} is pending, not in conflict." in (
        shown_messages(again)
    )
    assert OperatorAction.objects.filter(action__startswith="conflict").count() == 1


@WITH_HAVEN
def test_retrying_a_conflict_is_refused_with_what_it_needs(admin_client, sample_haven_db):
    """Retry selected refuses an item in conflict and points to the choice on its page."""
    item = queue_item_in_conflict(sample_haven_db)
    response = action_post(admin_client, "retry_selected", [item.id])
    (warning,) = shown_messages(response)
    assert warning.startswith("Refused 1 queue item that is in conflict")
    assert "needs a choice" in warning


@WITH_HAVEN
def test_a_choice_made_on_an_older_version_of_the_row_changes_nothing(
    admin_client, sample_haven_db
):
    """An operator who saw the Control Room's first version chooses after the row changed
    again and the item came back in conflict: nothing is applied, and the page asks them to
    look again at the version now shown."""
    import sqlite3

    item = queue_item_in_conflict(sample_haven_db)
    seen = item.metadata["conflict"]["theirs_hash"]
    keep_post(admin_client, item, "keeper")  # another operator chose first
    with sqlite3.connect(sample_haven_db) as conn:
        conn.execute(
            "UPDATE discoveries SET description = 'Curated again.' WHERE id = ?",
            [item.haven_discovery_id],
        )
    conn.close()
    assert sync_batch().conflict == 1
    response = admin_client.post(keep_url(item, "keeper"), {"theirs_hash": seen}, follow=True)
    assert any("is not the version you saw any more" in m for m in shown_messages(response))
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.CONFLICT
    assert OperatorAction.objects.filter(action="conflict_keep_keeper").count() == 1
    assert vh_description(sample_haven_db, item.haven_discovery_id) == "Curated again."
    assert "Curated again." in admin_client.get(change_url(item)).content.decode()
