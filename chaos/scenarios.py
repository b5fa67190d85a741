"""The fault scenarios. Each takes a fresh :class:`chaos.harness.Workspace` and ``full`` (the
issue's sizes) and returns an :class:`chaos.harness.Outcome`."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from chaos.agent_link import (
    DRAIN_AFTER_RESTORE_SECONDS,
    LOSSY,
    LOSSY_SEED,
    CloudDesk,
    fault_run,
)
from chaos.harness import (
    OBSERVE_SECONDS,
    OTHER_PLANET,
    PLANET,
    ROOT,
    Change,
    Outcome,
    ServerUnreachable,
    Workspace,
    postgres_database,
    redis_database,
    under_ci,
    wait_until,
)
from syncq.backoff import retry_delay
from syncq.schedules import SYNC_FUNC, SYNC_NAME_PREFIX
from tests.netlab import netlab_unavailable

#: How long the clock scenario watches the schedules after its simulated outage, in seconds.
WATCH_AFTER_OUTAGE = 70
#: How long an aimed kill watches for a worker between its VH commit and its keeper commit,
#: in seconds (it ends as soon as one is seen).
AIM_SECONDS = 300
#: How long a kill waits for the restarted cluster to record an attempt, in seconds (it ends
#: as soon as one is recorded, or when nothing is left to sync).
BUSY_SECONDS = 120
#: How long a read may wait for a database while the clusters are frozen, in seconds: a frozen
#: worker may hold VH's lock, and the kill then waits for another moment.
FROZEN_READ_SECONDS = 0.5


def kill_the_worker(ws: Workspace, *, full: bool) -> Outcome:
    """kill -9 the whole cluster while items drain, restarting it each time (5,000 items and
    at least 20 kills in full; 300 and 4 otherwise): the first kill when a worker is seen
    between its VH commit and its keeper.db commit, the others at random moments once the
    cluster is working (:func:`_kill_while_syncing`), until kills have landed inside a VH
    transaction and between a VH commit and its keeper commit. Each VH transaction (of up to
    ``SYNC_BATCH_SIZE`` items) pauses before its commit and between the two commits
    (``SYNC_CHAOS_PAUSE_SECONDS``): the second is the window in which the old bot wrote
    twice."""
    items, kills = (5000, 20) if full else (300, 4)
    ws.env["SYNC_CHAOS_PAUSE_SECONDS"] = _kill_pause(full)
    ws.manage("migrate", "--no-input", "-v0")
    rng = random.Random(20261130)
    clusters = [ws.cluster_start()]
    descriptions = ws.submit("kill", items)
    kills_made = _kill_while_syncing(ws, clusters, rng, kills)
    fault_over = time.monotonic()
    drain = ws.wait_drained()
    ws.stop_all()
    outcome = ws.check("kill -9 the worker", descriptions, drain)
    outcome.notes.append(f"{kills_made.done} kills in {fault_over - ws.started:.0f} s")
    _judge_kills(ws, outcome, kills_made)
    return outcome


@dataclass
class Kills:
    """What the kills of a scenario landed in: ``done``, how many; ``caught``, the keeper ids
    seen between a VH commit and its keeper commit at a kill; ``largest``, the most items one
    kill caught there (items of one VH transaction); ``inside``, kills made while a worker was
    inside a VH transaction (its rows written, not committed)."""

    done: int = 0
    caught: set[int] = field(default_factory=set)
    largest: int = 0
    inside: int = 0

    def seen(self, items: set[int]) -> None:
        self.caught |= items
        self.largest = max(self.largest, len(items))


def _kill_while_syncing(
    ws: Workspace,
    clusters: list,
    rng: random.Random,
    kills: int,
    *,
    in_window: Callable[..., set[int]] | None = None,
    more_coming: Callable[[], bool] = lambda: False,
) -> Kills:
    """kill -9 ``clusters`` and start each again in its place, ``kills`` times and then on (up
    to three times as many) until one kill has landed inside a VH transaction and one between
    a VH commit and its keeper commit.

    Every kill is made on frozen clusters (:meth:`chaos.harness.Workspace.freeze`), so what
    the databases show then is what the kill cuts short; ``in_window(ws, timeout=…)`` (default
    :func:`_written_not_recorded`) names the keeper discoveries whose change VH holds and
    keeper's database does not record yet. Until a kill has landed in each place, each kill is
    aimed: the clusters are frozen, looked at and thawed again until a worker is seen holding
    VH's write lock, or in that window, and then all of them are killed. The other kills come
    at random moments: once a cluster has recorded an attempt since the last kill (it is
    working, not starting), a random 0.05–1 s more, then one cluster chosen at random; with
    one cluster, where it was counts too. ``more_coming()`` says whether work is still being
    added (a crowd still submitting), so that a kill does not wait for a cluster to work on an
    empty queue."""
    in_window = in_window or _written_not_recorded
    kills_made = Kills()
    while kills_made.done < kills or (
        not (kills_made.caught and kills_made.inside) and kills_made.done < 3 * kills
    ):
        if not (kills_made.caught and kills_made.inside):
            killed = _kill_aimed(ws, clusters, rng, in_window, more_coming, kills_made)
        else:
            killed = _kill_at_random(ws, clusters, rng, in_window, more_coming, kills_made)
        kills_made.done += len(killed)
        for which in killed:
            clusters[which] = ws.cluster_start()
    return kills_made


def _queue_idle(ws: Workspace, more_coming: Callable[[], bool]) -> bool:
    """Whether nothing is left for a cluster to do: no item pending or syncing, and no more
    coming."""
    states = ws.queue_states()
    return not (states.get("pending") or states.get("syncing") or more_coming())


def _frozen_window(ws: Workspace, in_window: Callable[..., set[int]]) -> set[int] | None:
    """What ``in_window`` names while the clusters are frozen; None when a frozen worker holds
    a database's lock, so it cannot be read."""
    try:
        return in_window(ws, timeout=FROZEN_READ_SECONDS)
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise
        return None


def _kill_aimed(
    ws: Workspace, clusters: list, rng: random.Random, in_window, more_coming, kills: Kills
) -> list[int]:
    """Once a cluster has recorded an attempt (:func:`_cluster_busy`), freeze the clusters
    until a worker is seen where no kill has landed yet (inside a VH transaction, or between
    its VH commit and its keeper commit), then kill them all and count where it landed in
    ``kills``. When none is seen within ``AIM_SECONDS``, or nothing is left to sync, one
    cluster is killed anyway (:func:`_kill_at_random`). Returns the indexes of the clusters
    killed."""
    _cluster_busy(ws, more_coming)
    deadline = time.monotonic() + AIM_SECONDS
    while time.monotonic() < deadline:
        if not ws.freeze(clusters):
            time.sleep(0.05)
            continue
        inside = ws.vh_write_held()
        seen = None if inside else _frozen_window(ws, in_window)
        if (inside and not kills.inside) or (seen and not kills.caught):
            for cluster in clusters:
                ws.kill(cluster)
            kills.inside += inside
            kills.seen(seen or set())
            return list(range(len(clusters)))
        ws.thaw(clusters)
        if seen is not None and _queue_idle(ws, more_coming):
            break
        time.sleep(0.05)
    return _kill_at_random(ws, clusters, rng, in_window, more_coming, kills)


