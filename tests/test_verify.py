"""``manage.py sync_verify [--repair]``: a Control Room file restored from an older backup (rows
lost, or rows put back at an older version of ours), a row the Control Room changed and a
keeper discovery deleted behind the sync's back are found; the repair brings each lost or
outdated discovery back exactly once; an old bot's rows its queue called synced are linked,
not reported missing; the run shows on the schedule, in ``/sync/statistics`` and on the
dashboard. Run on both real fixtures."""

from __future__ import annotations

import shutil
import sqlite3
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_q.models import Schedule

from discoveries.haven.connection import haven_close
from discoveries.models import Discovery
from syncq import verify as verify_module
from syncq.models import OperatorAction, SyncQueueItem, SyncStatus, SyncVerifyRun
from syncq.schedules import VERIFY_FUNC, VERIFY_NAME, schedules_register
from syncq.services import (
    discovery_update,
    queue_item_conflict_resolve,
    queue_prune,
    sync_batch,
)
from syncq.tasks import verify_daily
from syncq.verify import sync_verify
from tests.conftest import manage_env, run_manage
from tests.factories import discovery_make
from tests.test_adoption import (
    TINY_OTHER_USER,
    TINY_USER,
    WRITE_UNPLACED,
    demo_haven_with_old_bot_row,
    tiny_keeper,
)
from tests.vh_support import BOTH_FILES, PLACED, WITH_HAVEN, vh_count, vh_query


def _synced(count: int, *, label: str) -> list[Discovery]:
    """``count`` discoveries submitted and synced into VH, each with its own description."""
    made = [discovery_make(**PLACED, description=f"{label} {n}") for n in range(count)]
    report = sync_batch(batch_size=100)
    assert report.synced == count, report
    return made


def _backup(path: Path) -> Path:
    """A copy of the VH file as it stands, taken as an operator would: nothing holds it open
    and its WAL is folded in first."""
    haven_close()
    vh_query(path, "PRAGMA wal_checkpoint(TRUNCATE)")
    backup = path.with_name("VH-Database.backup.db")
    shutil.copyfile(path, backup)
    return backup


def _restore(path: Path, backup: Path) -> None:
    """Put the backup back over the VH file, as an operator restoring it would."""
    haven_close()
    vh_query(path, "PRAGMA wal_checkpoint(TRUNCATE)")
    for side in ("-wal", "-shm"):
        Path(f"{path}{side}").unlink(missing_ok=True)
    shutil.copyfile(backup, path)


def _control_room_adds_a_row(path: Path) -> int:
    """The Control Room inserts a row of its own (a placed one, which either schema takes);
    SQLite numbers it after the restored file's last id: one our lost rows had."""
    vh_query(
        path,
        "INSERT INTO discoveries (discovery_type, system_id, planet_id, location_type,"
        " location_name, description) SELECT discovery_type, system_id, planet_id,"
        " location_type, location_name, 'entered in the Control Room' FROM discoveries"
        " WHERE system_id IS NOT NULL ORDER BY id LIMIT 1",
    )
    return vh_query(path, "SELECT MAX(id) FROM discoveries")[0][0]


def _duplicates(path: Path) -> list[tuple]:
    return vh_query(
        path,
        "SELECT discord_user_id, description, submission_timestamp, COUNT(*) FROM discoveries"
        " GROUP BY 1, 2, 3 HAVING COUNT(*) > 1",
    )


def _ids(entries: list[dict]) -> list[int]:
    return [entry["discovery_id"] for entry in entries]


# --- a restored backup ------------------------------------------------------------------------


