"""The Discovery admin through Django's test client on real rows: the list (columns, filters,
search, bounded queries), the change page (type fields by label, the VH row preview),
editing a discovery that failed to map, then retrying it, and deleting discoveries, whose VH
rows are removed from the Control Room first through the queue."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from discoveries.models import Discovery
from discoveries.rules import DiscoveryInvalid, discovery_validate
from syncq.models import OperatorAction, SyncQueueItem, SyncStatus
from syncq.services import discovery_delete, sync_batch
from tests.factories import (
    DISCOVERY_FIELDS,
    discovery_make,
    queue_item_exceeded,
    queue_item_in_conflict,
    queue_item_pending,
    queue_item_synced,
    queue_item_synced_to_vh,
    queue_item_syncing,
    queue_item_waiting,
)

WITH_HAVEN = pytest.mark.django_db(transaction=True, databases=["default", "haven"])
CHANGELIST = reverse("admin:discoveries_discovery_changelist")
QUEUE_ITEM_IN = {
    SyncStatus.PENDING: queue_item_pending,
    SyncStatus.SYNCING: queue_item_syncing,
    SyncStatus.MAX_RETRIES_EXCEEDED: queue_item_exceeded,
}


def _change_url(discovery: Discovery) -> str:
    return reverse("admin:discoveries_discovery_change", args=[discovery.pk])


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def no_haven(settings):
    """VH switched off, so no page depends on a file on this machine."""
    settings.USE_HAVEN_DATABASE = False


def _discovery(
    state: str | None = SyncStatus.PENDING, resolved: bool | None = None, **fields
) -> Discovery:
    """A discovery stored through the submit service whose queue item the services then bring
    to ``state`` (``None``: the item is deleted, as an old bot's discovery has none); a synced
    one resolved in VH or not as ``resolved`` says (``None``: linked, so unknown). Make
    pending ones last (:mod:`tests.factories`)."""
    if "discovery_type" in fields:
        fields.setdefault("type_fields", {})
    if state is None:
        discovery = discovery_make(**fields)
        SyncQueueItem.objects.filter(discovery=discovery).delete()
        return discovery
    if state == SyncStatus.SYNCED:
        if resolved is None:
            return queue_item_synced(how="linked", **fields).discovery
        unresolved = None if resolved else "planet 'Nowhere' not found"
        return queue_item_synced(unresolved=unresolved, **fields).discovery
    return QUEUE_ITEM_IN[state](**fields).discovery


def _shown_ids(response) -> set[int]:
    assert response.status_code == 200
    return {d.pk for d in response.context["cl"].result_list}


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _form_data(response, **changes) -> dict[str, str]:
    """The POST body of the change form as shown in ``response``, with ``changes`` applied."""
    form = response.context["adminform"].form
    data = {}
    for name in form.fields:
        value = form[name].value()
        data[name] = "" if value is None else str(value)
    data.update(changes)
    return data


# --- the list --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_shows_type_sync_state_link_and_resolution_for_every_state(root, no_haven):
    """Each row shows its type's emoji and name, its queue item's state linked to the item,
    and whether the location resolved in VH (yes, no, unknown)."""
    others = [
        _discovery(SyncStatus.SYNCING, description="syncing one"),
        _discovery(SyncStatus.SYNCED, resolved=True, description="synced resolved"),
        _discovery(SyncStatus.SYNCED, resolved=False, description="synced unresolved"),
        _discovery(SyncStatus.MAX_RETRIES_EXCEEDED, description="gave up", discovery_type="🦴"),
        _discovery(None, description="no item"),
    ]
    rows = [_discovery(SyncStatus.PENDING, description="pending one"), *others]
    response = _client(root).get(CHANGELIST)
    html = response.content.decode()
    assert _shown_ids(response) == {d.pk for d in rows}
    for label in ("Pending", "Syncing", "Synced", "Max retries exceeded", "no queue item"):
        assert label in html
    assert "🏛️ Ruins &amp; structures" in html
    assert "🦴 Ancient bones &amp; fossils" in html
    item = SyncQueueItem.objects.get(discovery=rows[4])
    assert reverse("admin:syncq_syncqueueitem_change", args=[item.pk]) in html
    assert 'alt="True"' in html and 'alt="False"' in html and 'alt="None"' in html


@pytest.mark.django_db
@pytest.mark.parametrize("rows", [5, 50])
def test_list_query_count_does_not_grow_with_rows(
    rows, root, no_haven, django_assert_max_num_queries
):
    """The list page takes the same bounded number of queries for 5 and for 50 discoveries."""
    # The states the factories reach without a Control Room file; waiting and conflict items
    # need one (their list is counted in test_list_says_what_waits_conflicts_or_is_being_deleted).
    states = [*QUEUE_ITEM_IN, SyncStatus.SYNCED]
    # Pending ones last: the factories claim the others (tests.factories).
    for n in sorted(range(rows), key=lambda n: states[n % len(states)] == SyncStatus.PENDING):
        _discovery(states[n % len(states)], resolved=bool(n % 2), description=f"row {n}")
    client = _client(root)
    with django_assert_max_num_queries(8):
        response = client.get(CHANGELIST)
    assert len(_shown_ids(response)) == rows


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("resolved=yes", {"resolved"}),
        ("resolved=no", {"unresolved"}),
        ("resolved=unknown", {"pending", "exceeded", "orphan"}),
        ("sync_state=max_retries_exceeded", {"exceeded"}),
        ("sync_state=synced", {"resolved", "unresolved"}),
        ("sync_state=none", {"orphan"}),
        ("type=bones", {"exceeded"}),
        ("system_name=Demo Beta", {"pending"}),
    ],
)
def test_filters_select_the_matching_discoveries(query, expected, root, no_haven):
    """The resolved, sync state, type and system filters each show exactly their rows."""
    rows = {
        "resolved": _discovery(SyncStatus.SYNCED, resolved=True),
        "unresolved": _discovery(SyncStatus.SYNCED, resolved=False),
        "exceeded": _discovery(SyncStatus.MAX_RETRIES_EXCEEDED, discovery_type="🦴"),
        "orphan": _discovery(None),
        "pending": _discovery(SyncStatus.PENDING, system_name="Demo Beta", location="Beta Rock"),
    }
    response = _client(root).get(f"{CHANGELIST}?{query}")
    assert _shown_ids(response) == {rows[name].pk for name in expected}


@pytest.mark.django_db
def test_date_filter_keeps_only_recent_submissions(root, no_haven):
    """The submitted-at filter "Past 7 days" leaves out an old submission."""
    recent = _discovery()
    old = discovery_make(description="old", submitted_at=datetime(2020, 1, 1, tzinfo=UTC))
    response = _client(root).get(CHANGELIST)
    assert _shown_ids(response) == {recent.pk, old.pk}
    spec = next(s for s in response.context["cl"].filter_specs if s.title == "submission timestamp")
    past_week = next(
        c for c in spec.choices(response.context["cl"]) if c["display"] == "Past 7 days"
    )
    response = _client(root).get(CHANGELIST + past_week["query_string"])
    assert _shown_ids(response) == {recent.pk}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("q", "expected"),
    [("glowing spire", "spire"), ("Demo Gamma", "gamma"), ("Beta Rock", "beta"), ("zoe", "zoe")],
)
def test_search_matches_description_system_location_and_username(q, expected, root, no_haven):
    """Search finds a discovery by its description, system, location or submitter's name."""
    rows = {
        "spire": _discovery(description="A glowing spire on a hill."),
        "gamma": _discovery(system_name="Demo Gamma", location="Gamma Ice"),
        "beta": _discovery(system_name="Demo Beta", location="Beta Rock"),
        "zoe": _discovery(username="Zoe"),
    }
    response = _client(root).get(CHANGELIST, {"q": q})
    assert _shown_ids(response) == {rows[expected].pk}


@pytest.mark.django_db
def test_viewer_sees_the_list_without_actions_and_cannot_retry(staff_viewer, no_haven):
    """A view-only staff user browses discoveries but gets no action and no retry button,
    and a forged "Save and retry sync" is refused with 403 and changes nothing."""
    discovery = _discovery(SyncStatus.MAX_RETRIES_EXCEEDED)
    client = _client(staff_viewer)
    response = client.get(CHANGELIST)
    assert _shown_ids(response) == {discovery.pk}
    assert response.context["action_form"] is None
    page = client.get(_change_url(discovery))
    assert page.status_code == 200
    assert "Save and retry sync" not in page.content.decode()
    forged = client.post(_change_url(discovery), {"_saveretry": "1"})
    assert forged.status_code == 403
    assert SyncQueueItem.objects.get(discovery=discovery).sync_status == (
        SyncStatus.MAX_RETRIES_EXCEEDED
    )
    assert not OperatorAction.objects.exists()


# --- the change page -------------------------------------------------------------------------


@pytest.mark.django_db
def test_change_page_shows_every_field_and_the_type_fields_by_label(staff_viewer, no_haven):
    """The change page lists every keeper column and the type's four fields under their
    labels with their stored values."""
    discovery = _discovery(
        discovery_type="🦴",
        type_fields={"species_type": "Raptor", "estimated_age": "Old"},
    )
    response = _client(staff_viewer).get(_change_url(discovery))
    html = response.content.decode()
    shown = {
        name
        for fieldset in response.context["adminform"]
        for line in fieldset
        for f in line
        for name in [f.field["name"]]
    }
    assert {f.name for f in Discovery._meta.concrete_fields} <= shown
    for label in ("Species type", "Size / scale", "Preservation quality", "Estimated age"):
        assert label in html
    assert "Raptor" in html and "Old" in html


@pytest.mark.django_db
def test_preview_says_why_when_vh_is_switched_off(root, no_haven):
    """With USE_HAVEN_DATABASE false the preview shows the reason instead of a row."""
    response = _client(root).get(_change_url(_discovery()))
    assert "No preview: USE_HAVEN_DATABASE is false" in response.content.decode()


@pytest.mark.django_db
def test_preview_says_why_when_vh_is_missing(root, settings, tmp_path):
    """With no file at HAVEN_DB_PATH the preview says VH-Database.db is missing."""
    settings.HAVEN_DB_PATH = tmp_path / "absent.db"
    response = _client(root).get(_change_url(_discovery()))
    assert "No preview: VH-Database.db is missing" in response.content.decode()


@WITH_HAVEN
def test_preview_shows_the_vh_row_with_resolved_ids_and_writes_nothing(root, haven_db):
    """The preview shows the exact mapped row (resolved system and planet, the type's
    columns) and leaves VH-Database.db untouched."""
    discovery = _discovery(type_fields={"structure_type": "Obelisk"})
    response = _client(root).get(_change_url(discovery))
    html = response.content.decode()
    assert "resolved in VH (system SYS_DEMO_0000A001, planet #" in html
    for text in ("<code>structure_type</code>", "Obelisk", "<code>discovered_by</code>"):
        assert text in html
    assert f"&quot;keeper_discovery_id&quot;: {discovery.pk}" in html
    with sqlite3.connect(haven_db) as vh:
        assert vh.execute("SELECT count(*) FROM discoveries").fetchone() == (0,)
        tables = {r[0] for r in vh.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "keeper_sync_ledger" not in tables


@WITH_HAVEN
def test_preview_reports_an_unresolved_location_and_an_unknown_type(root, haven_db):
    """An unknown moon is reported as unresolved, and an unknown type as refused by the
    mapping, each in words on the page."""
    lost = _discovery(location="Nowhere", location_type="moon")
    odd = _discovery()
    Discovery.objects.filter(pk=odd.pk).update(discovery_type="🛸")
    client = _client(root)
    assert (
        "moon &#x27;Nowhere&#x27; is not in system"
        in client.get(_change_url(lost)).content.decode()
    )
    html = client.get(_change_url(odd)).content.decode()
    assert "the mapping refuses this discovery: unknown discovery type" in html


# --- edit, then retry ------------------------------------------------------------------------


@WITH_HAVEN
def test_fixing_a_failed_discovery_then_save_and_retry_syncs_it(root, haven_db, settings):
    """A discovery whose type cannot be mapped ends max_retries_exceeded; choosing a type,
    filling its field and "Save and retry sync" resets the item to pending (the edit itself
    requeues it, so no separate retry is recorded: one admin edit per save), and the next
    batch writes the fixed row to VH."""
    settings.SYNC_MAX_ATTEMPTS = 1
    discovery = discovery_make(type_fields={"structure_type": "Tower"})
    Discovery.objects.filter(pk=discovery.pk).update(discovery_type="🛸")
    sync_batch()
    item = SyncQueueItem.objects.get(discovery=discovery)
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED
    assert "MappingError" in item.sync_error

    client = _client(root)
    # A known type first, so the form offers its fields.
    page = client.get(_change_url(discovery))
    saved = client.post(_change_url(discovery), _form_data(page, discovery_type="🏛️", _continue="1"))
    assert saved.status_code == 302
    page = client.get(_change_url(discovery))
    assert "Save and retry sync" in page.content.decode()
    response = client.post(
        _change_url(discovery),
        _form_data(page, **{"type__structure_type": "Spire", "_saveretry": "1"}),
    )
    assert response.status_code == 302
    assert any("pending again" in m for m in _messages(response))

    item.refresh_from_db()
    assert (item.sync_status, item.sync_attempts, item.sync_error) == (SyncStatus.PENDING, 0, None)
    actions = OperatorAction.objects.order_by("id")
    assert [(a.source, a.action, a.actor, a.items_changed) for a in actions] == [
        ("admin", "edit", root, 1),
        ("admin", "edit", root, 1),
    ]
    discovery.refresh_from_db()
    assert discovery.metadata["structure_type"] == "Spire"

    sync_batch()
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.SYNCED
    with sqlite3.connect(haven_db) as vh:
        row = vh.execute(
            "SELECT discovery_type, structure_type FROM discoveries WHERE id = ?",
            [item.haven_discovery_id],
        ).fetchone()
    assert row == ("🏛️", "Spire")


@WITH_HAVEN
@pytest.mark.parametrize(
    ("edit", "field", "submit_args"),
    [
        (
            {"evidence_url": "javascript:alert(document.cookie)"},
            "evidence_url",
            {"evidence_url": "javascript:alert(document.cookie)"},
        ),
        ({"guild_id": "<b>x</b>"}, "guild_id", {"guild_id": "<b>x</b>"}),
        ({"location": "\u200b"}, "location", {"location": "\u200b"}),
        (
            {
                "discovery_type": "📜",
                "metadata": '{"key_excerpt": "%s"}' % ("x" * 10_000),
                "type__structure_type": "",
            },
            "key_excerpt",
            {"discovery_type": "📜", "type_fields": {"key_excerpt": "x" * 10_000}},
        ),
    ],
)
def test_the_admin_refuses_what_the_submit_path_refuses_and_nothing_reaches_vh(
    root, haven_db, edit, field, submit_args
):
    """An operator's edit the submit path would refuse (a javascript: link, markup as a server
    id, a place of only a zero-width space, a 10,000-character key excerpt put in metadata
    with a new type) is refused on the form with the submit path's own message; nothing is
    saved, no retry happens, and the sync then writes the discovery as it was."""
    discovery = discovery_make()
    with pytest.raises(DiscoveryInvalid) as submit:
        discovery_validate(**{**DISCOVERY_FIELDS, **submit_args})
    message = submit.value.errors[field][0]
    before = Discovery.objects.filter(pk=discovery.pk).values().get()
    client = _client(root)
    page = client.get(_change_url(discovery))
    response = client.post(_change_url(discovery), _form_data(page, _saveretry="1", **edit))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert Discovery.objects.filter(pk=discovery.pk).values().get() == before
    assert not OperatorAction.objects.exists()

    assert sync_batch().synced == 1
    with sqlite3.connect(haven_db) as vh:
        row = vh.execute(
            "SELECT photo_url, discord_guild_id, location_name, key_excerpt, structure_type"
            " FROM discoveries"
        ).fetchall()
    assert row == [(None, "987654321098765432", "Alpha Prime", None, "Tower")]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "metadata",
    ["[" * 100_000, '{"a":' * 50_000, "1" * 5000, '{"structure_type": ' + "1" * 5000 + "}"],
)
def test_metadata_python_cannot_read_is_refused_on_the_form(root, no_haven, metadata):
    """Metadata nested too deeply, or holding a number of thousands of digits, is shown back as
    invalid JSON, not answered with a server error; nothing is saved."""
    discovery = discovery_make()
    client = _client(root)
    page = client.get(_change_url(discovery))
    response = client.post(_change_url(discovery), _form_data(page, metadata=metadata))
    assert response.status_code == 200
    assert "Enter a valid JSON." in response.content.decode()
    assert Discovery.objects.get(pk=discovery.pk).metadata == {"structure_type": "Tower"}


@pytest.mark.django_db
def test_metadata_keys_of_no_type_are_refused_with_the_key_named(root, no_haven):
    """A key in the metadata box that is no field of the type is refused, naming it, rather
    than dropped on save."""
    discovery = discovery_make()
    client = _client(root)
    page = client.get(_change_url(discovery))
    response = client.post(_change_url(discovery), _form_data(page, metadata='{"foo": 1}'))
    assert response.status_code == 200
    assert "foo: is not a field of any discovery type" in response.content.decode()
    assert Discovery.objects.get(pk=discovery.pk).metadata == {"structure_type": "Tower"}


@pytest.mark.django_db
def test_type_field_longer_than_its_limit_is_refused(root, no_haven):
    """A type field over its limit (200 characters) is refused and nothing is saved."""
    discovery = _discovery(SyncStatus.MAX_RETRIES_EXCEEDED)
    client = _client(root)
    page = client.get(_change_url(discovery))
    response = client.post(
        _change_url(discovery),
        _form_data(page, **{"type__structure_type": "x" * 201, "_saveretry": "1"}),
    )
    assert response.status_code == 200
    assert "is 201 characters long; the limit is 200" in response.content.decode()
    assert SyncQueueItem.objects.get(discovery=discovery).sync_status == (
        SyncStatus.MAX_RETRIES_EXCEEDED
    )


@pytest.mark.django_db
def test_metadata_that_is_no_json_object_is_refused_until_replaced(root, no_haven):
    """Legacy metadata holding a JSON array must be replaced by an object; then the type
    field is stored in it."""
    discovery = _discovery()
    Discovery.objects.filter(pk=discovery.pk).update(metadata=["legacy"])
    client = _client(root)
    page = client.get(_change_url(discovery))
    assert "The metadata holds no JSON object" in page.content.decode()
    refused = client.post(_change_url(discovery), _form_data(page, type__structure_type="Arch"))
    assert refused.status_code == 200
    assert "must be a JSON object" in refused.content.decode()
    saved = client.post(
        _change_url(discovery), _form_data(page, metadata="{}", type__structure_type="Arch")
    )
    assert saved.status_code == 302
    discovery.refresh_from_db()
    assert discovery.metadata == {"structure_type": "Arch"}


@pytest.mark.django_db
def test_save_and_retry_of_an_unchanged_synced_discovery_is_refused_with_a_message(root, no_haven):
    """ "Save and retry sync" with nothing changed on a synced discovery leaves the item
    synced, says why, and records no operator action."""
    discovery = _discovery(SyncStatus.SYNCED, resolved=True)
    client = _client(root)
    page = client.get(_change_url(discovery))
    response = client.post(_change_url(discovery), _form_data(page, _saveretry="1"))
    assert response.status_code == 302
    assert any("Not retried" in m and "synced" in m for m in _messages(response))
    assert SyncQueueItem.objects.get(discovery=discovery).sync_status == SyncStatus.SYNCED
    assert not OperatorAction.objects.exists()


@WITH_HAVEN
def test_editing_a_synced_discovery_updates_its_vh_row_and_says_so(root, sample_haven_db):
    """Saving a change to a synced discovery (plain "Save") makes its item pending and says
    its VH row is updated at the next sync; the batch then rewrites that one row."""
    item = queue_item_synced_to_vh()
    discovery = item.discovery
    client = _client(root)
    page = client.get(_change_url(discovery))
    response = client.post(
        _change_url(discovery), _form_data(page, description="A taller tower.", _continue="1")
    )
    assert response.status_code == 302
    assert (
        f"Queue item {item.pk} is pending again with its attempts reset: VH row "
        f"#{item.haven_discovery_id} is updated at the next sync." in _messages(response)
    )
    assert SyncQueueItem.objects.get(pk=item.pk).sync_status == SyncStatus.PENDING
    assert sync_batch().synced == 1
    with sqlite3.connect(sample_haven_db) as vh:
        rows = vh.execute(
            "SELECT id FROM discoveries WHERE description = 'A taller tower.'"
        ).fetchall()
    assert rows == [(item.haven_discovery_id,)]


@pytest.mark.django_db
def test_retry_action_resets_failed_items_and_refuses_synced_ones(root, no_haven):
    """The list action resets the selected failed item, refuses the synced one with a
    message, and records one admin operator action."""
    failed = _discovery(SyncStatus.MAX_RETRIES_EXCEEDED)
    done = _discovery(SyncStatus.SYNCED, resolved=True)
    response = _client(root).post(
        CHANGELIST,
        {"action": "retry_sync", "_selected_action": [failed.pk, done.pk]},
        follow=True,
    )
    texts = _messages(response) or [str(m) for m in response.context["messages"]]
    assert any("1 queue item(s) reset to pending" in m for m in texts)
    assert any("1 queue item(s) not retried: they are synced" in m for m in texts)
    assert SyncQueueItem.objects.get(discovery=failed).sync_status == SyncStatus.PENDING
    assert SyncQueueItem.objects.get(discovery=done).sync_status == SyncStatus.SYNCED
    action = OperatorAction.objects.get()
    assert (action.source, action.items_changed) == ("admin", 1)


@pytest.mark.django_db
def test_date_times_that_name_no_real_moment_do_not_break_the_pages(client, root):
    """'2024-02-30' written into keeper.db by another tool reads as missing: the lists and the
    dashboard still render."""
    from django.db import connection

    discovery_make(description="bad dates")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE sync_queue SET created_at = '2024-02-30 10:00:00',"
            " next_retry_after = '2024-01-01 25:00:00'"
        )
        cursor.execute("UPDATE discoveries SET submission_timestamp = '2024-02-30 10:00:00'")
    client.force_login(root)
    for url in (
        "/admin/syncq/syncqueueitem/",
        "/admin/discoveries/discovery/",
        "/admin/dashboard/",
    ):
        assert client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_admin_edits_follow_the_submission_text_rules(client, root):
    """An edit with a 1,001-character description or a control character is refused."""
    discovery = discovery_make(description="fine")
    client.force_login(root)
    url = f"/admin/discoveries/discovery/{discovery.id}/change/"
    page = client.get(url)
    form = page.context["adminform"].form
    data = {k: ("" if v is None else v) for k, v in form.initial.items()}
    data["metadata"] = "{}"
    for bad in ("x" * 1001, "bell \x07 here"):
        data["description"] = bad
        response = client.post(url, data)
        assert response.status_code == 200, "the form is shown again with its errors"
        assert "description" in response.context["adminform"].form.errors
    discovery.refresh_from_db()
    assert discovery.description == "fine"


