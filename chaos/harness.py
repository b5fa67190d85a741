"""What every chaos scenario needs: a workspace of its own (keeper.db, a demo VH-Database.db,
a file cache), real ``manage.py`` processes, submissions that can be told apart, and the
invariant checked against both databases.

The invariant (issue "Nothing lost, nothing doubled"): every submitted discovery is in
keeper.db, has exactly one VH row (found through the ledger), and its queue item is
``synced``; no queue item is left ``syncing``. After edits and deletes
(:meth:`Workspace.check_changes`), each edited discovery's one VH row holds the edit, in place,
and a deleted one is gone from both databases with its ledger row marked ``deleted``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from discoveries.haven.files import haven_file_create

ROOT = Path(__file__).resolve().parent.parent

#: Timing that lets a scenario drain in seconds rather than minutes: a 1-second VH busy
#: timeout, 1-second backoff base, batches of 10 items and 5 seconds, and a lease just above
#: the task timeout these imply (2 × ⌈5 + 1 + 0.1 + 10⌉ + 10 = 44 s).
FAST_SETTINGS = {
    "HAVEN_BUSY_TIMEOUT_SECONDS": "1",
    "SYNC_BASE_DELAY_SECONDS": "1",
    "SYNC_BATCH_SIZE": "10",
    "SYNC_BATCH_SECONDS": "5",
    "SYNC_LEASE_SECONDS": "60",
    "Q_WORKERS": "2",
}

#: How long a scenario waits for its queue to drain while nothing moves (no item changes state,
#: no attempt is recorded), in seconds: a killed worker's lease (60 s) and two of django-q2's
#: 30-second scheduler passes, with room for a loaded machine. Waiting ends at once when the
#: queue drains; this only bounds how long a stuck queue takes to fail.
DRAIN_STALL_SECONDS = 300
#: The longest a scenario waits for its queue to drain in all, moving or not, in seconds.
DRAIN_LIMIT_SECONDS = 1800
#: The longest a scenario waits for something it has made happen to show (a fault met by an
#: attempt, a cluster's processes up, the first synced item), in seconds: generous, since
#: the wait ends as soon as it shows, and only a broken run waits it out.
OBSERVE_SECONDS = 300


def wait_until(condition: Callable[[], object], *, timeout: float, every: float = 0.2) -> bool:
    """Call ``condition`` every ``every`` seconds until it returns something true (True) or
    ``timeout`` seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)


@dataclass
class Outcome:
    """One scenario's row: ``items`` submitted; ``lost`` (not in keeper.db, or synced without
    a VH row); ``duplicated`` (VH rows beyond one per discovery); ``stuck`` (queue items not
    synced at the end, ``syncing`` ones included); ``drain_seconds`` from the fault's end to
    the last item synced (None when it never drained). The edit and delete scenarios also
    count ``stale`` (VH rows not holding their discovery's edit) and ``undeleted`` (deleted
    discoveries still in either database, or not marked ``deleted`` in the ledger); None where
    a scenario does not measure them."""

    name: str
    items: int
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    stale: int | None = None
    undeleted: int | None = None
    drain_seconds: float | None = None
    notes: list[str] = field(default_factory=list)
    #: Broken promises other than the counts (the worker created a VH file, an error
    #: did not name its cause…); any makes the scenario fail.
    violations: list[str] = field(default_factory=list)
    #: Why the scenario did not run (a server it needs cannot be reached outside CI).
    skipped: str | None = None
    #: The scenario's name on the command line (``--only kill``), set by the runner.
    key: str = ""

    @property
    def clean(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.stuck
            or self.stale
            or self.undeleted
            or self.violations
        )


#: The planet every chaos submission names, in the demo system ``Demo Alpha``
#: (:func:`discoveries.haven.files.haven_file_create`), and another planet of that system.
PLANET = "Alpha Prime"
OTHER_PLANET = "Alpha Secundus"


