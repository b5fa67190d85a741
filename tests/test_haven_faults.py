"""The sync when VH-Database.db is missing, read-only, locked or of another schema: items wait
with backoff, nothing is lost, and the Control Room's file is never created or altered."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from discoveries.haven import writer
from discoveries.haven.files import SCHEMA_PATH, _insert_demo, haven_file_create
from discoveries.haven.models import HavenDiscovery, LedgerEntry, System
from syncq.models import SyncQueueItem, SyncStatus
from syncq.services import queue_backfill, sync_batch
from tests.conftest import ROOT, haven_at, manage_env, run_manage
from tests.factories import discovery_make

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "haven"])


def _item(discovery) -> SyncQueueItem:
    return SyncQueueItem.objects.get(discovery_id=discovery.id)


def _make_due(item: SyncQueueItem) -> None:
    SyncQueueItem.objects.filter(id=item.id).update(
        next_retry_after=timezone.now() - timedelta(seconds=1)
    )


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _journal_mode(path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


def _assert_waiting(item: SyncQueueItem, *words: str) -> None:
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.PENDING
    assert item.sync_attempts == 1
    assert item.next_retry_after > timezone.now()
    for word in words:
        assert word in item.sync_error


def test_missing_vh_is_waited_for_and_never_created(tmp_path, settings):
    """With VH missing, items back off and no file appears; once it is back, they sync."""
    path = tmp_path / "VH-Database.db"
    with haven_at(path, settings):
        discovery = discovery_make(description="waiting for the Control Room")
        report = sync_batch()

        assert (report.claimed, report.retrying, report.synced) == (1, 1, 0)
        item = _item(discovery)
        _assert_waiting(item, "missing")
        assert sorted(p.name for p in tmp_path.iterdir()) == []
        assert not path.exists()
        assert not path.with_name(path.name + "-wal").exists()
        assert not path.with_name(path.name + "-shm").exists()

        haven_file_create(path, with_demo_data=True)
        _make_due(item)
        report = sync_batch()

        assert report.synced == 1, report.errors
        item.refresh_from_db()
        assert item.sync_status == SyncStatus.SYNCED
        assert HavenDiscovery.objects.get().description == "waiting for the Control Room"


def test_read_only_vh_is_retried_and_left_unchanged(haven_db):
    """A write-protected VH file makes items wait with backoff; the file is not touched."""
    haven_db.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    try:
        if os.access(haven_db, os.W_OK):
            pytest.skip("running as root: a read-only mode does not stop writes")
        before = _digest(haven_db)
        discovery = discovery_make()
        report = sync_batch()
        assert (report.claimed, report.retrying) == (1, 1)
        _assert_waiting(_item(discovery), "readonly")
        assert _digest(haven_db) == before
    finally:
        haven_db.chmod(stat.S_IRUSR | stat.S_IWUSR)


#: Runs a command as root without the capabilities that let root ignore file modes.
NO_DAC_OVERRIDE = (
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv (a non-root run is covered by the test above)",
)
def test_read_only_vh_blocks_a_root_worker_without_dac_override(tmp_path):
    """As root (as CI runs), a sync process that cannot override file modes finds a read-only
    VH unwritable: the item waits, the file is unchanged, and once writable again it syncs."""
    keeper, haven = tmp_path / "keeper.db", tmp_path / "VH-Database.db"
    haven_file_create(haven, with_demo_data=True)
    env = manage_env(keeper=keeper, haven=haven)
    entry = tmp_path / "one.json"
    entry.write_text(
        '[{"user_id": "1", "username": "RO", "discovery_type": "ruins", '
        '"system_name": "Demo Alpha", "location": "Alpha Prime", "description": "read-only"}]',
        encoding="utf-8",
    )
    for args in (("migrate", "--no-input", "-v0"), ("submit_discovery", "--file", str(entry))):
        assert run_manage(*args, env=env).returncode == 0
    haven.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    before = _digest(haven)

    blocked = subprocess.run(
        [*NO_DAC_OVERRIDE, sys.executable, "manage.py", "sync_now"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert "retrying 1" in blocked.stdout, blocked.stdout + blocked.stderr
    assert "readonly" in blocked.stdout
    assert _digest(haven) == before
    haven.chmod(stat.S_IRUSR | stat.S_IWUSR)
    with sqlite3.connect(keeper) as conn:  # the operators' retry statement
        conn.execute(
            "UPDATE sync_queue SET sync_status = 'pending', sync_attempts = 0,"
            " sync_error = NULL WHERE id = 1"
        )
    assert "synced 1" in run_manage("sync_now", env=env).stdout
    with sqlite3.connect(haven) as conn:
        assert conn.execute("SELECT COUNT(*) FROM discoveries").fetchone() == (1,)


def test_locked_vh_makes_items_wait_then_sync_exactly_once(haven_db, monkeypatch):
    """While the Control Room holds VH's write lock items wait; afterwards each syncs once."""
    monkeypatch.setitem(connections["haven"].settings_dict["OPTIONS"], "timeout", 0.2)
    connections["haven"].close()
    control_room = sqlite3.connect(haven_db, timeout=0, isolation_level=None)
    try:
        control_room.execute("BEGIN IMMEDIATE")
        control_room.execute(
            "INSERT INTO systems (id, name, x, y, z, region)"
            " VALUES ('SYS_CR_00000001', 'Control Room Edit', 0, 0, 0, 'Edits')"
        )
        discovery = discovery_make(description="queued during a lock")
        report = sync_batch()
        assert (report.claimed, report.retrying, report.synced) == (1, 1, 0)
        item = _item(discovery)
        _assert_waiting(item, "locked")
        control_room.execute("COMMIT")
    finally:
        control_room.close()

    _make_due(item)
    report = sync_batch()

    assert report.synced == 1, report.errors
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.SYNCED
    assert HavenDiscovery.objects.filter(description="queued during a lock").count() == 1
    assert LedgerEntry.objects.count() == 1
    assert System.objects.filter(name="Control Room Edit").exists(), "the other write is kept"


