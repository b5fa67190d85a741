"""VH-Database.db shows the truth: discoveries wait for their place, edits and deletes reach the
one VH row through the queue, and a row the Control Room changed is never overwritten unasked.
Run on both real fixtures: the older sample and the Control Room's current schema with its
CHECK on rows without a system."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from discoveries.haven.writer import haven_discovery_write
from discoveries.models import Discovery
from syncq.errors import DiscoveryBeingDeleted, QueueItemNotInConflict
from syncq.models import Operation, SyncAttempt, SyncQueueItem, SyncStatus
from syncq.services import (
    discovery_delete,
    discovery_update,
    queue_item_conflict_resolve,
    queue_items_retry,
    queue_items_write_unplaced,
    sync_batch,
)
from tests.factories import discovery_make
from tests.vh_support import BOTH_FILES, PLACED, WITH_HAVEN, vh_count, vh_query, vh_row

UNPLACED = {"system_name": "ORACLE ZETA", "location": "Zeta Prime", "location_type": "planet"}


def _item(discovery: Discovery) -> SyncQueueItem:
    return SyncQueueItem.objects.get(discovery_id=discovery.id)


def _system_add(path: Path, name: str, planet: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO systems (id, name, x, y, z, region) VALUES (?, ?, 0, 0, 0, ?)",
            ["SYS_NEW_1", name, "Euclid"],
        )
        conn.execute("INSERT INTO planets (system_id, name) VALUES (?, ?)", ["SYS_NEW_1", planet])
    conn.close()


def _synced(vh_path: Path, **fields) -> tuple[Discovery, int]:
    discovery = discovery_make(**{**PLACED, **fields})
    report = sync_batch()
    assert report.synced == 1, report
    item = _item(discovery)
    assert item.sync_status == SyncStatus.SYNCED
    return discovery, item.haven_discovery_id


# --- waiting for a place ------------------------------------------------------------------------


@WITH_HAVEN
@BOTH_FILES
def test_a_discovery_whose_system_is_not_in_vh_waits_without_a_row_or_an_attempt(
    vh_fixture, request
):
    """No row is written, no attempt spent; the item says which name is missing."""
    path = request.getfixturevalue(vh_fixture)
    before = vh_count(path)
    discovery = discovery_make(**UNPLACED)
    report = sync_batch()
    item = _item(discovery)
    assert report.waiting == 1 and report.synced == 0
    assert item.sync_status == SyncStatus.WAITING
    assert item.sync_attempts == 0
    assert "'ORACLE ZETA'" in item.sync_error and "Control Room" in item.sync_error
    assert item.metadata["waiting"]["reason"]
    assert vh_count(path) == before
    assert SyncAttempt.objects.get(queue_item=item).outcome == "waiting"


@WITH_HAVEN
@BOTH_FILES
def test_waiting_discovery_syncs_by_itself_once_its_system_is_added(vh_fixture, request):
    """The next batch after the Control Room adds the system writes the one row."""
    path = request.getfixturevalue(vh_fixture)
    before = vh_count(path)
    discovery = discovery_make(**UNPLACED)
    sync_batch()
    idle = sync_batch()
    assert (idle.claimed, idle.woken) == (0, 0), "an unchanged catalog wakes nothing"
    _system_add(path, "ORACLE ZETA", "Zeta Prime")
    report = sync_batch()
    item = _item(discovery)
    assert (report.woken, report.synced) == (1, 1)
    assert item.sync_status == SyncStatus.SYNCED
    assert "waiting" not in item.metadata
    assert vh_count(path) == before + 1
    row = vh_row(path, item.haven_discovery_id)
    assert row["system_id"] == "SYS_NEW_1" and row["planet_id"] is not None


@WITH_HAVEN
def test_correcting_a_waiting_discovery_syncs_it(sample_haven_db):
    """An edit that names a place VH has makes the waiting item pending, and it syncs."""
    discovery = discovery_make(**UNPLACED)
    sync_batch()
    discovery_update(discovery_id=discovery.id, changes=PLACED)
    assert _item(discovery).sync_status == SyncStatus.PENDING
    assert sync_batch().synced == 1
    row = vh_row(sample_haven_db, _item(discovery).haven_discovery_id)
    assert (row["system_id"], row["planet_id"]) == ("SYS_EUCLID_F04784DD", 19)


@WITH_HAVEN
def test_writing_without_a_place_is_refused_where_the_file_checks_for_it(
    control_room_schema_haven_db,
):
    """The Control Room's schema refuses the row: the action says so, quoting its CHECK."""
    discovery = discovery_make(**UNPLACED)
    sync_batch()
    item = _item(discovery)
    report = queue_items_write_unplaced(ids=[item.id])
    assert report.queued == []
    assert "CHECK" in report.refused[item.id] and "system_id IS NOT NULL" in report.refused[item.id]
    assert _item(discovery).sync_status == SyncStatus.WAITING
    assert sync_batch().claimed == 0