@dataclass(frozen=True)
class Change:
    """What an edit or delete scenario does to one synced discovery: keeper id ``pk``, the VH
    row ``haven_id`` and ``before``, the description, its first sync left; then either
    ``deleted``, or the ``description`` and ``planet`` (a name in ``Demo Alpha``) its one VH
    row must hold at the end (the same as before for a discovery left alone)."""

    pk: int
    haven_id: int
    before: str
    description: str
    planet: str = PLANET
    deleted: bool = False

    @property
    def edits(self) -> dict[str, str]:
        """The ``changes`` of :func:`syncq.services.discovery_update` that make it so: empty
        for a discovery left alone or deleted."""
        if self.deleted:
            return {}
        edits = {"description": self.description} if self.description != self.before else {}
        if self.planet != PLANET:
            edits["location"] = self.planet
        return edits


class Workspace:
    """A folder holding one scenario's keeper.db, VH-Database.db and cache, and the
    environment of every ``manage.py`` process run on them."""

    def __init__(self, folder: Path, *, keep: bool = False, **settings: str):
        self.folder = folder
        #: Leave what the scenario made outside the folder (a PostgreSQL database, Redis's
        #: contents) for a look afterwards.
        self.keep = keep
        folder.mkdir(parents=True, exist_ok=True)
        self.keeper = folder / "keeper.db"
        self.haven = folder / "VH-Database.db"
        if not self.haven.exists():
            haven_file_create(self.haven, with_demo_data=True)
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KEEPER_", "HAVEN_", "SYNC_", "Q_", "BOT_", "DJANGO_"))
            and k not in ("DATABASE_URL", "CACHE_URL")
        }
        self.env.update(
            {
                "DJANGO_SETTINGS_MODULE": "keeper_site.settings",
                "SECRET_KEY": secrets.token_urlsafe(50),
                "KEEPER_ENV_FILE": "",
                "KEEPER_DB_PATH": str(self.keeper),
                "HAVEN_DB_PATH": str(self.haven),
                "CACHE_URL": f"filecache://{folder / 'cache'}",
                "LOG_LEVEL": "WARNING",
                **FAST_SETTINGS,
            }
        )
        self.env.update(settings)
        #: How ``manage.py`` is started: this interpreter, or a wrapper such as
        #: ``chaos.clock_shift``.
        self.python = [sys.executable]
        self.processes: list[subprocess.Popen] = []
        self.started = time.monotonic()
        #: Run by :meth:`close`, last first: dropping a PostgreSQL database, emptying Redis.
        self.cleanups: list = []

    def manage(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run ``manage.py args`` to completion; raise with its output when it fails."""
        done = subprocess.run(
            [*self.python, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done

    def cluster_start(self, *, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
        """A real ``qcluster`` in its own session (so it can be killed whole); ``prefix`` runs
        it through another command (``setpriv …``)."""
        with (self.folder / "qcluster.log").open("a") as log:
            process = subprocess.Popen(
                [*prefix, *self.python, "manage.py", "qcluster"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def cluster_up(self, process: subprocess.Popen) -> bool:
        """Whether every process of the cluster ``process`` started is there: its main
        process, the sentinel, pusher and monitor, and ``Q_WORKERS`` workers."""
        wanted = 4 + int(self.env.get("Q_WORKERS", "2"))
        return process.poll() is None and len(group_states(process.pid)) >= wanted

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        """kill -9 the process and everything in its session."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    @staticmethod
    def freeze(processes: Iterable[subprocess.Popen]) -> bool:
        """Stop (SIGSTOP) every process in the sessions of ``processes`` and wait until each
        is stopped, out of any system call it was in, so that what the databases show
        cannot change until :meth:`thaw` or :meth:`kill`. False (the sessions thawed again)
        if one did not stop within ``OBSERVE_SECONDS``."""
        processes = list(processes)
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGSTOP)
        stopped = wait_until(
            lambda: all(
                state in "TtZX" for process in processes for state in group_states(process.pid)
            ),
            timeout=OBSERVE_SECONDS,
            every=0.005,
        )
        if not stopped:
            Workspace.thaw(processes)
        return stopped

    @staticmethod
    def thaw(processes: Iterable[subprocess.Popen]) -> None:
        """Let the sessions :meth:`freeze` stopped run on (SIGCONT)."""
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGCONT)

    def stop_all(self) -> None:
        """Stop every process this workspace started: SIGTERM to each main process, then
        kill -9 what is left after 20 s. A process left frozen (:meth:`freeze`) is thawed
        first, so that it can stop."""
        self.thaw(process for process in self.processes if process.poll() is None)
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(process)

    def reset(self) -> None:
        """Stop every process and start again from an empty keeper.db and a fresh demo
        VH-Database.db (the clusters' log is kept, and still checked). Only for a workspace on
        keeper.db."""
        self.stop_all()
        self.processes.clear()
        for name in ("keeper.db", "VH-Database.db", "VH-away.db"):
            for suffix in ("", "-journal", "-wal", "-shm"):
                (self.folder / (name + suffix)).unlink(missing_ok=True)
        shutil.rmtree(self.folder / "cache", ignore_errors=True)
        haven_file_create(self.haven, with_demo_data=True)

    def close(self) -> None:
        """Stop every process, then undo what the scenario set up outside the folder."""
        self.stop_all()
        while self.cleanups:
            self.cleanups.pop()()

    def submit(self, tag: str, count: int) -> list[str]:
        """Submit ``count`` valid discoveries through ``manage.py submit_discovery``; returns
        their descriptions, each unique (``tag`` and a number)."""
        descriptions = [f"chaos {tag} {n:06d}" for n in range(count)]
        entries = [
            {
                "user_id": str(100_000 + n % 32),
                "username": f"Chaos {n % 32}",
                "discovery_type": "🏛️",
                "system_name": "Demo Alpha",
                "location": "Alpha Prime",
                "description": text,
                "structure_type": "Tower",
            }
            for n, text in enumerate(descriptions)
        ]
        path = self.folder / f"submit-{tag}.json"
        path.write_text(json.dumps(entries), encoding="utf-8")
        self.manage("submit_discovery", "--file", str(path))
        return descriptions

    def keeper_rows(self, sql: str, *params: object, timeout: float = 30) -> list[tuple]:
        """The rows ``sql`` returns from keeper's database: keeper.db, or PostgreSQL when the
        workspace's ``DATABASE_URL`` names it. Parameters are written ``?`` either way.
        keeper.db is waited for up to ``timeout`` seconds when a writer holds it."""
        url = self.env.get("DATABASE_URL")
        if url:
            import psycopg

            if params:
                sql = sql.replace("%", "%%").replace("?", "%s")
            with psycopg.connect(url, connect_timeout=10) as db:
                return db.execute(sql, params or None).fetchall()
        with contextlib.closing(sqlite3.connect(self.keeper, timeout=timeout)) as db:
            return db.execute(sql, params).fetchall()

    def keeper_value(self, sql: str, *params: object) -> object:
        """The first column of the first row ``sql`` returns from keeper's database."""
        return self.keeper_rows(sql, *params)[0][0]

    def queue_states(self) -> dict[str, int]:
        """How many queue items are in each sync status."""
        return dict(self.keeper_rows("SELECT sync_status, COUNT(*) FROM sync_queue GROUP BY 1"))

    def attempts_recorded(self) -> int:
        """How many attempts have ever been recorded: the ``sync_attempt`` id sequence, which a
        delete does not take back (a finished delete removes its item's attempts with it, so a
        count of rows can fall while workers are busy)."""
        if self.env.get("DATABASE_URL"):
            return int(self.keeper_value("SELECT last_value FROM sync_attempt_id_seq"))
        return int(
            self.keeper_value(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'sync_attempt'), 0)"
            )
        )

    def attempts_with_error(self, pattern: str) -> int:
        """How many recorded attempts failed with an error matching ``pattern`` (SQL LIKE)."""
        return int(
            self.keeper_value("SELECT COUNT(*) FROM sync_attempt WHERE error LIKE ?", pattern)
        )

    def attempts_cut_off(self, *, after_attempt: int | None = None) -> tuple[int, int]:
        """``(cut, after_vh)``: how many queue items had an attempt that left no record (its
        worker was killed mid-attempt), and how many of those the ledger found already in VH
        on a later attempt (killed between the VH commit and the keeper commit).

        ``after_attempt`` (a ``sync_attempt`` id) counts only the round that began after it,
        for items whose attempts an edit started again from 0: items with a recorded attempt
        after it, and only those attempts."""
        sql = (
            "SELECT q.metadata FROM sync_queue q WHERE q.sync_attempts > "
            "(SELECT COUNT(*) FROM sync_attempt a WHERE a.queue_item_id = q.id AND a.id > ?)"
        )
        if after_attempt is not None:
            sql += (
                " AND EXISTS (SELECT 1 FROM sync_attempt a WHERE a.queue_item_id = q.id "
                "AND a.id > ?)"
            )
        params = (0,) if after_attempt is None else (after_attempt, after_attempt)
        rows = self.keeper_rows(sql, *params)
        metadata = [json.loads(m) if isinstance(m, str) else m for (m,) in rows]
        return len(rows), sum(isinstance(m, dict) and m.get("how") == "ledger" for m in metadata)

    def wait_queue(
        self,
        done: Callable[[dict[str, int]], bool],
        *,
        stall: float = DRAIN_STALL_SECONDS,
        limit: float = DRAIN_LIMIT_SECONDS,
    ) -> float | None:
        """Wait until ``done(states)`` holds for the queue's :meth:`queue_states`; returns the
        seconds it took, or None when nothing moved (no item changed state, no attempt was
        recorded) for ``stall`` seconds, or ``limit`` seconds passed in all."""
        began = moved = time.monotonic()
        last = None
        while time.monotonic() - began < limit:
            states = self.queue_states()
            if done(states):
                return round(time.monotonic() - began, 1)
            now = (sorted(states.items()), self.attempts_recorded())
            if now != last:
                last, moved = now, time.monotonic()
            elif time.monotonic() - moved > stall:
                return None
            time.sleep(0.5)
        return None

    def wait_drained(self, **limits: float) -> float | None:
        """Wait until every queue item is synced (:meth:`wait_queue`, which takes ``stall``
        and ``limit``); returns the seconds it took, or None."""
        return self.wait_queue(lambda states: bool(states) and set(states) == {"synced"}, **limits)

    def vh_rows(self, sql: str, *, timeout: float = 30) -> dict:
        """``sql``'s two-column rows from VH-Database.db as a dict (see :meth:`vh_select`)."""
        return dict(self.vh_select(sql, timeout=timeout))

    def vh_select(self, sql: str, *, timeout: float = 30) -> list[tuple]:
        """``sql``'s rows from VH-Database.db, never creating the file; empty when the file
        or the table is missing (nothing synced yet, or a worker left an empty file), so the
        invariant counts every item rather than failing to look. Waits up to ``timeout``
        seconds while a writer holds the file (then raises ``sqlite3.OperationalError``,
        "database is locked").

        Opened read-write without create (``mode=rw``), as the next worker or the Control
        Room opens it, never read-only: a worker killed inside a VH transaction leaves a hot
        journal (or a WAL), which SQLite must roll back (or recover) before anyone reads, and
        a read-only connection cannot ("attempt to write a readonly database"). When the file
        cannot be written at all (made read-only to this user), the read is made on a copy of
        it and of its journal files in a temporary folder, where that can be done."""
        if not self.haven.exists():
            return []
        try:
            try:
                return _sqlite_read(self.haven, sql, timeout=timeout)
            except sqlite3.OperationalError as exc:
                if "readonly database" not in str(exc):
                    raise
                with tempfile.TemporaryDirectory(prefix="keeper-chaos-vh-") as folder:
                    copy = Path(folder) / self.haven.name
                    for suffix in ("", "-journal", "-wal", "-shm"):
                        original = self.haven.with_name(self.haven.name + suffix)
                        with contextlib.suppress(FileNotFoundError):
                            # Contents only: the copy must be writable whatever the mode.
                            shutil.copyfile(original, copy.with_name(copy.name + suffix))
                    return _sqlite_read(copy, sql, timeout=timeout)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc) or not self.haven.exists():
                return []
            raise

    def vh_write_held(self) -> bool:
        """Whether another process holds VH-Database.db's write lock now (a worker inside a VH
        transaction): asked by taking the lock without waiting and letting it go at once, so
        nothing is written and nobody is held up."""
        if not self.haven.exists():
            return False
        conn = sqlite3.connect(
            f"file:{self.haven}?mode=rw", uri=True, timeout=0, isolation_level=None
        )
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return True
            raise
        finally:
            conn.close()
        return False

    def log_problems(self) -> list[str]:
        """What the clusters' log shows that no scenario expects: tracebacks and Python
        warnings (a naive datetime, say), each kind with its count and first line."""
        log = self.folder / "qcluster.log"
        if not log.exists():
            return []
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        problems = []
        for kind, found in (
            ("tracebacks", [n for n, line in enumerate(lines) if line.startswith("Traceback")]),
            ("warnings", [n for n, line in enumerate(lines) if re.search(r"\w+Warning: ", line)]),
        ):
            if found:
                first = lines[found[0]] if kind == "warnings" else _traceback_end(lines, found[0])
                problems.append(f"the cluster log has {len(found)} {kind}, e.g. {first.strip()}")
        return problems

    def check(self, name: str, descriptions: list[str], drain: float | None) -> Outcome:
        """The invariant over ``descriptions``, against keeper's database and
        VH-Database.db; what the clusters' log shows of tracebacks and warnings is added as
        violations."""
        outcome = Outcome(name=name, items=len(descriptions), drain_seconds=drain)
        rows = self.keeper_rows(
            "SELECT d.id, d.description, q.sync_status, q.haven_discovery_id "
            "FROM discoveries d LEFT JOIN sync_queue q ON q.discovery_id = d.id"
        )
        by_text = {text: (pk, status, vh) for pk, text, status, vh in rows}
        counts = self.vh_rows("SELECT description, COUNT(*) FROM discoveries GROUP BY 1")
        ledger = self.vh_rows(
            "SELECT keeper_discovery_id, haven_discovery_id FROM keeper_sync_ledger"
        )
        outcome.violations += self.log_problems()
        for text in descriptions:
            if text not in by_text:
                outcome.lost += 1
                continue
            pk, status, vh_id = by_text[text]
            if status != "synced":
                outcome.stuck += 1
                continue
            if counts.get(text, 0) == 0 or ledger.get(pk) != vh_id:
                outcome.lost += 1
            outcome.duplicated += max(0, counts.get(text, 0) - 1)
        return outcome

    def check_changes(
        self, name: str, changes: list[Change], *, vh_count: int, drain: float | None
    ) -> Outcome:
        """The invariant after ``changes``, edits and deletes of synced discoveries, against
        keeper's database and VH-Database.db, which held ``vh_count`` rows before them.

        A discovery kept is ``lost`` when it is gone from keeper.db, or its ledger row is
        missing, marked ``deleted``, or names another VH row than its queue item does or a
        row VH no longer has; ``stuck`` when its queue item is not ``synced``; ``stale`` when
        its VH row does not hold its wanted description and planet; ``duplicated`` by each VH
        row beyond one holding its description, old or new. A deleted discovery still in
        keeper.db is ``stuck`` while its item is not ``synced`` (the delete not done yet),
        else it is ``undeleted`` if it is still in keeper.db, its ledger row is not marked
        ``deleted``, or VH still has its row (by the ledger, or by its description).

        Violations: VH holding other than ``vh_count`` less the deleted rows; a VH row
        replaced rather than updated in place; one VH row named by two discoveries' ledger
        rows; and what the clusters' log shows (:meth:`log_problems`)."""
        outcome = Outcome(name=name, items=len(changes), drain_seconds=drain, stale=0, undeleted=0)
        keeper = {
            pk: (status, vh_id)
            for pk, status, vh_id in self.keeper_rows(
                "SELECT d.id, q.sync_status, q.haven_discovery_id "
                "FROM discoveries d LEFT JOIN sync_queue q ON q.discovery_id = d.id"
            )
        }
        ledger = {
            pk: (vh_id, how)
            for pk, vh_id, how in self.vh_select(
                "SELECT keeper_discovery_id, haven_discovery_id, how FROM keeper_sync_ledger"
            )
        }
        rows = {
            vh_id: (text, planet)
            for vh_id, text, planet in self.vh_select(
                "SELECT d.id, d.description, p.name FROM discoveries d "
                "LEFT JOIN planets p ON p.id = d.planet_id"
            )
        }
        texts = Counter(text for text, _ in rows.values())
        outcome.violations += self.log_problems()
        replaced = 0
        for change in changes:
            status, item_vh = keeper.get(change.pk, (None, None))
            vh_id, how = ledger.get(change.pk, (None, None))
            if change.deleted:
                if change.pk in keeper and status not in (None, "synced"):
                    outcome.stuck += 1
                elif (
                    change.pk in keeper or how != "deleted" or vh_id in rows or texts[change.before]
                ):
                    outcome.undeleted += 1
                continue
            if change.pk not in keeper:
                outcome.lost += 1
                continue
            if status != "synced":
                outcome.stuck += 1
                continue
            if how in (None, "deleted") or vh_id != item_vh or vh_id not in rows:
                outcome.lost += 1
            elif rows[vh_id] != (change.description, change.planet):
                outcome.stale += 1
            replaced += vh_id in rows and vh_id != change.haven_id
            held = sum(texts[text] for text in {change.before, change.description})
            outcome.duplicated += max(0, held - 1)
        expected = vh_count - sum(change.deleted for change in changes)
        if len(rows) != expected:
            outcome.violations.append(
                f"VH holds {len(rows)} discoveries; {vh_count} before the changes less the "
                f"deleted ones is {expected}"
            )
        if replaced:
            outcome.violations.append(
                f"{replaced} discoveries' VH rows were replaced by new ones, not updated in place"
            )
        named = Counter(vh_id for vh_id, how in ledger.values() if how != "deleted")
        shared = sorted(vh_id for vh_id, count in named.items() if count > 1)
        if shared:
            outcome.violations.append(
                f"{len(shared)} VH rows are named by more than one ledger row, e.g. #{shared[0]}"
            )
        return outcome


