"""The chaos suite's own check: it must see a lost, a doubled and a stuck discovery, and after
edits and deletes a stale and an undeleted one, or its zeros would mean nothing."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import chaos.harness
from chaos.harness import (
    OTHER_PLANET,
    PLANET,
    Change,
    Outcome,
    Workspace,
    group_states,
    outcome_table,
    under_ci,
    wait_until,
)
from chaos.scenarios import changes_finish, changes_start, dst_change_next, synced_first


def test_the_invariant_check_sees_lost_doubled_and_stuck_items(tmp_path):
    """Four synced discoveries check clean; then one VH row doubled, one VH row deleted and
    one queue item set back to syncing are each counted, and only once."""
    ws = Workspace(tmp_path / "ws")
    ws.manage("migrate", "--no-input", "-v0")
    descriptions = ws.submit("check", 4)
    ws.manage("sync_now", "--until-idle")
    clean = ws.check("clean", descriptions, 0.0)
    assert (clean.items, clean.lost, clean.duplicated, clean.stuck) == (4, 0, 0, 0)

    with sqlite3.connect(ws.haven) as vh:
        vh.execute(
            "INSERT INTO discoveries (discovery_type, location_type, description) "
            "SELECT discovery_type, location_type, description FROM discoveries "
            "WHERE description = ?",
            (descriptions[0],),
        )
        vh.execute("DELETE FROM discoveries WHERE description = ?", (descriptions[1],))
    with sqlite3.connect(ws.keeper) as keeper:
        keeper.execute(
            "UPDATE sync_queue SET sync_status = 'syncing' WHERE discovery_id = "
            "(SELECT id FROM discoveries WHERE description = ?)",
            (descriptions[2],),
        )
    broken = ws.check("broken", descriptions + ["never submitted"], None)
    assert (broken.items, broken.lost, broken.duplicated, broken.stuck) == (5, 2, 1, 1)
    assert not broken.clean and clean.clean
    table = outcome_table([clean, broken])
    assert "| broken   | 5     | 2    | 1          | 1     | -     | -         | never   |" in table


def test_the_change_check_sees_lost_doubled_stuck_stale_and_undeleted_items(tmp_path):
    """Eight synced discoveries, three edited (one moved to the other planet) and two deleted
    through the services, check clean; then each broken promise is counted, and only once: an
    edited row back on its old planet and one back to its old text (stale), an edited row
    copied under its old text (doubled), a deleted row back in VH and a ledger row no longer
    marked deleted (undeleted), a kept row gone (lost) and a queue item set back to syncing
    (stuck)."""
    ws = Workspace(tmp_path / "ws")
    ws.manage("migrate", "--no-input", "-v0")
    synced, problems = synced_first(ws, "changes", 8)
    assert problems == [] and len(synced) == 8
    vh_count = len(ws.vh_select("SELECT id FROM discoveries"))
    mark = ws.keeper_value("SELECT MAX(id) FROM sync_attempt")
    changes = []
    for n, (pk, text, vh_id) in enumerate(synced):
        if n < 3:
            planet = OTHER_PLANET if n == 0 else PLANET
            changes.append(Change(pk, vh_id, text, f"{text} edited", planet))
        else:
            changes.append(Change(pk, vh_id, text, text, deleted=n in (3, 4)))
    assert changes_finish(changes_start(ws, changes), changes) == []
    ws.manage("sync_now", "--until-idle")
    clean = ws.check_changes("clean", changes, vh_count=vh_count, drain=0.0)
    counts = lambda o: (o.items, o.lost, o.duplicated, o.stuck, o.stale, o.undeleted)  # noqa: E731
    assert counts(clean) == (8, 0, 0, 0, 0, 0)
    assert clean.clean, clean.violations

    # A claim of the edit round cut short after its VH commit: the first round's attempt would
    # hide it from a count over the whole history.
    with sqlite3.connect(ws.keeper) as keeper:
        keeper.execute(
            "UPDATE sync_queue SET sync_attempts = sync_attempts + 1, "
            "metadata = json_set(metadata, '$.how', 'ledger') WHERE discovery_id = ?",
            (changes[1].pk,),
        )
    assert ws.attempts_cut_off(after_attempt=mark) == (1, 1)
    assert ws.attempts_cut_off() == (0, 0)

    with sqlite3.connect(ws.haven) as vh:
        (alpha_prime,) = vh.execute(
            "SELECT p.id FROM planets p JOIN systems s ON s.id = p.system_id "
            "WHERE s.name = 'Demo Alpha' AND p.name = ?",
            (PLANET,),
        ).fetchone()
        vh.execute(
            "UPDATE discoveries SET planet_id = ? WHERE id = ?", (alpha_prime, changes[0].haven_id)
        )
        vh.execute(
            "UPDATE discoveries SET description = ? WHERE id = ?",
            (changes[1].before, changes[1].haven_id),
        )
        for change in (changes[2], changes[3]):
            vh.execute(
                "INSERT INTO discoveries (discovery_type, location_type, system_id, description) "
                "SELECT discovery_type, location_type, system_id, ? FROM discoveries WHERE id = ?",
                (change.before, changes[7].haven_id),
            )
        vh.execute(
            "UPDATE keeper_sync_ledger SET how = 'written' WHERE keeper_discovery_id = ?",
            (changes[4].pk,),
        )
        vh.execute("DELETE FROM discoveries WHERE id = ?", (changes[5].haven_id,))
    with sqlite3.connect(ws.keeper) as keeper:
        keeper.execute(
            "UPDATE sync_queue SET sync_status = 'syncing' WHERE discovery_id = ?",
            (changes[6].pk,),
        )
    broken = ws.check_changes("broken", changes, vh_count=vh_count, drain=None)
    assert counts(broken) == (8, 1, 1, 1, 2, 2)
    assert broken.violations == [
        f"VH holds {vh_count - 1} discoveries; {vh_count} before the changes less the deleted "
        f"ones is {vh_count - 2}"
    ]
    assert not broken.clean
    table = outcome_table([broken])
    assert "| broken   | 8     | 1    | 1          | 1     | 2     | 2         | never   |" in table


def test_the_check_reads_vh_after_a_worker_died_inside_a_vh_transaction(tmp_path):
    """A writer killed -9 mid-transaction leaves a hot journal, which a read-only connection
    cannot roll back ("attempt to write a readonly database"): the check still reads VH, as it
    stood before that transaction."""
    ws = Workspace(tmp_path / "ws")
    _killed_writer(ws.haven, wal=False)
    assert ws.haven.with_name(ws.haven.name + "-journal").exists()
    assert ws.vh_rows("SELECT x, COUNT(*) FROM filler GROUP BY 1") == {"x" * 500: 2000}


def _killed_writer(path, *, wal: bool) -> None:
    """Fill ``path`` with 2,000 rows of ``x``; then a writer changes them all to ``y`` and is
    killed -9: inside its transaction (a hot journal), or, with ``wal``, after its commit and
    before any checkpoint (a WAL and its -shm left behind)."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        if wal:
            db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE filler (x TEXT)")
        db.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,)] * 2000)
    commit = "db.execute('COMMIT')\n" if wal else ""
    writer = (
        "import os, signal, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('PRAGMA cache_size = 1')\n"
        "db.execute('PRAGMA wal_autocheckpoint = 0')\n"
        "db.execute('BEGIN')\n"
        "db.execute(\"UPDATE filler SET x = 'y'\")\n"
        + commit
        + "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", writer, str(path)], check=False)