@pytest.mark.django_db
def test_retrying_every_matching_discovery_is_sent_to_the_queue_list(client, root):
    """'Select all' with the discovery list's retry changes nothing and points to the queue
    list, which confirms before a large retry."""
    from syncq.models import SyncQueueItem, SyncStatus

    discoveries = [queue_item_exceeded(description=f"stuck {n}").discovery for n in range(3)]
    client.force_login(root)

    response = client.post(
        "/admin/discoveries/discovery/",
        {
            "action": "retry_sync",
            "index": 0,
            "select_across": 1,
            "_selected_action": [discoveries[0].id],
        },
        follow=True,
    )

    assert "Nothing changed: this action retries at most" in response.content.decode()
    assert set(SyncQueueItem.objects.values_list("sync_status", flat=True)) == {
        SyncStatus.MAX_RETRIES_EXCEEDED
    }


# --- waiting, conflict and being deleted ------------------------------------------------------


def _vh_ids(path) -> set[int]:
    with sqlite3.connect(path) as vh:
        ids = {row[0] for row in vh.execute("SELECT id FROM discoveries")}
    vh.close()
    return ids


@WITH_HAVEN
def test_list_says_what_waits_conflicts_or_is_being_deleted(
    root, sample_haven_db, django_assert_max_num_queries
):
    """The sync state column names a waiting discovery's missing place, a conflict and a
    discovery being deleted, each linked to its queue item, in the list's bounded queries;
    the "Being deleted" filter shows the last only."""
    waiting = queue_item_waiting()
    conflict = queue_item_in_conflict(sample_haven_db, description="in conflict")
    deleting = queue_item_synced_to_vh(description="to delete")
    assert discovery_delete(discovery_id=deleting.discovery_id) == "queued"
    client = _client(root)
    with django_assert_max_num_queries(8):
        html = client.get(CHANGELIST).content.decode()
    assert "Waiting for its place in VH" in html
    assert "system &#x27;ORACLE ZETA&#x27;" in html
    assert "Conflict with the Control Room" in html and "choose a version" in html
    assert "Being deleted" in html and "removed from the Control Room first" in html
    for item in (waiting, conflict, deleting):
        assert reverse("admin:syncq_syncqueueitem_change", args=[item.pk]) in html
    response = client.get(CHANGELIST, {"sync_state": "deleting"})
    assert _shown_ids(response) == {deleting.discovery_id}