@WITH_HAVEN
def test_writing_without_a_place_is_allowed_where_the_file_takes_it(sample_haven_db):
    """On the older file the operator's action writes the row with no place, once."""
    before = vh_count(sample_haven_db)
    discovery = discovery_make(**UNPLACED)
    sync_batch()
    report = queue_items_write_unplaced(ids=[_item(discovery).id])
    assert report.queued == [_item(discovery).id]
    assert sync_batch().synced == 1
    item = _item(discovery)
    assert item.metadata["location_resolved"] is False
    row = vh_row(sample_haven_db, item.haven_discovery_id)
    assert row["system_id"] is None
    assert vh_count(sample_haven_db) == before + 1


@WITH_HAVEN
def test_the_setting_keeps_writing_unplaced_rows_where_the_file_takes_them(
    sample_haven_db, settings
):
    """SYNC_WRITE_UNPLACED on an older file writes as before."""
    settings.SYNC_WRITE_UNPLACED = True
    discovery = discovery_make(**UNPLACED)
    assert sync_batch().synced == 1
    assert vh_row(sample_haven_db, _item(discovery).haven_discovery_id)["system_id"] is None


@WITH_HAVEN
def test_the_setting_still_waits_where_the_file_refuses(control_room_schema_haven_db, settings):
    """SYNC_WRITE_UNPLACED on the Control Room's schema: the file refuses, so the item waits
    and says why, instead of failing ten times."""
    settings.SYNC_WRITE_UNPLACED = True
    before = vh_count(control_room_schema_haven_db)
    discovery = discovery_make(**UNPLACED)
    report = sync_batch()
    item = _item(discovery)
    assert report.waiting == 1 and item.sync_status == SyncStatus.WAITING
    assert "refuses" in item.sync_error and item.sync_attempts == 0
    assert vh_count(control_room_schema_haven_db) == before


@WITH_HAVEN
def test_an_operator_retry_of_a_waiting_item_looks_again(sample_haven_db):
    """Retrying a waiting item is allowed; it waits again if nothing changed."""
    discovery = discovery_make(**UNPLACED)
    sync_batch()
    report = queue_items_retry(ids=[_item(discovery).id])
    assert report.reset == [_item(discovery).id]
    assert sync_batch().waiting == 1


# --- edits ------------------------------------------------------------------------------------


@WITH_HAVEN
@BOTH_FILES
def test_an_edit_updates_the_one_vh_row(vh_fixture, request):
    """Editing a synced discovery rewrites its VH row in place: same id, no second row."""
    path = request.getfixturevalue(vh_fixture)
    discovery, haven_id = _synced(path)
    count = vh_count(path)
    discovery_update(
        discovery_id=discovery.id,
        changes={"description": "A tower, taller than we thought.", "location": "Krospen L49"},
    )
    item = _item(discovery)
    assert (item.sync_status, item.operation) == (SyncStatus.PENDING, Operation.WRITE)
    assert sync_batch().synced == 1
    item = _item(discovery)
    assert item.haven_discovery_id == haven_id and item.metadata["how"] == "updated"
    row = vh_row(path, haven_id)
    assert row["description"] == "A tower, taller than we thought."
    assert (row["location_name"], row["planet_id"]) == ("Krospen L49", 20)
    assert vh_count(path) == count
    assert vh_query(
        path, "SELECT how FROM keeper_sync_ledger WHERE haven_discovery_id = ?", [haven_id]
    )
    assert sync_batch().claimed == 0


