"""The queue at any size (issue 14, part 4): the counts per state, kept by triggers, stay exact
whichever door changes a row (the ORM, a bulk update, an operator's SQL), on SQLite and on
PostgreSQL; and the claim's and the monitoring API's queries read indexes, never every row."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from datetime import timedelta

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.utils import timezone

from discoveries.haven.files import haven_file_create
from discoveries.models import Discovery
from syncq.models import SyncQueueItem, SyncStatus
from syncq.selectors import (
    failed_items,
    queue_counts,
    queue_statistics,
    queue_status,
    queue_summary,
    throughput_by_hour,
)
from tests.conftest import manage_env, run_manage
from tests.factories import queue_item_kinds
from tests.test_postgres import postgres_url  # noqa: F401 (the fixture)

KEEPER = pytest.mark.django_db


def _discovery(n: int) -> Discovery:
    return Discovery.objects.create(
        user_id="42", username="Scale", discovery_type="🏛️", location="Alpha Prime",
        system_name="Demo Alpha", description=f"scale {n}",
    )  # fmt: skip


def _item(n: int, status: str = SyncStatus.PENDING, **fields) -> SyncQueueItem:
    """A queue item in ``status`` made straight through the ORM, with its discovery."""
    return SyncQueueItem.objects.create(discovery=_discovery(n), sync_status=status, **fields)


def _grouped() -> dict[str, int]:
    """The counts per state as the operators' SQL (REFERENCE.md) gives them, over every row."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT sync_status, COUNT(*) FROM sync_queue GROUP BY sync_status")
        return dict(cursor.fetchall())


def assert_counts_exact() -> None:
    """queue_counts() (the tally) says what a GROUP BY over every row says, zeros included."""
    assert queue_counts() == {**dict.fromkeys(SyncStatus.values, 0), **_grouped()}


