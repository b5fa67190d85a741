"""The batched writer: many discoveries in one VH transaction, each in its own savepoint, their
outcomes recorded in one keeper.db transaction, and the transaction's size bounded by how long it
holds the Control Room's write lock."""

from __future__ import annotations

import sqlite3

import pytest
from django.db import connection, connections

from discoveries.haven.writer import HavenBatch
from discoveries.models import Discovery
from syncq import services
from syncq.models import SyncAttempt, SyncQueueItem, SyncStatus
from syncq.services import queue_backfill, queue_items_claim, queue_items_succeed, submitted_here
from tests.vh_support import BOTH_FILES, PLACED, WITH_HAVEN, vh_count, vh_query

from .factories import discovery_make

REFUSE_TRIGGER = (
    "CREATE TRIGGER refuse_marked BEFORE INSERT ON discoveries"
    " WHEN NEW.description LIKE '%refuse me%'"
    " BEGIN SELECT RAISE(ABORT, 'the Control Room refuses this row'); END"
)


def _item(discovery: Discovery) -> SyncQueueItem:
    return SyncQueueItem.objects.get(discovery=discovery)


@pytest.fixture
def counted(monkeypatch):
    """How many VH transactions were opened and keeper.db outcome records made."""
    counts = {"vh": 0, "keeper": 0}
    enter, record = HavenBatch.__enter__, services.outcomes_record

    def counting_enter(self):
        counts["vh"] += 1
        return enter(self)

    def counting_record(*args, **kwargs):
        counts["keeper"] += 1
        return record(*args, **kwargs)

    monkeypatch.setattr(HavenBatch, "__enter__", counting_enter)
    monkeypatch.setattr(services, "outcomes_record", counting_record)
    return counts


@WITH_HAVEN
@BOTH_FILES
def test_a_backlog_goes_in_one_vh_transaction_and_one_keeper_record(vh_fixture, request, counted):
    """A batch of 30 items, well inside the lock's time, is one VH transaction and one keeper.db
    transaction: every row with its ledger row, every item synced with its attempt."""
    path = request.getfixturevalue(vh_fixture)
    before = vh_count(path)
    made = [discovery_make(**PLACED, description=f"batched {n}") for n in range(30)]
    report = services.sync_batch(batch_size=30)
    assert (report.claimed, report.synced, report.errors) == (30, 30, [])
    assert counted == {"vh": 1, "keeper": 1}
    assert vh_count(path) == before + 30
    ledger = vh_query(
        path, "SELECT keeper_discovery_id, haven_discovery_id FROM keeper_sync_ledger"
    )
    items = {d.id: _item(d) for d in made}
    assert dict(ledger) == {pk: item.haven_discovery_id for pk, item in items.items()}
    assert all(item.sync_status == SyncStatus.SYNCED for item in items.values())
    assert SyncAttempt.objects.filter(outcome="synced").count() == 30


@WITH_HAVEN
def test_the_lock_hold_bounds_each_vh_transaction(sample_haven_db, settings, counted):
    """With no time to hold the lock, each VH transaction takes one item (and its keeper record
    follows it): the size adapts to the time, not to a count."""
    settings.HAVEN_WRITE_HOLD_SECONDS = 0
    for n in range(4):
        discovery_make(**PLACED, description=f"one at a time {n}")
    assert services.sync_batch(batch_size=10).synced == 4
    assert counted == {"vh": 4, "keeper": 4}