@WITH_HAVEN
def test_deleting_a_synced_discovery_names_its_vh_row_then_removes_it_through_the_queue(
    root, sample_haven_db
):
    """The delete page names the VH row that will leave the Control Room's map; confirming
    queues the removal (the discovery stays until then), and the next batch removes the row,
    then the discovery."""
    item = queue_item_synced_to_vh()
    discovery, haven_id = item.discovery, item.haven_discovery_id
    url = reverse("admin:discoveries_discovery_delete", args=[discovery.pk])
    client = _client(root)
    page = client.get(url).content.decode()
    assert f"VH row #{haven_id} in system Oculi will be removed from the Control Room" in page
    response = client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert (
        f"Discovery #{discovery.pk} is queued for deletion: the sync removes VH row "
        f"#{haven_id} from the Control Room first, then deletes the discovery."
        in _messages(response)
    )
    assert Discovery.objects.filter(pk=discovery.pk).exists()
    assert haven_id in _vh_ids(sample_haven_db)
    action = OperatorAction.objects.get(action="delete")
    assert (action.source, action.actor) == ("admin", root)
    assert sync_batch().deleted == 1
    assert haven_id not in _vh_ids(sample_haven_db)
    assert not Discovery.objects.filter(pk=discovery.pk).exists()


@WITH_HAVEN
def test_deleting_a_discovery_never_sent_to_vh_is_immediate(root, sample_haven_db):
    """A discovery whose item was never tried has no VH row: the page says so and it goes at
    once."""
    before = _vh_ids(sample_haven_db)
    discovery = discovery_make(description="never sent")
    url = reverse("admin:discoveries_discovery_delete", args=[discovery.pk])
    client = _client(root)
    assert "keeper.db knows no VH row of it" in client.get(url).content.decode()
    response = client.post(url, {"post": "yes"})
    assert f"Discovery #{discovery.pk} was deleted at once" in " ".join(_messages(response))
    assert not Discovery.objects.filter(pk=discovery.pk).exists()
    assert sync_batch().claimed == 0
    assert _vh_ids(sample_haven_db) == before