@WITH_HAVEN
@BOTH_FILES
@pytest.mark.parametrize("kept", [3, 0], ids=["backup-with-ledger", "backup-before-any-sync"])
def test_a_restored_backup_is_found_and_repaired_exactly_once(vh_fixture, kept, request):
    """After a restore, exactly the discoveries synced since the backup are missing, even with
    their old VH ids reused by a Control Room row; --repair and one sync bring each back once,
    and a second check finds nothing."""
    path = request.getfixturevalue(vh_fixture)
    if kept:
        _synced(kept, label="kept")
    backup = _backup(path)
    lost = _synced(2, label="lost")
    lost_vh_ids = sorted(
        SyncQueueItem.objects.filter(discovery__in=lost).values_list(
            "haven_discovery_id", flat=True
        )
    )
    _restore(path, backup)
    reused = _control_room_adds_a_row(path)
    assert reused in lost_vh_ids, "SQLite numbers the Control Room's row with a lost row's id"
    restored_count = vh_count(path)

    run = sync_verify(repair=False)

    assert run.error is None and run.finished_at is not None
    assert run.checked == kept + 2
    assert _ids(run.missing_ids) == sorted(d.id for d in lost)
    assert [e["haven_discovery_id"] for e in run.missing_ids] == lost_vh_ids
    assert (run.missing, run.changed, run.orphaned, run.repaired) == (2, 0, 0, 0)
    assert SyncQueueItem.objects.filter(sync_status=SyncStatus.SYNCED).count() == kept + 2

    repair = sync_verify(repair=True)

    assert (repair.missing, repair.repaired) == (2, 2)
    pending = SyncQueueItem.objects.filter(sync_status=SyncStatus.PENDING)
    assert sorted(pending.values_list("discovery_id", flat=True)) == sorted(d.id for d in lost)
    assert set(pending.values_list("sync_attempts", "operation")) == {(0, "write")}
    action = OperatorAction.objects.get(action="verify_repair")
    assert action.items_changed == 2
    assert action.detail["discovery_ids"] == sorted(d.id for d in lost)

    assert sync_batch().synced == 2
    assert sync_batch().claimed == 0
    assert vh_count(path) == restored_count + 2
    assert _duplicates(path) == []
    for discovery in lost:
        item = SyncQueueItem.objects.get(discovery=discovery)
        assert item.sync_status == SyncStatus.SYNCED and item.haven_discovery_id != reused
        rows = vh_query(
            path,
            "SELECT COUNT(*) FROM discoveries WHERE description = ?",
            [discovery.description],
        )
        assert rows == [(1,)]
    again = sync_verify(repair=True)
    assert (again.checked, again.missing, again.changed, again.orphaned, again.repaired) == (
        kept + 2,
        0,
        0,
        0,
        0,
    )


@WITH_HAVEN
def test_a_discovery_whose_item_was_pruned_is_checked_and_repaired(sample_haven_db):
    """A synced item pruned away still counts as in VH: lost to a restore, it is reported,
    and --repair gives the discovery a new item that writes it once."""
    backup = _backup(sample_haven_db)
    (lost,) = _synced(1, label="pruned")
    assert queue_prune(older_than_days=0) == 1
    _restore(sample_haven_db, backup)

    run = sync_verify(repair=True)

    assert (run.checked, _ids(run.missing_ids), run.repaired) == (1, [lost.id], 1)
    assert sync_batch().synced == 1
    assert vh_query(
        sample_haven_db, "SELECT COUNT(*) FROM discoveries WHERE description = ?", ["pruned 0"]
    ) == [(1,)]
    assert sync_verify(repair=False).missing == 0


# --- the Control Room's changes and deletes behind our back -------------------------------------


@WITH_HAVEN
@BOTH_FILES
def test_a_row_the_control_room_changed_is_reported_changed(vh_fixture, request):
    """A row edited in VH is reported changed (keeper id and VH id), nothing else; --repair
    leaves it alone."""
    path = request.getfixturevalue(vh_fixture)
    first, second = _synced(2, label="row")
    vh_id = SyncQueueItem.objects.get(discovery=second).haven_discovery_id
    vh_query(path, "UPDATE discoveries SET significance = 'rewritten' WHERE id = ?", [vh_id])

    run = sync_verify(repair=True)

    assert run.changed_ids == [{"discovery_id": second.id, "haven_discovery_id": vh_id}]
    assert (run.checked, run.changed, run.missing, run.orphaned, run.repaired) == (2, 1, 0, 0, 0)
    assert vh_query(path, "SELECT significance FROM discoveries WHERE id = ?", [vh_id]) == [
        ("rewritten",)
    ]