def test_the_check_reads_vh_from_the_wal_a_killed_writer_left(tmp_path):
    """A writer killed -9 after its commit to a WAL-mode file, before any checkpoint, leaves
    the WAL and its -shm: the check reads VH with that commit in it."""
    ws = Workspace(tmp_path / "ws")
    _killed_writer(ws.haven, wal=True)
    assert ws.haven.with_name(ws.haven.name + "-wal").stat().st_size > 0
    assert ws.vh_rows("SELECT x, COUNT(*) FROM filler GROUP BY 1") == {"y": 2000}


def test_a_vh_the_check_cannot_write_is_read_from_a_copy(tmp_path, monkeypatch):
    """When VH cannot be opened for writing (read-only to the checker) and a killed writer left
    a hot journal, the check reads a copy of the file and its journal, rolled back there, and
    leaves VH and its journal as they were."""
    ws = Workspace(tmp_path / "ws")
    _killed_writer(ws.haven, wal=False)
    journal = ws.haven.with_name(ws.haven.name + "-journal")
    before = (ws.haven.read_bytes(), journal.read_bytes())
    real_read = chaos.harness._sqlite_read

    def read_only_vh(path, sql, *, timeout):
        if path == ws.haven:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return real_read(path, sql, timeout=timeout)

    monkeypatch.setattr(chaos.harness, "_sqlite_read", read_only_vh)
    assert ws.vh_rows("SELECT x, COUNT(*) FROM filler GROUP BY 1") == {"x" * 500: 2000}
    assert (ws.haven.read_bytes(), journal.read_bytes()) == before