def _cluster_busy(ws: Workspace, more_coming: Callable[[], bool]) -> None:
    """Wait until a cluster records an attempt (it is working, not starting), nothing is left
    to sync, or ``BUSY_SECONDS`` have passed."""
    attempts = ws.attempts_recorded()
    wait_until(
        lambda: ws.attempts_recorded() > attempts or _queue_idle(ws, more_coming),
        timeout=BUSY_SECONDS,
        every=0.05,
    )


def _kill_at_random(
    ws: Workspace, clusters: list, rng: random.Random, in_window, more_coming, kills: Kills
) -> list[int]:
    """Once a cluster has recorded an attempt (:func:`_cluster_busy`), wait a random
    0.05–1 s and kill one cluster chosen at random. With one cluster, it is frozen first and
    where it was (inside a VH transaction, or between the VH commit and the keeper commit) is
    counted in ``kills``; with several, which of them held an item is not known, and nothing
    is. Returns the index of the cluster killed."""
    _cluster_busy(ws, more_coming)
    time.sleep(rng.uniform(0.05, 1.0))
    which = rng.randrange(len(clusters))
    if len(clusters) == 1 and ws.freeze(clusters):
        if ws.vh_write_held():
            kills.inside += 1
        else:
            kills.seen(_frozen_window(ws, in_window) or set())
    ws.kill(clusters[which])
    return [which]


def _written_not_recorded(ws: Workspace, *, timeout: float = 30) -> set[int]:
    """Keeper discovery ids in VH's ledger whose queue item is not ``synced``."""
    ledger = set(
        ws.vh_rows("SELECT keeper_discovery_id, 1 FROM keeper_sync_ledger", timeout=timeout)
    )
    synced = ws.keeper_rows(
        "SELECT discovery_id FROM sync_queue WHERE sync_status = 'synced'", timeout=timeout
    )
    return ledger - {pk for (pk,) in synced}


def _ledger_marked(ws: Workspace, how: str, *, timeout: float = 30) -> set[int]:
    """Keeper discovery ids whose ledger row in VH says ``how`` (updated, deleted…)."""
    rows = ws.vh_select("SELECT keeper_discovery_id, how FROM keeper_sync_ledger", timeout=timeout)
    return {pk for pk, marked in rows if marked == how}


def _updated_not_recorded(ws: Workspace, *, timeout: float = 30) -> set[int]:
    """Keeper discovery ids whose update VH holds (ledger ``updated``) while their queue item
    is not ``synced``: every one of them was synced before its edit."""
    synced = ws.keeper_rows(
        "SELECT discovery_id FROM sync_queue WHERE sync_status = 'synced'", timeout=timeout
    )
    return _ledger_marked(ws, "updated", timeout=timeout) - {pk for (pk,) in synced}


def _deleted_not_recorded(ws: Workspace, *, timeout: float = 30) -> set[int]:
    """Keeper discovery ids whose VH row is deleted (ledger ``deleted``) while the discovery is
    still in keeper's database."""
    present = ws.keeper_rows("SELECT id FROM discoveries", timeout=timeout)
    return _ledger_marked(ws, "deleted", timeout=timeout) & {pk for (pk,) in present}


def _kill_pause(full: bool) -> str:
    """``SYNC_CHAOS_PAUSE_SECONDS`` for the kill scenarios: each VH transaction waits this long
    before its commit and again between it and its keeper commit, for the aimed kills to find
    a worker in either (0.1 s for the short sizes, 0.02 s for the full sizes' many more
    items)."""
    return "0.02" if full else "0.1"


def _judge_kills(
    ws: Workspace, outcome: Outcome, kills: Kills, *, after_attempt: int | None = None
) -> None:
    """Note where the kills landed (:class:`Kills`: inside a VH transaction, and between a VH
    commit and its keeper commit, with the most items one kill caught there) and how many
    claims they cut short by the attempts keeper's database records (of the round after
    ``sync_attempt`` id ``after_attempt``, when given); a run whose kills never landed in
    both places proved nothing and fails."""
    cut, after_vh = ws.attempts_cut_off(after_attempt=after_attempt)
    outcome.notes.append(
        f"kills inside a VH transaction: {kills.inside}; items kills were seen to cut off "
        f"between the VH commit and the keeper commit: {len(kills.caught)} (up to "
        f"{kills.largest} by one kill); claims a kill cut short: {cut}, {after_vh} of them "
        "found in the ledger on a later attempt, not written again"
    )
    if not kills.caught:
        outcome.violations.append(
            "the kills never landed between a VH commit and its keeper commit"
        )
    if not kills.inside:
        outcome.violations.append("the kills never landed inside a VH transaction")


#: One process that makes a scenario's changes through the services, in order: each entry of
#: the JSON file is ``{"id", "delete", "changes"}``. A delete must be queued (the discovery is
#: in VH), not done at once. Every error is printed as ``ERROR <id> <text>``.
_CHANGER = """
import json
from syncq.services import discovery_delete, discovery_update

done = 0
for entry in json.load(open({path!r}, encoding="utf-8")):
    try:
        if entry["delete"]:
            result = discovery_delete(discovery_id=entry["id"])
            if result != "queued":
                print("ERROR", entry["id"], f"the delete was {{result}}, not queued")
                continue
        else:
            discovery_update(discovery_id=entry["id"], changes=entry["changes"])
        done += 1
    except Exception as exc:
        print("ERROR", entry["id"], f"{{type(exc).__name__}}: {{exc}}")
print("DONE", done)
"""


def synced_first(ws: Workspace, tag: str, items: int) -> tuple[list[tuple], list[str]]:
    """Submit ``items`` discoveries and sync them all (``manage.py sync_now``, no fault yet).
    Returns ``(keeper id, description, VH row)`` of each, oldest first, and what the invariant
    found wrong with that first sync, which the changes after it need to be clean."""
    descriptions = ws.submit(tag, items)
    ws.manage("sync_now", "--until-idle")
    first = ws.check("first sync", descriptions, 0.0)
    problems = []
    if not first.clean:
        problems.append(
            f"the first sync, before any change, was not clean: {first.lost} lost, "
            f"{first.duplicated} duplicated, {first.stuck} stuck; {first.violations[:1]}"
        )
    rows = ws.keeper_rows(
        "SELECT d.id, d.description, q.haven_discovery_id FROM discoveries d "
        "JOIN sync_queue q ON q.discovery_id = d.id ORDER BY d.id"
    )
    return rows, problems


