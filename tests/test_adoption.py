"""Moving an old bot's keeper.db onto Keeper Sync, end to end with real ``manage.py`` processes:
``migrate`` keeps every row, ``sync_backfill`` links what the old bot already wrote into VH
(REFERENCE.md: fixture rows 6–12 ↔ VH rows 24–30) and queues the rest, ``sync_now`` writes
the rest once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from discoveries.haven.files import haven_file_create
from tests.conftest import (
    LEGACY_KEEPER,
    SAMPLE_VH,
    manage_env,
    run_manage,
    writable_copy,
)

#: Discoveries whose place VH lacks are written without it, as before waiting existed: these
#: tests are about adoption; waiting is pinned in tests/test_legacy_truth.py.
WRITE_UNPLACED = {"SYNC_WRITE_UNPLACED": "true"}

#: The two submitters of legacy_keeper.db.
LEGACY_USERS = ("343202264256216529", "930484704533555958")

#: The old bot's discoveries table, as in legacy_keeper.db.
LEGACY_DISCOVERIES_DDL = """
CREATE TABLE discoveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    username TEXT NOT NULL,
    guild_id TEXT,
    discovery_type TEXT NOT NULL,
    location TEXT NOT NULL,
    system_name TEXT,
    time_period TEXT,
    condition TEXT,
    description TEXT NOT NULL,
    significance TEXT,
    evidence_url TEXT,
    related_discoveries TEXT,
    coordinates TEXT,
    planet_name TEXT,
    galaxy_name TEXT,
    submission_timestamp DATETIME DEFAULT CURRENT_TIMESTAMP,
    analysis_status TEXT DEFAULT 'pending',
    pattern_matches INTEGER DEFAULT 0,
    mystery_tier INTEGER DEFAULT 0,
    tags TEXT,
    metadata TEXT
)
"""

#: An old bot's sync_queue: the reference's columns, none of our lease columns.
LEGACY_SYNC_QUEUE_DDL = """
CREATE TABLE sync_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    discovery_id INTEGER NOT NULL UNIQUE,
    sync_status TEXT DEFAULT 'pending',
    sync_attempts INTEGER DEFAULT 0,
    max_attempts INTEGER DEFAULT 10,
    last_sync_attempt TIMESTAMP,
    next_retry_after TIMESTAMP,
    sync_error TEXT,
    haven_discovery_id INTEGER,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    synced_at TIMESTAMP,
    metadata TEXT,
    FOREIGN KEY (discovery_id) REFERENCES discoveries(id)
);
CREATE INDEX idx_sync_queue_status ON sync_queue(sync_status, next_retry_after);
"""

TINY_USER = "111111111111111111"
TINY_OTHER_USER = "222222222222222222"

#: Three legacy-style rows: an old ruin the old bot already wrote into VH, a fauna find on
#: a moon, and a mineral in a system VH does not know.
TINY_ROWS = (
    (
        1,
        TINY_USER,
        "Old Timer",
        "🏛️",
        "Alpha Prime",
        "Demo Alpha",
        "Old ruin, already in VH",
        "2025-11-12 01:53:35",
        "",
        '{"structure_type": "Ancient Ruin"}',
    ),
    (
        2,
        TINY_USER,
        "Old Timer",
        "🦗",
        "Beta Pebble",
        "Demo Beta",
        "Crabs on a pebble",
        "2025-11-12 02:08:51",
        0,
        "{}",
    ),
    (
        3,
        TINY_OTHER_USER,
        "Newcomer",
        "💎",
        "Nowhere",
        "Unknown System",
        "Copper, somewhere",
        "2025-11-12 02:16:36",
        2,
        '{"resource_type": "Copper"}',
    ),
)

LEGACY_COLUMNS = (
    "id, user_id, username, guild_id, discovery_type, location, system_name, time_period,"
    " condition, description, significance, evidence_url, related_discoveries, coordinates,"
    " planet_name, galaxy_name, submission_timestamp, analysis_status, pattern_matches,"
    " mystery_tier, tags, metadata"
)


# --- helpers --------------------------------------------------------------------------------


def manage(*args: str, keeper: Path, haven: Path, **extra: str) -> str:
    """Run ``manage.py`` in a new process on these files, with ``extra`` settings in its
    environment; returns its output, fails on error."""
    result = run_manage(*args, env=manage_env(keeper=keeper, haven=haven, **extra))
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def query(path: Path, sql: str, params=()) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def table_counts(path: Path) -> dict[str, int]:
    tables = [
        name for (name,) in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    ]
    return {t: query(path, f'SELECT COUNT(*) FROM "{t}"')[0][0] for t in tables}


def columns(path: Path, table: str) -> list[str]:
    return [row[1] for row in query(path, f'PRAGMA table_info("{table}")')]


def legacy_rows(path: Path) -> list[tuple]:
    return query(path, f"SELECT {LEGACY_COLUMNS} FROM discoveries ORDER BY id")


def tiny_keeper(
    path: Path, *, with_sync_queue: bool = False, system_name_last: bool = False
) -> Path:
    """A keeper.db as the old bot left it: its discoveries table with three rows, and its
    ``patterns`` table, which is not ours, with two. ``system_name_last``: the column was
    added by a later ALTER TABLE, as in some old files."""
    conn = sqlite3.connect(path)
    try:
        if system_name_last:
            conn.execute(LEGACY_DISCOVERIES_DDL.replace("    system_name TEXT,\n", ""))
            conn.execute("ALTER TABLE discoveries ADD COLUMN system_name TEXT")
        else:
            conn.execute(LEGACY_DISCOVERIES_DDL)
        conn.executemany(
            "INSERT INTO discoveries (id, user_id, username, guild_id, discovery_type, location,"
            " system_name, description, submission_timestamp, pattern_matches, mystery_tier,"
            " tags, related_discoveries, evidence_url, metadata)"
            " VALUES (?, ?, ?, '987654321098765432', ?, ?, ?, ?, ?, ?, 1, '[]', 'f', '', ?)",
            TINY_ROWS,
        )
        conn.execute(
            "CREATE TABLE patterns (id INTEGER PRIMARY KEY AUTOINCREMENT, pattern_name TEXT"
            " NOT NULL, pattern_type TEXT NOT NULL, discovery_count INTEGER DEFAULT 0)"
        )
        conn.executemany(
            "INSERT INTO patterns (pattern_name, pattern_type, discovery_count) VALUES (?, ?, ?)",
            [("Singing Crabs", "regional_pattern", 2), ("Copper Belt", "type_pattern", 1)],
        )
        if with_sync_queue:
            conn.executescript(LEGACY_SYNC_QUEUE_DDL)
        conn.commit()
    finally:
        conn.close()
    return path


def demo_haven_with_old_bot_row(path: Path) -> tuple[Path, int]:
    """A demo VH file holding the row the old bot wrote for tiny keeper row 1 (same
    submitter, timestamp and description); returns the path and that row's id."""
    haven_file_create(path, with_demo_data=True)
    conn = sqlite3.connect(path)
    try:
        # Some rows of other people first, so the old bot's row id is not 1.
        for n in range(3):
            conn.execute(
                "INSERT INTO discoveries (discovery_type, location_type, description,"
                " discord_user_id, submission_timestamp) VALUES ('📖', 'space', ?, ?, ?)",
                (f"lore {n}", "999999999999999999", "2025-10-01 00:00:00"),
            )
        old_id = conn.execute(
            "INSERT INTO discoveries (discovery_type, system_id, planet_id, location_type,"
            " location_name, description, discovered_by, discord_user_id, submission_timestamp,"
            " structure_type) SELECT '🏛️', s.id, p.id, 'planet', 'Alpha Prime', ?,"
            " 'Old Timer', ?, ?, 'Ancient Ruin' FROM systems s JOIN planets p"
            " ON p.system_id = s.id WHERE s.name = 'Demo Alpha' AND p.name = 'Alpha Prime'",
            ("Old ruin, already in VH", TINY_USER, "2025-11-12 01:53:35"),
        ).lastrowid
        conn.commit()
    finally:
        conn.close()
    return path, old_id