def test_freeze_stops_every_process_of_a_session_until_thawed(tmp_path):
    """A frozen session (a process and the child it forked) writes nothing until it is
    thawed: each process is stopped, so what it shows cannot change under a look."""
    ticks = tmp_path / "ticks"
    script = (
        "import os, sys, time\n"
        "os.fork()\n"
        "while True:\n"
        "    with open(sys.argv[1], 'a') as f:\n"
        "        f.write('.')\n"
        "    time.sleep(0.01)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(ticks)], start_new_session=True)
    try:
        assert wait_until(lambda: len(group_states(process.pid)) == 2, timeout=30)
        assert wait_until(lambda: ticks.exists() and ticks.stat().st_size > 10, timeout=30)
        assert Workspace.freeze([process])
        assert set(group_states(process.pid)) == {"T"}
        frozen = ticks.stat().st_size
        time.sleep(0.3)
        assert ticks.stat().st_size == frozen
        Workspace.thaw([process])
        assert wait_until(lambda: ticks.stat().st_size > frozen, timeout=30)
    finally:
        Workspace.kill(process)


def test_waiting_for_a_stuck_queue_ends_when_nothing_moves(tmp_path):
    """An item no cluster works on never drains: the wait gives up once nothing has moved for
    its ``stall`` seconds, rather than after its whole limit."""
    ws = Workspace(tmp_path / "ws")
    ws.manage("migrate", "--no-input", "-v0")
    ws.submit("stuck", 1)
    began = time.monotonic()
    assert ws.wait_drained(stall=1, limit=60) is None
    assert time.monotonic() - began < 30


def test_dst_change_next_finds_new_yorks_clock_changes():
    """From 1 December 2026 the next changes are 14 March 2027 07:00 UTC (forward) and
    7 November 2027 06:00 UTC (back); from a moment just after one, the year's next."""
    start = datetime(2026, 12, 1, 1, 56, tzinfo=UTC)
    assert dst_change_next(forward=True, after=start) == datetime(2027, 3, 14, 7, tzinfo=UTC)
    assert dst_change_next(forward=False, after=start) == datetime(2027, 11, 7, 6, tzinfo=UTC)
    later = datetime(2027, 3, 14, 7, 30, tzinfo=UTC)
    assert dst_change_next(forward=True, after=later) == datetime(2028, 3, 12, 7, tzinfo=UTC)


def test_clock_shift_moves_every_process_of_a_command_by_the_same_offset(tmp_path):
    """``python -m chaos.clock_shift manage.py …`` sees the wall clock moved by the offset and
    ticking from its start (not frozen until first read), in the process and in a child it
    forks."""
    ws = Workspace(tmp_path / "ws")
    offset = (datetime(2027, 3, 14, 6, 59, tzinfo=UTC) - datetime.now(UTC)).total_seconds()
    ws.python = [sys.executable, "-m", "chaos.clock_shift"]
    ws.env["CHAOS_CLOCK_OFFSET_SECONDS"] = repr(offset)
    script = (
        "import os, time\n"
        "from django.utils import timezone\n"
        "time.sleep(0.3)\n"
        "print(timezone.now().isoformat())\n"
        "read, write = os.pipe()\n"
        "if os.fork() == 0:\n"
        "    os.write(write, timezone.now().isoformat().encode()); os._exit(0)\n"
        "os.wait(); print(os.read(read, 100).decode())\n"
    )
    before = time.monotonic()
    lines = ws.manage("shell", "-v0", "-c", script).stdout.split()
    elapsed = time.monotonic() - before
    parent, child = (datetime.fromisoformat(line) for line in lines)
    assert datetime(2027, 3, 14, 6, 59, 0, 300_000, tzinfo=UTC) <= parent <= child
    assert child - parent < timedelta(seconds=elapsed)
    assert child < datetime(2027, 3, 14, 6, 59, tzinfo=UTC) + timedelta(seconds=elapsed)


def test_a_skipped_scenario_is_clean_and_says_why():
    """A scenario that could not run shows dashes and its reason, and does not fail the run."""
    skipped = Outcome(name="scale-out", items=0, skipped="no PostgreSQL server at …")
    assert skipped.clean
    table = outcome_table([skipped])
    assert (
        "| scale-out | -     | -    | -          | -     | -     | -         | skipped |" in table
    )
    assert "scale-out: skipped: no PostgreSQL server at …" in table


def test_a_scenario_failing_before_it_submits_shows_failed_on_one_line_each(monkeypatch):
    """A scenario that failed before it had items shows dashes and "failed", not a row of
    zeros that reads like a drain; a multi-line reason is one remark line; the name column
    gives the scenario's command-line name."""
    failed = Outcome(name="scale-out: PostgreSQL + Redis", items=0, key="scale-out")
    failed.violations.append("no PostgreSQL server: refused\n\tIs the server running?")
    table = outcome_table([failed])
    assert "| scale-out | scale-out: PostgreSQL + Redis | -     | -    | -" in table
    assert table.splitlines()[2].endswith("| failed  |")
    assert table.splitlines()[3:] == [
        "scale-out: PostgreSQL + Redis: VIOLATION no PostgreSQL server: refused "
        "Is the server running?"
    ]
    assert not failed.clean


def test_under_ci_reads_ci_as_a_flag(monkeypatch):
    """CI=true or 1 is CI; unset, empty, 0, false and no are not."""
    for value, expected in [
        ("true", True),
        ("1", True),
        ("", False),
        ("0", False),
        ("false", False),
        ("No", False),
    ]:
        monkeypatch.setenv("CI", value)
        assert under_ci() is expected, value
    monkeypatch.delenv("CI")
    assert under_ci() is False


def test_the_check_counts_items_when_vh_is_empty_or_gone(tmp_path):
    """A VH file without the tables (a worker created it empty) or no file at all: every
    synced item counts as lost instead of the check failing to look."""
    ws = Workspace(tmp_path / "ws")
    ws.manage("migrate", "--no-input", "-v0")
    descriptions = ws.submit("gone", 3)
    ws.manage("sync_now", "--until-idle")
    ws.haven.unlink()
    assert ws.check("gone", descriptions, None).lost == 3
    sqlite3.connect(ws.haven).close()
    assert ws.check("empty", descriptions, None).lost == 3


def test_the_check_reports_tracebacks_and_warnings_in_the_cluster_log(tmp_path):
    """Lines the scenarios never expect in qcluster.log fail the check, with a count and the
    exception or warning line."""
    ws = Workspace(tmp_path / "ws")
    ws.manage("migrate", "--no-input", "-v0")
    assert ws.check("quiet", [], None).violations == []
    (ws.folder / "qcluster.log").write_text(
        "12:00:00 INFO started\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "ValueError: boom\n"
        "x.py:3: RuntimeWarning: DateTimeField received a naive datetime\n"
        "Traceback (most recent call last):\n"
        "KeyError: 'k'\n",
        encoding="utf-8",
    )
    assert ws.check("noisy", [], None).violations == [
        "the cluster log has 2 tracebacks, e.g. ValueError: boom",
        "the cluster log has 1 warnings, e.g. x.py:3: RuntimeWarning: DateTimeField received "
        "a naive datetime",
    ]
