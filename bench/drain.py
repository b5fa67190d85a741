"""The drain benchmark: ``sync_now --until-idle`` against the limits L, L2 and P.

Each run works in a fresh temporary folder: a migrated keeper.db, a copy of the Control Room's
schema fixture as VH-Database.db, and ``--items`` valid discoveries queued through
``manage.py submit_discovery --file``, placed on the fixture's planets and moons. Then:

- **ours**: ``manage.py sync_now --until-idle`` drains the queue (items/s, whole process), and
  the rate of the first and last 10 % of items from ``sync_queue.synced_at``;
- **L**: the rows ours wrote, read back, inserted into a fresh VH copy by one ``executemany``
  in one transaction;
- **L2**: the same rows, one transaction, one INSERT and one ledger row per row;
- **P**: the old bot's pattern, per item: open VH, resolve the place by SELECT, insert, commit,
  close; plus two keeper.db commits; on the first 3,000 of the same rows (its cost per item is
  the same for every item).

Plain ``time.perf_counter`` timers; the median of ``--runs`` is reported, every run is kept in
``bench/results.json``. ``--smoke`` is a small version for CI.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import FIXTURE, entries, manage, manage_env, median, places, vh_copy

LEDGER_DDL = (
    "CREATE TABLE IF NOT EXISTS keeper_sync_ledger ("
    " keeper_discovery_id INTEGER NOT NULL, discord_user_id TEXT NOT NULL,"
    " submission_timestamp TEXT NOT NULL, haven_discovery_id INTEGER NOT NULL,"
    " how TEXT NOT NULL, location_resolved INTEGER NOT NULL, recorded_at TEXT NOT NULL,"
    " row_hash TEXT,"
    " PRIMARY KEY (keeper_discovery_id, discord_user_id, submission_timestamp))",
    "CREATE INDEX IF NOT EXISTS keeper_sync_ledger_haven"
    " ON keeper_sync_ledger (haven_discovery_id)",
)


# --- ours ---------------------------------------------------------------------------------------


def _instant(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def slice_rate(stamps: list[float]) -> float | None:
    """Items per second over ``stamps`` (sorted synced_at times), or None if they span no time."""
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return None
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def ours(folder: Path, count: int, tag: str) -> dict:
    """Set up keeper.db and VH in ``folder``, queue ``count`` discoveries, time the drain."""
    keeper = folder / "keeper.db"
    haven = vh_copy(folder, "VH-Database.db")
    env = manage_env(keeper, haven)
    manage(env, "migrate", "--no-input")
    submit = folder / "submit.json"
    submit.write_text(json.dumps(entries(count, places(haven), tag)), encoding="utf-8")
    started = time.perf_counter()
    manage(env, "submit_discovery", "--file", str(submit))
    submitted = time.perf_counter() - started
    started = time.perf_counter()
    manage(env, "sync_now", "--until-idle")
    drained = time.perf_counter() - started
    conn = sqlite3.connect(keeper)
    try:
        states = dict(
            conn.execute("SELECT sync_status, COUNT(*) FROM sync_queue GROUP BY sync_status")
        )
        stamps = sorted(
            _instant(t)
            for (t,) in conn.execute("SELECT synced_at FROM sync_queue WHERE synced_at IS NOT NULL")
        )
    finally:
        conn.close()
    if states.get("synced") != count:
        raise RuntimeError(f"the drain left {states}, expected {count} synced")
    tenth = max(2, count // 10)
    return {
        "submit_s": submitted,
        "drain_s": drained,
        "rate": count / drained,
        "inner_rate": slice_rate(stamps),
        "first_rate": slice_rate(stamps[:tenth]),
        "last_rate": slice_rate(stamps[-tenth:]),
        "keeper": keeper,
        "haven": haven,
    }


def written_rows(haven: Path) -> tuple[list[str], list[tuple], list[tuple], list[tuple]]:
    """What ours wrote: the VH rows' columns (less ``id``) and values, their ledger rows (less
    ``haven_discovery_id``) in the same order, and the place names each was resolved from."""
    conn = sqlite3.connect(haven)
    try:
        cur = conn.execute(
            "SELECT d.*, l.keeper_discovery_id, l.discord_user_id, l.submission_timestamp,"
            " l.how, l.location_resolved, l.recorded_at, l.row_hash,"
            " s.name, p.name, m.name"
            " FROM keeper_sync_ledger l JOIN discoveries d ON d.id = l.haven_discovery_id"
            " LEFT JOIN systems s ON s.id = d.system_id"
            " LEFT JOIN planets p ON p.id = d.planet_id"
            " LEFT JOIN moons m ON m.id = d.moon_id ORDER BY d.id"
        )
        names = [c[0] for c in cur.description]
        data = cur.fetchall()
    finally:
        conn.close()
    width = names.index("keeper_discovery_id")
    columns = names[1:width]
    rows = [r[1:width] for r in data]
    ledger = [r[width : width + 7] for r in data]
    named = [r[width + 7 :] for r in data]
    return columns, rows, ledger, named


# --- the limits ---------------------------------------------------------------------------------


def _open(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=5, isolation_level=None)


def _insert_sql(columns: list[str]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return f"INSERT INTO discoveries ({names}) VALUES ({', '.join('?' * len(columns))})"


def limit_l(path: Path, columns: list[str], rows: list[tuple]) -> float:
    """L: one ``executemany`` of ``rows`` in one transaction; seconds."""
    conn = _open(path)
    try:
        sql = _insert_sql(columns)
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


def limit_l2(path: Path, columns: list[str], rows: list[tuple], ledger: list[tuple]) -> float:
    """L2: one transaction, per row an INSERT and its ledger row; seconds."""
    conn = _open(path)
    try:
        for statement in LEDGER_DDL:
            conn.execute(statement)
        sql = _insert_sql(columns)
        ledger_sql = (
            "INSERT OR REPLACE INTO keeper_sync_ledger (keeper_discovery_id, discord_user_id,"
            " submission_timestamp, haven_discovery_id, how, location_resolved, recorded_at,"
            " row_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for row, (kid, user, when, how, resolved, at, row_hash) in zip(rows, ledger, strict=True):
            haven_id = conn.execute(sql, row).lastrowid
            conn.execute(ledger_sql, (kid, user, when, haven_id, how, resolved, at, row_hash))
        conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


def limit_p(
    path: Path,
    keeper: Path,
    columns: list[str],
    rows: list[tuple],
    ledger: list[tuple],
    named: list[tuple],
) -> float:
    """P, the old bot's pattern: per item open VH, resolve the system, planet and moon by name,
    insert, commit, close; and two keeper.db commits (claim, then the outcome) on a copy of the
    drained keeper.db with its own pragmas (WAL, synchronous=NORMAL). Seconds."""
    sql = _insert_sql(columns)
    where = {c: i for i, c in enumerate(columns)}
    keeper_conn = sqlite3.connect(keeper, timeout=30, isolation_level=None)
    keeper_conn.execute("PRAGMA journal_mode=WAL")
    keeper_conn.execute("PRAGMA synchronous=NORMAL")
    try:
        ids = [r[0] for r in keeper_conn.execute("SELECT id FROM sync_queue ORDER BY id")]
        started = time.perf_counter()
        for queue_id, row, (system, planet, moon) in zip(ids, rows, named, strict=False):
            keeper_conn.execute("BEGIN IMMEDIATE")
            keeper_conn.execute(
                "UPDATE sync_queue SET sync_status = 'syncing',"
                " sync_attempts = sync_attempts + 1 WHERE id = ?",
                (queue_id,),
            )
            keeper_conn.execute("COMMIT")
            conn = _open(path)
            try:
                values = list(row)
                found = conn.execute("SELECT id FROM systems WHERE name = ?", (system,)).fetchone()
                values[where["system_id"]] = found[0] if found else None
                if planet is not None and found:
                    got = conn.execute(
                        "SELECT id FROM planets WHERE system_id = ? AND name = ?",
                        (found[0], planet),
                    ).fetchone()
                    values[where["planet_id"]] = got[0] if got else None
                    if moon is not None and got:
                        got = conn.execute(
                            "SELECT id FROM moons WHERE planet_id = ? AND name = ?",
                            (got[0], moon),
                        ).fetchone()
                        values[where["moon_id"]] = got[0] if got else None
                conn.execute("BEGIN IMMEDIATE")
                haven_id = conn.execute(sql, values).lastrowid
                conn.execute("COMMIT")
            finally:
                conn.close()
            keeper_conn.execute("BEGIN IMMEDIATE")
            keeper_conn.execute(
                "UPDATE sync_queue SET sync_status = 'synced', haven_discovery_id = ?,"
                " synced_at = ? WHERE id = ?",
                (haven_id, datetime.now(UTC).isoformat(), queue_id),
            )
            keeper_conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        keeper_conn.close()


def vh_count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM discoveries").fetchone()[0]
    finally:
        conn.close()


# --- one run, many runs -----------------------------------------------------------------------


def one_run(count: int, number: int) -> dict[str, float | None]:
    with tempfile.TemporaryDirectory(prefix="keeper-bench-") as name:
        folder = Path(name)
        got = ours(folder, count, f"r{number}")
        columns, rows, ledger, named = written_rows(got["haven"])
        if len(rows) != count:
            raise RuntimeError(f"VH holds {len(rows)} ledgered rows of ours, expected {count}")
        base = vh_count(FIXTURE)
        l_path = vh_copy(folder, "VH-L.db")
        l_s = limit_l(l_path, columns, rows)
        l2_path = vh_copy(folder, "VH-L2.db")
        l2_s = limit_l2(l2_path, columns, rows, ledger)
        p_path = vh_copy(folder, "VH-P.db")
        p_keeper = folder / "keeper-P.db"
        shutil.copyfile(got["keeper"], p_keeper)
        p_count = min(count, P_ITEMS)
        p_s = limit_p(p_path, p_keeper, columns, rows[:p_count], ledger, named)
        for path, expected in ((l_path, count), (l2_path, count), (p_path, p_count)):
            if vh_count(path) != base + expected:
                raise RuntimeError(
                    f"{path.name} holds {vh_count(path) - base} rows, not {expected}"
                )
    return {
        "submit_rate": count / got["submit_s"],
        "ours_rate": got["rate"],
        "ours_inner_rate": got["inner_rate"],
        "ours_first_rate": got["first_rate"],
        "ours_last_rate": got["last_rate"],
        "l_rate": count / l_s,
        "l2_rate": count / l2_s,
        "p_rate": p_count / p_s,
        "ours_over_l2": got["rate"] / (count / l2_s),
        "ours_over_p": got["rate"] / (p_count / p_s),
        "last_over_first": (
            got["last_rate"] / got["first_rate"] if got["last_rate"] and got["first_rate"] else None
        ),
    }


#: P's pattern costs the same for every item: it is timed on the first this many rows, so the
#: section stays within its minutes.
P_ITEMS = 3000

#: figure key -> (description, unit[, target])
FIGURES = {
    "ours_rate": ("drain, sync_now --until-idle (ours)", "items/s"),
    "ours_inner_rate": ("ours, first to last synced_at (no process start)", "items/s"),
    "ours_first_rate": ("ours, first 10% of items (synced_at)", "items/s"),
    "ours_last_rate": ("ours, last 10% of items (synced_at)", "items/s"),
    "l_rate": ("L: executemany, one transaction", "rows/s"),
    "l2_rate": ("L2: one transaction, INSERT + ledger row", "rows/s"),
    "p_rate": ("P: old bot, per item open/resolve/insert/commit", "items/s"),
    "ours_over_l2": ("ours / L2", "ratio", ">= 0.2"),
    "ours_over_p": ("ours / P", "ratio", ">= 25"),
    "last_over_first": ("ours, last 10% rate / first 10% rate", "ratio", ">= 0.9"),
    "submit_rate": ("submit_discovery --file (setup, whole process)", "items/s"),
}


def run(*, smoke: bool, runs: int, items: int | None = None) -> dict:
    """The drain section: ``items`` discoveries (default 20,000; 200 once when ``smoke``),
    ``runs`` runs; returns ``{"figures": {key: figure}}`` for :mod:`bench.__main__`."""
    count, runs = (200, 1) if smoke else (items or 20_000, runs)
    measured = []
    for number in range(runs):
        print(f"drain run {number + 1}/{runs}: {count} items ...", file=sys.stderr, flush=True)
        measured.append(one_run(count, number))
    figures = {}
    for key, (description, unit, *target) in FIGURES.items():
        figures[key] = {
            "description": description,
            "unit": unit,
            "median": median([m[key] for m in measured]),
            "runs": [m[key] for m in measured],
        }
        if target:
            figures[key]["target"] = target[0]
    return {"figures": figures, "parameters": {"items": count, "runs": runs}}