def vh_count(path: Path, users) -> int:
    marks = ", ".join("?" for _ in users)
    return query(
        path, f"SELECT COUNT(*) FROM discoveries WHERE discord_user_id IN ({marks})", users
    )[0][0]


@pytest.fixture
def legacy_files(tmp_path):
    """Writable copies of the real legacy keeper.db and sample VH-Database.db."""
    keeper = writable_copy(LEGACY_KEEPER, tmp_path / "keeper.db")
    haven = writable_copy(SAMPLE_VH, tmp_path / "VH-Database.db")
    return keeper, haven


# --- the real legacy files (examples/) ------------------------------------------------------


def test_migrate_keeps_every_row_of_the_old_bot(legacy_files):
    """migrate on the legacy keeper.db keeps every row of every table and the old values."""
    keeper, haven = legacy_files
    before = table_counts(keeper)
    before_sequences = set(query(keeper, "SELECT name, seq FROM sqlite_sequence"))
    before_rows = legacy_rows(keeper)
    others = [t for t in before if t not in ("discoveries", "sqlite_sequence")]
    before_others = {t: query(keeper, f'SELECT * FROM "{t}" ORDER BY rowid') for t in others}
    assert before["discoveries"] == 12

    manage("migrate", "--no-input", keeper=keeper, haven=haven)

    after = table_counts(keeper)
    kept = {t: after.get(t) for t in before if t != "sqlite_sequence"}
    assert kept == {t: n for t, n in before.items() if t != "sqlite_sequence"}
    assert {t: query(keeper, f'SELECT * FROM "{t}" ORDER BY rowid') for t in others} == (
        before_others
    )
    assert before_sequences <= set(query(keeper, "SELECT name, seq FROM sqlite_sequence"))
    assert legacy_rows(keeper) == before_rows
    assert {"location_type", "haven_discovery_id"} <= set(columns(keeper, "discoveries"))
    assert query(keeper, "SELECT COUNT(*) FROM discoveries WHERE haven_discovery_id IS NOT NULL")[
        0
    ] == (0,)
    assert after["sync_queue"] == 0