@WITH_HAVEN
@BOTH_FILES
def test_a_row_the_file_refuses_is_rolled_back_alone(vh_fixture, request, counted):
    """A row VH refuses (here a trigger of the Control Room's) fails its own item, with the
    file's words; the rows before and after it in the same VH transaction are written, with
    their ledger rows, and no trace of the refused one is left."""
    path = request.getfixturevalue(vh_fixture)
    vh_query(path, REFUSE_TRIGGER)
    before = discovery_make(**PLACED, description="before the bad one")
    bad = discovery_make(**PLACED, description="please refuse me")
    after = discovery_make(**PLACED, description="after the bad one")
    report = services.sync_batch()
    assert counted["vh"] == 1
    assert (report.synced, report.retrying) == (2, 1)
    assert _item(before).sync_status == _item(after).sync_status == SyncStatus.SYNCED
    failed = _item(bad)
    assert failed.sync_status == SyncStatus.PENDING and failed.sync_attempts == 1
    assert "the Control Room refuses this row" in failed.sync_error
    assert vh_query(
        path, "SELECT COUNT(*) FROM discoveries WHERE description LIKE '%refuse me%'"
    ) == [(0,)]
    assert vh_query(
        path, "SELECT COUNT(*) FROM keeper_sync_ledger WHERE keeper_discovery_id = ?", [bad.id]
    ) == [(0,)]
    assert sorted(
        pk for (pk,) in vh_query(path, "SELECT keeper_discovery_id FROM keeper_sync_ledger")
    ) == sorted([before.id, after.id])


@WITH_HAVEN
def test_mixed_outcomes_of_one_transaction_are_each_recorded(sample_haven_db, counted):
    """A new row, a place VH lacks, an edit of a synced row and a delete, in one VH transaction:
    each item ends as its own outcome says, recorded in one keeper.db transaction."""
    edited = discovery_make(**PLACED, description="to be edited")
    gone = discovery_make(**PLACED, description="to be deleted")
    assert services.sync_batch().synced == 2
    services.discovery_update(discovery_id=edited.id, changes={"description": "edited"})
    assert services.discovery_delete(discovery_id=gone.id) == "queued"
    new = discovery_make(**PLACED, description="brand new")
    lost = discovery_make(system_name="ORACLE ZETA", location="Zeta Prime", location_type="planet")
    counted.update(vh=0, keeper=0)
    report = services.sync_batch()
    assert counted == {"vh": 1, "keeper": 1}
    assert (report.synced, report.waiting, report.deleted) == (2, 1, 1), report
    assert _item(new).sync_status == SyncStatus.SYNCED
    assert _item(lost).sync_status == SyncStatus.WAITING
    assert not Discovery.objects.filter(id=gone.id).exists()
    row = vh_query(
        sample_haven_db,
        "SELECT description FROM discoveries WHERE id = ?",
        [_item(edited).haven_discovery_id],
    )
    assert row == [("edited",)]


@WITH_HAVEN
def test_items_whose_lease_was_lost_are_not_recorded(sample_haven_db):
    """Recording a transaction's outcomes skips the items another worker or an operator took
    meanwhile (their lease token changed) and records the others."""
    kept = discovery_make(**PLACED, description="still mine")
    taken = discovery_make(**PLACED, description="taken from me")
    token, items = queue_items_claim(limit=10)
    SyncQueueItem.objects.filter(discovery=taken).update(lease_token="someone else")
    attempted = []
    with HavenBatch() as batch:
        for item in items:
            attempted.append(services.Attempted(item, None, batch.write(discovery=item.discovery)))
    states = queue_items_succeed(token=token, results=attempted)
    assert states == {_item(kept).id: SyncStatus.SYNCED, _item(taken).id: None}
    assert _item(taken).sync_status == SyncStatus.SYNCING
    # The ledger names its row, so its next attempt records it rather than writing again.
    SyncQueueItem.objects.filter(discovery=taken).update(sync_status=SyncStatus.PENDING)
    assert services.sync_batch().synced == 1
    assert vh_query(
        sample_haven_db, "SELECT COUNT(*) FROM discoveries WHERE description = 'taken from me'"
    ) == [(1,)]