@WITH_HAVEN
def test_an_edit_that_changes_nothing_queues_nothing(sample_haven_db):
    """Saving the same values leaves the synced item alone."""
    discovery, _ = _synced(sample_haven_db)
    discovery_update(discovery_id=discovery.id, changes={"description": discovery.description})
    assert _item(discovery).sync_status == SyncStatus.SYNCED


@WITH_HAVEN
def test_an_update_already_in_vh_when_the_worker_died_is_not_applied_twice(sample_haven_db):
    """VH committed the update but keeper.db never heard: the next attempt finds VH already
    holds exactly this row and only records it."""
    discovery, haven_id = _synced(sample_haven_db)
    discovery_update(discovery_id=discovery.id, changes={"description": "Second thoughts."})
    discovery.refresh_from_db()
    assert haven_discovery_write(discovery=discovery).how == "updated"
    assert sync_batch().synced == 1
    assert _item(discovery).metadata["how"] == "ledger"
    assert vh_row(sample_haven_db, haven_id)["description"] == "Second thoughts."


# --- the Control Room changed our row ---------------------------------------------------------


def _their_change(path: Path, haven_id: int, description: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE discoveries SET description = ? WHERE id = ?", [description, haven_id])
    conn.close()


@WITH_HAVEN
@BOTH_FILES
def test_an_edit_of_a_row_the_control_room_changed_is_a_conflict(vh_fixture, request):
    """Our edit does not overwrite theirs; the item shows both versions."""
    path = request.getfixturevalue(vh_fixture)
    discovery, haven_id = _synced(path)
    _their_change(path, haven_id, "Curated by the Control Room.")
    discovery_update(discovery_id=discovery.id, changes={"description": "Our correction."})
    report = sync_batch()
    item = _item(discovery)
    assert report.conflict == 1 and item.sync_status == SyncStatus.CONFLICT
    conflict = item.metadata["conflict"]
    assert conflict["ours"]["description"] == "Our correction."
    assert conflict["theirs"]["description"] == "Curated by the Control Room."
    assert vh_row(path, haven_id)["description"] == "Curated by the Control Room."
    assert queue_items_retry(ids=[item.id]).refused == {item.id: "conflict"}


@WITH_HAVEN
def test_choosing_our_version_overwrites_theirs(sample_haven_db):
    """keep=keeper writes our edit over the version the operator saw."""
    discovery, haven_id = _synced(sample_haven_db)
    _their_change(sample_haven_db, haven_id, "Theirs.")
    discovery_update(discovery_id=discovery.id, changes={"description": "Ours."})
    sync_batch()
    queue_item_conflict_resolve(item_id=_item(discovery).id, keep="keeper")
    assert sync_batch().synced == 1
    assert vh_row(sample_haven_db, haven_id)["description"] == "Ours."
    assert _item(discovery).sync_status == SyncStatus.SYNCED


@WITH_HAVEN
def test_choosing_their_version_keeps_it_and_later_edits_apply(sample_haven_db):
    """keep=control_room leaves their row; it is the new baseline, so a later edit of ours
    updates it without another conflict."""
    discovery, haven_id = _synced(sample_haven_db)
    _their_change(sample_haven_db, haven_id, "Theirs.")
    discovery_update(discovery_id=discovery.id, changes={"description": "Ours."})
    sync_batch()
    queue_item_conflict_resolve(item_id=_item(discovery).id, keep="control_room")
    assert sync_batch().synced == 1
    assert _item(discovery).metadata["how"] == "kept"
    assert vh_row(sample_haven_db, haven_id)["description"] == "Theirs."
    discovery_update(discovery_id=discovery.id, changes={"description": "Ours, later."})
    assert sync_batch().synced == 1
    assert vh_row(sample_haven_db, haven_id)["description"] == "Ours, later."


@WITH_HAVEN
def test_a_choice_applies_only_to_the_version_the_operator_saw(sample_haven_db):
    """If the Control Room changes the row again after the conflict was shown, our version is
    not forced over the new one: the item is in conflict again, with the newest version."""
    discovery, haven_id = _synced(sample_haven_db)
    _their_change(sample_haven_db, haven_id, "Theirs.")
    discovery_update(discovery_id=discovery.id, changes={"description": "Ours."})
    sync_batch()
    queue_item_conflict_resolve(item_id=_item(discovery).id, keep="keeper")
    _their_change(sample_haven_db, haven_id, "Theirs, again.")
    assert sync_batch().conflict == 1
    assert _item(discovery).metadata["conflict"]["theirs"]["description"] == "Theirs, again."
    assert vh_row(sample_haven_db, haven_id)["description"] == "Theirs, again."


@WITH_HAVEN
def test_resolving_an_item_not_in_conflict_is_refused(sample_haven_db):
    """The choice needs a conflict to apply to."""
    discovery, _ = _synced(sample_haven_db)
    with pytest.raises(QueueItemNotInConflict):
        queue_item_conflict_resolve(item_id=_item(discovery).id, keep="keeper")


# --- deletes --------------------------------------------------------------------------------


@WITH_HAVEN
@BOTH_FILES
def test_deleting_a_synced_discovery_removes_its_vh_row_then_the_discovery(vh_fixture, request):
    """The delete goes through the queue: the VH row goes, then the keeper discovery."""
    path = request.getfixturevalue(vh_fixture)
    discovery, haven_id = _synced(path)
    count = vh_count(path)
    assert discovery_delete(discovery_id=discovery.id) == "queued"
    assert Discovery.objects.filter(id=discovery.id).exists()
    with pytest.raises(DiscoveryBeingDeleted):
        discovery_update(discovery_id=discovery.id, changes={"description": "Too late."})
    report = sync_batch()
    assert report.deleted == 1
    assert vh_row(path, haven_id) is None and vh_count(path) == count - 1
    assert not Discovery.objects.filter(id=discovery.id).exists()
    assert not SyncQueueItem.objects.filter(discovery_id=discovery.id).exists()
    ledger = vh_query(
        path, "SELECT how FROM keeper_sync_ledger WHERE haven_discovery_id = ?", [haven_id]
    )
    assert ledger == [("deleted",)]


@WITH_HAVEN
def test_deleting_a_discovery_never_sent_to_vh_is_immediate(sample_haven_db):
    """A pending item never tried has no row anywhere: the discovery goes at once."""
    count = vh_count(sample_haven_db)
    discovery = discovery_make(**PLACED)
    assert discovery_delete(discovery_id=discovery.id) == "deleted"
    assert not Discovery.objects.filter(id=discovery.id).exists()
    assert sync_batch().claimed == 0
    assert vh_count(sample_haven_db) == count


@WITH_HAVEN
def test_a_delete_already_done_in_vh_when_the_worker_died_finishes_once(sample_haven_db):
    """VH deleted the row but keeper.db never heard: the next attempt finds the ledger's mark
    and only deletes the discovery."""
    from discoveries.haven.writer import haven_discovery_delete

    discovery, haven_id = _synced(sample_haven_db)
    count = vh_count(sample_haven_db)
    discovery_delete(discovery_id=discovery.id)
    assert haven_discovery_delete(discovery=discovery).how == "deleted"
    assert sync_batch().deleted == 1
    assert vh_count(sample_haven_db) == count - 1
    assert not Discovery.objects.filter(id=discovery.id).exists()


@WITH_HAVEN
def test_deleting_a_row_the_control_room_changed_is_a_conflict_and_can_be_cancelled(
    sample_haven_db,
):
    """Their changed row is not deleted unasked; keeping their version cancels the delete."""
    discovery, haven_id = _synced(sample_haven_db)
    _their_change(sample_haven_db, haven_id, "Theirs.")
    discovery_delete(discovery_id=discovery.id)
    assert sync_batch().conflict == 1
    item = _item(discovery)
    assert item.metadata["conflict"]["operation"] == "delete"
    assert item.metadata["conflict"]["ours"] is None
    queue_item_conflict_resolve(item_id=item.id, keep="control_room")
    assert sync_batch().synced == 1
    assert vh_row(sample_haven_db, haven_id)["description"] == "Theirs."
    item = _item(discovery)
    assert (item.sync_status, item.operation) == (SyncStatus.SYNCED, Operation.WRITE)


@WITH_HAVEN
def test_deleting_a_changed_row_anyway_removes_it(sample_haven_db):
    """keep=keeper on a delete conflict deletes the version the operator saw."""
    discovery, haven_id = _synced(sample_haven_db)
    _their_change(sample_haven_db, haven_id, "Theirs.")
    discovery_delete(discovery_id=discovery.id)
    sync_batch()
    queue_item_conflict_resolve(item_id=_item(discovery).id, keep="keeper")
    assert sync_batch().deleted == 1
    assert vh_row(sample_haven_db, haven_id) is None


# --- while a worker holds the item --------------------------------------------------------------


def _claimed_alone():
    """Claim every due item as a worker would, returning its token and items."""
    from syncq.services import queue_items_claim

    return queue_items_claim(limit=10)


@WITH_HAVEN
def test_an_edit_while_a_worker_holds_the_item_is_applied_after_it_not_beside_it(
    sample_haven_db,
):
    """The edit leaves the worker's lease alone, so no second batch takes the item; the worker's
    outcome sees the edit and queues the item again, which then updates the one row."""
    from syncq.services import BatchReport, _sync_claimed

    discovery = discovery_make(**PLACED, description="v1")
    token, (held,) = _claimed_alone()
    discovery_update(discovery_id=discovery.id, changes={"description": "v2"})
    assert sync_batch().claimed == 0, "no second worker takes a held item"
    report = BatchReport()
    _sync_claimed([held], token, report)
    item = _item(discovery)
    assert report.synced == 0 and item.sync_status == SyncStatus.PENDING
    assert sync_batch().synced == 1
    item = _item(discovery)
    assert item.sync_status == SyncStatus.SYNCED
    assert vh_row(sample_haven_db, item.haven_discovery_id)["description"] == "v2"
    rows = vh_query(sample_haven_db, "SELECT COUNT(*) FROM discoveries WHERE description LIKE 'v_'")
    assert rows == [(1,)]


@WITH_HAVEN
def test_a_delete_while_a_worker_holds_the_item_removes_the_row_it_wrote(sample_haven_db):
    """The worker writes its row, sees the delete asked meanwhile, and the next batch removes
    the row and the discovery: nothing is left on the map."""
    from syncq.services import BatchReport, _sync_claimed

    count = vh_count(sample_haven_db)
    discovery = discovery_make(**PLACED, description="short-lived")
    token, (held,) = _claimed_alone()
    assert discovery_delete(discovery_id=discovery.id) == "queued"
    assert sync_batch().claimed == 0
    _sync_claimed([held], token, BatchReport())
    assert _item(discovery).operation == Operation.DELETE
    assert sync_batch().deleted == 1
    assert not Discovery.objects.filter(id=discovery.id).exists()
    assert vh_count(sample_haven_db) == count


@WITH_HAVEN
def test_keeping_their_version_survives_a_later_edit_of_another_field(sample_haven_db):
    """After the Control Room's description was kept, editing the tags writes the tags and
    leaves their description."""
    discovery, haven_id = _synced(sample_haven_db)
    _their_change(sample_haven_db, haven_id, "Curated.")
    discovery_update(discovery_id=discovery.id, changes={"description": "Ours."})
    sync_batch()
    queue_item_conflict_resolve(item_id=_item(discovery).id, keep="control_room")
    sync_batch()
    discovery_update(discovery_id=discovery.id, changes={"tags": "ruins"})
    assert sync_batch().synced == 1
    row = vh_row(sample_haven_db, haven_id)
    assert (row["description"], row["tags"]) == ("Curated.", "ruins")


@WITH_HAVEN
@BOTH_FILES
def test_an_edit_of_a_row_the_control_room_deleted_is_a_conflict(vh_fixture, request):
    """Our edit does not bring back a row the Control Room deleted; keeping our version writes
    it again (one row), keeping theirs deletes the discovery too."""
    path = request.getfixturevalue(vh_fixture)
    kept, kept_id = _synced(path, description="keep me")
    gone, gone_id = _synced(path, description="let me go")
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM discoveries WHERE id IN (?, ?)", [kept_id, gone_id])
    conn.close()
    count = vh_count(path)
    for discovery in (kept, gone):
        discovery_update(discovery_id=discovery.id, changes={"tags": "edited"})
    assert sync_batch().conflict == 2
    conflict = _item(kept).metadata["conflict"]
    assert conflict["theirs_deleted"] is True and conflict["theirs"] is None
    assert "deleted VH row" in _item(kept).sync_error
    assert vh_count(path) == count
    queue_item_conflict_resolve(item_id=_item(kept).id, keep="keeper")
    queue_item_conflict_resolve(item_id=_item(gone).id, keep="control_room")
    report = sync_batch()
    assert (report.synced, report.deleted) == (1, 1)
    assert vh_count(path) == count + 1
    assert not Discovery.objects.filter(id=gone.id).exists()
    row = vh_row(path, _item(kept).haven_discovery_id)
    assert (row["description"], row["tags"]) == ("keep me", "edited")


@WITH_HAVEN
def test_a_synced_item_remembers_the_hash_of_the_row_it_left(sample_haven_db):
    """The item keeps the row's hash, the same the ledger holds."""
    discovery, haven_id = _synced(sample_haven_db)
    ledger = vh_query(
        sample_haven_db,
        "SELECT row_hash FROM keeper_sync_ledger WHERE haven_discovery_id = ?",
        [haven_id],
    )
    assert _item(discovery).metadata["row_hash"] == ledger[0][0]


# --- what a tester broke once ---------------------------------------------------------------------


def _old_bot_synced(path: Path, *, description: str = "Old bot row.") -> tuple[Discovery, int]:
    """A discovery the old bot wrote into VH itself (no ledger row), its queue item synced to
    that row as the old bot's sync_queue recorded it."""
    from syncq.services import queue_item_succeed, queue_items_claim

    discovery = discovery_make(**PLACED, description=description)
    stamp = discovery.submission_timestamp.strftime("%Y-%m-%d %H:%M:%S")
    with sqlite3.connect(path) as conn:
        haven_id = conn.execute(
            "INSERT INTO discoveries (discovery_type, system_id, planet_id, location_type,"
            " location_name, description, discord_user_id, submission_timestamp)"
            " VALUES (?, 'SYS_EUCLID_F04784DD', 19, 'planet', 'Erren', ?, ?, ?)",
            [discovery.discovery_type, description, discovery.user_id, stamp],
        ).lastrowid
    conn.close()
    token, (held,) = queue_items_claim(limit=10)
    queue_item_succeed(
        item=held, token=token, haven_discovery_id=haven_id, how="linked", unresolved=None
    )
    return discovery, haven_id


@WITH_HAVEN
def test_editing_an_old_bots_row_never_adds_a_second_one(sample_haven_db):
    """Its VH row, known from the old bot's queue row, differs from the edited discovery and
    nobody knows which side changed it: a conflict, then the operator's choice updates that
    row in place."""
    discovery, haven_id = _old_bot_synced(sample_haven_db)
    count = vh_count(sample_haven_db)
    discovery_update(discovery_id=discovery.id, changes={"description": "Corrected in keeper."})
    assert sync_batch().conflict == 1
    queue_item_conflict_resolve(item_id=_item(discovery).id, keep="keeper")
    assert sync_batch().synced == 1
    assert vh_count(sample_haven_db) == count
    assert vh_row(sample_haven_db, haven_id)["description"] == "Corrected in keeper."


@WITH_HAVEN
def test_an_edit_while_held_then_a_failed_attempt_is_due_at_once(sample_haven_db, tmp_path):
    """The worker fails after the edit: the item is pending, attempts 0 and due now, as the
    edit would have left it, not backing off."""
    from syncq.services import BatchReport, _sync_claimed, queue_items_claim

    discovery = discovery_make(**PLACED, description="v1")
    token, (held,) = queue_items_claim(limit=10)
    discovery_update(discovery_id=discovery.id, changes={"description": "v2"})
    moved = tmp_path / "away.db"
    sample_haven_db.rename(moved)
    _sync_claimed([held], token, BatchReport())
    moved.rename(sample_haven_db)
    item = _item(discovery)
    assert (item.sync_status, item.sync_attempts, item.next_retry_after) == ("pending", 0, None)
    assert sync_batch().synced == 1
    assert vh_row(sample_haven_db, _item(discovery).haven_discovery_id)["description"] == "v2"


def _kept(path: Path) -> tuple[Discovery, int]:
    """A discovery whose conflict over its description was settled with the Control Room's
    version ("T"; ours was "O")."""
    discovery, haven_id = _synced(path, description="A")
    _their_change(path, haven_id, "T")
    discovery_update(discovery_id=discovery.id, changes={"description": "O"})
    assert sync_batch().conflict == 1
    queue_item_conflict_resolve(item_id=_item(discovery).id, keep="control_room")
    assert sync_batch().synced == 1
    return discovery, haven_id


@WITH_HAVEN
def test_a_kept_version_lasts_through_a_second_conflict_kept_too(sample_haven_db):
    """Kept twice: a later edit of another column leaves the Control Room's newest value."""
    discovery, haven_id = _kept(sample_haven_db)
    _their_change(sample_haven_db, haven_id, "T2")
    discovery_update(discovery_id=discovery.id, changes={"tags": "one"})
    assert sync_batch().conflict == 1
    queue_item_conflict_resolve(item_id=_item(discovery).id, keep="control_room")
    sync_batch()
    discovery_update(discovery_id=discovery.id, changes={"tags": "two"})
    assert sync_batch().synced == 1
    row = vh_row(sample_haven_db, haven_id)
    assert (row["description"], row["tags"]) == ("T2", "two")


@WITH_HAVEN
def test_editing_back_to_the_value_once_kept_over_is_written(sample_haven_db):
    """After the kept description is edited ("X") and then edited back ("O"), VH says "O"."""
    discovery, haven_id = _kept(sample_haven_db)
    for text in ("X", "O"):
        discovery_update(discovery_id=discovery.id, changes={"description": text})
        assert sync_batch().synced == 1
        assert vh_row(sample_haven_db, haven_id)["description"] == text


@WITH_HAVEN
def test_keeping_their_version_over_a_delete_lasts(sample_haven_db):
    """A delete cancelled to keep the Control Room's description: a later edit of the tags
    leaves that description."""
    discovery, haven_id = _synced(sample_haven_db, description="A")
    _their_change(sample_haven_db, haven_id, "T")
    discovery_delete(discovery_id=discovery.id)
    assert sync_batch().conflict == 1
    queue_item_conflict_resolve(item_id=_item(discovery).id, keep="control_room")
    sync_batch()
    discovery_update(discovery_id=discovery.id, changes={"tags": "ruins"})
    assert sync_batch().synced == 1
    row = vh_row(sample_haven_db, haven_id)
    assert (row["description"], row["tags"]) == ("T", "ruins")


@WITH_HAVEN
def test_changing_the_type_empties_the_old_types_columns(sample_haven_db):
    """A ruin edited into bones keeps no structure_type in VH."""
    discovery, haven_id = _synced(sample_haven_db)
    assert vh_row(sample_haven_db, haven_id)["structure_type"] == "Tower"
    discovery_update(
        discovery_id=discovery.id,
        changes={"discovery_type": "🦴", "metadata": {"species_type": "Raptor"}},
    )
    assert sync_batch().synced == 1
    row = vh_row(sample_haven_db, haven_id)
    assert (row["discovery_type"], row["species_type"], row["structure_type"]) == (
        "🦴",
        "Raptor",
        None,
    )