def test_adoption_links_the_old_rows_and_writes_the_rest_once(legacy_files):
    """Backfill links the 7 rows the old bot wrote (VH 24–30) and sync writes the other 5
    (without their place, which the older sample file takes, as SYNC_WRITE_UNPLACED asks)."""
    keeper, haven = legacy_files
    assert vh_count(haven, LEGACY_USERS) == 7
    before_rows = legacy_rows(keeper)
    manage("migrate", "--no-input", keeper=keeper, haven=haven)

    assert "linked 7, queued 5" in manage("sync_backfill", keeper=keeper, haven=haven)
    out = manage("sync_now", "--until-idle", keeper=keeper, haven=haven, **WRITE_UNPLACED)
    assert "total: claimed 5, synced 5, retrying 0, exceeded 0" in out

    assert query(keeper, "SELECT sync_status, COUNT(*) FROM sync_queue GROUP BY sync_status") == [
        ("synced", 12)
    ]
    assert vh_count(haven, LEGACY_USERS) == 12
    assert query(haven, "SELECT COUNT(*) FROM discoveries") == [(12,)]
    linked = dict(query(keeper, "SELECT id, haven_discovery_id FROM discoveries WHERE id >= 6"))
    assert sorted(linked.values()) == list(range(24, 31))
    conn = sqlite3.connect(haven)
    try:
        conn.execute("ATTACH DATABASE ? AS keeper", (str(keeper),))
        # Every keeper discovery sits on the VH row of the same submitter, time and text.
        mismatched = conn.execute(
            "SELECT k.id FROM keeper.discoveries k LEFT JOIN discoveries v"
            " ON v.id = k.haven_discovery_id AND v.discord_user_id = k.user_id"
            " AND v.submission_timestamp = k.submission_timestamp"
            " AND v.description = k.description WHERE v.id IS NULL"
        ).fetchall()
        written = conn.execute(
            "SELECT k.id FROM keeper.discoveries k WHERE k.haven_discovery_id > 30 ORDER BY k.id"
        ).fetchall()
    finally:
        conn.close()
    assert mismatched == []
    assert written == [(1,), (2,), (3,), (4,), (5,)]

    assert "linked 0, queued 0" in manage("sync_backfill", keeper=keeper, haven=haven)
    assert "total: claimed 0" in manage("sync_now", "--until-idle", keeper=keeper, haven=haven)
    assert vh_count(haven, LEGACY_USERS) == 12
    assert legacy_rows(keeper) == before_rows, "the sync never rewrites the old bot's values"