@WITH_HAVEN
@BOTH_FILES
def test_a_row_deleted_in_the_control_room_is_missing(vh_fixture, request):
    """A row of ours deleted in VH (its ledger row left behind) is missing; the repair queues
    it, the sync holds it as a conflict (deleting was the Control Room's call), and keeping
    keeper's version writes it again once."""
    path = request.getfixturevalue(vh_fixture)
    (gone,) = _synced(1, label="deleted there")
    vh_id = SyncQueueItem.objects.get(discovery=gone).haven_discovery_id
    vh_query(path, "DELETE FROM discoveries WHERE id = ?", [vh_id])

    run = sync_verify(repair=True)

    assert run.missing_ids == [{"discovery_id": gone.id, "haven_discovery_id": vh_id}]
    assert sync_batch().conflict == 1
    item = SyncQueueItem.objects.get(discovery=gone)
    assert item.metadata["conflict"]["theirs_deleted"] is True
    queue_item_conflict_resolve(item_id=item.id, keep="keeper")
    assert sync_batch().synced == 1
    assert vh_query(
        path, "SELECT COUNT(*) FROM discoveries WHERE description = ?", ["deleted there 0"]
    ) == [(1,)]


@WITH_HAVEN
@BOTH_FILES
def test_a_keeper_discovery_deleted_behind_the_sync_is_orphaned(vh_fixture, request):
    """A discovery deleted from keeper.db without the services leaves its VH row: reported
    orphaned by its keeper id and VH id, not missing, and not touched by --repair."""
    path = request.getfixturevalue(vh_fixture)
    kept, deleted = _synced(2, label="orphan")
    vh_id = SyncQueueItem.objects.get(discovery=deleted).haven_discovery_id
    Discovery.objects.filter(id=deleted.id).delete()
    count = vh_count(path)

    run = sync_verify(repair=True)

    assert run.orphaned_ids == [{"discovery_id": deleted.id, "haven_discovery_id": vh_id}]
    assert (run.checked, run.orphaned, run.missing, run.changed, run.repaired) == (1, 1, 0, 0, 0)
    assert vh_count(path) == count
    assert Discovery.objects.filter(id=kept.id).exists()


@WITH_HAVEN
def test_a_ledger_row_without_a_hash_gets_its_baseline_once(control_room_schema_haven_db):
    """A ledger row from before hashes were kept is not called changed: its row's current hash
    is recorded as its baseline, once; a change after that is reported."""
    path = control_room_schema_haven_db
    (discovery,) = _synced(1, label="old ledger")
    vh_id = SyncQueueItem.objects.get(discovery=discovery).haven_discovery_id
    vh_query(
        path, "UPDATE discoveries SET condition = 'edited before hashes' WHERE id = ?", [vh_id]
    )
    vh_query(path, "UPDATE keeper_sync_ledger SET row_hash = NULL")

    first = sync_verify(repair=False)
    assert (first.baseline_recorded, first.changed) == (1, 0)
    assert vh_query(path, "SELECT COUNT(*) FROM keeper_sync_ledger WHERE row_hash IS NULL") == [
        (0,)
    ]
    assert sync_verify(repair=False).baseline_recorded == 0

    vh_query(path, "UPDATE discoveries SET condition = 'edited after' WHERE id = ?", [vh_id])
    assert sync_verify(repair=False).changed == 1


# --- a backup put back over later edits ---------------------------------------------------------


