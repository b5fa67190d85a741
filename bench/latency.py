"""The latency section: how long a discovery takes to reach the Control Room, how long a submit
takes alone and in a crowd, how fast a real ``qcluster`` drains a backlog, and how long the
Control Room's own writes wait while a backlog drains.

Each figure works on fresh files in its own temporary folder: a copy of a keeper.db that
``manage.py migrate`` made for this run of the section (once: it takes seconds), a copy of the
Control Room's schema fixture as VH-Database.db, and a file cache there
(``CACHE_URL=filecache://…``, as ``make run``'s default ``data/cache``): the sync's kick request
(:func:`syncq.services.sync_kick`) is a cache entry every process must share, the submitter
adding it and the worker's ``sync_due`` clearing it.

1. **visible**: a real ``manage.py qcluster`` on the files, idle; a driver process submits 200
   discoveries one after another through :func:`syncq.services.discovery_submit` and times
   each from the call's return until its ledger row is in VH (VH polled read-only every 5 ms
   on one open connection, as the Control Room keeps its own), with a random pause between
   one discovery seen and the next submit. The submit's ``on_commit`` enqueues
   ``syncq.tasks.sync_due`` on django-q2's ORM broker (in keeper.db) before the call returns;
   the cluster's pusher finds it at its next look (django-q2's ``poll``, 0.2 s by default,
   between looks that find nothing) and a worker runs it.
2. **service**: 2,000 calls of :func:`~syncq.services.discovery_submit` in one process, no
   worker.
3. **crowd**: 8 processes × 4 threads, each thread submitting its share at once against one
   keeper.db, no worker; per call the time spent in ``BEGIN`` statements (where a submit waits
   for its turn to write keeper.db) is recorded beside the call's whole time.
4. **qcluster**: ``manage.py qcluster`` (``Q_CLUSTER``'s 2 workers) drains a 20,000-item
   backlog queued through the submit service (one process, no worker); items/s from the first
   to the last ``sync_queue.synced_at``. The drain is cut off after a time budget, so the
   section keeps to its minutes while the drain is slow; the table then says how much of the
   backlog it drained.
5. **Control Room writer**: on a copy of that backlog, ``manage.py sync_now --until-idle``
   drains while another process, holding VH open with Python's ``sqlite3`` defaults (deferred
   transactions, 5 s busy timeout), saves a system's ``attributes`` and ``modified_at`` every
   50 ms and saves them back on the next write (an edit of a system's details, which leaves the
   map the sync resolves places in as it was), timing each write from its ``UPDATE`` to the
   return of ``commit()``. Only writes made while items are being synced count.

Each figure is one run whatever ``runs`` says (its percentiles are over its samples); every
process started runs in its own process group and is stopped at the end, on errors too.
Plain ``time.perf_counter`` timers. The child processes are this module run as
``python -m bench.latency <role>``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from bench.harness import ROOT, entries, manage, manage_env, places, vh_copy

#: How often the drivers look for a row in VH or a count in keeper.db, in seconds.
POLL_SECONDS = 0.005
#: How long the first discovery may take to reach VH while the worker starts, in seconds.
WORKER_START_SECONDS = 60.0
#: How long one discovery may take to reach VH before it counts as lost, in seconds.
VISIBLE_TIMEOUT_SECONDS = 10.0
#: After this many lost discoveries, the submit → VH driver stops.
LOST_LIMIT = 5
#: The range of the pause after a discovery is seen in VH and before the next submit, in
#: seconds: long enough for the worker to be idle again, and spread over more than django-q2's
#: broker poll (0.2 s), so that submits do not fall into step with the worker's polls.
VISIBLE_GAP_SECONDS = (0.05, 0.25)
#: The Control Room writer's pause between two writes, in seconds.
WRITER_INTERVAL_SECONDS = 0.05
#: How long a stopped process has to end by itself before its group is killed, in seconds.
STOP_GRACE_SECONDS = 20.0
#: Upper bounds of the buckets the Control Room writer's waits are counted in, in ms.
WAIT_BUCKETS_MS = (5, 25, 50, 100, 150, 250, 500, 1000, 5000)

#: Sizes: full, then ``--smoke``.
SIZES = {
    False: {
        "visible": 200,
        "service": 2000,
        "crowd_processes": 8,
        "crowd_threads": 4,
        "crowd_each": 100,
        "backlog": 20_000,
        "drain_budget_s": 60.0,
        "writer_window_s": 20.0,
    },
    True: {
        "visible": 20,
        "service": 200,
        "crowd_processes": 8,
        "crowd_threads": 4,
        "crowd_each": 5,
        "backlog": 1000,
        "drain_budget_s": 20.0,
        "writer_window_s": 3.0,
    },
}


# --- numbers ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100) of ``values``, interpolated linearly between the two
    nearest ranks; None for no values. Same unit as ``values``."""
    ordered = sorted(values)
    if not ordered:
        return None
    at = (len(ordered) - 1) * q / 100
    low = math.floor(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def spread(values: list[float]) -> dict[str, float | int | None]:
    """Count, p50, p90, p99 and max of ``values``, in their own unit."""
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


def buckets(values_ms: list[float]) -> dict[str, int]:
    """How many of ``values_ms`` fall at or under each of :data:`WAIT_BUCKETS_MS` (and over the
    last), keyed ``"<=5"`` … ``">5000"``."""
    counts = {f"<={bound}": 0 for bound in WAIT_BUCKETS_MS}
    counts[f">{WAIT_BUCKETS_MS[-1]}"] = 0
    for value in values_ms:
        bound = next((b for b in WAIT_BUCKETS_MS if value <= b), None)
        counts[f"<={bound}" if bound is not None else f">{WAIT_BUCKETS_MS[-1]}"] += 1
    return counts


# --- processes ----------------------------------------------------------------------------------


class Processes:
    """The processes a figure starts, each in a process group of its own (a new session),
    every one stopped when the ``with`` block ends, however it ends."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[tuple[subprocess.Popen, Path]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for proc, _ in reversed(self.started):
            self.stop(proc)

    def start(
        self, env: dict[str, str], *args: str, name: str, stdin: int | None = None
    ) -> subprocess.Popen:
        """Start ``python args`` in the project folder with ``env``, its output in
        ``<folder>/<name>.log``."""
        log = self.folder / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, *args],
                cwd=ROOT,
                env=env,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append((proc, log))
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM to ``proc`` alone (a django-q2 cluster stops cleanly when only its main
        process gets it), up to ``grace`` seconds to end, then SIGKILL to its whole group."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def log_tail(self, proc: subprocess.Popen, chars: int = 3000) -> str:
        """The last ``chars`` characters of ``proc``'s output."""
        for started, log in self.started:
            if started is proc:
                return log.read_text(encoding="utf-8", errors="replace")[-chars:]
        return ""

    def finish(self, proc: subprocess.Popen, what: str, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for ``proc`` to end; raise with its output unless it
        ended well."""
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{what} still runs after {timeout:.0f} s") from exc
        if code != 0:
            raise RuntimeError(f"{what} failed ({code}):\n{self.log_tail(proc)}")


def wait_for(check, *, timeout: float, what: str, every: float = 0.05, alive=()) -> None:
    """Call ``check()`` every ``every`` seconds until it is true; raise after ``timeout``
    seconds, or as soon as one of the ``alive`` processes has ended."""
    deadline = time.monotonic() + timeout
    while not check():
        for proc in alive:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: a process ended early ({proc.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not done after {timeout:.0f} s")
        time.sleep(every)


# --- the files ----------------------------------------------------------------------------------


def files_env(folder: Path) -> tuple[dict[str, str], Path, Path]:
    """``(env, keeper, vh)``: the ``manage.py`` environment on ``folder``'s keeper.db and
    VH-Database.db, with a file cache in ``folder``."""
    keeper = folder / "keeper.db"
    haven = folder / "VH-Database.db"
    env = manage_env(keeper, haven)
    env["CACHE_URL"] = f"filecache://{folder / 'cache'}"
    return env, keeper, haven


def template(root: Path) -> Path:
    """A keeper.db migrated by ``manage.py migrate`` in ``root/template``, which each figure's
    workspace copies; returns its folder."""
    folder = root / "template"
    folder.mkdir()
    vh_copy(folder, "VH-Database.db")
    env, _, _ = files_env(folder)
    manage(env, "migrate", "--no-input")
    return folder


def workspace(root: Path, name: str) -> tuple[Path, dict[str, str], Path, Path]:
    """A fresh folder ``root/name`` with a copy of the migrated template keeper.db, a copy of
    the Control Room's fixture and a file cache: ``(folder, env, keeper, vh)``."""
    folder = root / name
    folder.mkdir()
    vh_copy(folder, "VH-Database.db")
    shutil.copyfile(root / "template" / "keeper.db", folder / "keeper.db")
    return folder, *files_env(folder)


def role(*args: str) -> list[str]:
    """The command line of a child process of this module."""
    return ["-m", "bench.latency", *args]


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5, isolation_level=None)


def queue_counts(keeper: Path) -> dict[str, int]:
    """``{sync_status: count}`` of keeper.db's queue, read on a connection of its own."""
    conn = _read_only(keeper)
    try:
        return dict(conn.execute("SELECT sync_status, COUNT(*) FROM sync_queue GROUP BY 1"))
    finally:
        conn.close()


def synced_stamps(keeper: Path) -> list[float]:
    """Every ``synced_at`` of keeper.db's queue, as sorted POSIX seconds."""
    conn = _read_only(keeper)
    try:
        rows = conn.execute("SELECT synced_at FROM sync_queue WHERE synced_at IS NOT NULL")
        return sorted(datetime.fromisoformat(t).timestamp() for (t,) in rows)
    finally:
        conn.close()


def _results(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# --- the figures --------------------------------------------------------------------------------


def visible(sizes: dict, root: Path) -> dict:
    """Figure 1: submit → visible in VH with an idle ``qcluster``; latencies in seconds."""
    folder, env, _, haven = workspace(root, "visible")
    out = folder / "visible.json"
    with Processes(folder) as procs:
        cluster = procs.start(env, "manage.py", "qcluster", name="qcluster")
        driver = procs.start(
            env, *role("visible", str(sizes["visible"]), str(haven), str(out)), name="driver"
        )
        wait_for(
            lambda: driver.poll() is not None,
            timeout=WORKER_START_SECONDS
            + sizes["visible"] * 2
            + LOST_LIMIT * VISIBLE_TIMEOUT_SECONDS,
            what="submit → visible driver",
            alive=(cluster,),
        )
        procs.finish(driver, "submit → visible driver", 1)
    got = _results(out)
    return {"latency_s": spread(got["latency_s"]), "lost": got["lost"]}


def service(sizes: dict, root: Path) -> dict:
    """Figure 2: the submit service alone, one process, no worker; call times in ms."""
    folder, env, _, haven = workspace(root, "service")
    out = folder / "service.json"
    with Processes(folder) as procs:
        proc = procs.start(
            env,
            *role("service", str(sizes["service"]), str(haven), str(out), "service"),
            name="service",
        )
        procs.finish(proc, "submit service driver", 120)
    got = _results(out)
    return {"call_ms": spread(got["call_ms"])}


def crowd(sizes: dict, root: Path) -> dict:
    """Figure 3: 8 processes × 4 threads submitting at once, no worker; call times in ms,
    errors, and where the slowest calls spent their time."""
    processes, threads, each = (
        sizes["crowd_processes"],
        sizes["crowd_threads"],
        sizes["crowd_each"],
    )
    folder, env, keeper, haven = workspace(root, "crowd")
    with Processes(folder) as procs:
        children = [
            procs.start(
                env,
                *role("crowd", str(n), str(threads), str(each), str(haven), str(folder)),
                name=f"crowd-{n}",
                stdin=subprocess.PIPE,
            )
            for n in range(processes)
        ]
        wait_for(
            lambda: all((folder / f"crowd-{n}.ready").exists() for n in range(processes)),
            timeout=60,
            what="crowd processes starting",
            alive=children,
        )
        started = time.perf_counter()
        for child in children:
            child.stdin.write(b"go\n")
            child.stdin.flush()
        for n, child in enumerate(children):
            procs.finish(child, f"crowd process {n}", 300)
        wall = time.perf_counter() - started
    calls = [c for n in range(processes) for c in _results(folder / f"crowd-{n}.json")["calls"]]
    counts = queue_counts(keeper)
    times = [c["ms"] for c in calls]
    errors = [c["error"] for c in calls if c["error"]]
    slowest = sorted(calls, key=lambda c: c["ms"])[-max(1, len(calls) // 100) :]
    slow_ms = sum(c["ms"] for c in slowest)
    return {
        "call_ms": spread(times),
        "begin_wait_ms": spread([c["begin_ms"] for c in calls]),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
        "submitters": processes * threads,
        "calls": len(calls),
        "wall_s": wall,
        "calls_per_s": len(calls) / wall if wall else None,
        "queued": sum(counts.values()),
        "slowest_1pct": {
            "count": len(slowest),
            "mean_ms": slow_ms / len(slowest),
            "share_in_begin_wait": (sum(c["begin_ms"] for c in slowest) / slow_ms)
            if slow_ms
            else None,
            "with_kick": sum(1 for c in slowest if c["kicked"]),
        },
        "calls_with_kick": sum(1 for c in calls if c["kicked"]),
    }


def drain_and_writer(sizes: dict, root: Path) -> tuple[dict, dict]:
    """Figures 4 and 5 on one backlog of ``sizes["backlog"]`` discoveries queued once through
    the submit service, in one process with no worker (as figure 2): the ``qcluster`` drain on
    those files, the Control Room writer on a copy of them made before that drain."""
    count = sizes["backlog"]
    folder, env, keeper, haven = workspace(root, "drain")
    out = folder / "backlog.json"
    started = time.perf_counter()
    with Processes(folder) as procs:
        proc = procs.start(
            env, *role("service", str(count), str(haven), str(out), "backlog"), name="backlog"
        )
        procs.finish(proc, "queueing the backlog", 600)
    queued_s = time.perf_counter() - started
    spare = root / "writer"
    spare.mkdir()
    for name in ("keeper.db", "VH-Database.db"):
        for suffix in ("", "-wal", "-shm"):
            if (folder / f"{name}{suffix}").exists():
                shutil.copyfile(folder / f"{name}{suffix}", spare / f"{name}{suffix}")
    drained = cluster_drain(folder, env, keeper, count, sizes["drain_budget_s"])
    drained["queueing"] = {"s": queued_s, "call_ms": spread(_results(out)["call_ms"])}
    written = writer_during_drain(spare, sizes["writer_window_s"])
    return drained, written


def cluster_drain(folder: Path, env: dict[str, str], keeper: Path, count: int, budget: float):
    """Figure 4: ``qcluster`` drains the backlog in ``keeper`` for at most ``budget`` seconds
    after its first item is synced; items/s."""
    with Processes(folder) as procs:
        started = time.perf_counter()
        cluster = procs.start(env, "manage.py", "qcluster", name="qcluster")
        wait_for(
            lambda: queue_counts(keeper).get("synced", 0) > 0,
            timeout=60,
            what="qcluster's first synced item",
            alive=(cluster,),
        )
        first = time.perf_counter()
        deadline = first + budget
        while True:
            counts = queue_counts(keeper)
            if counts.get("pending", 0) + counts.get("syncing", 0) == 0:
                break
            if time.perf_counter() > deadline or cluster.poll() is not None:
                break
            time.sleep(0.25)
        ended = time.perf_counter()
        procs.stop(cluster)
        stopped = time.perf_counter()
    counts = queue_counts(keeper)
    stamps = synced_stamps(keeper)
    complete = counts.get("synced", 0) == count
    if not complete:
        print(
            f"latency: qcluster drained {len(stamps):,} of {count:,} in its budget; {counts}",
            file=sys.stderr,
            flush=True,
        )
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else None
    return {
        "rate": rate,
        "backlog": count,
        "synced": len(stamps),
        "complete": complete,
        "states": counts,
        "start_to_first_synced_s": first - started,
        "start_to_end_s": ended - started,
        "rate_from_start": len(stamps) / (ended - started),
        "stop_s": stopped - ended,
    }


def writer_during_drain(folder: Path, window: float) -> dict:
    """Figure 5: the Control Room writer's waits (ms) while ``sync_now --until-idle`` drains the
    backlog in ``folder``, for at most ``window`` seconds of draining."""
    env, keeper, haven = files_env(folder)
    out = folder / "writer.json"
    with Processes(folder) as procs:
        writer = procs.start(
            env,
            *role("writer", str(haven), str(folder / "writer.ready"), str(out)),
            name="writer",
            stdin=subprocess.PIPE,
        )
        wait_for(
            lambda: (folder / "writer.ready").exists(),
            timeout=30,
            what="Control Room writer starting",
            alive=(writer,),
        )
        drain = procs.start(env, "manage.py", "sync_now", "--until-idle", name="sync_now")
        wait_for(
            lambda: queue_counts(keeper).get("synced", 0) > 0,
            timeout=60,
            what="sync_now's first synced item",
            alive=(drain,),
            every=POLL_SECONDS,
        )
        writer.stdin.write(b"go\n")
        writer.stdin.flush()
        started = time.perf_counter()
        with contextlib.suppress(subprocess.TimeoutExpired):
            drain.wait(window)
        drained = time.perf_counter() - started
        writer.stdin.write(b"stop\n")
        writer.stdin.flush()
        procs.finish(writer, "Control Room writer", 30)
        ended_by_itself = drain.poll() is not None
        procs.stop(drain)
    got = _results(out)
    return {
        "wait_ms": spread(got["wait_ms"]),
        "buckets_ms": buckets(got["wait_ms"]),
        "in_update_ms": spread(got["update_ms"]),
        "in_commit_ms": spread(
            [w - u for w, u in zip(got["wait_ms"], got["update_ms"], strict=True)]
        ),
        "all_ms": [round(wait, 1) for wait in got["wait_ms"]],
        "errors": len(got["errors"]),
        "error_examples": sorted(set(got["errors"]))[:5],
        "writes": len(got["wait_ms"]),
        "window_s": drained,
        "drain_ended_in_window": ended_by_itself,
        "synced_in_window": queue_counts(keeper).get("synced", 0),
    }


# --- the section ----------------------------------------------------------------------------------


def _figure(description: str, unit: str, value: float | None, target: str | None = None) -> dict:
    figure = {"description": description, "unit": unit, "median": value, "runs": [value]}
    if target is not None:
        figure["target"] = target
    return figure


def run(*, smoke: bool, runs: int) -> dict:
    """The latency section, one run of each figure (``runs`` is recorded, not repeated: each
    figure is a distribution over its own samples). Returns ``{"figures": {key: figure}, …}``
    for :mod:`bench.__main__`: latencies in seconds or milliseconds as each unit says, the
    drain in items/s, errors as counts; the details of each figure under its own key."""
    sizes = SIZES[smoke]
    submitters = sizes["crowd_processes"] * sizes["crowd_threads"]
    stages = {
        "visible": (f"submit → VH, {sizes['visible']} submits", visible),
        "service": (f"submit service, {sizes['service']:,} calls", service),
        "crowd": (f"{submitters} submitters × {sizes['crowd_each']}", crowd),
        "backlog": (
            f"backlog of {sizes['backlog']:,}: qcluster drain, Control Room writer",
            drain_and_writer,
        ),
    }
    got: dict[str, object] = {}
    stage_s: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="keeper-latency-") as name:
        root = Path(name)
        started = time.perf_counter()
        template(root)
        stage_s["migrate"] = time.perf_counter() - started
        for key, (what, measure) in stages.items():
            print(f"latency: {what} ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            got[key] = measure(sizes, root)
            stage_s[key] = time.perf_counter() - started
    seen, alone, crowded = got["visible"], got["service"], got["crowd"]
    drained, written = got["backlog"]

    drain_label = f"qcluster (2 workers) drain of {drained['backlog']:,} queued"
    if not drained["complete"]:
        drain_label += (
            f" ({drained['synced']:,} drained in the {sizes['drain_budget_s']:.0f} s cap)"
        )
    figures = {
        "visible_p50": _figure(
            f"submit → in VH, idle qcluster, {sizes['visible']} submits, p50",
            "s",
            seen["latency_s"]["p50"],
            "<= 0.25",
        ),
        "visible_p99": _figure(
            "submit → in VH, idle qcluster, p99", "s", seen["latency_s"]["p99"], "<= 1"
        ),
        "service_p50": _figure(
            f"submit service alone, {sizes['service']:,} calls, p50",
            "ms",
            alone["call_ms"]["p50"],
        ),
        "service_p99": _figure("submit service alone, p99", "ms", alone["call_ms"]["p99"]),
        "crowd_p50": _figure(
            f"{submitters} concurrent submitters (8 proc × 4 thr), p50",
            "ms",
            crowded["call_ms"]["p50"],
        ),
        "crowd_p99": _figure(
            f"{submitters} concurrent submitters, p99", "ms", crowded["call_ms"]["p99"], "<= 100"
        ),
        "crowd_max": _figure(
            f"{submitters} concurrent submitters, max", "ms", crowded["call_ms"]["max"]
        ),
        "crowd_errors": _figure(
            f"{submitters} concurrent submitters, errors", "count", crowded["errors"], "<= 0"
        ),
        "qcluster_rate": _figure(drain_label, "items/s", drained["rate"]),
        "writer_p50": _figure(
            "Control Room write during a drain, wait p50", "ms", written["wait_ms"]["p50"]
        ),
        "writer_p99": _figure(
            "Control Room write during a drain, wait p99",
            "ms",
            written["wait_ms"]["p99"],
            "<= 150",
        ),
        "writer_max": _figure(
            "Control Room write during a drain, wait max", "ms", written["wait_ms"]["max"]
        ),
        "writer_errors": _figure(
            "Control Room writes failed (locked past 5 s)", "count", written["errors"]
        ),
    }
    return {
        "figures": figures,
        "parameters": {**sizes, "runs_asked": runs, "runs": 1},
        "stage_s": stage_s,
        "visible": seen,
        "service": alone,
        "crowd": crowded,
        "qcluster_drain": drained,
        "control_room_writer": written,
    }


# --- the child processes ----------------------------------------------------------------------


def _django() -> None:
    import django

    django.setup()


def _submit_kwargs(entry: dict) -> dict:
    """:func:`syncq.services.discovery_submit`'s keyword arguments for one of
    :func:`bench.harness.entries`' discoveries."""
    fields = dict(entry)
    type_fields = {"structure_type": fields.pop("structure_type")}
    return {**fields, "type_fields": type_fields}


def child_visible(count: int, haven: Path, out: Path) -> None:
    """Submit ``count`` discoveries one after another (after one that is not counted, which
    waits up to :data:`WORKER_START_SECONDS` for the worker to be up) and time each from the
    submit's return until its ledger row is in VH, in seconds. Before each submit, a pause
    drawn from :data:`VISIBLE_GAP_SECONDS`. A discovery not seen within
    :data:`VISIBLE_TIMEOUT_SECONDS` is lost and counts that long; after :data:`LOST_LIMIT`
    lost the driver stops. Writes ``{"latency_s": […], "lost": n}`` to ``out``."""
    _django()
    from syncq.services import discovery_submit

    work = [_submit_kwargs(e) for e in entries(count + 1, places(haven), "visible")]
    vh = _read_only(haven)
    gaps = random.Random(count)
    latencies: list[float] = []
    lost = 0

    def seen(keeper_id: int) -> bool:
        try:
            row = vh.execute(
                "SELECT 1 FROM keeper_sync_ledger WHERE keeper_discovery_id = ? LIMIT 1",
                (keeper_id,),
            ).fetchone()
        except sqlite3.OperationalError:
            return False  # the ledger is made by the first write; the file may be locked
        return row is not None

    for number, kwargs in enumerate(work):
        discovery = discovery_submit(**kwargs)
        returned = time.perf_counter()
        deadline = returned + (VISIBLE_TIMEOUT_SECONDS if number else WORKER_START_SECONDS)
        while not (found := seen(discovery.pk)) and time.perf_counter() < deadline:
            time.sleep(POLL_SECONDS)
        if not number and not found:
            raise RuntimeError(f"the worker wrote nothing into VH in {WORKER_START_SECONDS} s")
        if number:
            latencies.append(time.perf_counter() - returned)
            lost += not found
        if lost >= LOST_LIMIT:
            break
        time.sleep(gaps.uniform(*VISIBLE_GAP_SECONDS))
    vh.close()
    out.write_text(json.dumps({"latency_s": latencies, "lost": lost}), encoding="utf-8")


def child_service(count: int, haven: Path, out: Path, tag: str) -> None:
    """Call the submit service ``count`` times in a row, the discoveries' descriptions tagged
    ``tag``; write ``{"call_ms": […]}`` (each call's time) to ``out``."""
    _django()
    from syncq.services import discovery_submit

    work = [_submit_kwargs(e) for e in entries(count, places(haven), tag)]
    times = []
    for kwargs in work:
        started = time.perf_counter()
        discovery_submit(**kwargs)
        times.append((time.perf_counter() - started) * 1000)
    out.write_text(json.dumps({"call_ms": times}), encoding="utf-8")


def child_crowd(number: int, threads: int, each: int, haven: Path, folder: Path) -> None:
    """One of the crowd's processes: ``threads`` threads, each submitting ``each``
    discoveries as fast as it can once ``go`` is read from stdin. One submit before that is not
    counted (it loads the code). Writes ``{"calls": [{"ms", "begin_ms", "kicked", "error"}]}`` to
    ``<folder>/crowd-<number>.json``; ``ms`` is the call's whole time, ``begin_ms`` its time in
    ``BEGIN`` statements (where SQLite's busy handler waits for keeper.db's write lock),
    ``kicked`` whether it enqueued a sync run (``syncq.services.async_task`` called)."""
    _django()
    from django.db import DEFAULT_DB_ALIAS, connections

    import syncq.services
    from syncq.services import discovery_submit

    work = [_submit_kwargs(e) for e in entries(threads * each + 1, places(haven), f"crowd{number}")]
    discovery_submit(**work.pop())
    connections.close_all()
    local = threading.local()
    enqueue = getattr(syncq.services, "async_task", None)

    def counted_enqueue(*args, **kwargs):
        local.enqueued = getattr(local, "enqueued", 0) + 1
        return enqueue(*args, **kwargs)

    if enqueue is not None:
        syncq.services.async_task = counted_enqueue
    start = threading.Barrier(threads + 1)
    calls: list[dict] = []
    lock = threading.Lock()

    def submitter(mine: list[dict]) -> None:
        begin_waits: list[float] = []

        def timed_begin(execute, sql, params, many, context):
            if not sql.startswith("BEGIN"):
                return execute(sql, params, many, context)
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                begin_waits.append(time.perf_counter() - started)

        connection = connections[DEFAULT_DB_ALIAS]
        connection.ensure_connection()
        done = []
        with connection.execute_wrapper(timed_begin):
            start.wait()
            for kwargs in mine:
                begin_waits.clear()
                local.enqueued = 0
                error = None
                started = time.perf_counter()
                try:
                    discovery_submit(**kwargs)
                except Exception as exc:  # every failure is a figure here, whatever its type
                    error = f"{type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - started
                done.append(
                    {
                        "ms": elapsed * 1000,
                        "begin_ms": sum(begin_waits) * 1000,
                        "kicked": bool(local.enqueued),
                        "error": error,
                    }
                )
        connection.close()
        with lock:
            calls.extend(done)

    workers = [
        threading.Thread(target=submitter, args=(work[n * each : (n + 1) * each],))
        for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    (folder / f"crowd-{number}.ready").touch()
    if sys.stdin.readline().strip() != "go":
        start.abort()
        raise SystemExit("no go")
    start.wait()
    for worker in workers:
        worker.join()
    (folder / f"crowd-{number}.json").write_text(json.dumps({"calls": calls}), encoding="utf-8")


def child_writer(haven: Path, ready: Path, out: Path) -> None:
    """The Control Room writer: VH held open with Python's ``sqlite3`` defaults; after ``go``
    on stdin, every :data:`WRITER_INTERVAL_SECONDS` one write transaction that saves the first
    system's ``attributes`` and ``modified_at`` (the next one saves them back), timed from the
    ``UPDATE`` to ``commit()``'s return, until ``stop``; then the system's values are put back.
    Writes ``{"wait_ms": […], "update_ms": […], "errors": […]}`` to ``out``: each write's whole
    time and its time in the ``UPDATE`` (waiting for the write lock) in ms; a write refused
    (locked past the busy timeout) counts as an error, its wait kept too."""
    vh = sqlite3.connect(haven)
    system_id, attributes, modified = vh.execute(
        "SELECT id, attributes, modified_at FROM systems ORDER BY id LIMIT 1"
    ).fetchone()
    edited = (json.dumps({"notes": "edited in the Control Room"}), "2030-01-01 00:00:00")
    going = threading.Event()
    stopping = threading.Event()

    def commands() -> None:
        for line in sys.stdin:
            if line.strip() == "go":
                going.set()
            elif line.strip() == "stop":
                break
        stopping.set()
        going.set()

    threading.Thread(target=commands, daemon=True).start()
    ready.touch()
    going.wait()
    waits: list[float] = []
    updates: list[float] = []
    errors: list[str] = []
    number = 0
    while not stopping.is_set():
        values = edited if number % 2 == 0 else (attributes, modified)
        started = time.perf_counter()
        updated = None
        try:
            vh.execute(
                "UPDATE systems SET attributes = ?, modified_at = ? WHERE id = ?",
                (*values, system_id),
            )
            updated = time.perf_counter()
            vh.commit()
        except sqlite3.OperationalError as exc:
            errors.append(str(exc))
            vh.rollback()
        else:
            number += 1
        ended = time.perf_counter()
        waits.append((ended - started) * 1000)
        updates.append(((updated or ended) - started) * 1000)
        stopping.wait(WRITER_INTERVAL_SECONDS)
    vh.execute(
        "UPDATE systems SET attributes = ?, modified_at = ? WHERE id = ?",
        (attributes, modified, system_id),
    )
    vh.commit()
    vh.close()
    out.write_text(
        json.dumps({"wait_ms": waits, "update_ms": updates, "errors": errors}), encoding="utf-8"
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.latency <role> …``: one of the section's child processes."""
    parser = argparse.ArgumentParser(prog="bench.latency")
    roles = parser.add_subparsers(dest="role", required=True)
    one = roles.add_parser("visible")
    one.add_argument("count", type=int)
    one.add_argument("haven", type=Path)
    one.add_argument("out", type=Path)
    two = roles.add_parser("service")
    two.add_argument("count", type=int)
    two.add_argument("haven", type=Path)
    two.add_argument("out", type=Path)
    two.add_argument("tag")
    three = roles.add_parser("crowd")
    three.add_argument("number", type=int)
    three.add_argument("threads", type=int)
    three.add_argument("each", type=int)
    three.add_argument("haven", type=Path)
    three.add_argument("folder", type=Path)
    five = roles.add_parser("writer")
    five.add_argument("haven", type=Path)
    five.add_argument("ready", type=Path)
    five.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.role == "visible":
        child_visible(args.count, args.haven, args.out)
    elif args.role == "service":
        child_service(args.count, args.haven, args.out, args.tag)
    elif args.role == "crowd":
        child_crowd(args.number, args.threads, args.each, args.haven, args.folder)
    else:
        child_writer(args.haven, args.ready, args.out)


if __name__ == "__main__":
    main()
