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


SCENARIOS = {
    "kill": kill_the_worker,
    "locked": vh_locked,
}