def _sql(statement: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


# --- the counts -------------------------------------------------------------------------------


@KEEPER
def test_counts_follow_every_orm_door():
    """Creates, saves, bulk creates, bulk updates and deletes, one row or many, each leave the
    counts exactly what grouping every row says."""
    items = [_item(n) for n in range(4)] + [_item(10 + n, SyncStatus.SYNCED) for n in range(3)]
    assert queue_counts()[SyncStatus.PENDING] == 4
    assert_counts_exact()

    items[0].sync_status = SyncStatus.MAX_RETRIES_EXCEEDED
    items[0].save()
    items[1].sync_error = "unchanged state"
    items[1].save()
    assert_counts_exact()

    SyncQueueItem.objects.bulk_create(
        [
            SyncQueueItem(discovery=_discovery(20 + n), sync_status=SyncStatus.WAITING)
            for n in range(5)
        ]
    )
    assert queue_counts()[SyncStatus.WAITING] == 5
    assert_counts_exact()

    moved = SyncQueueItem.objects.filter(sync_status=SyncStatus.PENDING).update(
        sync_status=SyncStatus.SYNCING, sync_attempts=1
    )
    assert moved == 3
    assert queue_counts()[SyncStatus.SYNCING] == 3
    assert_counts_exact()

    items[4].delete()
    SyncQueueItem.objects.filter(sync_status=SyncStatus.WAITING).delete()
    items[2].discovery.delete()  # its queue item goes with it
    assert_counts_exact()
    assert queue_counts() == {
        **dict.fromkeys(SyncStatus.values, 0),
        "syncing": 2,
        "synced": 2,
        "max_retries_exceeded": 1,
    }


@KEEPER
def test_counts_follow_the_operators_sql():
    """The reference's retry UPDATE, a raw INSERT in a state the project does not know, an
    upsert, an UPDATE of other columns and a raw DELETE: the counts follow each one."""
    failed = _item(1, SyncStatus.MAX_RETRIES_EXCEEDED, sync_attempts=10, sync_error="gone")
    synced = _item(2, SyncStatus.SYNCED)
    _sql(
        "UPDATE sync_queue SET sync_status = 'pending', sync_attempts = 0, sync_error = NULL"
        " WHERE id = %s",
        [failed.id],
    )
    assert queue_counts()[SyncStatus.PENDING] == 1
    assert_counts_exact()

    other = _discovery(3)
    _sql(
        "INSERT INTO sync_queue (discovery_id, sync_status, sync_attempts, max_attempts,"
        " created_at, metadata, operation) VALUES (%s, 'paused', 0, 10, %s, '{}', 'write')",
        [other.id, "2026-01-02T03:04:05Z"],
    )
    assert queue_counts()["paused"] == 1
    _sql(
        "INSERT INTO sync_queue (discovery_id, sync_status, sync_attempts, max_attempts,"
        " created_at, metadata, operation) VALUES (%s, 'pending', 0, 10, %s, '{}', 'write')"
        " ON CONFLICT (discovery_id) DO UPDATE SET sync_status = 'synced'",
        [other.id, "2026-01-02T03:04:05Z"],
    )
    _sql("UPDATE sync_queue SET sync_error = 'note' WHERE id = %s", [synced.id])
    assert_counts_exact()
    assert "paused" not in queue_counts()

    _sql("DELETE FROM sync_queue WHERE sync_status = 'synced'")
    assert queue_counts() == {**dict.fromkeys(SyncStatus.values, 0), "pending": 1}
    assert_counts_exact()


@KEEPER
@pytest.mark.parametrize("recursive_triggers", [False, True])
def test_counts_survive_sqlite_replace_and_ignore(recursive_triggers):
    """On SQLite, INSERT OR REPLACE and UPDATE OR REPLACE delete the rows they collide with
    (firing delete triggers only with recursive_triggers on), and INSERT OR IGNORE skips a
    row after its BEFORE trigger ran: the counts stay exact either way."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's own conflict clauses")
    _sql(f"PRAGMA recursive_triggers = {'ON' if recursive_triggers else 'OFF'}")
    try:
        synced = _item(1, SyncStatus.SYNCED)
        waiting = _item(2, SyncStatus.WAITING)
        insert = (
            "{verb} INTO sync_queue ({id}discovery_id, sync_status, sync_attempts, max_attempts,"
            " created_at, operation) VALUES ({id_value}%s, %s, 0, 10, '2026-01-02', 'write')"
        ).format
        _sql(insert(verb="INSERT OR REPLACE", id="", id_value=""), [synced.discovery_id, "pending"])
        assert_counts_exact()
        _sql(
            insert(verb="INSERT OR IGNORE", id="", id_value=""), [waiting.discovery_id, "conflict"]
        )
        assert_counts_exact()
        _sql(
            "UPDATE OR REPLACE sync_queue SET discovery_id = %s WHERE id = %s",
            [synced.discovery_id, waiting.id],
        )
        assert_counts_exact()
        _sql(
            insert(verb="REPLACE", id="id, ", id_value="%s, "),
            [waiting.id, waiting.discovery_id, "synced"],
        )
        assert_counts_exact()
        third = _item(3)
        # Collides with one row by id and with another by discovery: both go.
        _sql(
            insert(verb="REPLACE", id="id, ", id_value="%s, "),
            [waiting.id, third.discovery_id, "conflict"],
        )
        assert_counts_exact()
        assert queue_counts() == {**dict.fromkeys(SyncStatus.values, 0), "conflict": 1}
    finally:
        _sql("PRAGMA recursive_triggers = OFF")


@KEEPER
def test_counts_roll_back_with_the_change_that_moved_them():
    """A state change undone by its transaction's rollback leaves the counts as they were."""
    _item(1)
    before = queue_counts()
    with pytest.raises(RuntimeError), transaction.atomic(using=DEFAULT_DB_ALIAS):
        SyncQueueItem.objects.update(sync_status=SyncStatus.SYNCED)
        assert queue_counts()[SyncStatus.SYNCED] == 1
        raise RuntimeError("undo")
    assert queue_counts() == before
    assert_counts_exact()


def test_migration_counts_the_rows_already_queued(tmp_path):
    """Migrating a keeper.db whose queue already holds rows, some with times other tools wrote
    (the text 'now' included, which SQLite cannot index), starts the counts from those rows;
    the migration can be undone and done again."""
    keeper = tmp_path / "keeper.db"
    env = manage_env(keeper=keeper, haven=tmp_path / "VH-Database.db", USE_HAVEN_DATABASE="false")
    for target in ((), ("syncq", "0006")):  # migration 0007 undone, as on a keeper.db before it
        done = run_manage("migrate", *target, "--no-input", "-v0", env=env)
        assert done.returncode == 0, done.stderr
    rows = [
        ("synced", "2026-01-02T03:04:05Z"),
        ("synced", "now"),
        ("pending", "2026-01-02 03:04:05"),
        ("max_retries_exceeded", "2026-01-02T03:04:05+00:00"),
        ("paused", None),
    ]
    with sqlite3.connect(keeper) as conn:
        for n, (status, when) in enumerate(rows, start=1):
            conn.execute(
                "INSERT INTO discoveries (id, user_id, username, discovery_type, location,"
                " description, submission_timestamp) VALUES (?, '1', 'x', '🏛️', 'here', 'd', ?)",
                (n, "2026-01-02 03:04:05"),
            )
            conn.execute(
                "INSERT INTO sync_queue (discovery_id, sync_status, sync_attempts, max_attempts,"
                " created_at, synced_at, last_sync_attempt, metadata, operation)"
                " VALUES (?, ?, 1, 10, ?, ?, ?, '{}', 'write')",
                (n, status, when or "2026-01-02 03:04:05", when, when),
            )
    done = run_manage("migrate", "--no-input", "-v0", env=env)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(keeper) as conn:
        tally = dict(conn.execute("SELECT sync_status, SUM(n) FROM sync_queue_tally GROUP BY 1"))
        # Indexed time columns still take that text from other tools (no SQLite error).
        changed = conn.execute("UPDATE sync_queue SET last_sync_attempt = 'NOW'").rowcount
    assert tally == {"synced": 2, "pending": 1, "max_retries_exceeded": 1, "paused": 1}
    assert changed == len(rows)


# --- times whoever wrote them -------------------------------------------------------------------


@KEEPER
def test_last_sync_time_is_the_latest_attempt_whatever_its_form():
    """/sync/status's last_sync_time is the latest attempt as a time: a 'T…Z' row of the same
    day, and a later one within the same second, are read as times, not compared as text; a
    value naming no time, or the text 'now', is no attempt."""
    forms = {
        1: "2026-03-04 10:00:00.500000",
        2: "2026-03-04T10:00:00.900Z",  # the latest, in the same second as the first
        3: "2026-03-04T09:59:59Z",
        4: "not a time",
        5: "now",
    }
    for n, text in forms.items():
        item = _item(n, SyncStatus.SYNCED)
        _sql("UPDATE sync_queue SET last_sync_attempt = %s WHERE id = %s", [text, item.id])
    last = queue_status()["sync_worker"]["last_sync_time"]
    assert last == "2026-03-04T10:00:00.900000Z"


@KEEPER
def test_statistics_windows_skip_a_time_written_as_now():
    """A synced_at of the text 'now' (which SQLite would read as the clock, and cannot index)
    is stored as written and counted in no window, as Django reads it: missing."""
    now = timezone.now()
    counted = _item(1, SyncStatus.SYNCED, synced_at=now - timedelta(minutes=5))
    odd = _item(2, SyncStatus.SYNCED)
    _sql("UPDATE sync_queue SET synced_at = 'Now' WHERE id = %s", [odd.id])
    stats = queue_statistics(now=now)
    assert (stats["synced_last_hour"], stats["synced_last_day"]) == (1, 1)
    assert stats["counts"][SyncStatus.SYNCED] == 2
    assert sum(s["count"] for s in throughput_by_hour(now=now)) == 1
    assert counted.id != odd.id


@KEEPER
def test_sync_seconds_read_every_form_as_django_reads_it():
    """The queued→synced timings of /sync/statistics, read from the stored text, equal those of
    the times as Django reads them, for every form other tools write: 'T' and 'Z', offsets,
    fractions, a time naming no moment and one outside what can be shown."""
    forms = [
        ("2026-03-04 10:00:00", "2026-03-04 10:00:01.250000"),
        ("2026-03-04T10:00:00Z", "2026-03-04T12:00:30+02:00"),
        ("2026-03-04 10:00:00.5+00:00", "2026-03-04T10:00:02Z"),
        ("2026-03-04T10:00:00", "2026-03-04 09:59:00"),  # synced "before" queued: 0
        ("2026-02-30 10:00:00", "2026-03-04 10:00:00"),  # no such day
        ("0001-01-01 00:00:00", "2026-03-04 10:00:00"),  # outside what can be shown
        ("2026-03-04 10:00:00", "2026-03-04 10:00:03.123456789"),
    ]
    for n, (queued, done) in enumerate(forms):
        item = _item(n, SyncStatus.SYNCED)
        _sql(
            "UPDATE sync_queue SET created_at = %s, synced_at = %s WHERE id = %s",
            [queued, done, item.id],
        )
    read_by_django = SyncQueueItem.objects.values_list("created_at", "synced_at")
    expected = sorted(max(0.0, (d - q).total_seconds()) for q, d in read_by_django if q and d)
    assert expected == [0.0, 1.25, 1.5, 3.123456, 30.0]
    timing = queue_statistics()["sync_seconds"]
    assert timing == {"mean": round(sum(expected) / 5, 3), "p95": 30.0, "sample": 5}


# --- the claim ----------------------------------------------------------------------------------


@KEEPER
def test_due_ids_take_what_the_due_rule_says_lowest_ids_first(settings):
    """due_ids, the claim's index-read form, gives the due items of every kind, lowest id
    first, up to its limit; each of them is one due() and is_due() name."""
    now = timezone.now()
    lease = timedelta(seconds=settings.SYNC_LEASE_SECONDS)
    names = {}
    for n, (name, changes) in enumerate(queue_item_kinds(now, lease).items()):
        item = _item(n)
        SyncQueueItem.objects.filter(id=item.id).update(**changes)
        names[item.id] = name
    due = sorted(SyncQueueItem.objects.due(now).values_list("id", flat=True))
    assert SyncQueueItem.objects.due_ids(now, limit=100) == due
    assert {names[i] for i in due} == {
        "new",
        "reset by the operators' SQL",
        "past its backoff",
        "failed without a due time",
        "syncing, lapsed lease",
        "old bot's syncing row, long ago",
    }
    assert {i for i in names if SyncQueueItem.objects.get(id=i).is_due(now)} == set(due)
    assert SyncQueueItem.objects.due_ids(now, limit=3) == due[:3]
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        assert SyncQueueItem.objects.due_ids(now, limit=2, skip_locked=True) == due[:2]


@KEEPER
def test_due_ids_prefer_the_retries_whose_backoff_ended_first_beyond_the_limit():
    """With more items past their due time than the limit, the ones due longest are taken,
    whatever their ids; below the limit, every due item is."""
    now = timezone.now()
    late = [
        _item(n, sync_attempts=1, next_retry_after=now - timedelta(minutes=n)) for n in range(4)
    ]
    fresh = _item(10)
    taken = SyncQueueItem.objects.due_ids(now, limit=2)
    assert taken == sorted([late[3].id, late[2].id])
    assert fresh.id not in taken
    assert SyncQueueItem.objects.due_ids(now, limit=5) == sorted([*(i.id for i in late), fresh.id])


# --- query plans --------------------------------------------------------------------------------


def _plans(run) -> list[tuple[str, list[str]]]:
    """The SELECTs on sync_queue that ``run()`` sends, each with SQLite's EXPLAIN QUERY PLAN
    of it with its own parameters."""
    captured = []

    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        run()
    plans = []
    for sql, params in captured:
        if sql.lstrip().upper().startswith("SELECT") and '"sync_queue"' in sql:
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
                plans.append((sql, [row[-1] for row in cursor.fetchall()]))
    return plans


def _whole_queue_read(line: str) -> bool:
    """A plan step reading every row of sync_queue: a SCAN of the table itself (a SCAN of a
    partial index, or of an index under LIMIT 1 reading one entry, is not)."""
    words = line.split()
    return words[:1] == ["SCAN"] and words[1] in ("sync_queue", "U0") and "INDEX" not in line


def _fill_every_state() -> None:
    now = timezone.now()
    for n, status in enumerate(SyncStatus.values * 3):
        _item(
            n, status, sync_error="VH locked" if status != SyncStatus.SYNCED else None,
            last_sync_attempt=now, synced_at=now if status == SyncStatus.SYNCED else None,
            next_retry_after=now + timedelta(hours=1) if n % 2 else None, sync_attempts=n % 3,
        )  # fmt: skip


@KEEPER
def test_claim_and_status_queries_search_indexes():
    """The claim's reads (due_ids), /sync/status, /sync/failed and the bot's summary search an
    index each: no read of the whole queue, no temporary B-tree to sort it. (The latest
    attempt's DISTINCT runs over the items of one second, which the index has found.)"""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's EXPLAIN QUERY PLAN")
    _fill_every_state()
    plans = (
        _plans(lambda: SyncQueueItem.objects.due_ids(timezone.now(), limit=10))
        + _plans(queue_status)
        + _plans(lambda: failed_items(limit=20))
        + _plans(queue_summary)
    )
    assert len(plans) >= 9
    for sql, plan in plans:
        assert any("INDEX" in line for line in plan), (sql, plan)
        assert not any(_whole_queue_read(line) for line in plan), (sql, plan)
        sorts = [line for line in plan if "TEMP B-TREE" in line]
        assert sorts in ([], ["USE TEMP B-TREE FOR DISTINCT"]), (sql, plan)
        if sorts:
            assert any("INDEX sync_queue_last_attempt (<expr>=?)" in line for line in plan)


@KEEPER
def test_statistics_and_throughput_read_no_synced_row_outside_their_windows():
    """/sync/statistics and the dashboard's hourly series read indexes only: the synced items
    of their windows and the items not synced, never the whole queue."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's EXPLAIN QUERY PLAN")
    _fill_every_state()
    plans = _plans(queue_statistics) + _plans(throughput_by_hour)
    assert len(plans) >= 6
    for sql, plan in plans:
        assert any("INDEX" in line for line in plan), (sql, plan)
        assert not any(_whole_queue_read(line) for line in plan), (sql, plan)
    windows = [plan for sql, plan in plans if "COUNT(*)" in sql]
    assert windows and all("sync_queue_synced_at" in " ".join(plan) for plan in windows)


# --- PostgreSQL ---------------------------------------------------------------------------------

#: Run in ``manage.py shell`` on PostgreSQL: every ORM door, then the claim's and status
#: queries' plans; prints one JSON object.
PG_SCRIPT = textwrap.dedent(
    """
    import json
    from datetime import timedelta
    import psycopg
    from django.db import connection, transaction
    from django.utils import timezone
    from discoveries.models import Discovery
    from syncq.models import SyncQueueItem
    from syncq.selectors import queue_counts, queue_status, failed_items, queue_summary

    def grouped():
        with connection.cursor() as cursor:
            cursor.execute("SELECT sync_status, COUNT(*) FROM sync_queue GROUP BY sync_status")
            return {status: n for status, n in cursor.fetchall()}

    def exact():
        counts = {k: v for k, v in queue_counts().items() if v}
        return counts == grouped()

    checks = {}
    def make(n, status="pending"):
        d = Discovery.objects.create(user_id="1", username="x", discovery_type="D",
                                     location="here", description=f"d{n}")
        return SyncQueueItem.objects.create(discovery=d, sync_status=status)
    items = [make(n) for n in range(6)] + [make(10 + n, "synced") for n in range(3)]
    checks["create"] = exact()
    items[0].sync_status = "max_retries_exceeded"; items[0].save()
    checks["save"] = exact()
    SyncQueueItem.objects.filter(sync_status="synced").update(sync_status="waiting")
    checks["bulk update"] = exact()
    items[8].delete(); Discovery.objects.filter(id=items[7].discovery_id).delete()
    checks["delete"] = exact()
    with transaction.atomic():
        SyncQueueItem.objects.update(sync_status="conflict")
        transaction.set_rollback(True)
    checks["rollback"] = exact()

    other = psycopg.connect(URL)
    held = [r[0] for r in other.execute(
        "SELECT id FROM sync_queue WHERE sync_status = 'pending' ORDER BY id LIMIT 2 FOR UPDATE"
    ).fetchall()]
    with transaction.atomic():
        taken = SyncQueueItem.objects.due_ids(timezone.now(), limit=10, skip_locked=True)
    other.rollback()
    checks["skip locked"] = bool(taken) and set(taken).isdisjoint(held)

    captured = []
    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)
    with connection.execute_wrapper(capture):
        with transaction.atomic():
            SyncQueueItem.objects.due_ids(timezone.now(), limit=10, skip_locked=True)
        queue_status(); failed_items(limit=20); queue_summary()
    plans = []
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        for sql, params in captured:
            if sql.lstrip().upper().startswith("SELECT") and '"sync_queue"' in sql:
                cursor.execute("EXPLAIN " + sql, params)
                plans.append([row[0] for row in cursor.fetchall()])
    print(json.dumps({"checks": checks, "plans": plans}))
    """
)


def test_counts_and_claim_on_postgres(postgres_url, tmp_path):  # noqa: F811
    """On PostgreSQL the counts follow raw SQL (inserts, the reference's retry UPDATE, an
    upsert, deletes, TRUNCATE), every ORM door and a rollback; writers that fold the tally
    while another transaction's change is open lose nothing; the claim's reads skip rows
    another worker holds; and the claim's and status queries each search an index."""
    psycopg = pytest.importorskip("psycopg")
    haven = haven_file_create(tmp_path / "VH-Database.db", with_demo_data=True)
    env = manage_env(keeper=tmp_path / "unused.db", haven=haven, DATABASE_URL=postgres_url)
    done = run_manage("migrate", "--no-input", "-v0", env=env)
    assert done.returncode == 0, done.stderr

    def grouped(conn) -> dict[str, int]:
        rows = conn.execute("SELECT sync_status, COUNT(*) FROM sync_queue GROUP BY 1")
        return dict(rows.fetchall())

    def tallied(conn) -> dict[str, int]:
        rows = conn.execute(
            "SELECT sync_status, SUM(n) FROM sync_queue_tally GROUP BY 1 HAVING SUM(n) <> 0"
        )
        return {status: int(n) for status, n in rows.fetchall()}

    with (
        psycopg.connect(postgres_url, autocommit=True) as conn,
        psycopg.connect(postgres_url) as open_txn,
    ):
        conn.execute(
            "INSERT INTO discoveries (user_id, username, discovery_type, location,"
            " description, submission_timestamp) SELECT '1', 'x', 'D', 'here', 'd', now()"
            " FROM generate_series(1, 300)"
        )
        conn.execute(
            "INSERT INTO sync_queue (discovery_id, sync_status, sync_attempts, max_attempts,"
            " created_at, metadata, operation) SELECT g, CASE WHEN g % 3 = 0 THEN 'synced'"
            " ELSE 'pending' END, 0, 10, now(), '{}', 'write' FROM generate_series(1, 200) AS g"
        )
        assert tallied(conn) == grouped(conn) == {"synced": 66, "pending": 134}
        # Another transaction's change, open while others write and fold the tally.
        open_txn.execute("UPDATE sync_queue SET sync_status = 'waiting' WHERE id <= 20")
        for n in range(100):  # more statements than the tally keeps rows before folding
            conn.execute(
                "UPDATE sync_queue SET sync_status = %s WHERE id = %s",
                ["max_retries_exceeded" if n % 2 else "syncing", 100 + n],
            )
        assert conn.execute("SELECT COUNT(*) FROM sync_queue_tally").fetchone()[0] < 80
        assert tallied(conn) == grouped(conn)
        open_txn.commit()
        assert tallied(conn) == grouped(conn)
        conn.execute(
            "UPDATE sync_queue SET sync_status = 'pending', sync_attempts = 0, sync_error = NULL"
            " WHERE id = 101"
        )
        conn.execute(
            "INSERT INTO sync_queue (discovery_id, sync_status, sync_attempts, max_attempts,"
            " created_at, metadata, operation) VALUES (5, 'paused', 0, 10, now(), '{}', 'write'),"
            " (201, 'paused', 0, 10, now(), '{}', 'write') ON CONFLICT (discovery_id)"
            " DO UPDATE SET sync_status = EXCLUDED.sync_status"
        )
        conn.execute("DELETE FROM sync_queue WHERE sync_status = 'synced'")
        assert tallied(conn)["paused"] == 2
        assert tallied(conn) == grouped(conn)
        conn.execute("TRUNCATE sync_queue CASCADE")
        assert tallied(conn) == grouped(conn) == {}

    script = f"URL = {postgres_url!r}\n" + PG_SCRIPT
    done = run_manage("shell", "-v0", "-c", script, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["checks"] == dict.fromkeys(
        ["create", "save", "bulk update", "delete", "rollback", "skip locked"], True
    )
    assert len(result["plans"]) >= 8
    for plan in result["plans"]:
        text = "\n".join(plan)
        assert "Seq Scan on sync_queue" not in text, text
        assert "Index" in text, text
    claim = result["plans"][:4]
    assert all("Sort" not in "\n".join(plan) for plan in claim), claim