def _outdated(path: Path, *, label: str) -> tuple[Discovery, int, Path]:
    """A discovery synced as "<label> v1", VH backed up, edited to "<label> v2" and synced
    (updated in place), then the backup restored: VH holds v1 with the ledger row that went
    with it. Returns the discovery, its VH id and the backup."""
    discovery = discovery_make(**PLACED, description=f"{label} v1")
    assert sync_batch().synced == 1
    item = SyncQueueItem.objects.get(discovery=discovery)
    vh_id = item.haven_discovery_id
    v1_hash = item.metadata["row_hash"]
    backup = _backup(path)
    discovery_update(discovery_id=discovery.id, changes={"description": f"{label} v2"})
    assert sync_batch().synced == 1
    item.refresh_from_db()
    assert item.haven_discovery_id == vh_id and item.metadata["row_hash"] != v1_hash
    assert vh_query(
        path, "SELECT how, row_hash FROM keeper_sync_ledger WHERE haven_discovery_id = ?", [vh_id]
    ) == [("updated", item.metadata["row_hash"])]
    _restore(path, backup)
    assert vh_query(path, "SELECT description FROM discoveries WHERE id = ?", [vh_id]) == [
        (f"{label} v1",)
    ]
    return discovery, vh_id, backup


@WITH_HAVEN
@BOTH_FILES
def test_a_backup_restored_over_later_edits_is_outdated_and_repaired_in_place(vh_fixture, request):
    """VH restored to a version of our row older than the last one synced (its ledger row
    restored with it) is reported outdated, not missing or changed; --repair and one sync
    rewrite that row to the newer version in place, and a second check finds nothing."""
    path = request.getfixturevalue(vh_fixture)
    discovery, vh_id, _ = _outdated(path, label="survey")
    count = vh_count(path)

    out = StringIO()
    call_command("sync_verify", stdout=out)
    text = out.getvalue()

    run = SyncVerifyRun.objects.get()
    assert run.outdated_ids == [{"discovery_id": discovery.id, "haven_discovery_id": vh_id}]
    assert (run.checked, run.missing, run.changed, run.outdated, run.orphaned) == (1, 0, 0, 1, 0)
    assert "missing 0, changed 0, outdated 1, orphaned 0" in text
    assert "outdated (VH holds an older version of ours) (keeper discovery→VH row): " in text
    assert f"{discovery.id}→#{vh_id}" in text
    assert "--repair" in text

    repair = sync_verify(repair=True)

    assert (repair.outdated, repair.repaired) == (1, 1)
    item = SyncQueueItem.objects.get(discovery=discovery)
    assert (item.sync_status, item.sync_attempts, item.operation) == (
        SyncStatus.PENDING,
        0,
        "write",
    )
    assert OperatorAction.objects.get(action="verify_repair").detail["discovery_ids"] == [
        discovery.id
    ]
    assert sync_batch().synced == 1
    assert vh_query(
        path,
        "SELECT id, description FROM discoveries WHERE description IN (?, ?)",
        ["survey v1", "survey v2"],
    ) == [(vh_id, "survey v2")]
    assert vh_count(path) == count
    assert vh_query(
        path, "SELECT how FROM keeper_sync_ledger WHERE haven_discovery_id = ?", [vh_id]
    ) == [("updated",)]
    again = sync_verify(repair=True)
    assert (again.missing, again.changed, again.outdated, again.repaired) == (0, 0, 0, 0)


@WITH_HAVEN
def test_an_item_synced_before_row_hashes_were_kept_is_not_judged_outdated(sample_haven_db):
    """An item whose metadata holds no row hash (synced before it was kept) is never called
    outdated, whatever VH holds."""
    discovery, _, _ = _outdated(sample_haven_db, label="older item")
    item = SyncQueueItem.objects.get(discovery=discovery)
    SyncQueueItem.objects.filter(id=item.id).update(
        metadata={k: v for k, v in item.metadata.items() if k != "row_hash"}
    )

    run = sync_verify(repair=True)

    assert (run.checked, run.missing, run.changed, run.outdated, run.repaired) == (1, 0, 0, 0, 0)
    assert SyncQueueItem.objects.get(id=item.id).sync_status == SyncStatus.SYNCED