@WITH_HAVEN
def test_vh_locked_at_the_start_fails_every_item_after_one_wait(sample_haven_db, monkeypatch):
    """When the Control Room holds VH's write lock past the busy timeout, the batch waits once,
    not once per item, and every item fails with the lock's error, its backoff started."""
    monkeypatch.setitem(connections["haven"].settings_dict["OPTIONS"], "timeout", 0.2)
    for n in range(5):
        discovery_make(**PLACED, description=f"meets the lock {n}")
    waits = []
    enter = HavenBatch.__enter__

    def counting_enter(self):
        waits.append(True)
        return enter(self)

    monkeypatch.setattr(HavenBatch, "__enter__", counting_enter)
    holder = sqlite3.connect(sample_haven_db, timeout=0, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        report = services.sync_batch()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(waits) == 1
    assert (report.claimed, report.retrying) == (5, 5)
    assert all("locked" in text for _, text in report.errors)
    assert SyncAttempt.objects.filter(error__contains="locked").count() == 5


def _old_bots_row(path, *, user_id: str, description: str, second) -> int:
    """A row as the old bot wrote it into VH (no ledger row names it); returns its id."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            return conn.execute(
                "INSERT INTO discoveries (discord_user_id, description, submission_timestamp,"
                " discovery_type, location_type) VALUES (?, ?, ?, '🏛️', 'space')",
                (user_id, description, second.strftime("%Y-%m-%d %H:%M:%S")),
            ).lastrowid
    finally:
        conn.close()


@WITH_HAVEN
def test_only_items_from_before_the_queue_search_vh_for_an_old_bots_row(sample_haven_db):
    """An item made as its discovery is submitted never searches VH for an old bot's identical
    row (no old bot can have written it, so even a look-alike row is left alone and the
    discovery gets its own); one made by the backfill, for a discovery from before the queue,
    searches, and links the old bot's row instead of writing a second."""
    submitted = discovery_make(**PLACED, description="submitted through the bot")
    assert submitted_here(_item(submitted))
    look_alike = _old_bots_row(
        sample_haven_db,
        user_id=submitted.user_id,
        description=submitted.description,
        second=submitted.submission_timestamp,
    )
    old = Discovery.objects.create(
        user_id="42",
        username="Old",
        guild_id="1",
        discovery_type="🏛️",
        description="the old bot wrote me",
        submission_timestamp=submitted.submission_timestamp,
        **PLACED,
    )
    old_row = _old_bots_row(
        sample_haven_db,
        user_id="42",
        description="the old bot wrote me",
        second=old.submission_timestamp,
    )
    before = vh_count(sample_haven_db)
    report = queue_backfill()
    assert (report.linked, report.queued) == (1, 0)
    item = _item(old)
    assert not submitted_here(item)
    assert (item.sync_status, item.haven_discovery_id) == (SyncStatus.SYNCED, old_row)
    assert services.sync_batch().synced == 1
    written = _item(submitted)
    assert written.metadata["how"] == "written"
    assert written.haven_discovery_id not in (look_alike, old_row)
    assert vh_count(sample_haven_db) == before + 1


@WITH_HAVEN
@pytest.mark.parametrize(
    "refusal",
    [
        "CREATE TRIGGER refuse_all BEFORE INSERT ON discoveries"
        " WHEN NEW.description LIKE '%refuse me%'"
        " BEGIN SELECT RAISE(ROLLBACK, 'the Control Room rolls everything back'); END",
        "CREATE UNIQUE INDEX one_description ON discoveries (description)",
    ],
    ids=["raise-rollback", "unique"],
)
def test_a_row_that_rolls_back_the_whole_transaction_leaves_every_item_to_retry(
    sample_haven_db, refusal
):
    """A row whose refusal makes SQLite roll back the whole VH transaction (a trigger's
    RAISE(ROLLBACK)), not just its savepoint, takes the rows written before it in the batch
    with it: none of them is recorded as synced, all are tried again and then written once.
    A plain constraint failure (a UNIQUE index) stays the one item's."""
    vh_query(sample_haven_db, refusal)
    whole = "ROLLBACK" in refusal
    before = [discovery_make(**PLACED, description=f"written before {n}") for n in range(3)]
    bad = discovery_make(**PLACED, description="please refuse me" if whole else "written before 0")
    after = discovery_make(**PLACED, description="written after")
    report = services.sync_batch()
    if whole:
        # The item after the bad one goes in the next transaction, which commits.
        assert (report.synced, report.retrying) == (1, 4), report
        assert all("rolled back the whole transaction" in text for _, text in report.errors)
        assert vh_query(sample_haven_db, "SELECT keeper_discovery_id FROM keeper_sync_ledger") == [
            (after.id,)
        ]
        vh_query(sample_haven_db, "DROP TRIGGER refuse_all")
        SyncQueueItem.objects.update(next_retry_after=None)
        assert services.sync_batch().synced == 4
    else:
        assert (report.synced, report.retrying) == (4, 1), report
        assert "UNIQUE" in _item(bad).sync_error
    for discovery in [*before, after]:
        item = _item(discovery)
        assert item.sync_status == SyncStatus.SYNCED
        assert vh_query(
            sample_haven_db,
            "SELECT keeper_discovery_id FROM keeper_sync_ledger WHERE haven_discovery_id = ?",
            [item.haven_discovery_id],
        ) == [(discovery.id,)]


@WITH_HAVEN
def test_a_row_the_file_ignores_is_not_recorded_against_a_neighbour(sample_haven_db):
    """A Control Room trigger that skips our INSERT (RAISE(IGNORE)) writes no row: the item
    fails with that reason instead of being recorded as another discovery's row, and the
    neighbours keep their own rows."""
    vh_query(
        sample_haven_db,
        "CREATE TRIGGER skip_marked BEFORE INSERT ON discoveries"
        " WHEN NEW.description LIKE '%skip me%' BEGIN SELECT RAISE(IGNORE); END",
    )
    first = discovery_make(**PLACED, description="a neighbour")
    skipped = discovery_make(**PLACED, description="please skip me")
    report = services.sync_batch()
    assert (report.synced, report.retrying) == (1, 1), report
    item = _item(skipped)
    assert item.haven_discovery_id is None
    assert "without writing it" in item.sync_error
    assert vh_query(
        sample_haven_db,
        "SELECT keeper_discovery_id FROM keeper_sync_ledger",
    ) == [(first.id,)]


@WITH_HAVEN
def test_a_discovery_whose_time_is_not_text_fails_alone(sample_haven_db):
    """A discovery whose stored timestamp bytes are not UTF-8 text fails its own item with the
    reason, instead of stopping the batch with every item left syncing; its neighbours are
    written."""
    good = [discovery_make(**PLACED, description=f"readable {n}") for n in range(3)]
    bad = discovery_make(**PLACED, description="unreadable time")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE discoveries SET submission_timestamp = CAST(X'323032362dc3' AS TEXT)"
            " WHERE id = %s",
            [bad.id],
        )
    report = services.sync_batch()
    assert (report.claimed, report.synced, report.retrying) == (4, 3, 1), report
    assert all(_item(d).sync_status == SyncStatus.SYNCED for d in good)
    item = SyncQueueItem.objects.get(discovery_id=bad.id)
    assert item.sync_status == SyncStatus.PENDING and item.lease_token is None
    assert "cannot be read as a time" in item.sync_error


def test_discoveries_that_cannot_be_loaded_are_named_one_by_one(monkeypatch):
    """When the claim's one query for its discoveries fails on a row, each is read alone, so
    that only the unreadable one's item fails, with the reason."""
    from syncq.services import _discoveries_read

    real = Discovery.objects.in_bulk

    def in_bulk(ids):
        if 2 in ids:
            raise ValueError("not UTF-8")
        return {pk: pk for pk in ids}

    monkeypatch.setattr(Discovery.objects, "in_bulk", in_bulk)
    found, unreadable = _discoveries_read([1, 2, 3])
    monkeypatch.setattr(Discovery.objects, "in_bulk", real)
    assert found == {1: 1, 3: 3}
    assert unreadable == {2: "ValueError: not UTF-8"}