def _sqlite_read(path: Path, sql: str, *, timeout: float) -> list[tuple]:
    """``sql``'s rows from the SQLite file at ``path``, opened read-write without create."""
    uri = f"file:{quote(str(path), safe='/')}?mode=rw"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=timeout)) as db:
        return db.execute(sql).fetchall()


def group_states(pgid: int) -> list[str]:
    """The state letter (``R``, ``S``, ``D``, ``T``, ``Z``…, as proc(5) gives it) of each
    process in process group ``pgid``."""
    states = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue  # ended meanwhile
        # "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses.
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            states.append(fields[0])
    return states


def _traceback_end(lines: list[str], start: int) -> str:
    """The exception line that ends the traceback starting at ``lines[start]``."""
    for line in lines[start + 1 :]:
        if line and not line.startswith((" ", "Traceback")):
            return line
    return lines[start]


#: The servers the scale-out scenario uses: a PostgreSQL server where it may create (and
#: drop) databases named ``keeper_chaos_*``, and a Redis database where it keeps its queue
#: under a cluster name of its own (``keeper-chaos-*``).
POSTGRES_ADMIN_URL = os.environ.get("CHAOS_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CHAOS_REDIS_URL", "redis://127.0.0.1:6379/14")


class ServerUnreachable(Exception):
    """A server a scenario needs does not answer; the message says which and why."""