@WITH_HAVEN
def test_delete_selected_lists_the_vh_rows_and_says_what_went_at_once(root, sample_haven_db):
    """ "Delete selected" goes through the delete service: its confirmation lists the VH rows
    to be removed, then the never-sent discovery goes at once and the synced one is queued
    until the batch removes its row."""
    item = queue_item_synced_to_vh()
    fresh = discovery_make(description="never sent")
    client = _client(root)
    picked = {"action": "delete_selected", "_selected_action": [item.discovery_id, fresh.pk]}
    page = client.post(CHANGELIST, picked)
    assert page.status_code == 200
    html = page.content.decode()
    assert (
        f"VH row #{item.haven_discovery_id} in system Oculi will be removed from the Control "
        "Room" in html
    )
    assert f"Discovery #{fresh.pk}" not in html.split('id="vh-removals"')[1].split("</ul>")[0]
    response = client.post(CHANGELIST, {**picked, "post": "yes"}, follow=True)
    texts = [str(m) for m in response.context["messages"]]
    assert "Deleted 1 discovery at once (no row in the Control Room)." in texts
    assert (
        f"Queued 1 discovery for deletion: the sync removes VH row #{item.haven_discovery_id} "
        "from the Control Room first, then deletes it." in texts
    )
    assert not Discovery.objects.filter(pk=fresh.pk).exists()
    assert Discovery.objects.filter(pk=item.discovery_id).exists()
    assert sync_batch().deleted == 1
    assert item.haven_discovery_id not in _vh_ids(sample_haven_db)
    assert not Discovery.objects.filter(pk=item.discovery_id).exists()


