"""export_discoveries then import_discoveries into a new keeper.db beside the same
VH-Database.db: the new keeper.db takes over the rows the old one wrote (one row each, the same
VH ids, Control Room changes still conflicts), a second import of the same file takes nothing,
and beside another VH the rows are written as new. Run on both real fixtures."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from django.db import connection

from discoveries.haven.writer import haven_discovery_delete, haven_discovery_write
from discoveries.models import Discovery
from syncq.models import SyncQueueItem, SyncStatus
from syncq.services import (
    discovery_delete,
    discovery_update,
    queue_item_conflict_resolve,
    sync_batch,
)
from tests.agent_support import ServerTransport, agent_make, server_side
from tests.conftest import SAMPLE_VH, haven_at, writable_copy
from tests.factories import discovery_make
from tests.test_transfer import empty_keeper, export, import_file
from tests.vh_support import BOTH_FILES, PLACED, WITH_HAVEN, vh_count, vh_query, vh_row

pytestmark = WITH_HAVEN


def _item(discovery: Discovery) -> SyncQueueItem:
    return SyncQueueItem.objects.get(discovery_id=discovery.id)


def _ids_from(start: int) -> None:
    """Number keeper.db's next discoveries from ``start + 1``, as a keeper.db whose last id was
    ``start`` would (0: a new file)."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM sqlite_sequence WHERE name = 'discoveries'")
        cursor.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('discoveries', %s)", [start]
        )


def _ledger(path: Path) -> dict[int, tuple[int, str, str | None]]:
    """``{keeper id: (VH id, how, row_hash)}`` of VH's ledger."""
    rows = vh_query(
        path,
        "SELECT keeper_discovery_id, haven_discovery_id, how, row_hash FROM keeper_sync_ledger",
    )
    return {kid: (hid, how, row_hash) for kid, hid, how, row_hash in rows}


def _vh_set(path: Path, haven_id: int, description: str) -> None:
    """The Control Room edits row ``haven_id``."""
    vh_query(path, "UPDATE discoveries SET description = ? WHERE id = ?", [description, haven_id])


def _by_description() -> dict[str, Discovery]:
    return {d.description: d for d in Discovery.objects.all()}


def _keeper_a(path: Path) -> dict[str, int]:
    """Keeper A syncs discoveries into VH at ``path``: one left as written, one edited since,
    one edited after its last sync (exported pending), one deleted in keeper.db, one the
    Control Room edited, one the Control Room deleted. Returns ``{description: VH id}`` of
    what is exported, A's ids being 1001 and up."""
    _ids_from(1000)
    made = {
        name: discovery_make(**PLACED, description=name)
        for name in ("plain", "edited", "edit pending", "deleted", "theirs edited", "theirs gone")
    }
    assert sync_batch().synced == 6
    haven = {name: _item(d).haven_discovery_id for name, d in made.items()}
    discovery_update(discovery_id=made["edited"].id, changes={"tags": "edited in A"})
    assert sync_batch().synced == 1
    assert discovery_delete(discovery_id=made["deleted"].id) == "queued"
    assert sync_batch().deleted == 1
    discovery_update(discovery_id=made["edit pending"].id, changes={"tags": "edited, not synced"})
    _vh_set(path, haven["theirs edited"], "Curated by the Control Room.")
    vh_query(path, "DELETE FROM discoveries WHERE id = ?", [haven["theirs gone"]])
    del haven["deleted"]
    return haven


def _exported(tmp_path: Path) -> Path:
    path = tmp_path / "export.ndjson"
    path.write_text(export("--format", "ndjson"), encoding="utf-8")
    return path


def _import_fresh(path: Path) -> dict[str, Discovery]:
    """Import ``path`` into a new, empty keeper.db (ids from 1); returns its discoveries."""
    empty_keeper()
    _ids_from(0)
    code, out, err = import_file(path)
    assert code == 0, err
    return _by_description()