def postgres_database(ws: Workspace) -> str:
    """Create an empty PostgreSQL database for ``ws`` (dropped when it closes; with ``keep``
    its URL is left in the workspace's ``DATABASE_URL`` file instead) and return its URL.
    Raises :class:`ServerUnreachable` when ``POSTGRES_ADMIN_URL`` does not answer."""
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        raise ServerUnreachable(f"no PostgreSQL server at {POSTGRES_ADMIN_URL}: {exc}") from exc
    name = f"keeper_chaos_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=10) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    if ws.keep:
        (ws.folder / "DATABASE_URL").write_text(url + "\n", encoding="utf-8")
    else:
        ws.cleanups.append(drop)
    return url


def redis_database(ws: Workspace) -> str:
    """Give ``ws`` a queue of its own on the Redis server ``REDIS_URL``: a cluster name no
    other run uses (``Q_CLUSTER_NAME``), whose keys are deleted when it closes unless
    ``keep``. Returns the URL. Raises :class:`ServerUnreachable` when it does not answer."""
    import redis

    client = redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        raise ServerUnreachable(f"no Redis server at {REDIS_URL}: {exc}") from exc
    name = f"keeper-chaos-{secrets.token_hex(6)}"
    ws.env["Q_CLUSTER_NAME"] = name

    def forget() -> None:
        keys = list(client.scan_iter(match=f"django_q:{name}:*"))
        if keys:
            client.delete(*keys)

    if not ws.keep:
        ws.cleanups.append(forget)
    return REDIS_URL