@WITH_HAVEN
def test_editing_a_discovery_being_deleted_is_refused_with_a_message(root, sample_haven_db):
    """Once queued for deletion a discovery takes no edit: the save is refused with a message
    saying why, nothing is stored, and the retry button is gone."""
    item = queue_item_synced_to_vh()
    discovery = item.discovery
    client = _client(root)
    page = client.get(_change_url(discovery))
    assert discovery_delete(discovery_id=discovery.pk) == "queued"
    response = client.post(_change_url(discovery), _form_data(page, description="Too late."))
    assert response.status_code == 302
    (error,) = _messages(response)
    assert error.startswith(f"Nothing was saved: discovery #{discovery.pk} is being deleted")
    assert Discovery.objects.get(pk=discovery.pk).description == discovery.description
    assert not OperatorAction.objects.filter(action="edit").exists()
    assert "Save and retry sync" not in client.get(_change_url(discovery)).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("count", ["٣", "３", "³", "1_000", "+ 3"], ids=repr)
def test_counts_in_other_digits_are_refused_on_the_form(root, no_haven, count):
    """Pattern matches and mystery tier take ASCII digits only, as every door reads numbers;
    "٣" is not read as 3, and nothing is saved."""
    discovery = discovery_make()
    before = (discovery.pattern_matches, discovery.mystery_tier)
    client = _client(root)
    page = client.get(_change_url(discovery))
    for field in ("pattern_matches", "mystery_tier"):
        response = client.post(_change_url(discovery), _form_data(page, **{field: count}))
        assert response.status_code == 200
        assert "Enter a whole number." in response.content.decode()
    stored = Discovery.objects.get(pk=discovery.pk)
    assert (stored.pattern_matches, stored.mystery_tier) == before


@pytest.mark.django_db
def test_counts_in_ascii_digits_still_save(root, no_haven):
    """ "3" is saved as 3."""
    discovery = discovery_make()
    client = _client(root)
    page = client.get(_change_url(discovery))
    client.post(_change_url(discovery), _form_data(page, mystery_tier="3"))
    assert Discovery.objects.get(pk=discovery.pk).mystery_tier == 3