def test_sync_leaves_the_journal_mode_of_a_wal_file_alone(sample_haven_db):
    """Syncing into the real sample (WAL) keeps it in WAL mode."""
    assert _journal_mode(sample_haven_db) == "wal"
    discovery_make(system_name="Oculi", location="Erren", description="near the haven")
    assert sync_batch().synced == 1
    assert _journal_mode(sample_haven_db) == "wal"
    vh_row = HavenDiscovery.objects.get(description="near the haven")
    assert vh_row.system_id == "SYS_EUCLID_F04784DD"


def test_sync_leaves_the_journal_mode_of_a_rollback_journal_file_alone(haven_db):
    """Syncing into a VH file in 'delete' journal mode does not switch it to WAL."""
    assert _journal_mode(haven_db) == "delete"
    discovery_make()
    assert sync_batch().synced == 1
    assert _journal_mode(haven_db) == "delete"
    assert not haven_db.with_name(haven_db.name + "-wal").exists()


def _haven_file_without(path, column: str):
    """A VH file of the Control Room's schema minus one type column, with the demo systems."""
    schema = SCHEMA_PATH.read_text(encoding="utf-8")
    assert f" {column} TEXT," in schema
    conn = sqlite3.connect(path)
    try:
        conn.executescript(schema.replace(f" {column} TEXT,", ""))
        _insert_demo(conn)
        conn.commit()
    finally:
        conn.close()
    return path


def _haven_columns(path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[1] for row in conn.execute("PRAGMA table_info(discoveries)")}
    finally:
        conn.close()


def test_missing_vh_column_is_named_and_other_types_still_sync(tmp_path, settings):
    """A VH file lacking structure_type fails ruins with that name; bones still sync."""
    path = _haven_file_without(tmp_path / "VH-Database.db", "structure_type")
    with haven_at(path, settings):
        ruins = discovery_make(description="ruins need structure_type")
        bones = discovery_make(
            discovery_type="🦴",
            description="bones need no structure_type",
            type_fields={"species_type": "Crab"},
        )
        report = sync_batch()

        assert (report.claimed, report.synced, report.retrying) == (2, 1, 1)
        ruins_item = _item(ruins)
        _assert_waiting(ruins_item, "structure_type")
        assert _item(bones).sync_status == SyncStatus.SYNCED
        assert "structure_type" not in _haven_columns(path), "VH's schema is never altered"

        # An operator puts the column back: the next attempt succeeds.
        conn = sqlite3.connect(path)
        conn.execute("ALTER TABLE discoveries ADD COLUMN structure_type TEXT")
        conn.commit()
        conn.close()
        _make_due(ruins_item)
        assert sync_batch().synced == 1
        assert HavenDiscovery.objects.get(id=_item(ruins).haven_discovery_id).structure_type == (
            "Tower"
        )