@BOTH_FILES
def test_an_import_beside_the_same_vh_takes_over_its_rows(vh_fixture, request, tmp_path):
    """Keeper B, made by importing A's export, syncs every discovery onto the row A wrote: no
    new row, the same VH ids, A's ledger rows marked moved and B's carrying their hashes, so
    the Control Room's edit and delete are conflicts; B's later edits update the same rows."""
    vh = request.getfixturevalue(vh_fixture)
    haven = _keeper_a(vh)
    a_ledger = _ledger(vh)
    a_ids = {d.description: d.id for d in Discovery.objects.all()}
    count = vh_count(vh)
    b = _import_fresh(_exported(tmp_path))
    assert sorted(b) == sorted(haven)
    assert {d.imported_keeper_id for d in b.values()} == set(a_ids.values())

    report = sync_batch()
    assert (report.synced, report.conflict) == (3, 2), report.errors
    assert vh_count(vh) == count
    ledger = _ledger(vh)
    for name, discovery in b.items():
        assert ledger[a_ids[name]][:2] == (haven[name], "moved")
        assert ledger[discovery.id][0] == haven[name]
        assert ledger[discovery.id][2] is not None
    for name in ("plain", "edited", "edit pending"):
        item = _item(b[name])
        assert item.sync_status == SyncStatus.SYNCED, item.sync_error
        assert item.haven_discovery_id == haven[name]
        row = vh_row(vh, haven[name])
        assert json.loads(row["metadata"])["keeper_discovery_id"] == b[name].id
    assert vh_row(vh, haven["edit pending"])["tags"] == "edited, not synced"
    assert vh_row(vh, haven["edited"])["tags"] == "edited in A"

    theirs = _item(b["theirs edited"])
    assert theirs.sync_status == SyncStatus.CONFLICT
    assert theirs.metadata["conflict"]["theirs"]["description"] == "Curated by the Control Room."
    assert vh_row(vh, haven["theirs edited"])["description"] == "Curated by the Control Room."
    assert ledger[b["theirs edited"].id][2] == a_ledger[a_ids["theirs edited"]][2]
    gone = _item(b["theirs gone"])
    assert gone.sync_status == SyncStatus.CONFLICT
    assert gone.metadata["conflict"]["theirs_deleted"] is True

    discovery_update(discovery_id=b["plain"].id, changes={"description": "B's correction."})
    assert sync_batch().synced == 1
    assert vh_row(vh, haven["plain"])["description"] == "B's correction."
    _vh_set(vh, haven["plain"], "The Control Room's again.")
    discovery_update(discovery_id=b["plain"].id, changes={"tags": "B again"})
    assert sync_batch().conflict == 1
    assert vh_row(vh, haven["plain"])["description"] == "The Control Room's again."

    queue_item_conflict_resolve(item_id=gone.id, keep="keeper")
    assert sync_batch().synced == 1
    assert vh_count(vh) == count + 1
    assert _item(b["theirs gone"]).haven_discovery_id == _ledger(vh)[b["theirs gone"].id][0]


@BOTH_FILES
def test_a_second_import_of_the_same_file_takes_nothing(vh_fixture, request, tmp_path):
    """Keeper C, importing the file B took over from, writes no row and takes no ledger row:
    its items fail naming the row and its owner, B's ledger rows stay B's, and a delete in C
    leaves B's row in VH."""
    vh = request.getfixturevalue(vh_fixture)
    haven = _keeper_a(vh)
    export_file = _exported(tmp_path)
    b = _import_fresh(export_file)
    sync_batch()
    count = vh_count(vh)
    b_ledger = {d.id: _ledger(vh)[d.id] for d in b.values()}

    empty_keeper()
    _ids_from(500)
    assert import_file(export_file)[0] == 0
    c = _by_description()
    report = sync_batch()
    assert (report.synced, report.conflict, report.retrying) == (0, 0, 5)
    assert vh_count(vh) == count
    for name, discovery in c.items():
        item = _item(discovery)
        assert item.sync_status == SyncStatus.PENDING
        assert f"VH row #{haven[name]} was taken over by an import" in item.sync_error
        assert f"(its discovery {b[name].id})" in item.sync_error
    ledger = _ledger(vh)
    assert {kid: ledger[kid] for kid in b_ledger} == b_ledger
    assert not set(ledger) & {d.id for d in c.values()}

    assert discovery_delete(discovery_id=c["plain"].id) == "queued"
    assert sync_batch().deleted == 1
    assert not Discovery.objects.filter(id=c["plain"].id).exists()
    assert vh_row(vh, haven["plain"]) is not None and vh_count(vh) == count


@BOTH_FILES
def test_the_exporting_keeper_may_no_longer_change_a_moved_row(vh_fixture, request, tmp_path):
    """A's discovery, its row taken over by an import, is refused when edited in A (the row is
    B's), and deleting it in A leaves the row in VH."""
    vh = request.getfixturevalue(vh_fixture)
    made = discovery_make(**PLACED, description="moving")
    assert sync_batch().synced == 1
    haven_id = _item(made).haven_discovery_id
    taker = Discovery(
        **{
            f.attname: getattr(made, f.attname)
            for f in Discovery._meta.concrete_fields
            if f.attname != "id"
        },
        id=made.id + 7000,
    )
    taker.imported_keeper_id = made.id
    assert haven_discovery_write(discovery=taker).how in ("linked", "updated")
    discovery_update(discovery_id=made.id, changes={"tags": "A, too late"})
    report = sync_batch()
    assert report.retrying == 1 and report.synced == 0
    assert "taken over by an import into another keeper.db" in _item(made).sync_error
    assert vh_row(vh, haven_id)["tags"] != "A, too late"
    assert haven_discovery_delete(discovery=made).how == "absent"
    assert vh_row(vh, haven_id) is not None