# --- legacy-style files built by the tests --------------------------------------------------


@pytest.mark.parametrize("system_name_last", [False, True], ids=["as-created", "altered"])
def test_tiny_legacy_keeper_db_is_adopted_end_to_end(system_name_last, tmp_path):
    """migrate + backfill + sync_now adopt a legacy-style keeper.db: rows kept, old row linked."""
    keeper = tiny_keeper(tmp_path / "keeper.db", system_name_last=system_name_last)
    haven, _ = demo_haven_with_old_bot_row(tmp_path / "VH-Database.db")
    assert (columns(keeper, "discoveries")[-1] == "system_name") is system_name_last
    old_id = query(
        haven, "SELECT id FROM discoveries WHERE description = ?", ["Old ruin, already in VH"]
    )[0][0]
    before_rows = legacy_rows(keeper)

    manage("migrate", "--no-input", keeper=keeper, haven=haven)
    assert table_counts(keeper)["patterns"] == 2
    assert legacy_rows(keeper) == before_rows
    assert "linked 1, queued 2" in manage("sync_backfill", keeper=keeper, haven=haven)
    out = manage("sync_now", "--until-idle", keeper=keeper, haven=haven, **WRITE_UNPLACED)
    assert "total: claimed 2, synced 2, retrying 0, exceeded 0" in out

    users = (TINY_USER, TINY_OTHER_USER)
    assert vh_count(haven, users) == 3
    haven_ids = dict(query(keeper, "SELECT id, haven_discovery_id FROM discoveries"))
    assert haven_ids[1] == old_id
    moon_row = query(
        haven,
        "SELECT d.location_type, m.name FROM discoveries d JOIN moons m ON m.id = d.moon_id"
        " WHERE d.id = ?",
        [haven_ids[2]],
    )
    assert moon_row == [("moon", "Beta Pebble")]
    assert query(haven, "SELECT system_id FROM discoveries WHERE id = ?", [haven_ids[3]]) == [
        (None,)
    ]

    assert "linked 0, queued 0" in manage("sync_backfill", keeper=keeper, haven=haven)
    manage("sync_now", "--until-idle", keeper=keeper, haven=haven)
    assert vh_count(haven, users) == 3
    assert query(keeper, "SELECT pattern_name FROM patterns ORDER BY id") == [
        ("Singing Crabs",),
        ("Copper Belt",),
    ]