def test_switched_off_vh_leaves_items_queued_untouched(haven_db, settings):
    """With USE_HAVEN_DATABASE false nothing is claimed or written; switched on, items sync."""
    settings.USE_HAVEN_DATABASE = False
    before = _digest(haven_db)
    discovery = discovery_make()
    assert sync_batch().claimed == 0
    item = _item(discovery)
    assert (item.sync_status, item.sync_attempts) == (SyncStatus.PENDING, 0)
    assert _digest(haven_db) == before

    settings.USE_HAVEN_DATABASE = True
    assert sync_batch().synced == 1


def test_backfill_with_vh_missing_queues_everything_and_creates_nothing(tmp_path, settings):
    """Backfill without VH queues every discovery (the sync links later) and says why."""
    path = tmp_path / "VH-Database.db"
    with haven_at(path, settings):
        discovery = discovery_make()
        SyncQueueItem.objects.filter(discovery_id=discovery.id).delete()

        report = queue_backfill()

        assert (report.linked, report.queued) == (0, 1)
        assert "missing" in report.haven_error
        assert _item(discovery).sync_status == SyncStatus.PENDING
        assert list(tmp_path.iterdir()) == []


def _open_paths() -> set[str]:
    fd_dir = "/proc/self/fd"
    if not os.path.isdir(fd_dir):
        pytest.skip("needs /proc to list this process's open files")
    paths = set()
    for fd in os.listdir(fd_dir):
        try:
            paths.add(os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            continue  # closed meanwhile
    return paths


def test_vh_file_is_not_held_open_between_batches(haven_db):
    """After a batch the Control Room's file (and its journal) is not held open by the sync."""
    discovery_make()
    assert sync_batch().synced == 1
    assert not {p for p in _open_paths() if p.startswith(str(haven_db))}


def test_vh_file_replaced_while_open_gets_the_next_write(haven_db):
    """If VH is moved away and a new file put in its place, writes go to the new file."""
    discovery = discovery_make(description="for the new file")
    assert HavenDiscovery.objects.count() == 0  # the haven connection is now open
    assert connections["haven"].connection is not None
    moved = haven_db.rename(haven_db.with_name("VH-Database.old.db"))
    haven_file_create(haven_db, with_demo_data=True)
    before = _digest(moved)

    assert sync_batch().synced == 1, "the write must go to the file now at HAVEN_DB_PATH"

    assert _digest(moved) == before
    conn = sqlite3.connect(haven_db)
    try:
        rows = conn.execute("SELECT id, description FROM discoveries").fetchall()
    finally:
        conn.close()
    assert rows == [(_item(discovery).haven_discovery_id, "for the new file")]


def test_each_write_reaches_the_wal_file_itself_so_moving_it_loses_nothing(
    sample_haven_db, monkeypatch
):
    """Into a WAL-mode VH that no other program holds open, the rows of each VH transaction
    are in the main file before keeper.db records them as synced: the main file alone (as a
    careless move of it mid-batch would leave) has every row recorded so far."""
    from syncq import services

    seen_in_main_file: list[bool] = []
    real_succeed = services.queue_items_succeed

    def succeed_and_look(*, token, results):
        main_only = f"file:{sample_haven_db}?mode=ro&immutable=1"  # reads no -wal at all
        conn = sqlite3.connect(main_only, uri=True)
        try:
            for attempted in results:
                found = conn.execute(
                    "SELECT COUNT(*) FROM discoveries WHERE id = ?",
                    (attempted.outcome.haven_discovery_id,),
                ).fetchone()
                seen_in_main_file.append(found == (1,))
        finally:
            conn.close()
        return real_succeed(token=token, results=results)

    monkeypatch.setattr(services, "queue_items_succeed", succeed_and_look)
    for n in range(3):
        discovery_make(system_name="Oculi", location="Krospen L49", description=f"move-safe {n}")

    assert sync_batch().synced == 3

    assert seen_in_main_file == [True, True, True]
    assert not sample_haven_db.with_name(sample_haven_db.name + "-wal").exists()


def test_vh_without_a_column_the_duplicate_checks_read_is_named(tmp_path, settings):
    """A VH file lacking discord_user_id fails each item with an error naming that column,
    before anything is written."""
    path = tmp_path / "VH-Database.db"
    haven_file_create(path, with_demo_data=True)
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE discoveries DROP COLUMN discord_user_id")
    conn.commit()
    conn.close()
    with haven_at(path, settings):
        discovery = discovery_make()
        report = sync_batch()
    assert (report.claimed, report.retrying) == (1, 1)
    _assert_waiting(_item(discovery), "discord_user_id")
    conn = sqlite3.connect(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert conn.execute("SELECT COUNT(*) FROM discoveries").fetchone() == (0,)
    finally:
        conn.close()
    assert "keeper_sync_ledger" not in tables


def test_migrate_refuses_the_haven_database(haven_db):
    """manage.py migrate --database haven stops with a clear error and adds nothing to VH."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    before = _digest(haven_db)
    with pytest.raises(CommandError, match="belongs to the Control Room"):
        call_command("migrate", database="haven", verbosity=0)
    connections["haven"].close()
    assert _digest(haven_db) == before


def test_vh_replaced_during_a_write_is_left_intact_and_the_item_retried(
    sample_haven_db, monkeypatch, settings
):
    """If the operator moves VH away and puts another file in its place while a discovery is
    being written, the new file is not damaged by the old file's WAL, the item is retried, and
    it is then written into the file now at HAVEN_DB_PATH (which lacks its system: written
    without its place, as the setting asks and the file allows)."""
    settings.SYNC_WRITE_UNPLACED = True
    moved = sample_haven_db.with_name("VH-moved.db")
    replacement = sample_haven_db.with_name("replacement.db")
    haven_file_create(replacement, with_demo_data=True)
    real_resolve = writer.catalog_location_resolve

    def resolve_then_swap(**place):
        found = real_resolve(**place)
        if not moved.exists():
            sample_haven_db.rename(moved)
            replacement.rename(sample_haven_db)
        return found

    monkeypatch.setattr(writer, "catalog_location_resolve", resolve_then_swap)
    discovery = discovery_make(
        system_name="Oculi", location="Krospen L49", description="written during a swap"
    )

    report = sync_batch()

    assert (report.synced, report.retrying) == (0, 1)
    _assert_waiting(_item(discovery), "moved or replaced")
    for path in (moved, sample_haven_db):
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            conn.close()
    wal = sample_haven_db.with_name(sample_haven_db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "no stale WAL pages beside the new file"

    _make_due(_item(discovery))
    assert sync_batch().synced == 1
    conn = sqlite3.connect(sample_haven_db)
    try:
        rows = conn.execute("SELECT description, location_name FROM discoveries").fetchall()
    finally:
        conn.close()
    assert rows == [("written during a swap", "Krospen L49")]


def test_an_unwritable_vh_is_not_opened_so_no_unwritable_wal_is_left(sample_haven_db, monkeypatch):
    """A VH file (or its -wal or -shm) this process cannot write is reported read-only before
    any connection opens it: SQLite would otherwise create -wal and -shm files as unwritable
    as the file, which would stop every writer after the file is writable again."""
    import os

    from discoveries.haven.connection import haven_close, haven_connection
    from discoveries.haven.errors import HavenUnavailable

    haven_close()
    real_open = os.open
    refused = str(sample_haven_db) + "-shm"
    sample_haven_db.with_name(sample_haven_db.name + "-shm").write_bytes(b"")

    def open_as_other_user(path, flags, *args):
        if str(path) == refused and flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", open_as_other_user)
    with pytest.raises(HavenUnavailable, match="readonly"):
        haven_connection()
    monkeypatch.setattr(os, "open", real_open)
    sample_haven_db.with_name(sample_haven_db.name + "-shm").unlink()
    assert haven_connection().connection is not None
    haven_close()