@BOTH_FILES
def test_a_takeover_committed_in_vh_but_not_in_keeper_is_recorded_once(
    vh_fixture, request, tmp_path
):
    """The worker dies after VH committed the takeover: the next attempt finds B's own ledger
    row and only records it, on the same row."""
    vh = request.getfixturevalue(vh_fixture)
    haven = _keeper_a(vh)
    b = _import_fresh(_exported(tmp_path))
    count = vh_count(vh)
    outcome = haven_discovery_write(discovery=b["plain"])
    assert (outcome.haven_discovery_id, outcome.how) == (haven["plain"], "updated")
    assert _item(b["plain"]).sync_status == SyncStatus.PENDING
    sync_batch()
    item = _item(b["plain"])
    assert item.sync_status == SyncStatus.SYNCED
    assert (item.haven_discovery_id, item.metadata["how"]) == (haven["plain"], "ledger")
    assert vh_count(vh) == count


@BOTH_FILES
def test_a_row_deleted_by_the_exporting_keeper_is_written_once(vh_fixture, request, tmp_path):
    """Exported after A deleted its VH row but before A's discovery went: B writes it as a new
    row (as A would write again a discovery whose row it deleted) and claims A's ledger row, so
    C importing the same file writes nothing."""
    vh = request.getfixturevalue(vh_fixture)
    _ids_from(1000)
    made = discovery_make(**PLACED, description="half deleted")
    assert sync_batch().synced == 1
    old_row = _item(made).haven_discovery_id
    assert haven_discovery_delete(discovery=made).how == "deleted"
    count = vh_count(vh)
    export_file = _exported(tmp_path)
    b = _import_fresh(export_file)["half deleted"]
    assert sync_batch().synced == 1
    item = _item(b)
    assert item.metadata["how"] == "written" and item.haven_discovery_id != old_row
    assert vh_count(vh) == count + 1
    ledger = _ledger(vh)
    assert ledger[made.id][:2] == (old_row, "moved")
    assert ledger[b.id][:2] == (item.haven_discovery_id, "written")

    empty_keeper()
    assert import_file(export_file)[0] == 0
    assert sync_batch().retrying == 1
    assert vh_count(vh) == count + 1


@BOTH_FILES
def test_an_import_beside_another_vh_writes_new_rows(vh_fixture, request, tmp_path, settings):
    """Beside an empty VH (no ledger rows of A), the imported discoveries are written as new
    rows, as before."""
    vh = request.getfixturevalue(vh_fixture)
    haven = _keeper_a(vh)
    export_file = _exported(tmp_path)
    (tmp_path / "other").mkdir()
    other = writable_copy(SAMPLE_VH, tmp_path / "other" / "VH-Database.db")
    with sqlite3.connect(other) as conn:
        conn.execute("DELETE FROM discoveries")
    conn.close()
    with haven_at(other, settings):
        b = _import_fresh(export_file)
        assert sync_batch().synced == len(haven)
        assert vh_count(other) == len(haven)
        for discovery in b.values():
            assert _item(discovery).metadata["how"] == "written"
        assert {how for _, how, _ in _ledger(other).values()} == {"written"}


def test_an_exported_id_that_is_no_whole_number_is_refused(tmp_path):
    """The id an import keeps must be one: a row with another is refused, by line."""
    path = tmp_path / "rows.ndjson"
    row = {
        "id": "seven",
        "user_id": "1",
        "username": "A",
        "discovery_type": "🦴",
        "description": "ok",
        "system_name": "S",
        "location": "P",
    }
    lines = [row, {**row, "id": "12", "description": "twelve"}, {**row, "id": None}]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8")
    code, _, err = import_file(path, "--skip-invalid")
    assert code == 1
    assert "line 1: refused: id: must be a whole number above 0" in err
    assert dict(Discovery.objects.values_list("description", "imported_keeper_id")) == {
        "twelve": 12,
        "ok": None,
    }


@pytest.fixture
def server():
    """The cloud server, reached in process; it never opens VH."""
    transport = ServerTransport()
    yield transport
    transport.shutdown()
    assert transport.haven_opened == []


@BOTH_FILES
def test_the_agent_takes_over_the_rows_too(vh_fixture, request, tmp_path, server):
    """Keeper B in the cloud, its discoveries written by the Control Room agent: the leased
    discovery carries its imported id, and the agent takes over A's rows as the local worker
    does (no new row, the same VH ids)."""
    vh = request.getfixturevalue(vh_fixture)
    haven = _keeper_a(vh)
    export_file = _exported(tmp_path)
    count = vh_count(vh)
    with server_side():
        b = _import_fresh(export_file)
    agent_make(server, tmp_path / "desk" / "haven-agent.json").run(once=True)
    (lease,) = [e for e in server.calls("/agent/lease") if e.answer["items"]]
    sent = {
        i["discovery"]["id"]: i["discovery"]["imported_keeper_id"] for i in lease.answer["items"]
    }
    assert sent == {d.id: d.imported_keeper_id for d in b.values()}
    assert vh_count(vh) == count
    for name in ("plain", "edited", "edit pending"):
        item = _item(b[name])
        assert item.sync_status == SyncStatus.SYNCED, item.sync_error
        assert item.haven_discovery_id == haven[name]
    assert _item(b["theirs edited"]).sync_status == SyncStatus.CONFLICT
    assert _item(b["theirs gone"]).sync_status == SyncStatus.CONFLICT
