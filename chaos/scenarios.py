"""The fault scenarios. Each takes a fresh :class:`chaos.harness.Workspace` and ``full`` (the
issue's sizes) and returns an :class:`chaos.harness.Outcome`."""

from __future__ import annotations

import random
import sqlite3
import threading
import time

from chaos.harness import Outcome, Workspace

#: How long a scenario's queue may take to drain once its fault has ended, in seconds: the
#: lease of an item whose worker was killed (60 s) plus a scheduled run (every 30 s) and slack.
DRAIN_TIMEOUT = 240


def kill_the_worker(ws: Workspace, *, full: bool) -> Outcome:
    """kill -9 the whole cluster at random moments while items drain, restarting it each
    time (5,000 items and 20 kills in full; 300 and 4 otherwise). Each item pauses between
    its VH commit and its keeper.db commit (``SYNC_CHAOS_PAUSE_SECONDS``), where most kills
    land: the window in which the old bot wrote twice."""
    items, kills = (5000, 20) if full else (300, 4)
    ws.env["SYNC_CHAOS_PAUSE_SECONDS"] = "0.02"
    ws.manage("migrate", "--no-input", "-v0")
    rng = random.Random(20261130)
    cluster = ws.cluster_start()
    descriptions = ws.submit("kill", items)
    done = 0
    while done < kills:
        time.sleep(rng.uniform(0.3, 1.5))
        ws.kill(cluster)
        cluster = ws.cluster_start()
        done += 1
    fault_over = time.monotonic()
    drain = ws.wait_drained(timeout=DRAIN_TIMEOUT)
    ws.stop_all()
    outcome = ws.check("kill -9 the worker", descriptions, drain)
    outcome.notes.append(f"{done} kills in {fault_over - ws.started:.0f} s")
    return outcome


def vh_locked(ws: Workspace, *, full: bool) -> Outcome:
    """Another process holds a write transaction on VH-Database.db while items drain (45 s in
    full, 8 s otherwise); afterwards everything syncs once."""
    items, seconds = (2000, 45) if full else (200, 8)
    ws.manage("migrate", "--no-input", "-v0")
    held = threading.Event()
    release = threading.Event()

    def hold():
        db = sqlite3.connect(ws.haven, timeout=30, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        held.set()
        release.wait(seconds)
        db.execute("ROLLBACK")
        db.close()

    locker = threading.Thread(target=hold)
    locker.start()
    held.wait(10)
    cluster = ws.cluster_start()
    descriptions = ws.submit("locked", items)
    locker.join()
    drain = ws.wait_drained(timeout=DRAIN_TIMEOUT)
    ws.stop_all()
    del cluster
    return ws.check("VH locked", descriptions, drain)


def vh_missing(ws: Workspace, *, full: bool) -> Outcome:
    """VH-Database.db moved away while items drain (30 s in full, 5 s otherwise), then put
    back: the worker never creates a file in its place, and everything syncs once."""
    items, seconds = (2000, 30) if full else (200, 5)
    ws.manage("migrate", "--no-input", "-v0")
    away = ws.haven.with_name("VH-away.db")
    ws.cluster_start()
    descriptions = ws.submit("missing", items)
    ws.haven.rename(away)
    created = False
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        created = created or ws.haven.exists()
        time.sleep(0.1)
    if not created:
        away.rename(ws.haven)
    drain = ws.wait_drained(timeout=DRAIN_TIMEOUT)
    ws.stop_all()
    outcome = ws.check("VH missing, then back", descriptions, drain)
    if created:
        outcome.violations.append("a file appeared at HAVEN_DB_PATH while VH was away")
    return outcome


def vh_schema_drift(ws: Workspace, *, full: bool) -> Outcome:
    """A column the mapping needs is missing from VH: items end ``max_retries_exceeded``
    with an error naming it, the worker keeps running; once the column is back, the
    operators' bulk retry (their UPDATE of REFERENCE.md) syncs every item once."""
    items = 1000 if full else 100
    ws.env["SYNC_MAX_ATTEMPTS"] = "3"
    ws.manage("migrate", "--no-input", "-v0")
    with sqlite3.connect(ws.haven) as vh:
        vh.execute("ALTER TABLE discoveries DROP COLUMN structure_type")
    cluster = ws.cluster_start()
    descriptions = ws.submit("drift", items)
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        states = ws.queue_states()
        if states.get("max_retries_exceeded") == items:
            break
        time.sleep(0.5)
    outcome_notes: list[str] = []
    violations: list[str] = []
    with sqlite3.connect(ws.keeper, timeout=30) as keeper:
        errors = {e for (e,) in keeper.execute("SELECT DISTINCT sync_error FROM sync_queue")}
    if not all(e and "structure_type" in e for e in errors):
        violations.append(f"errors that do not name the column: {sorted(map(str, errors))[:3]}")
    if cluster.poll() is not None:
        violations.append("the cluster exited while the column was missing")
    outcome_notes.append(f"before the fix: {ws.queue_states()}")
    with sqlite3.connect(ws.haven) as vh:
        vh.execute("ALTER TABLE discoveries ADD COLUMN structure_type TEXT")
    fixed = time.monotonic()
    with sqlite3.connect(ws.keeper, timeout=30) as keeper:
        keeper.execute(
            "UPDATE sync_queue SET sync_status = 'pending', sync_attempts = 0, sync_error = NULL "
            "WHERE sync_status = 'max_retries_exceeded'"
        )
    drain = ws.wait_drained(timeout=DRAIN_TIMEOUT)
    ws.stop_all()
    outcome = ws.check("VH schema drift", descriptions, drain)
    outcome.notes += outcome_notes + [f"fixed at +{fixed - ws.started:.0f} s"]
    outcome.violations += violations
    return outcome


SCENARIOS = {
    "kill": kill_the_worker,
    "locked": vh_locked,
    "missing": vh_missing,
    "drift": vh_schema_drift,
}