@WITH_HAVEN
def test_a_row_changed_by_the_control_room_after_a_restore_is_changed_not_outdated(
    sample_haven_db,
):
    """A restored older version that the Control Room then edited is the Control Room's call:
    reported changed, and --repair does not queue it."""
    discovery, vh_id, _ = _outdated(sample_haven_db, label="theirs now")
    vh_query(
        sample_haven_db, "UPDATE discoveries SET significance = 'theirs' WHERE id = ?", [vh_id]
    )

    run = sync_verify(repair=True)

    assert (run.changed, run.outdated, run.repaired) == (1, 0, 0)
    assert SyncQueueItem.objects.get(discovery=discovery).sync_status == SyncStatus.SYNCED


@WITH_HAVEN
def test_an_item_synced_again_during_the_check_is_not_reported_outdated(
    sample_haven_db, monkeypatch
):
    """An item whose kept row hash changed while VH was being read (edited and synced again
    meanwhile) is looked up again and not reported outdated or queued."""
    discovery, _, _ = _outdated(sample_haven_db, label="moving")
    item = SyncQueueItem.objects.get(discovery=discovery)
    real = verify_module.haven_verify

    def haven_verify_during_a_sync(**kwargs):
        report = real(**kwargs)
        # The sync records a newer row hash after the check read keeper.db.
        SyncQueueItem.objects.filter(id=item.id).update(
            metadata={**item.metadata, "row_hash": "0" * 64}
        )
        return report

    monkeypatch.setattr(verify_module, "haven_verify", haven_verify_during_a_sync)

    run = sync_verify(repair=True)

    assert (run.outdated, run.repaired) == (0, 0)
    assert SyncQueueItem.objects.get(id=item.id).sync_status == SyncStatus.SYNCED


@WITH_HAVEN
def test_statistics_and_the_dashboard_show_outdated_rows(sample_haven_db, viewer, client, root):
    """/sync/statistics and the dashboard show the outdated count and discoveries, and the
    repair hint."""
    discovery, vh_id, _ = _outdated(sample_haven_db, label="shown")
    sync_verify(repair=False)

    verify = viewer.get("/sync/statistics").json()["statistics"]["verify"]
    assert (verify["missing"], verify["outdated"], verify["linked"]) == (0, 1, 0)
    assert verify["outdated_ids"] == [{"discovery_id": discovery.id, "haven_discovery_id": vh_id}]

    client.force_login(root)
    html = client.get("/admin/dashboard/").content.decode()
    assert 'data-verify="outdated">1<' in html
    assert f'id="verify-outdated-ids">keeper discoveries {discovery.id}<' in html
    assert "queues the missing and outdated ones again" in html


# --- an old bot's queue adopted ----------------------------------------------------------------