def under_ci() -> bool:
    """Whether this runs under CI: ``CI`` set to anything but empty, ``0``, ``false`` or
    ``no``. Under CI a server a scenario needs must be up: its absence fails the run."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def one_line(text: object) -> str:
    """``text`` with its whitespace runs (newlines, tabs) made single spaces."""
    return " ".join(str(text).split())


def outcome_table(outcomes: list[Outcome]) -> str:
    """The scenarios as a text table (name, scenario, items, lost, duplicated, stuck, stale,
    undeleted, drain s) followed by one remark per line: why a scenario was skipped, its notes,
    its violations. A scenario that was skipped, or failed before it submitted anything, shows
    dashes; so does a count a scenario does not measure (stale and undeleted, outside the edit
    and delete scenarios)."""
    header = (
        "name",
        "scenario",
        "items",
        "lost",
        "duplicated",
        "stuck",
        "stale",
        "undeleted",
        "drain s",
    )
    rows = []
    for o in outcomes:
        if o.skipped or (not o.items and o.violations):
            figures = ("-",) * 6 + ("skipped" if o.skipped else "failed",)
        else:
            drain = "never" if o.drain_seconds is None else f"{o.drain_seconds:g}"
            counts = (o.items, o.lost, o.duplicated, o.stuck, o.stale, o.undeleted)
            figures = (*("-" if n is None else str(n) for n in counts), drain)
        rows.append((o.key or "-", o.name, *figures))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    remarks = [f"{o.name}: skipped: {one_line(o.skipped)}" for o in outcomes if o.skipped]
    remarks += [f"{o.name}: {one_line(text)}" for o in outcomes for text in o.notes]
    remarks += [f"{o.name}: VIOLATION {one_line(text)}" for o in outcomes for text in o.violations]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *map(line, rows), *remarks])