@pytest.mark.parametrize("source", ["tiny", "legacy"])
def test_migrating_twice_changes_nothing(source, tmp_path):
    """A second migrate applies nothing and leaves every table and schedule as it was."""
    if source == "legacy":
        keeper = writable_copy(LEGACY_KEEPER, tmp_path / "keeper.db")
    else:
        keeper = tiny_keeper(tmp_path / "keeper.db")
    haven = haven_file_create(tmp_path / "VH-Database.db", with_demo_data=True)

    manage("migrate", "--no-input", keeper=keeper, haven=haven)
    counts = table_counts(keeper)
    schema = query(keeper, "SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
    out = manage("migrate", "--no-input", keeper=keeper, haven=haven)

    assert "No migrations to apply" in out
    assert table_counts(keeper) == counts
    assert query(keeper, "SELECT type, name, sql FROM sqlite_master ORDER BY type, name") == schema
    assert counts["django_q_schedule"] == 4  # two sync runs a minute, prune, verify


def test_old_bot_sync_queue_is_adopted_and_its_stuck_row_recovered(tmp_path):
    """An old sync_queue without lease columns keeps its rows; its stuck 'syncing' row syncs."""
    keeper = tiny_keeper(tmp_path / "keeper.db", with_sync_queue=True)
    haven, old_id = demo_haven_with_old_bot_row(tmp_path / "VH-Database.db")
    conn = sqlite3.connect(keeper)
    conn.executemany(
        "INSERT INTO sync_queue (discovery_id, sync_status, sync_attempts, max_attempts,"
        " last_sync_attempt, sync_error, haven_discovery_id, created_at, synced_at, metadata)"
        " VALUES (?, ?, ?, 10, ?, ?, ?, ?, ?, '{}')",
        [
            (1, "synced", 1, "2025-11-12 01:53:40", None, old_id, "2025-11-12 01:53:35",
             "2025-11-12 01:53:40"),
            (2, "syncing", 1, "2025-11-12 02:09:00", None, None, "2025-11-12 02:08:51", None),
        ],
    )  # fmt: skip
    conn.commit()
    conn.close()
    old_queue = query(keeper, "SELECT * FROM sync_queue ORDER BY id")

    manage("migrate", "--no-input", keeper=keeper, haven=haven)

    queue_columns = columns(keeper, "sync_queue")
    assert {"leased_until", "lease_token"} <= set(queue_columns)
    assert [row[:12] for row in query(keeper, "SELECT * FROM sync_queue ORDER BY id")] == old_queue

    out = manage("sync_now", "--until-idle", keeper=keeper, haven=haven)

    assert "total: claimed 1, synced 1, retrying 0, exceeded 0" in out
    assert query(keeper, "SELECT sync_status, sync_attempts FROM sync_queue WHERE id = 2") == [
        ("synced", 2)
    ]
    assert "linked 0, queued 1" in manage("sync_backfill", keeper=keeper, haven=haven)
    out = manage("sync_now", "--until-idle", keeper=keeper, haven=haven, **WRITE_UNPLACED)
    assert "synced 1" in out
    states = dict(query(keeper, "SELECT discovery_id, sync_status FROM sync_queue"))
    assert states == {1: "synced", 2: "synced", 3: "synced"}
    assert query(keeper, "SELECT haven_discovery_id FROM sync_queue WHERE discovery_id = 1") == [
        (old_id,)
    ]
    assert vh_count(haven, (TINY_USER, TINY_OTHER_USER)) == 3


def test_stale_references_in_the_old_bots_tables_do_not_stop_migrate(tmp_path):
    """A pattern_discoveries row pointing at a long-deleted discovery is kept, and migrate runs."""
    keeper = tiny_keeper(tmp_path / "keeper.db")
    haven, _ = demo_haven_with_old_bot_row(tmp_path / "VH-Database.db")
    conn = sqlite3.connect(keeper)
    conn.execute(
        "CREATE TABLE pattern_discoveries (id INTEGER PRIMARY KEY AUTOINCREMENT, pattern_id"
        " INTEGER, discovery_id INTEGER, FOREIGN KEY (pattern_id) REFERENCES patterns (id),"
        " FOREIGN KEY (discovery_id) REFERENCES discoveries (id))"
    )
    conn.execute("INSERT INTO pattern_discoveries (pattern_id, discovery_id) VALUES (1, 999)")
    conn.commit()
    conn.close()

    manage("migrate", "--no-input", keeper=keeper, haven=haven)

    assert query(keeper, "SELECT pattern_id, discovery_id FROM pattern_discoveries") == [(1, 999)]
    assert "queued" in manage("sync_backfill", keeper=keeper, haven=haven)


def test_old_bot_iso_timestamps_are_read_as_the_same_instants(tmp_path):
    """Queue times an old bot wrote as ISO 8601 with T and Z become Django's UTC text, so an
    item due earlier the same day is due at once; non-dates stay as they were."""
    keeper = tiny_keeper(tmp_path / "keeper.db", with_sync_queue=True)
    haven, _ = demo_haven_with_old_bot_row(tmp_path / "VH-Database.db")
    conn = sqlite3.connect(keeper)
    today = conn.execute("SELECT strftime('%Y-%m-%d', 'now')").fetchone()[0]
    conn.execute(
        "INSERT INTO sync_queue (discovery_id, sync_status, sync_attempts, max_attempts,"
        " next_retry_after, created_at, sync_error, metadata)"
        " VALUES (2, 'pending', 1, 10, ?, ?, 'x', '{}')",
        (f"{today}T00:00:00Z", "2025-11-12T02:08:51+02:00"),
    )
    conn.execute(
        "INSERT INTO sync_queue (discovery_id, sync_status, sync_attempts, max_attempts,"
        " next_retry_after, created_at, metadata)"
        " VALUES (3, 'pending', 1, 10, NULL, 'not a date T', '{}')"
    )
    conn.commit()
    conn.close()

    manage("migrate", "--no-input", keeper=keeper, haven=haven)

    rows = query(keeper, "SELECT discovery_id, next_retry_after, created_at FROM sync_queue")
    assert sorted(rows) == [
        (2, f"{today} 00:00:00.000", "2025-11-12 00:08:51.000"),
        (3, None, "not a date T"),
    ]
    out = manage("sync_now", keeper=keeper, haven=haven)
    assert query(keeper, "SELECT sync_status FROM sync_queue WHERE discovery_id = 2") == [
        ("synced",)
    ], out


def test_backfill_gives_discoveries_the_vh_id_an_old_bot_recorded(tmp_path):
    """A discovery whose old-bot queue row is synced gets that VH id on backfill and is not
    queued again."""
    keeper = tiny_keeper(tmp_path / "keeper.db", with_sync_queue=True)
    haven, old_id = demo_haven_with_old_bot_row(tmp_path / "VH-Database.db")
    conn = sqlite3.connect(keeper)
    conn.execute(
        "INSERT INTO sync_queue (discovery_id, sync_status, sync_attempts, max_attempts,"
        " haven_discovery_id, created_at, synced_at, metadata)"
        " VALUES (1, 'synced', 1, 10, ?, '2025-11-12 01:53:35', '2025-11-12 01:53:40', '{}')",
        (old_id,),
    )
    conn.commit()
    conn.close()
    manage("migrate", "--no-input", keeper=keeper, haven=haven)

    assert "linked 0, queued 2" in manage("sync_backfill", keeper=keeper, haven=haven)

    assert query(keeper, "SELECT haven_discovery_id FROM discoveries WHERE id = 1") == [(old_id,)]


def test_old_sync_queue_with_repeated_discoveries_is_refused_clearly(tmp_path):
    """An old sync_queue holding two rows for one discovery stops migrate with a message
    naming the discovery id, and keeps both rows."""
    keeper = tiny_keeper(tmp_path / "keeper.db")
    haven, _ = demo_haven_with_old_bot_row(tmp_path / "VH-Database.db")
    conn = sqlite3.connect(keeper)
    conn.executescript(
        LEGACY_SYNC_QUEUE_DDL.replace(
            "discovery_id INTEGER NOT NULL UNIQUE", "discovery_id INTEGER"
        )
    )
    conn.executemany(
        "INSERT INTO sync_queue (discovery_id, sync_status, metadata) VALUES (?, 'pending', '{}')",
        [(2,), (2,), (3,)],
    )
    conn.commit()
    conn.close()

    result = run_manage("migrate", "--no-input", env=manage_env(keeper=keeper, haven=haven))

    assert result.returncode != 0
    assert "several rows for discovery_id 2" in result.stderr
    assert query(keeper, "SELECT COUNT(*) FROM sync_queue") == [(3,)]


#: Legacy rows given the submission time in other forms, each the same instant as before:
#: {keeper id: (keeper.db value, VH value of its old-bot row or None to keep the sample's)}.
OTHER_FORMS = {
    6: (1762916007, 1762916007),  # 2025-11-12 02:53:27, epoch seconds on both sides
    7: (1762916576000, "2025-11-12T03:02:56Z"),  # epoch milliseconds; ISO with T and Z
    9: ("2025-11-12T01:53:35Z", "2025-11-12T03:53:35+02:00"),
    10: ("2025-11-12T04:08:51+02:00", 1762913331000),
}
#: The VH row the old bot wrote for each legacy row (REFERENCE.md: rows 6–12 ↔ VH 24–30).
OLD_BOT_ROWS = {6: 29, 7: 30, 8: 24, 9: 25, 10: 26, 11: 27, 12: 28}


def test_legacy_times_in_other_forms_are_read_and_linked_not_written_again(legacy_files):
    """Epoch seconds, milliseconds and ISO text with T, Z or an offset, in keeper.db and in VH,
    are read as the instants they name: migrate rewrites the keeper values into Django's UTC
    text, backfill links each to the old bot's row and writes nothing; a time that cannot be
    read is left as it is, logged by migrate, and named by discovery_timestamp_problem."""
    keeper, haven = legacy_files
    before = dict(query(keeper, "SELECT id, submission_timestamp FROM discoveries"))
    k, v = sqlite3.connect(keeper), sqlite3.connect(haven)
    for keeper_id, (keeper_value, vh_value) in OTHER_FORMS.items():
        k.execute(
            "UPDATE discoveries SET submission_timestamp = ? WHERE id = ?",
            (keeper_value, keeper_id),
        )
        v.execute(
            "UPDATE discoveries SET submission_timestamp = ? WHERE id = ?",
            (vh_value, OLD_BOT_ROWS[keeper_id]),
        )
    k.execute("UPDATE discoveries SET submission_timestamp = 'last tuesday' WHERE id = 1")
    k.commit()
    v.commit()
    k.close()
    v.close()
    vh_before = query(haven, "SELECT * FROM discoveries ORDER BY id")

    result = run_manage("migrate", "--no-input", env=manage_env(keeper=keeper, haven=haven))

    assert result.returncode == 0, result.stderr
    assert (
        "keeper discovery 1: submission_timestamp 'last tuesday' cannot be read as a time"
        " (epoch seconds/ms or ISO 8601)"
    ) in result.stderr
    after = dict(query(keeper, "SELECT id, submission_timestamp FROM discoveries"))
    assert after == {**before, 1: "last tuesday"}, "the same instants, in Django's UTC text"
    assert query(keeper, "SELECT DISTINCT typeof(submission_timestamp) FROM discoveries") == [
        ("text",)
    ]
    assert query(haven, "SELECT * FROM discoveries ORDER BY id") == vh_before

    assert "linked 7, queued 5" in manage("sync_backfill", keeper=keeper, haven=haven)

    assert query(haven, "SELECT COUNT(*) FROM discoveries") == [(7,)]
    linked = dict(query(keeper, "SELECT id, haven_discovery_id FROM discoveries WHERE id >= 6"))
    assert linked == OLD_BOT_ROWS
    problems = manage(
        "shell",
        "--no-imports",
        "-c",
        "from discoveries.models import Discovery, discovery_timestamp_problem as p\n"
        "for d in Discovery.objects.filter(id__in=[1, 6]).order_by('id'): print(d.id, p(d))",
        keeper=keeper,
        haven=haven,
    )
    assert problems.splitlines() == [
        "1 submission_timestamp 'last tuesday' cannot be read as a time"
        " (epoch seconds/ms or ISO 8601)",
        "6 None",
    ]


def test_an_old_row_with_bytes_that_are_not_utf8_does_not_stop_the_others(legacy_files):
    """One legacy description holding Latin-1 bytes: backfill still queues every discovery and
    the sync writes that one with U+FFFD where the bytes were."""
    keeper, haven = legacy_files
    conn = sqlite3.connect(keeper)
    conn.execute(
        "UPDATE discoveries SET description = CAST(? AS TEXT) WHERE id = 1", [b"caf\xe9 ruins"]
    )
    conn.commit()
    conn.close()
    manage("migrate", "--no-input", keeper=keeper, haven=haven)
    assert "linked 7, queued 5" in manage("sync_backfill", keeper=keeper, haven=haven)
    out = manage("sync_now", "--until-idle", keeper=keeper, haven=haven, **WRITE_UNPLACED)
    assert "synced 5" in out
    assert query(
        haven, "SELECT COUNT(*) FROM discoveries WHERE description = ?", ["caf\ufffd ruins"]
    ) == [(1,)]