def _manage(*args: str, keeper: Path, haven: Path, **extra: str) -> str:
    result = run_manage(*args, env=manage_env(keeper=keeper, haven=haven, **extra))
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def test_an_old_bots_synced_rows_are_linked_not_missing(tmp_path):
    """An old bot's keeper.db whose sync_queue calls three rows synced, with no ledger in VH:
    the one whose recorded VH row is the same discovery (same submitter and description, the
    same instant written another way) is linked in the ledger and not missing, once; the one
    pointing at a row of the same text but another time, and the one pointing at a row that
    is gone, stay missing, and --repair writes just those, once each."""
    keeper = tiny_keeper(tmp_path / "keeper.db", with_sync_queue=True)
    haven, old_id = demo_haven_with_old_bot_row(tmp_path / "VH-Database.db")
    conn = sqlite3.connect(haven)
    with conn:
        # The same instant as keeper's "2025-11-12 01:53:35", as another writer stored it.
        conn.execute(
            "UPDATE discoveries SET submission_timestamp = '2025-11-12T03:53:35+02:00'"
            " WHERE id = ?",
            (old_id,),
        )
        other_time = conn.execute(
            "INSERT INTO discoveries (discovery_type, location_type, description,"
            " discord_user_id, submission_timestamp) VALUES ('🦗', 'space', ?, ?, ?)",
            ("Crabs on a pebble", TINY_USER, "2025-11-12 03:08:51"),
        ).lastrowid
    conn.close()
    conn = sqlite3.connect(keeper)
    with conn:
        conn.executemany(
            "INSERT INTO sync_queue (discovery_id, sync_status, sync_attempts, max_attempts,"
            " haven_discovery_id, created_at, synced_at, metadata)"
            " VALUES (?, 'synced', 1, 10, ?, '2025-11-12 02:30:00', '2025-11-12 02:30:05', '{}')",
            [(1, old_id), (2, other_time), (3, 99999)],
        )
    conn.close()
    _manage("migrate", "--no-input", keeper=keeper, haven=haven)

    first = _manage("sync_verify", keeper=keeper, haven=haven)

    assert "checked 3, missing 2, changed 0, outdated 0, orphaned 0, linked 1" in first, first
    assert f"2→#{other_time}" in first and "3→#99999" in first
    assert f"1→#{old_id}" not in first
    ledger = vh_query(
        haven,
        "SELECT keeper_discovery_id, discord_user_id, submission_timestamp,"
        " haven_discovery_id, how, row_hash IS NOT NULL FROM keeper_sync_ledger",
    )
    assert ledger == [(1, TINY_USER, "2025-11-12 01:53:35", old_id, "linked", 1)]

    second = _manage("sync_verify", keeper=keeper, haven=haven)
    assert "missing 2, changed 0, outdated 0, orphaned 0" in second, second
    assert "linked" not in second
    assert len(vh_query(haven, "SELECT * FROM keeper_sync_ledger")) == 1

    repair = _manage("sync_verify", "--repair", keeper=keeper, haven=haven)
    assert "re-queued 2" in repair, repair
    out = _manage("sync_now", "--until-idle", keeper=keeper, haven=haven, **WRITE_UNPLACED)
    assert "synced 2" in out, out
    assert vh_query(
        haven,
        "SELECT COUNT(*) FROM discoveries WHERE discord_user_id IN (?, ?)",
        [TINY_USER, TINY_OTHER_USER],
    ) == [(4,)]  # the old bot's row, the other-time row, and the two written now
    assert vh_query(
        haven, "SELECT COUNT(*) FROM discoveries WHERE description = 'Old ruin, already in VH'"
    ) == [(1,)]
    final = _manage("sync_verify", keeper=keeper, haven=haven)
    assert "checked 3, missing 0, changed 0, outdated 0, orphaned 0" in final, final


# --- no Control Room file ----------------------------------------------------------------------


@WITH_HAVEN
def test_an_unreadable_vh_is_recorded_and_the_command_fails(sample_haven_db):
    """With VH missing the run keeps the reason, repairs nothing, and the command exits
    non-zero saying why."""
    _synced(1, label="before the file went")
    haven_close()
    sample_haven_db.rename(sample_haven_db.with_name("elsewhere.db"))

    with pytest.raises(CommandError, match="VH-Database.db could not be checked.*missing"):
        call_command("sync_verify", "--repair", stdout=StringIO())

    run = SyncVerifyRun.objects.get()
    assert "missing" in run.error and run.finished_at is not None
    assert (run.checked, run.repaired) == (0, 0)
    assert SyncQueueItem.objects.get().sync_status == SyncStatus.SYNCED


# --- the command, the schedule, the API and the dashboard ----------------------------------------