def changes_start(ws: Workspace, changes: list[Change]) -> subprocess.Popen:
    """Start one ``manage.py shell`` process that makes ``changes`` in order: each edit through
    ``discovery_update``, each delete through ``discovery_delete``; see
    :func:`changes_finish`."""
    wanted = [
        {"id": c.pk, "delete": c.deleted, "changes": c.edits}
        for c in changes
        if c.deleted or c.edits
    ]
    path = ws.folder / "changes.json"
    path.write_text(json.dumps(wanted), encoding="utf-8")
    return subprocess.Popen(
        [*ws.python, "manage.py", "shell", "-c", _CHANGER.format(path=str(path))],
        cwd=ROOT,
        env=ws.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def changes_finish(changer: subprocess.Popen, changes: list[Change]) -> list[str]:
    """Wait for the process :func:`changes_start` started with ``changes``; returns what went
    wrong: changes refused (each error the services raised, a delete done at once rather than
    queued) and a process that did not make them all."""
    output = changer.communicate(timeout=1800)[0].splitlines()
    wanted = sum(bool(c.deleted or c.edits) for c in changes)
    errors = [line for line in output if line.startswith("ERROR")]
    made = [int(line.split()[1]) for line in output if line.startswith("DONE")]
    problems = []
    if errors:
        problems.append(f"{len(errors)} changes were refused, e.g. {errors[0]}")
    if made != [wanted]:
        problems.append(f"the changes made were {made} of {wanted}: {' '.join(output[-3:])}")
    return problems


def _changes_under_kills(
    ws: Workspace,
    name: str,
    changes: list[Change],
    *,
    full: bool,
    seed: int,
    in_window: Callable[..., set[int]],
) -> tuple[Outcome, set[int], int]:
    """Make ``changes`` (edits through ``discovery_update``, deletes through
    ``discovery_delete``, in one process) while the cluster is killed -9 and restarted (at
    least 20 kills in full, 4 otherwise; :func:`_kill_while_syncing` with ``in_window``),
    each item pausing between its VH commit and its keeper commit as in the kill scenario;
    then wait for the queue to drain and check both databases
    (:meth:`chaos.harness.Workspace.check_changes`). Returns the outcome, the keeper ids a
    kill caught between the VH commit and the keeper commit, and the last ``sync_attempt`` id
    before the changes."""
    kills = 20 if full else 4
    vh_count = len(ws.vh_select("SELECT id FROM discoveries"))
    mark = ws.keeper_value("SELECT COALESCE(MAX(id), 0) FROM sync_attempt")
    ws.env["SYNC_CHAOS_PAUSE_SECONDS"] = _kill_pause(full)
    clusters = [ws.cluster_start()]
    changer = changes_start(ws, changes)
    kills_made = _kill_while_syncing(
        ws,
        clusters,
        random.Random(seed),
        kills,
        in_window=in_window,
        more_coming=lambda: changer.poll() is None,
    )
    killed_while_changing = changer.poll() is None
    problems = changes_finish(changer, changes)
    fault_over = time.monotonic()
    drain = ws.wait_drained()
    ws.stop_all()
    outcome = ws.check_changes(name, changes, vh_count=vh_count, drain=drain)
    edited = [c for c in changes if c.edits]
    outcome.notes.append(
        f"{len(edited)} edited ({sum(c.planet != PLANET for c in edited)} to another planet), "
        f"{sum(c.deleted for c in changes)} deleted; {kills_made.done} kills in "
        f"{fault_over - ws.started:.0f} s, the last "
        f"{'while' if killed_while_changing else 'after'} the changes were made"
    )
    outcome.violations += problems
    return outcome, kills_made, mark


def update_kill(ws: Workspace, *, full: bool) -> Outcome:
    """Every discovery synced, then edited through ``discovery_update`` (a description of its
    own; every third moved to the other planet of its system) while the cluster is killed -9 as
    in the kill scenario, kills landing between the VH commit and the keeper commit (2,000
    items and at least 20 kills in full, 200 and 4 otherwise). Each edit updates the one VH row
    in place, exactly once: VH's row count does not change, each discovery keeps one row,
    which holds its edit, and every item ends ``synced``."""
    items = 2000 if full else 200
    ws.manage("migrate", "--no-input", "-v0")
    synced, problems = synced_first(ws, "update", items)
    changes = [
        Change(pk, vh_id, text, f"{text} edited", OTHER_PLANET if n % 3 == 0 else PLANET)
        for n, (pk, text, vh_id) in enumerate(synced)
    ]
    outcome, kills_made, mark = _changes_under_kills(
        ws,
        "kill -9 during updates",
        changes,
        full=full,
        seed=20261202,
        in_window=_updated_not_recorded,
    )
    outcome.violations[:0] = problems
    _judge_kills(ws, outcome, kills_made, after_attempt=mark)
    return outcome


def delete_kill(ws: Workspace, *, full: bool) -> Outcome:
    """Every discovery synced, then half deleted through ``discovery_delete`` and one in ten of
    the others edited (half of those moved to the other planet) while the cluster is killed -9
    as in the kill scenario, until one kill has landed between a delete's VH commit and its
    keeper commit (2,000 items and at least 20 kills in full, 200 and 4 otherwise). The
    deleted ones are gone from VH and from keeper's database, their ledger rows marked
    ``deleted``; the others keep their one row each (edited where they were), and VH holds
    as many rows fewer as were deleted."""
    items = 2000 if full else 200
    ws.manage("migrate", "--no-input", "-v0")
    synced, problems = synced_first(ws, "delete", items)
    changes = []
    for n, (pk, text, vh_id) in enumerate(synced):
        if n % 2 == 0:
            changes.append(Change(pk, vh_id, text, text, deleted=True))
        elif n % 10 == 1:
            planet = OTHER_PLANET if n % 20 == 1 else PLANET
            changes.append(Change(pk, vh_id, text, f"{text} edited", planet))
        else:
            changes.append(Change(pk, vh_id, text, text))
    outcome, kills_made, mark = _changes_under_kills(
        ws,
        "kill -9 during deletes",
        changes,
        full=full,
        seed=20261203,
        in_window=_deleted_not_recorded,
    )
    outcome.violations[:0] = problems
    cut, after_vh = ws.attempts_cut_off(after_attempt=mark)
    outcome.notes.append(
        f"kills inside a VH transaction: {kills_made.inside}; deletes a kill cut off after "
        f"their VH commit: {len(kills_made.caught)} (up to {kills_made.largest} by one kill; "
        f"each finished on a later attempt, found deleted in the ledger); edits' claims cut "
        f"short: {cut}, {after_vh} of them after the VH commit"
    )
    if not kills_made.caught:
        outcome.violations.append("the kills never cut a delete off after its VH commit")
    if not kills_made.inside:
        outcome.violations.append("the kills never landed inside a VH transaction")
    return outcome


def vh_locked(ws: Workspace, *, full: bool) -> Outcome:
    """Another process holds a write transaction on VH-Database.db from before the cluster
    starts and the items are submitted until an attempt has failed on it, and for at least
    45 s in full (2,000 items; 8 s and 200 otherwise); afterwards everything syncs once."""
    items, seconds = (2000, 45) if full else (200, 8)
    ws.manage("migrate", "--no-input", "-v0")
    # This process is the other one: the lock is taken before any item exists.
    with contextlib.closing(sqlite3.connect(ws.haven, timeout=30, isolation_level=None)) as lock:
        lock.execute("BEGIN EXCLUSIVE")
        locked = time.monotonic()
        ws.cluster_start()
        descriptions = ws.submit("locked", items)
        _fault_hold(ws, "%database is locked%", since=locked, seconds=seconds)
        lock.execute("ROLLBACK")
    drain = ws.wait_drained()
    ws.stop_all()
    outcome = ws.check("VH locked", descriptions, drain)
    _fault_met(ws, outcome, "%database is locked%", "the lock")
    return outcome


def _fault_hold(
    ws: Workspace,
    pattern: str,
    *,
    since: float,
    seconds: float,
    watch: Callable[[], object] = lambda: None,
) -> None:
    """Keep a fault in place until an attempt has failed with an error matching ``pattern``
    (SQL LIKE; at most ``OBSERVE_SECONDS``) and at least ``seconds`` have passed ``since`` (a
    ``time.monotonic()``), calling ``watch()`` all the while."""

    def over() -> bool:
        watch()
        return time.monotonic() - since >= seconds and ws.attempts_with_error(pattern) > 0

    wait_until(over, timeout=OBSERVE_SECONDS + seconds, every=0.1)


def _fault_met(ws: Workspace, outcome: Outcome, pattern: str, fault: str) -> None:
    """Note how many attempts failed with an error matching ``pattern`` (SQL LIKE); none means
    the scenario's ``fault`` never took effect, which fails."""
    met = ws.attempts_with_error(pattern)
    outcome.notes.append(f"attempts that met {fault}: {met}")
    if not met:
        outcome.violations.append(f"no attempt met {fault}: the fault never took effect")


def vh_missing(ws: Workspace, *, full: bool) -> Outcome:
    """VH-Database.db moved away once the cluster has synced an item, half the items
    submitted before and half while it is away, and put back once an attempt has met its
    absence and it has been away 30 s in full (2,000 items; 5 s and 200 otherwise): the worker
    never creates a file in its place, and everything syncs once."""
    items, seconds = (2000, 30) if full else (200, 5)
    ws.manage("migrate", "--no-input", "-v0")
    away = ws.haven.with_name("VH-away.db")
    ws.cluster_start()
    descriptions = ws.submit("missing", items // 2)
    # The worker has VH open and is writing to it when the file goes.
    wait_until(lambda: ws.queue_states().get("synced", 0) > 0, timeout=OBSERVE_SECONDS, every=0.05)
    ws.haven.rename(away)
    moved = time.monotonic()
    # Due while VH is away: these meet the missing file whatever the cluster did before.
    descriptions += ws.submit("missing-away", items - items // 2)
    created = False

    def watch() -> None:
        nonlocal created
        created = created or ws.haven.exists()

    _fault_hold(ws, MISSING_ERROR, since=moved, seconds=seconds, watch=watch)
    watch()
    if not created:
        away.rename(ws.haven)
    drain = ws.wait_drained()
    ws.stop_all()
    outcome = ws.check("VH missing, then back", descriptions, drain)
    _fault_met(ws, outcome, MISSING_ERROR, "the missing file")
    if created:
        outcome.violations.append("a file appeared at HAVEN_DB_PATH while VH was away")
    return outcome


#: The error of an attempt that found no VH-Database.db (SQL LIKE).
MISSING_ERROR = "%VH-Database.db is missing at %"

#: As root, runs a command without the capabilities that let root ignore file modes, so that a
#: read-only VH-Database.db is read-only to it as to any user.
NO_DAC_OVERRIDE = (
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def vh_read_only(ws: Workspace, *, full: bool) -> Outcome:
    """VH-Database.db made read-only (chmod 444) before the cluster starts and the items are
    submitted, and writable again once an attempt has met it and 30 s have passed in full
    (2,000 items; 5 s and 200 otherwise): the file is not changed while read-only, and
    everything syncs once afterwards. As root the cluster runs without CAP_DAC_OVERRIDE."""
    items, seconds = (2000, 30) if full else (200, 5)
    ws.manage("migrate", "--no-input", "-v0")
    prefix = NO_DAC_OVERRIDE if os.geteuid() == 0 and shutil.which("setpriv") else ()
    violations: list[str] = []
    if os.geteuid() == 0 and not prefix:
        violations.append("running as root without setpriv: read-only cannot be tested")
    ws.haven.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    made_read_only = time.monotonic()
    before = _digest(ws.haven)
    ws.cluster_start(prefix=prefix)
    descriptions = ws.submit("read-only", items)
    _fault_hold(ws, "%readonly%", since=made_read_only, seconds=seconds)
    if _digest(ws.haven) != before:
        violations.append("VH-Database.db changed while it was read-only")
    ws.haven.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    drain = ws.wait_drained()
    ws.stop_all()
    outcome = ws.check("VH read-only, then writable", descriptions, drain)
    _fault_met(ws, outcome, "%readonly%", "the read-only file")
    outcome.violations += violations
    return outcome


def vh_schema_drift(ws: Workspace, *, full: bool) -> Outcome:
    """A column the mapping needs is missing from VH: items end ``max_retries_exceeded``
    with an error naming it, the worker keeps running; once the column is back, the
    operators' bulk retry (their UPDATE of REFERENCE.md) syncs every item once."""
    items = 1000 if full else 100
    ws.env["SYNC_MAX_ATTEMPTS"] = "3"
    ws.manage("migrate", "--no-input", "-v0")
    with contextlib.closing(sqlite3.connect(ws.haven)) as vh, vh:
        vh.execute("ALTER TABLE discoveries DROP COLUMN structure_type")
    cluster = ws.cluster_start()
    descriptions = ws.submit("drift", items)
    outcome_notes: list[str] = []
    violations: list[str] = []
    if ws.wait_queue(lambda states: states.get("max_retries_exceeded") == items) is None:
        violations.append(f"the items never all ended max_retries_exceeded: {ws.queue_states()}")
    with sqlite3.connect(ws.keeper, timeout=30) as keeper:
        errors = {e for (e,) in keeper.execute("SELECT DISTINCT sync_error FROM sync_queue")}
    if not all(e and "structure_type" in e for e in errors):
        violations.append(f"errors that do not name the column: {sorted(map(str, errors))[:3]}")
    if cluster.poll() is not None:
        violations.append("the cluster exited while the column was missing")
    states = ", ".join(f"{count} {state}" for state, count in sorted(ws.queue_states().items()))
    outcome_notes.append(f"before the fix: {states}")
    with contextlib.closing(sqlite3.connect(ws.haven)) as vh, vh:
        vh.execute("ALTER TABLE discoveries ADD COLUMN structure_type TEXT")
    fixed = time.monotonic()
    with sqlite3.connect(ws.keeper, timeout=30) as keeper:
        keeper.execute(
            "UPDATE sync_queue SET sync_status = 'pending', sync_attempts = 0, sync_error = NULL "
            "WHERE sync_status = 'max_retries_exceeded'"
        )
    drain = ws.wait_drained()
    ws.stop_all()
    outcome = ws.check("VH schema drift", descriptions, drain)
    outcome.notes += outcome_notes + [f"fixed at +{fixed - ws.started:.0f} s"]
    outcome.violations += violations
    return outcome


def _bad_entry(n: int) -> object:
    """The ``n``-th malformed submission: each kind of bad input in turn."""
    text = f"chaos bad {n:04d}"
    base = {
        "user_id": "100001",
        "username": "Chaos Bad",
        "discovery_type": "🏛️",
        "system_name": "Demo Alpha",
        "location": "Alpha Prime",
        "description": text,
    }
    kinds = [
        lambda: {**base, "discovery_type": "🐉"},
        lambda: {k: v for k, v in base.items() if k != "description"},
        lambda: {**base, "description": text + "x" * 1000},
        lambda: {**base, "structure_type": "s" * 201},
        lambda: {**base, "description": text + " \ud800"},
        lambda: {**base, "system_name": "Demo\x00Alpha"},
        lambda: {**base, "evidence_url": "javascript:alert(1)"},
        lambda: {**base, "evidence_url": "ftp://example.org/a.png"},
        lambda: text,
        lambda: n,
        lambda: [base],
        lambda: None,
        lambda: {**base, "metadata": "not an object"},
        lambda: {**base, "colour": "red"},
        lambda: {**base, "description": "\u200b\u200b"},
        lambda: {**base, "user_id": "not-a-snowflake"},
    ]
    return kinds[n % len(kinds)]()


def bad_input(ws: Workspace, *, full: bool) -> Outcome:
    """200 malformed submissions, each next to a good one, through ``submit_discovery`` and
    through the submit service: each bad one is refused with a reason and none is stored;
    every good one is stored and syncs once."""
    count = 200
    ws.manage("migrate", "--no-input", "-v0")
    ws.cluster_start()
    good: list[str] = []
    outcome_violations: list[str] = []
    refused_total = 0
    for door in ("command", "service"):
        entries: list[object] = []
        for n in range(count):
            text = f"chaos good {door} {n:04d}"
            good.append(text)
            entries.append(
                {
                    "user_id": str(100_000 + n % 32),
                    "username": "Chaos Good",
                    "discovery_type": "🏛️",
                    "system_name": "Demo Alpha",
                    "location": "Alpha Prime",
                    "description": text,
                }
            )
            entries.append(_bad_entry(n))
        path = ws.folder / f"mixed-{door}.json"
        path.write_text(json.dumps(entries, ensure_ascii=True), encoding="utf-8")
        if door == "command":
            done = subprocess.run(
                [sys.executable, "manage.py", "submit_discovery", "--file", str(path)],
                cwd=ROOT,
                env=ws.env,
                capture_output=True,
                text=True,
                check=False,
            )
            refused = [line for line in done.stderr.splitlines() if ": refused: " in line]
        else:
            script = (
                "import json, sys\n"
                "from discoveries.rules import DiscoveryInvalid\n"
                "from syncq.services import discovery_submit_payload\n"
                f"entries = json.load(open({str(path)!r}))\n"
                "for number, entry in enumerate(entries, start=1):\n"
                "    try:\n"
                "        discovery_submit_payload(entry)\n"
                "    except DiscoveryInvalid as exc:\n"
                "        print(f'entry {number}: refused: {exc}')\n"
            )
            refused = [
                line
                for line in ws.manage("shell", "-c", script).stdout.splitlines()
                if ": refused: " in line
            ]
        numbers = sorted(int(line.split(":")[0].split()[1]) for line in refused)
        refused_total += len(set(numbers) & set(range(2, 2 * count + 1, 2)))
        if numbers != list(range(2, 2 * count + 1, 2)):
            outcome_violations.append(f"{door}: refused entries {numbers[:10]}… not the bad ones")
        if any(not line.split(": refused: ", 1)[1].strip() for line in refused):
            outcome_violations.append(f"{door}: a refusal without a reason")
    stored_bad = ws.keeper_value(
        "SELECT COUNT(*) FROM discoveries WHERE description NOT LIKE 'chaos good %'"
    )
    if stored_bad:
        outcome_violations.append(f"{stored_bad} malformed submissions were stored")
    drain = ws.wait_drained()
    ws.stop_all()
    outcome = ws.check("bad input at every door", good, drain)
    stored_good = ws.keeper_value(
        "SELECT COUNT(*) FROM discoveries WHERE description LIKE 'chaos good %'"
    )
    outcome.notes.append(
        f"{refused_total} of {2 * count} malformed submissions refused with a reason; "
        f"{stored_good} of {len(good)} good ones stored"
    )
    outcome.violations += outcome_violations
    return outcome


def clock_and_schedule(ws: Workspace, *, full: bool) -> Outcome:
    """With ``TIME_ZONE`` not UTC (America/New_York): restarting the cluster 5 times (each
    time once all its processes are up) leaves one set of sync schedules; a cluster down for 2
    hours (the schedules' next runs 2 hours past) runs no burst of missed runs, moves every
    schedule past the outage, and retries no item in backoff before it is due; when they fall
    due, they sync once."""
    items = 500 if full else 50
    ws.env["TIME_ZONE"] = "America/New_York"
    ws.manage("migrate", "--no-input", "-v0")
    violations: list[str] = []
    for _ in range(5):
        cluster = ws.cluster_start()
        if not wait_until(functools.partial(ws.cluster_up, cluster), timeout=OBSERVE_SECONDS):
            violations.append(f"a cluster's processes were not all up in {OBSERVE_SECONDS} s")
        cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(timeout=OBSERVE_SECONDS)
        except subprocess.TimeoutExpired:
            ws.kill(cluster)
            violations.append(f"a cluster did not stop within {OBSERVE_SECONDS} s of SIGTERM")
    names = sorted(n for (n,) in ws.keeper_rows("SELECT name FROM django_q_schedule"))
    if names != ["keeper-prune-synced", "keeper-sync-1", "keeper-sync-2", "keeper-verify"]:
        violations.append(f"schedules after 5 restarts: {names}")
    descriptions = ws.submit("clock", items)
    with contextlib.closing(sqlite3.connect(ws.keeper, timeout=30)) as keeper, keeper:
        # Items in backoff, due in 20 s; the cluster "was down" for 2 hours.
        keeper.execute(
            "UPDATE sync_queue SET sync_attempts = 3, sync_error = 'earlier failure', "
            "next_retry_after = datetime('now', '+20 seconds')"
        )
        keeper.execute("UPDATE django_q_schedule SET next_run = datetime(next_run, '-2 hours')")
        keeper.execute("DELETE FROM django_q_ormq")
        tasks_before = keeper.execute("SELECT COUNT(*) FROM django_q_task").fetchone()[0]
        due = _utc(keeper.execute("SELECT MIN(next_retry_after) FROM sync_queue").fetchone()[0])
        mark = keeper.execute("SELECT COALESCE(MAX(id), 0) FROM sync_attempt").fetchone()[0]
    restarted = time.monotonic()
    ws.cluster_start()
    drain = ws.wait_drained()
    # Every attempt starts after its item's claim, which only a due item gets.
    early = sum(
        _utc(started) < due
        for (started,) in ws.keeper_rows("SELECT started_at FROM sync_attempt WHERE id > ?", mark)
    )
    if early:
        violations.append(f"{early} items were retried before their backoff ended")

    def left_behind() -> int:
        """Schedules still where the outage left them (long past), not moved on."""
        return ws.keeper_value(
            "SELECT COUNT(*) FROM django_q_schedule WHERE next_run < datetime('now', '-10 minutes')"
        )

    # django-q2's scheduler looks at the schedules every 30 s or so: a burst of missed runs
    # would follow its first look; give it two.
    wait_until(
        lambda: time.monotonic() - restarted >= WATCH_AFTER_OUTAGE and not left_behind(),
        timeout=WATCH_AFTER_OUTAGE + OBSERVE_SECONDS,
        every=0.5,
    )
    watched = time.monotonic() - restarted
    runs = ws.keeper_value("SELECT COUNT(*) FROM django_q_task WHERE func = ?", SYNC_FUNC)
    runs -= tasks_before
    past = left_behind()
    phases = sorted(
        int(float(second)) % 60
        for (second,) in ws.keeper_rows(
            "SELECT strftime('%S', next_run) FROM django_q_schedule WHERE name LIKE 'keeper-sync-%'"
        )
    )
    # Two sync schedules, each at most once a minute (and a run asked for at a cluster's
    # start or after a long batch): a burst would be ~120 runs.
    if runs > 2 * (1 + int(watched) // 60) + 2:
        violations.append(f"{runs} sync runs in {watched:.0f} s after the outage")
    if past:
        violations.append(f"{past} schedules still due in the past after the restart")
    if len(phases) == 2 and (phases[1] - phases[0]) % 60 != 30:
        violations.append(f"the two sync schedules are no longer 30 s apart: {phases}")
    ws.stop_all()
    outcome = ws.check("clock and schedule (TIME_ZONE New York)", descriptions, drain)
    outcome.notes.append(f"sync runs in {watched:.0f} s after a 2-hour outage: {runs}")
    outcome.violations += violations
    return outcome


#: The zone the DST scenarios run in.
DST_ZONE = "America/New_York"
#: How long before the zone's clock change a DST scenario's clock starts, in seconds, in its
#: first round: time for migrate, the cluster's start, its first scheduled run (django-q2's
#: scheduler first looks about 30 s after the cluster starts) and every item's first failed
#: attempt. It is also the scenario's ``SYNC_BASE_DELAY_SECONDS``, so that the first backoff
#: of an item that failed before the change always ends after it. A round in which no item
#: failed, or no scheduled run started, before the change proves nothing; it is run again
#: with twice the margin (``DST_ROUNDS`` rounds at most).
DST_MARGIN = 60
DST_ROUNDS = 3
#: How late past its due time a retry may start: a few of django-q2's 30-second scheduler
#: passes on a loaded machine. A retry an hour off is what a local-time bug looks like.
DST_LATE_LIMIT = 180
#: The longest gap between two scheduled sync runs, each every 60 s, 30 s apart: a few
#: passes of a loaded machine's scheduler, far from the hour a local-time bug skips.
DST_GAP_LIMIT = 150


def dst_change_next(*, forward: bool, after: datetime | None = None) -> datetime:
    """The next moment (UTC) after ``after`` (default now) at which ``DST_ZONE``'s clocks go
    forward (``forward``) or back, found hour by hour within two years. Raises ``LookupError``
    when there is none."""
    zone = ZoneInfo(DST_ZONE)
    moment = (after or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    for _ in range(2 * 366 * 24):
        following = moment + timedelta(hours=1)
        before, later = moment.astimezone(zone).utcoffset(), following.astimezone(zone).utcoffset()
        if before != later and (later > before) == forward:
            return following
        moment = following
    raise LookupError(f"{DST_ZONE} changes no clocks in the next two years")


def _utc(text: str) -> datetime:
    """A datetime Django stored in SQLite (UTC, without an offset), as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def across_dst(ws: Workspace, *, full: bool, forward: bool) -> Outcome:
    """With ``TIME_ZONE`` America/New_York, every process runs with its wall clock moved
    (:mod:`chaos.clock_shift`) to ``DST_MARGIN`` seconds before the zone's next clock change
    (forward or back). VH-Database.db is away, so items fail and wait in backoff across the
    change; VH is back once the clock has passed it.

    The retries are never early and never an hour late (``DST_LATE_LIMIT``); the first
    backoff of each item spans the change; the scheduled sync runs go on every 30 s or so
    through it; and every item syncs once (500 items in full, 50 otherwise)."""
    name = f"clock: DST {'forward' if forward else 'back'} ({DST_ZONE})"
    items = 500 if full else 50
    change = dst_change_next(forward=forward)
    margin = DST_MARGIN
    for round_number in range(1, DST_ROUNDS + 1):
        outcome, proved = _dst_round(ws, name, items, change, margin)
        if proved or round_number == DST_ROUNDS:
            break
        ws.reset()
        margin *= 2
    if round_number > 1:
        outcome.notes.append(
            f"round {round_number}, {margin} s before the change: the machine was too slow for "
            "the earlier rounds' clocks, which reached the change before the cluster ran"
        )
    return outcome


def _dst_round(
    ws: Workspace, name: str, items: int, change: datetime, margin: int
) -> tuple[Outcome, bool]:
    """One round of :func:`across_dst` on a fresh workspace, with every clock ``margin``
    seconds before ``change``. Returns the outcome and whether the round could prove anything:
    an item failed, and a scheduled sync run started, before the change."""
    offset = (change - timedelta(seconds=margin) - datetime.now(UTC)).total_seconds()
    ws.python = [sys.executable, "-m", "chaos.clock_shift"]
    ws.env.update(
        {
            "TIME_ZONE": DST_ZONE,
            "SYNC_BASE_DELAY_SECONDS": str(margin),
            "CHAOS_CLOCK_OFFSET_SECONDS": repr(offset),
        }
    )

    def fake_now() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=offset)

    ws.manage("migrate", "--no-input", "-v0")
    away = ws.haven.with_name("VH-away.db")
    ws.haven.rename(away)
    ws.cluster_start()
    descriptions = ws.submit("dst", items)
    # Every item that failed before the change is due at least ``margin`` seconds after its
    # failure, after the change: VH is back before any of them is retried.
    time.sleep(max(0.0, (change - fake_now()).total_seconds()))
    away.rename(ws.haven)
    drain = ws.wait_drained()

    def runs() -> list[datetime]:
        return sorted(
            _utc(started)
            for (started,) in ws.keeper_rows(
                'SELECT started FROM django_q_task WHERE func = ? AND "group" LIKE ?',
                SYNC_FUNC,
                SYNC_NAME_PREFIX + "%",
            )
        )

    # The run that synced the retries started after the change; its record is saved when it
    # ends, which may be after the queue is seen drained.
    wait_until(lambda: any(run > change for run in runs()), timeout=OBSERVE_SECONDS)
    ended = fake_now()
    ws.stop_all()
    outcome = ws.check(name, descriptions, drain)

    attempts: dict[int, list[tuple[int, datetime, int]]] = {}
    for item, number, started, duration in ws.keeper_rows(
        "SELECT queue_item_id, number, started_at, duration_ms FROM sync_attempt"
    ):
        attempts.setdefault(item, []).append((number, _utc(started), duration))
    early, late, spanning = [], [], 0
    for item, rows in attempts.items():
        rows.sort()
        for (number, started, duration), (_, retried, _) in itertools.pairwise(rows):
            failed = started + timedelta(milliseconds=duration)
            due = failed + retry_delay(number, base_seconds=margin)
            # The duration is whole milliseconds: allow that rounding, nothing more.
            if retried < due - timedelta(milliseconds=1):
                early.append(f"item {item} attempt {number + 1} {due - retried} early")
            elif retried - due > timedelta(seconds=DST_LATE_LIMIT):
                late.append(f"item {item} attempt {number + 1} {retried - due} late")
            spanning += failed < change <= due
    scheduled = runs()
    failed_before = sum(rows[0][1] < change for rows in attempts.values())
    proved = bool(failed_before and scheduled and scheduled[0] < change)
    gaps = [later - earlier for earlier, later in itertools.pairwise(scheduled)]
    next_runs = [
        _utc(at)
        for (at,) in ws.keeper_rows(
            "SELECT next_run FROM django_q_schedule WHERE name LIKE ?", SYNC_NAME_PREFIX + "%"
        )
    ]
    outcome.notes.append(
        f"clock change at {change:%Y-%m-%d %H:%M} UTC; {failed_before} items failed before "
        f"it, {spanning} backoffs spanned it; {len(scheduled)} scheduled sync runs, longest "
        f"gap {max(gaps, default=timedelta()).total_seconds():.0f} s"
    )
    if early:
        outcome.violations.append(f"{len(early)} retries before their due time, e.g. {early[0]}")
    if late:
        outcome.violations.append(f"{len(late)} retries far past their due time, e.g. {late[0]}")
    if not proved:
        first_failure = min((rows[0][1] for rows in attempts.values()), default=None)
        outcome.violations.append(
            "no item failed, or no scheduled run started, before the clock change: the test "
            f"proved nothing (first attempt {first_failure}, first run {scheduled[:1]})"
        )
    elif spanning < failed_before:
        outcome.violations.append(
            f"{failed_before} items failed before the clock change, but only {spanning} "
            "backoffs spanned it"
        )
    if not scheduled or scheduled[-1] < change:
        outcome.violations.append(f"no scheduled run after the change: {scheduled[-1:]}")
    if any(gap > timedelta(seconds=DST_GAP_LIMIT) for gap in gaps):
        outcome.violations.append(f"scheduled runs stopped for {max(gaps)} around the change")
    # A schedule may be due and not yet run: the scheduler looks every 30 s or so.
    window = (ended - timedelta(seconds=DST_GAP_LIMIT), ended + timedelta(minutes=2))
    if any(not window[0] < at < window[1] for at in next_runs):
        outcome.violations.append(f"the sync schedules' next runs {next_runs} are off")
    return outcome, proved


def dst_forward(ws: Workspace, *, full: bool) -> Outcome:
    """:func:`across_dst` with the clocks going forward (02:00 becomes 03:00)."""
    return across_dst(ws, full=full, forward=True)


def dst_back(ws: Workspace, *, full: bool) -> Outcome:
    """:func:`across_dst` with the clocks going back (02:00 becomes 01:00)."""
    return across_dst(ws, full=full, forward=False)


#: One submitter process: ``threads`` threads each submit ``each`` discoveries through the
#: submit service, and every error any of them sees is printed as ``ERROR <text>``.
_CROWD_SUBMITTER = """
import threading
from django.db import connections
from syncq.services import discovery_submit

TAG, THREADS, EACH = {tag!r}, {threads}, {each}
errors = []

def run(t):
    try:
        for n in range(EACH):
            try:
                discovery_submit(
                    user_id=str(200000 + t),
                    username=f"Crowd {{t}}",
                    discovery_type="⚙️",
                    system_name="Demo Beta",
                    location="Beta Rock",
                    description=f"chaos crowd {{TAG}} {{t:02d}} {{n:05d}}",
                )
            except Exception as exc:
                errors.append(f"{{type(exc).__name__}}: {{exc}}")
    finally:
        connections.close_all()

threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
for error in errors:
    print("ERROR", error)
print("DONE", THREADS * EACH - len(errors))
"""


class Crowd:
    """``processes`` submitter processes of ``threads`` threads each, started at once, that
    together submit at least ``total`` discoveries through the submit service (equal shares,
    rounded up)."""

    def __init__(self, ws: Workspace, *, total: int, processes: int = 8, threads: int = 4):
        self.each = -(-total // (processes * threads))
        self.descriptions = [
            f"chaos crowd p{p} {t:02d} {n:05d}"
            for p in range(processes)
            for t in range(threads)
            for n in range(self.each)
        ]
        self.submitters = processes * threads
        self.errors: list[str] = []
        self.stored = 0
        self._processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "shell",
                    "-c",
                    _CROWD_SUBMITTER.format(tag=f"p{p}", threads=threads, each=self.each),
                ],
                cwd=ROOT,
                env=ws.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for p in range(processes)
        ]

    def running(self) -> bool:
        return any(process.poll() is None for process in self._processes)

    def finish(self) -> None:
        """Wait for every submitter; collect the errors they saw and how many they stored."""
        for process in self._processes:
            for line in process.communicate(timeout=1800)[0].splitlines():
                if line.startswith("ERROR"):
                    self.errors.append(line)
                elif line.startswith("DONE"):
                    self.stored += int(line.split()[1])

    def judge(self, outcome: Outcome, seconds: float) -> None:
        """Add the crowd's figures to ``outcome``, and a violation for any error a submitter
        saw or any submit that never finished."""
        outcome.notes.append(
            f"{len(self.descriptions)} submitted in {seconds:.0f} s by {self.submitters} "
            f"submitters; errors seen: {len(self.errors)}"
        )
        if self.errors:
            outcome.violations.append(
                f"submitters saw {len(self.errors)} errors, e.g. {self.errors[0]}"
            )
        if self.stored + len(self.errors) != len(self.descriptions):
            outcome.violations.append(
                f"submitters reported {self.stored} stored and {len(self.errors)} errors of "
                f"{len(self.descriptions)}: some did not finish"
            )


def crowd(ws: Workspace, *, full: bool) -> Outcome:
    """32 submitters (8 processes of 4 threads) submit at once while 2 clusters of 4 workers
    drain (10,000 discoveries in full, 800 otherwise): no submitter sees any error, "database
    is locked" included, and every discovery syncs once."""
    ws.env["Q_WORKERS"] = "4"
    ws.manage("migrate", "--no-input", "-v0")
    ws.cluster_start()
    ws.cluster_start()
    crowd = Crowd(ws, total=10_000 if full else 800)
    crowd.finish()
    fault_over = time.monotonic()
    drain = ws.wait_drained()
    ws.stop_all()
    outcome = ws.check("crowd: 32 submitters, 2 clusters", crowd.descriptions, drain)
    crowd.judge(outcome, fault_over - ws.started)
    return outcome


def scale_out(ws: Workspace, *, full: bool) -> Outcome:
    """The crowd and the kills on the scale-out engine: keeper on PostgreSQL (``DATABASE_URL``),
    django-q2's broker on Redis (``Q_REDIS_URL``), two clusters of 4 workers as separate
    processes. While 32 submitters submit (10,000 in full, 800 otherwise), the clusters are
    killed -9 and restarted (at least 20 kills in full, 4 otherwise; see
    :func:`_kill_while_syncing`): both at once when a worker is seen inside a VH transaction
    or between its VH commit and its keeper commit, then one or the other at random moments;
    each VH transaction pauses as in the kill scenario.

    Skipped, with the reason, when PostgreSQL or Redis cannot be reached, except under CI
    (``CI`` set), where that is a failure."""
    name = "scale-out: PostgreSQL + Redis, crowd and kills"
    kills = 20 if full else 4
    try:
        ws.env["DATABASE_URL"] = postgres_database(ws)
        ws.env["Q_REDIS_URL"] = redis_database(ws)
    except ServerUnreachable as exc:
        outcome = Outcome(name=name, items=0)
        if under_ci():
            outcome.violations.append(f"{exc} (under CI the servers must be up)")
        else:
            outcome.skipped = str(exc)
        return outcome
    ws.env["Q_WORKERS"] = "4"
    ws.env["SYNC_CHAOS_PAUSE_SECONDS"] = _kill_pause(full)
    ws.manage("migrate", "--no-input", "-v0")
    rng = random.Random(20261201)
    clusters = [ws.cluster_start(), ws.cluster_start()]
    crowd = Crowd(ws, total=10_000 if full else 800)
    kills_made = _kill_while_syncing(ws, clusters, rng, kills, more_coming=crowd.running)
    killed_while_submitting = crowd.running()
    crowd.finish()
    fault_over = time.monotonic()
    drain = ws.wait_drained()
    ws.stop_all()
    outcome = ws.check(name, crowd.descriptions, drain)
    crowd.judge(outcome, fault_over - ws.started)
    outcome.notes.append(
        f"{kills_made.done} kills, the last "
        f"{'while' if killed_while_submitting else 'after'} the crowd "
        "submitted"
    )
    _judge_kills(ws, outcome, kills_made)
    if ws.keeper_value("SELECT COUNT(*) FROM django_q_ormq"):
        outcome.violations.append("tasks went through the ORM broker, not Redis")
    runs = ws.keeper_value("SELECT COUNT(*) FROM django_q_task WHERE func = ?", SYNC_FUNC)
    if not runs:
        outcome.violations.append("no sync task ran: the clusters never took work from Redis")
    return outcome


def agent_link(ws: Workspace, *, full: bool) -> Outcome:
    """The cloud server and the desktop Control Room agent as two machines (network
    namespaces joined by a veth, :mod:`chaos.agent_link`), over a link with 100 ms of delay
    where 5 % of connections are dropped and 5 % reset mid-request: the agent is killed -9 at
    each step of a lease (inside its VH transaction, between the VH commit and its ack, with
    the ack in flight; twice each in full) and restarted, then discoveries are submitted
    while the link is cut (1,000 and 30 s in full, 200 and 10 s otherwise), and the agent is
    stopped a while. Every discovery reaches VH once, all within a minute of the link's
    return, and the server's pickers answer with the uploaded catalog while the desktop is
    away.

    Skipped, with the reason, where network namespaces cannot be made (not root, no ``ip``),
    except under CI, where that is a failure."""
    name = "agent-link: cloud ↔ desktop agent, lossy link, kills, cut"
    reason = netlab_unavailable()
    if reason is not None:
        outcome = Outcome(name=name, items=0)
        if under_ci():
            outcome.violations.append(f"{reason} (under CI network namespaces are required)")
        else:
            outcome.skipped = reason
        return outcome
    count, cut, rounds = (1000, 30.0, 2) if full else (200, 10.0, 1)
    with CloudDesk(ws.folder / "agent-link", faults=LOSSY, seed=LOSSY_SEED) as cloud:
        report = fault_run(cloud, count=count, cut_seconds=cut, kill_rounds=rounds, stop_seconds=5)
    verdict, kills = report["verdict"], report["kills"]
    outcome = Outcome(
        name=name,
        items=verdict["items"],
        lost=verdict["lost"],
        duplicated=verdict["duplicated"],
        stuck=verdict["stuck"],
        drain_seconds=report["cut"]["restore_to_all_synced_seconds"],
    )
    landed = Counter(kill["step"] for kill in kills if kill["landed"])
    proxy = report["proxy"]
    outcome.notes.append(
        f"{len(kills)} kills, landed: {dict(landed)}; proxy: {proxy['connections']} "
        f"connections, {proxy['dropped']} dropped, {proxy['reset']} reset; link cut "
        f"{report['cut']['seconds']:g} s"
    )
    for phase, figures in (("cut", report["cut"]), ("stop", report.get("agent_stopped"))):
        if figures is None:
            continue
        pickers = figures["pickers"]
        outcome.notes.append(
            f"pickers during the {phase}: {pickers['with_catalog']} of {pickers['reads']} "
            f"reads over {pickers['seconds']:g} s answered with the catalog"
        )
        if not pickers["reads"] or pickers["with_catalog"] != pickers["reads"]:
            outcome.violations.append(
                f"the pickers did not keep answering during the {phase}: {pickers}"
            )
    for kill in kills:
        if not kill["landed"]:
            outcome.violations.append(
                f"the kill aimed {kill['step']} did not land: {kill['evidence'][-1]}"
            )
    if not (proxy["dropped"] and proxy["reset"]):
        outcome.violations.append(f"the link dropped or reset no connection: {proxy}")
    if not report["cut"]["within_limit"]:
        outcome.violations.append(
            f"not all synced within {DRAIN_AFTER_RESTORE_SECONDS:g} s of the link's return "
            f"({report['cut']['restore_to_all_synced_seconds']} s)"
        )
    if report["server_made_a_vh_file"]:
        outcome.violations.append("the server made a VH file of its own")
    outcome.violations += report["log_problems"]
    return outcome


SCENARIOS = {
    "kill": kill_the_worker,
    "update-kill": update_kill,
    "delete-kill": delete_kill,
    "locked": vh_locked,
    "missing": vh_missing,
    "read-only": vh_read_only,
    "drift": vh_schema_drift,
    "bad-input": bad_input,
    "crowd": crowd,
    "scale-out": scale_out,
    "clock": clock_and_schedule,
    "dst-forward": dst_forward,
    "dst-back": dst_back,
    "agent-link": agent_link,
}