@WITH_HAVEN
def test_the_command_prints_counts_and_ids(sample_haven_db):
    """The command prints each kind's count and its discoveries with their VH ids, and what
    --repair did."""
    backup = _backup(sample_haven_db)
    (lost,) = _synced(1, label="printed")
    vh_id = SyncQueueItem.objects.get(discovery=lost).haven_discovery_id
    _restore(sample_haven_db, backup)

    out = StringIO()
    call_command("sync_verify", stdout=out)
    text = out.getvalue()
    assert "checked 1, missing 1, changed 0, outdated 0, orphaned 0" in text
    assert f"missing from VH (keeper discovery→VH row): {lost.id}→#{vh_id}" in text
    assert "--repair" in text

    out = StringIO()
    call_command("sync_verify", "--repair", stdout=out)
    assert "repair: re-queued 1 discoveries" in out.getvalue()


@pytest.mark.django_db
def test_verify_is_scheduled_daily():
    """Registering the schedules adds one daily verify, once, however often it runs."""
    Schedule.objects.all().delete()
    schedules_register()
    schedules_register()
    schedule = Schedule.objects.get(name=VERIFY_NAME)
    assert (schedule.func, schedule.schedule_type, schedule.repeats) == (
        VERIFY_FUNC,
        Schedule.DAILY,
        -1,
    )
    assert Schedule.objects.filter(func=VERIFY_FUNC).count() == 1


@WITH_HAVEN
def test_the_scheduled_task_checks_without_repairing(sample_haven_db):
    """The daily task records a run and queues nothing again."""
    backup = _backup(sample_haven_db)
    _synced(1, label="daily")
    _restore(sample_haven_db, backup)
    figures = verify_daily()
    assert (figures["missing"], figures["repair"], figures["repaired"]) == (1, False, 0)
    assert SyncVerifyRun.objects.get().missing == 1
    assert not SyncQueueItem.objects.filter(sync_status=SyncStatus.PENDING).exists()


@WITH_HAVEN
def test_statistics_show_the_last_run(sample_haven_db, viewer):
    """/sync/statistics keeps its keys and adds ``verify``: null before any run, then the last
    run's counts and ids."""
    assert viewer.get("/sync/statistics").json()["statistics"]["verify"] is None
    backup = _backup(sample_haven_db)
    (lost,) = _synced(1, label="statistics")
    _restore(sample_haven_db, backup)
    sync_verify(repair=False)
    run = sync_verify(repair=False)

    stats = viewer.get("/sync/statistics").json()["statistics"]

    assert {"counts", "top_errors", "sync_seconds"} <= set(stats)
    verify = stats["verify"]
    assert verify["started_at"] == run.figures()["started_at"]
    assert verify["finished_at"].endswith("Z")
    assert (verify["checked"], verify["missing"], verify["changed"], verify["orphaned"]) == (
        1,
        1,
        0,
        0,
    )
    assert _ids(verify["missing_ids"]) == [lost.id]
    assert verify["error"] is None and verify["repair"] is False


@WITH_HAVEN
def test_the_dashboard_shows_the_last_run(sample_haven_db, client, root):
    """The dashboard shows the last run's counts and the missing discoveries, or its error."""
    client.force_login(root)
    assert 'id="verify-none"' in client.get("/admin/dashboard/").content.decode()
    backup = _backup(sample_haven_db)
    (lost,) = _synced(1, label="dashboard")
    _restore(sample_haven_db, backup)
    sync_verify(repair=False)

    html = client.get("/admin/dashboard/").content.decode()

    assert 'data-verify="checked">1<' in html
    assert 'data-verify="missing">1<' in html
    assert f'id="verify-missing-ids">keeper discoveries {lost.id}<' in html
    assert "sync_verify --repair" in html

    haven_close()
    sample_haven_db.unlink()
    sync_verify(repair=False)
    html = client.get("/admin/dashboard/").content.decode()
    assert 'id="verify-error">VH-Database.db could not be checked' in html
