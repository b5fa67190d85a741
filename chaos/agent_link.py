"""The cloud server and the desktop Control Room agent on two machines, as real processes: the
server (gunicorn on a migrated keeper.db) in the ``cloud`` network namespace, the agent
(``manage.py haven_agent`` on a copy of the Control Room's VH-Database.db) in the ``desk``
namespace, talking to the server through a fault proxy (:mod:`tests.netlab`).

:class:`CloudDesk` sets the two sides up and takes them down; it submits discoveries on the
server, starts, kills (``kill -9``) and restarts agents, reads the queue from keeper.db and the
ledger from each VH file (read-only, from this namespace), and judges the invariant: every
discovery in VH exactly once and its queue item ``synced`` (:meth:`CloudDesk.verdict`). The
kill helpers aim a ``kill -9`` of the agent at each step of a lease and prove where it landed:
inside its VH transaction (:func:`kill_before_commit`), between the VH commit and the ack
(:func:`kill_before_ack`), and with the ack in flight (:func:`kill_during_ack`).
:class:`LedgerWatch` and :class:`PacedSubmitter` measure how long a discovery takes from its
submit to its ledger row in VH, and :class:`PickerWatch` reads the server's pickers (the
catalog the agent uploaded) over and over, for while the desktop is away.

Used by ``tests/test_agent_network.py``, the chaos scenario ``agent-link`` and the measurement
(``python -m chaos.agent_link measure --count 1000``; ``--help`` for its options), which
prints JSON. Needs root and ``ip`` (network namespaces): :func:`tests.netlab.netlab_unavailable`
says why they cannot be used. Imports neither pytest nor Django.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from tests.netlab import (
    ROOT,
    FaultProxy,
    Faults,
    Link,
    netlab_sweep,
    netlab_unavailable,
)

#: The Control Room's schema with a few systems, copied for each agent's VH-Database.db.
FIXTURE = ROOT / "examples" / "vh_control_room_schema.db"
#: A system and one of its planets in :data:`FIXTURE`: every submission names them.
SYSTEM = "Luzhilar XVIII"
PLANET = "Disey"
#: The port the server listens on inside the cloud namespace (a namespace of its own, so any
#: port is free).
SERVER_PORT = 8000
#: The links' namespace prefix (:func:`tests.netlab.netlab_sweep` takes it).
LINK_PREFIX = "agentlink"
#: The longest a helper waits for what it made happen to show (a process up, a lease, a
#: queue drained), in seconds; waits end as soon as it shows.
OBSERVE_SECONDS = 120.0
#: How often :class:`LedgerWatch` reads the ledger, in seconds.
LEDGER_POLL_SECONDS = 0.01
#: ``SYNC_CHAOS_PAUSE_SECONDS`` of an agent whose kills are aimed: it pauses this long before
#: each VH commit and again between its VH writes and its report.
KILL_PAUSE_SECONDS = 0.5

#: The faults of the lossy link: 100 ms one-way delay, 5 % of connections dropped and 5 %
#: reset mid-request.
LOSSY = Faults(delay_ms=100, drop=0.05, reset=0.05)
#: The proxy's seed for :data:`LOSSY`: its draws drop the second connection and reset the
#: third, so a run that makes three connections (an agent's first, and two more after any
#: restart, cut or closed connection) meets both faults whatever else it draws.
LOSSY_SEED = 59
#: How long after the link returns everything must be synced, in seconds.
DRAIN_AFTER_RESTORE_SECONDS = 60.0

_TO_WRITE = re.compile(r"lease ([0-9a-f]{32}): (\d+) items to write")
_WRITTEN = re.compile(r"lease ([0-9a-f]{32}): (\d+) written or held in VH, (\d+) failed; reporting")
_ACKED = re.compile(r"lease ([0-9a-f]{32}): (\d+) reported to /agent/ack")
#: The byte of a WAL database's ``-shm`` file its writer locks (SQLite's ``WAL_WRITE_LOCK``,
#: at ``WALINDEX_LOCK_OFFSET`` 120).
_WAL_WRITE_LOCK_BYTE = 120
#: Environment variables of this process that no child inherits: the children get their own.
_ENV_DROPPED_PREFIXES = ("KEEPER_", "HAVEN_", "SYNC_", "Q_", "BOT_", "DJANGO_", "AGENT_")
_ENV_DROPPED = ("DATABASE_URL", "CACHE_URL", "SECRET_KEY", "DISCORD_TOKEN", "ALLOWED_HOSTS")


class AgentLinkError(RuntimeError):
    """A process of the cloud or the desk did not do what was asked; the message carries what
    it printed."""


def _base_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_ENV_DROPPED_PREFIXES) and k not in _ENV_DROPPED
    }


def _ro_uri(path: Path) -> str:
    return f"file:{quote(str(path), safe='/')}?mode=ro"


def sqlite_read(path: Path, sql: str, params: Iterable = (), *, timeout: float = 10) -> list:
    """``sql``'s rows from the SQLite file ``path``, opened read-only (``mode=ro``: never
    created, never written). Raises ``sqlite3.OperationalError`` as SQLite does (a missing
    table, a file locked past ``timeout`` seconds)."""
    with contextlib.closing(sqlite3.connect(_ro_uri(path), uri=True, timeout=timeout)) as db:
        return db.execute(sql, tuple(params)).fetchall()


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile ``share`` (0 to 1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def wait_for(condition: Callable[[], object], *, timeout: float, every: float = 0.05):
    """Call ``condition`` every ``every`` seconds until it returns something true, and return
    that; None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(every)


def _process_state(pid: int) -> str | None:
    """The state letter of process ``pid`` (proc(5)), None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()[0]


def wal_writer_pids(database: Path) -> set[int]:
    """Pids of the processes holding the WAL write lock of the SQLite file ``database`` now
    (a write transaction open in it), read from ``/proc/locks``: nothing is opened or locked
    to find out. Empty when the file has no ``-shm`` (no one has it open in WAL mode)."""
    try:
        inode = os.stat(f"{database}-shm").st_ino
    except FileNotFoundError:
        return set()
    holders = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        # "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 120 120"; "1: -> POSIX …" waits for it.
        if len(fields) < 8 or fields[1] == "->" or fields[3] != "WRITE":
            continue
        try:
            pid, held_inode = int(fields[4]), int(fields[5].rsplit(":", 1)[1])
            start, end = int(fields[6]), fields[7]
        except (ValueError, IndexError):
            continue
        last = math.inf if end == "EOF" else int(end)
        if held_inode == inode and start <= _WAL_WRITE_LOCK_BYTE <= last:
            holders.add(pid)
    return holders


@dataclass
class LogLine:
    """One line an agent printed: when it was read (``time.monotonic()``) and its text."""

    at: float
    text: str


class AgentRun:
    """One ``manage.py haven_agent`` process in the desk namespace: its ``name`` (the agent
    whose token it uses), its VH file ``haven``, and the lines it prints (its log, read by a
    thread as they come, also written to ``log_path``)."""

    def __init__(self, name: str, process: subprocess.Popen, haven: Path, log_path: Path):
        self.name = name
        self.process = process
        self.haven = haven
        self.log_path = log_path
        self.lines: list[LogLine] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"agent-{name}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """The agent's process id (``ip netns exec`` execs the program itself)."""
        return self.process.pid

    def _read(self) -> None:
        with self.log_path.open("a", encoding="utf-8") as log:
            for raw in self.process.stdout:
                text = raw.rstrip("\n")
                log.write(text + "\n")
                log.flush()
                with self._changed:
                    self.lines.append(LogLine(time.monotonic(), text))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def mark(self) -> int:
        """How many lines the agent has printed so far: a start for :meth:`wait_line`."""
        with self._changed:
            return len(self.lines)

    def find(self, pattern: re.Pattern, *, start: int = 0) -> tuple[int, re.Match] | None:
        """The first line from index ``start`` that ``pattern`` finds something in, as
        ``(index, match)``; None when none does yet."""
        with self._changed:
            lines = self.lines[start:]
        for offset, line in enumerate(lines):
            if found := pattern.search(line.text):
                return start + offset, found
        return None

    def wait_line(
        self, pattern: re.Pattern, *, start: int = 0, timeout: float = OBSERVE_SECONDS
    ) -> tuple[int, re.Match] | None:
        """Wait up to ``timeout`` seconds for a line from index ``start`` that ``pattern``
        finds something in; ``(index, match)``, or None (the time ran out, or the agent
        ended first)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = self.find(pattern, start=start)
                if found or (self.process.poll() is not None and not self._reader.is_alive()):
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(min(left, 0.5))

    def text(self) -> str:
        """Everything the agent printed so far."""
        with self._changed:
            return "\n".join(line.text for line in self.lines)

    def freeze(self) -> bool:
        """SIGSTOP the agent and wait until it is stopped; False when it is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGSTOP)
        return bool(
            wait_for(lambda: _process_state(self.pid) in ("T", "t", None), timeout=10, every=0.002)
        ) and _process_state(self.pid) in ("T", "t")

    def thaw(self) -> None:
        """SIGCONT: let a frozen agent run on."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        """``kill -9`` the agent and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._reader.join(timeout=10)

    def stop(self, timeout: float = 30) -> int | None:
        """Stop the agent as Ctrl-C would (SIGTERM: it finishes its call and exits), then
        ``kill -9`` after ``timeout`` seconds; returns its exit status."""
        if self.process.poll() is None:
            self.thaw()
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(timeout=10)
        return self.process.returncode

    def alive(self) -> bool:
        """Whether the agent process still runs."""
        return self.process.poll() is None


class CloudDesk:
    """A cloud server and a desk for agents, joined by a veth and a fault proxy.

    ``folder`` holds keeper.db, the server's cache and log, each agent's VH copy, state file
    and log (default: a new temporary folder, deleted on close unless ``keep``). ``faults`` are
    the proxy's from the start (default: ``delay_ms`` of one-way delay only); ``seed`` makes
    its per-connection draws repeatable. Use as a context manager, or :meth:`open` and
    :meth:`close`. Raises :class:`tests.netlab.NetlabError` when namespaces cannot be made,
    :class:`AgentLinkError` when a process fails to start."""

    def __init__(
        self,
        folder: Path | None = None,
        *,
        delay_ms: float = 100.0,
        faults: Faults | None = None,
        seed: int | None = 1,
        keep: bool = False,
        fixture: Path = FIXTURE,
        server_log_level: str = "WARNING",
    ):
        self._own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="keeper-agentlink-"))
        self.faults = faults or Faults(delay_ms=delay_ms)
        self.seed = seed
        self.keep = keep
        self.fixture = fixture
        self.keeper = self.folder / "keeper.db"
        #: Where the server would find VH if it ever opened it: it must never appear.
        self.server_haven = self.folder / "no-VH-on-the-server.db"
        self.server_env = {
            **_base_env(),
            "DJANGO_SETTINGS_MODULE": "keeper_site.settings",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DEBUG": "false",
            "KEEPER_DB_PATH": str(self.keeper),
            "CACHE_URL": f"filecache://{self.folder / 'cache'}",
            "USE_HAVEN_DATABASE": "false",
            "USE_HAVEN_AGENT": "true",
            "HAVEN_DB_PATH": str(self.server_haven),
            "ALLOWED_HOSTS": "*",
            "KEEPER_ENV_FILE": "/nonexistent",
            "LOG_LEVEL": server_log_level,
            "PYTHONUNBUFFERED": "1",
        }
        self.link: Link | None = None
        self.proxy: FaultProxy | None = None
        self.server: subprocess.Popen | None = None
        self.tokens: dict[str, str] = {}
        #: Each agent's VH file, by agent name.
        self.havens: dict[str, Path] = {}
        self.agents: list[AgentRun] = []
        self._watchers: list = []

    def __enter__(self) -> CloudDesk:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- set-up and take-down ------------------------------------------------------------

    def open(self) -> CloudDesk:
        """Make the link, migrate keeper.db, start the server and the proxy; returns self."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self.link = Link(LINK_PREFIX).open()
            self.manage("migrate", "--no-input", "-v0", timeout=300)
            self.server_start()
            self.proxy = FaultProxy(
                (self.link.cloud_ip, SERVER_PORT),
                link=self.link,
                faults=self.faults,
                seed=self.seed,
            ).start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every process started here, delete the namespaces (and those a killed run of
        this left behind), and the folder unless ``keep`` or given by the caller. Every step
        is tried; the first that failed is raised afterwards."""
        steps = [watcher.stop for watcher in self._watchers]
        steps += [agent.kill for agent in self.agents if agent.alive()]
        steps.append(self._server_stop)
        if self.proxy is not None:
            steps.append(self.proxy.stop)
        if self.link is not None:
            steps.append(self.link.close)
        steps.append(lambda: netlab_sweep(LINK_PREFIX))
        failures = []
        for step in steps:
            try:
                step()
            except Exception as exc:  # whatever it was, the rest must still be stopped
                failures.append(exc)
        if self._own_folder and not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)
        if failures:
            raise failures[0]

    def _server_stop(self) -> None:
        """SIGINT, gunicorn's quick shutdown: it does not wait for long polls to end."""
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.server.wait(timeout=10)

    def server_start(self) -> None:
        """Start gunicorn (1 worker, 8 threads) in the cloud namespace on ``0.0.0.0`` and wait
        until the desk can connect to it."""
        log = (self.folder / "server.log").open("ab")
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.server = self.link.run_in(
            "cloud",
            [
                str(gunicorn),
                "keeper_site.wsgi:application",
                "--bind",
                f"0.0.0.0:{SERVER_PORT}",
                "--workers",
                "1",
                "--threads",
                "8",
                "--graceful-timeout",
                "5",
                # Its default control socket is one path for every gunicorn on the machine.
                "--no-control-socket",
            ],
            cwd=ROOT,
            env=self.server_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.link.wait_connectable("desk", self.link.cloud_ip, SERVER_PORT, timeout=60)

    @property
    def server_url(self) -> str:
        """The server's address as the desk's agents see it: the proxy on their loopback."""
        return f"http://127.0.0.1:{self.proxy.port}"

    # --- the cloud's commands ----------------------------------------------------------------

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``manage.py args`` in the cloud namespace with the server's environment; raise
        :class:`AgentLinkError` with its output when it fails."""
        process = self.link.run_in(
            "cloud",
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.server_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            raise AgentLinkError(
                f"manage.py {' '.join(args)} ran over {timeout} s: {err}"
            ) from None
        if process.returncode != 0:
            raise AgentLinkError(
                f"manage.py {' '.join(args)} exited {process.returncode}:\n{out}{err}"
            )
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def token(self, name: str = "desk") -> str:
        """Agent ``name``'s token (``manage.py agent_token NAME``), made once."""
        if name not in self.tokens:
            self.tokens[name] = self.manage("agent_token", name).stdout.strip()
        return self.tokens[name]

    def submit(
        self, count: int, *, tag: str, system: str = SYSTEM, planet: str = PLANET
    ) -> list[int]:
        """Submit ``count`` discoveries on ``planet`` of ``system`` through ``manage.py
        submit_discovery`` (one process); returns their keeper ids, in order. Descriptions are
        ``agent-link <tag> <n>``."""
        entries = [
            {
                "user_id": str(300_000 + n % 16),
                "username": f"Link {n % 16}",
                "discovery_type": "🏛️",
                "system_name": system,
                "location": planet,
                "location_type": "planet",
                "description": f"agent-link {tag} {n:06d}",
            }
            for n in range(count)
        ]
        path = self.folder / f"submit-{tag}-{secrets.token_hex(3)}.json"
        path.write_text(json.dumps(entries), encoding="utf-8")
        done = self.manage("submit_discovery", "--file", str(path), timeout=600)
        ids = [int(m) for m in re.findall(r"discovery (\d+) queued", done.stdout)]
        if len(ids) != count:
            raise AgentLinkError(f"submitted {len(ids)} of {count}:\n{done.stdout}{done.stderr}")
        return ids

    def pickers(self) -> list[str] | None:
        """The systems the server's pickers offer now, as a one-off ``manage.py shell`` in
        the cloud namespace prints them (:func:`discoveries.catalog.catalog_systems`); None
        while the server keeps no catalog."""
        done = self.manage("shell", "-c", _PICKER_ONCE)
        return json.loads(done.stdout.strip().splitlines()[-1])

    # --- the desk ------------------------------------------------------------------------

    def haven_for(self, name: str, *, share: str | None = None) -> Path:
        """The VH file of agent ``name``: a copy of the fixture made on first use, or agent
        ``share``'s file when given."""
        if name not in self.havens:
            if share is not None:
                self.havens[name] = self.haven_for(share)
            else:
                path = self.folder / f"VH-{name}.db"
                shutil.copyfile(self.fixture, path)
                self.havens[name] = path
        return self.havens[name]

    def agent_start(
        self,
        name: str = "desk",
        *,
        pause: float | None = None,
        share: str | None = None,
        wait_ready: bool = True,
    ) -> AgentRun:
        """Start agent ``name`` in the desk namespace through the proxy, on its VH file
        (:meth:`haven_for`) and its state file (kept across restarts, as on a desktop).
        ``pause``: ``SYNC_CHAOS_PAUSE_SECONDS``, for aimed kills. ``wait_ready``: return once
        it has uploaded the catalog or found the server already keeps it (its first heartbeat
        answered)."""
        haven = self.haven_for(name, share=share)
        env = {
            **_base_env(),
            "HAVEN_DB_PATH": str(haven),
            "KEEPER_ENV_FILE": "/nonexistent",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        if pause:
            env["SYNC_CHAOS_PAUSE_SECONDS"] = repr(pause)
        process = self.link.run_in(
            "desk",
            [
                sys.executable,
                "manage.py",
                "haven_agent",
                "--server",
                self.server_url,
                "--token",
                self.token(name),
                "--state",
                str(self.folder / f"agent-{name}.json"),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        run = AgentRun(name, process, haven, self.folder / f"agent-{name}.log")
        self.agents.append(run)
        if wait_ready:
            self.agent_wait_seen(name, since=time.time(), run=run)
        return run

    def agent_wait_seen(self, name: str, *, since: float, run: AgentRun | None = None) -> None:
        """Wait until the server has heard from agent ``name`` after ``since`` (a wall-clock
        time) and keeps a catalog; :class:`AgentLinkError` after :data:`OBSERVE_SECONDS`
        or when the agent ended."""

        def seen() -> bool:
            if run is not None and not run.alive():
                raise AgentLinkError(f"agent {name} ended:\n{run.text()}")
            rows = self.keeper_rows(
                "SELECT a.last_seen_at, (SELECT COUNT(*) FROM haven_catalog_copy) "
                "FROM sync_haven_agent a WHERE a.name = ?",
                name,
            )
            return bool(rows and rows[0][0] and rows[0][1] and _utc_epoch(rows[0][0]) >= since)

        if not wait_for(seen, timeout=OBSERVE_SECONDS, every=0.1):
            raise AgentLinkError(f"the server never heard from agent {name}")

    def haven_place_add(self, name: str, *, system: str, planet: str) -> str:
        """Add ``system`` and its ``planet`` to agent ``name``'s VH file, as the Control Room
        does (one transaction, waiting for the agent's lock if it holds it); returns the new
        system's id."""
        system_id = f"SYS_LINK_{secrets.token_hex(4).upper()}"
        with contextlib.closing(sqlite3.connect(self.haven_for(name), timeout=30)) as db, db:
            db.execute(
                "INSERT INTO systems (id, name, x, y, z, region) VALUES (?, ?, 1, 2, 3, ?)",
                (system_id, system, "Euclid"),
            )
            db.execute("INSERT INTO planets (system_id, name) VALUES (?, ?)", (system_id, planet))
        return system_id

    # --- what the databases show ---------------------------------------------------------

    def keeper_rows(self, sql: str, *params: object) -> list[tuple]:
        """``sql``'s rows from keeper.db, read-only."""
        return sqlite_read(self.keeper, sql, params, timeout=30)

    def queue_states(self) -> dict[str, int]:
        """How many queue items are in each sync status."""
        return dict(self.keeper_rows("SELECT sync_status, COUNT(*) FROM sync_queue GROUP BY 1"))

    def statuses(self, ids: Iterable[int]) -> dict[int, str]:
        """The queue status of each keeper discovery of ``ids`` that has a queue item."""
        wanted = set(ids)
        rows = self.keeper_rows("SELECT discovery_id, sync_status FROM sync_queue")
        return {pk: status for pk, status in rows if pk in wanted}

    def attempts(self, ids: Iterable[int]) -> dict[int, int]:
        """How many attempts keeper.db records for each keeper discovery of ``ids``."""
        wanted = set(ids)
        rows = self.keeper_rows(
            "SELECT q.discovery_id, COUNT(a.id) FROM sync_queue q "
            "LEFT JOIN sync_attempt a ON a.queue_item_id = q.id GROUP BY q.discovery_id"
        )
        return {pk: n for pk, n in rows if pk in wanted}

    def claims(self, ids: Iterable[int]) -> dict[int, int]:
        """How many times each keeper discovery of ``ids`` was claimed (its queue item's
        ``sync_attempts``: a lease counts one, recorded or not; a wait for a place none)."""
        wanted = set(ids)
        rows = self.keeper_rows("SELECT discovery_id, sync_attempts FROM sync_queue")
        return {pk: n for pk, n in rows if pk in wanted}

    def lease_items(self, token: str) -> list[int]:
        """Keeper ids of the items keeper.db holds under lease ``token`` (``syncing``)."""
        rows = self.keeper_rows(
            "SELECT discovery_id FROM sync_queue WHERE lease_token = ? AND sync_status = ?",
            token,
            "syncing",
        )
        return sorted(pk for (pk,) in rows)

    def ledger(self, haven: Path) -> list[tuple[int, int]]:
        """``(keeper id, VH id)`` of each ledger row of the VH file ``haven``, read-only;
        empty before the first write made the table."""
        try:
            return sqlite_read(
                haven, "SELECT keeper_discovery_id, haven_discovery_id FROM keeper_sync_ledger"
            )
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise

    def vh_rows(self, haven: Path) -> list[tuple[int, int]]:
        """``(VH id, keeper id)`` of each discovery row of ``haven`` that Keeper Sync wrote
        (its ``metadata`` names the keeper id), read-only."""
        return sqlite_read(
            haven,
            "SELECT id, json_extract(metadata, '$.keeper_discovery_id') FROM discoveries "
            "WHERE json_valid(metadata) AND json_extract(metadata, '$.source') = 'keeper'",
        )

    def in_vh(self) -> set[int]:
        """Keeper ids with a ledger row in any agent's VH file."""
        return {pk for haven in set(self.havens.values()) for pk, _ in self.ledger(haven)}

    def wait_synced(self, ids: Iterable[int], *, timeout: float = OBSERVE_SECONDS) -> float | None:
        """Wait until every keeper discovery of ``ids`` is ``synced``; the seconds it took, or
        None after ``timeout``."""
        wanted = set(ids)
        began = time.monotonic()

        def done() -> bool:
            statuses = self.statuses(wanted)
            return len(statuses) == len(wanted) and set(statuses.values()) == {"synced"}

        if wait_for(done, timeout=timeout, every=0.1):
            return round(time.monotonic() - began, 2)
        return None

    def verdict(self, ids: Iterable[int]) -> Verdict:
        """The invariant over the keeper discoveries ``ids``, across every agent's VH file
        (:class:`Verdict`)."""
        ids = list(ids)
        queue = {
            pk: (status, vh_id)
            for pk, status, vh_id in self.keeper_rows(
                "SELECT discovery_id, sync_status, haven_discovery_id FROM sync_queue"
            )
        }
        ledger: dict[int, list[tuple[str, int]]] = {}
        rows: Counter = Counter()
        # A file two agents share is read once.
        for haven in dict.fromkeys(self.havens.values()):
            for pk, vh_id in self.ledger(haven):
                ledger.setdefault(pk, []).append((str(haven), vh_id))
            rows.update(pk for _, pk in self.vh_rows(haven))
        verdict = Verdict(items=len(ids))
        for pk in ids:
            if pk not in queue:
                verdict.lost.append(pk)
                continue
            status, vh_id = queue[pk]
            written = max(rows[pk], len(ledger.get(pk, [])))
            if written > 1:
                verdict.duplicated[pk] = written
            if status != "synced":
                verdict.stuck[pk] = status
            elif not rows[pk] or vh_id not in {v for _, v in ledger.get(pk, [])}:
                verdict.lost.append(pk)
        return verdict

    def log_problems(self) -> list[str]:
        """Tracebacks in the server's log and the agents' logs, each file with its count."""
        problems = []
        for path in [self.folder / "server.log", *{a.log_path for a in self.agents}]:
            if not path.exists():
                continue
            found = path.read_text(encoding="utf-8", errors="replace").count("Traceback")
            if found:
                problems.append(f"{path.name} has {found} tracebacks")
        return problems

    # --- helpers that run beside the test ------------------------------------------------

    def watch_ledger(self, haven: Path | None = None) -> LedgerWatch:
        """A started :class:`LedgerWatch` on ``haven`` (default: agent ``desk``'s), stopped on
        close."""
        watch = LedgerWatch(haven or self.haven_for("desk"))
        watch.start()
        self._watchers.append(watch)
        return watch

    def watch_pickers(self, every: float = 0.2) -> PickerWatch:
        """A started :class:`PickerWatch`, stopped on close."""
        watch = PickerWatch(self, every=every)
        self._watchers.append(watch)
        return watch

    def submit_paced(self, count: int, *, rate: float, tag: str) -> PacedSubmitter:
        """A started :class:`PacedSubmitter` of ``count`` discoveries at ``rate`` a second,
        stopped on close."""
        submitter = PacedSubmitter(self, count=count, rate=rate, tag=tag)
        self._watchers.append(submitter)
        return submitter


def _utc_epoch(text: str) -> float:
    """A time Django stored in SQLite (UTC, ISO without an offset) as epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@dataclass
class Verdict:
    """The invariant over ``items`` keeper discoveries: ``lost`` (keeper ids not in keeper.db,
    or ``synced`` without their VH row and a ledger row naming it), ``duplicated`` (keeper id
    → how many VH rows, or ledger rows, it has across every VH file, where more than one),
    ``stuck`` (keeper id → the status of its queue item, where not ``synced``)."""

    items: int
    lost: list[int] = field(default_factory=list)
    duplicated: dict[int, int] = field(default_factory=dict)
    stuck: dict[int, str] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """Nothing lost, doubled or stuck."""
        return not (self.lost or self.duplicated or self.stuck)

    def counts(self) -> dict[str, int]:
        """``{"items", "lost", "duplicated", "stuck"}`` as numbers, ``duplicated`` counting
        the rows beyond one (as :class:`chaos.harness.Outcome` does)."""
        return {
            "items": self.items,
            "lost": len(self.lost),
            "duplicated": sum(n - 1 for n in self.duplicated.values()),
            "stuck": len(self.stuck),
        }


class LedgerWatch(threading.Thread):
    """Reads a VH file's ledger read-only every :data:`LEDGER_POLL_SECONDS` and records when
    each keeper id's ledger row was first seen: ``first_seen`` (``time.time()``, to compare
    with a submitter's wall clock on the same machine) and ``first_seen_perf``
    (``time.perf_counter()``). ``errors`` counts the reads that failed, by message (VH
    locked, say, or the ledger not made yet)."""

    def __init__(self, haven: Path):
        super().__init__(name="ledger-watch", daemon=True)
        self.haven = haven
        self.first_seen: dict[int, float] = {}
        self.first_seen_perf: dict[int, float] = {}
        self.errors: Counter = Counter()
        self.reads = 0
        self._halt = threading.Event()
        self._last_rowid = 0

    def run(self) -> None:
        due = time.monotonic()
        while not self._halt.wait(max(0.0, due - time.monotonic())):
            due = max(due + LEDGER_POLL_SECONDS, time.monotonic())
            try:
                rows = sqlite_read(
                    self.haven,
                    "SELECT rowid, keeper_discovery_id FROM keeper_sync_ledger WHERE rowid > ? "
                    "ORDER BY rowid",
                    (self._last_rowid,),
                    timeout=1,
                )
            except sqlite3.OperationalError as exc:
                self.errors[str(exc)] += 1
                continue
            wall, perf = time.time(), time.perf_counter()
            self.reads += 1
            for rowid, pk in rows:
                self._last_rowid = max(self._last_rowid, rowid)
                self.first_seen.setdefault(pk, wall)
                self.first_seen_perf.setdefault(pk, perf)

    def stop(self) -> None:
        """End the thread."""
        self._halt.set()
        if self.is_alive():
            self.join(timeout=10)


#: The one-off picker read: the systems the server's pickers offer, as JSON (null for none).
_PICKER_ONCE = """
import json
from discoveries.catalog import catalog_systems

systems = catalog_systems()
print(json.dumps(None if systems is None else [s.name for s in systems]))
"""

#: The picker read in a loop: one JSON line per read, ``{"at", "seconds", "systems",
#: "error"}``, every ``every`` seconds.
_PICKER_LOOP = """
import json
import time

from django.db import DatabaseError
from discoveries.catalog import catalog_systems

while True:
    began = time.time()
    try:
        systems = catalog_systems()
        names, error = (None if systems is None else [s.name for s in systems]), None
    except DatabaseError as exc:
        names, error = None, f"{{type(exc).__name__}}: {{exc}}"
    print(json.dumps({{"at": began, "seconds": time.time() - began, "systems": names,
                      "error": error}}), flush=True)
    time.sleep({every})
"""


@dataclass(frozen=True)
class PickerRead:
    """One read of the server's pickers: when (``time.time()``), how long it took, the
    systems offered (None for none) and the error, if any."""

    at: float
    seconds: float
    systems: list[str] | None
    error: str | None


class PickerWatch:
    """A ``manage.py shell`` in the cloud namespace that reads the server's pickers
    (:func:`discoveries.catalog.catalog_systems`) every ``every`` seconds, as the bot would
    while someone opens the report form; ``reads`` keeps each :class:`PickerRead`, and what
    the shell prints on stderr goes to ``pickers.log`` in the folder."""

    def __init__(self, cloud: CloudDesk, *, every: float = 0.2):
        self.reads: list[PickerRead] = []
        self._lock = threading.Lock()
        log = (cloud.folder / "pickers.log").open("ab")
        self.process = cloud.link.run_in(
            "cloud",
            [sys.executable, "manage.py", "shell", "-c", _PICKER_LOOP.format(every=every)],
            cwd=ROOT,
            env=cloud.server_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        log.close()
        self._reader = threading.Thread(target=self._read, name="picker-watch", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with contextlib.suppress(ValueError, TypeError):
                read = PickerRead(**json.loads(line))
                with self._lock:
                    self.reads.append(read)

    def wait_reading(self, timeout: float = OBSERVE_SECONDS) -> bool:
        """Wait until the watch has made a read (the shell has started)."""
        return bool(wait_for(lambda: self.reads, timeout=timeout))

    def between(self, start: float, end: float) -> list[PickerRead]:
        """The reads made from ``start`` to ``end`` (wall-clock times)."""
        with self._lock:
            return [r for r in self.reads if start <= r.at <= end]

    def summary(self, start: float, end: float, wanted: Iterable[str]) -> dict:
        """What the pickers answered from ``start`` to ``end``: ``{"seconds", "reads",
        "with_catalog", "slowest_read_seconds"}``, ``with_catalog`` counting the reads that
        offered every system of ``wanted``."""
        wanted = set(wanted)
        reads = self.between(start, end)
        good = [r for r in reads if r.systems is not None and wanted <= set(r.systems)]
        return {
            "seconds": round(end - start, 1),
            "reads": len(reads),
            "with_catalog": len(good),
            "slowest_read_seconds": round(max((r.seconds for r in reads), default=0.0), 3),
        }

    def stop(self) -> None:
        """End the shell."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=10)


#: Submits discoveries one at a time at a steady pace; prints ``<keeper id> <time.time()>``
#: after each commit, and ``ERROR <text>`` for a refused or failed one.
_PACED_SUBMITTER = """
import time

from django.db import DatabaseError
from discoveries.rules import DiscoveryInvalid
from syncq.services import discovery_submit

COUNT, RATE, TAG = {count}, {rate!r}, {tag!r}
began = time.monotonic()
for n in range(COUNT):
    wait = began + n / RATE - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    try:
        discovery = discovery_submit(
            user_id=str(400000 + n % 16),
            username=f"Paced {{n % 16}}",
            discovery_type="🏛️",
            system_name={system!r},
            location={planet!r},
            location_type="planet",
            description=f"agent-link {{TAG}} {{n:06d}}",
        )
    except (DiscoveryInvalid, DatabaseError) as exc:
        print("ERROR", f"{{type(exc).__name__}}: {{exc}}", flush=True)
        continue
    print(discovery.id, repr(time.time()), flush=True)
print("DONE", flush=True)
"""


class PacedSubmitter:
    """A ``manage.py shell`` in the cloud namespace that submits ``count`` discoveries through
    :func:`syncq.services.discovery_submit`, one at a time, the n-th due ``n / rate`` seconds
    after it starts (a steady pace, not each after the previous one was seen in VH).
    ``submitted`` maps each keeper id to the wall-clock time (``time.time()``) its commit
    returned; ``errors`` keeps what failed."""

    def __init__(self, cloud: CloudDesk, *, count: int, rate: float, tag: str):
        self.count = count
        self.submitted: dict[int, float] = {}
        self.errors: list[str] = []
        self.finished = threading.Event()
        script = _PACED_SUBMITTER.format(
            count=count, rate=float(rate), tag=tag, system=SYSTEM, planet=PLANET
        )
        self.process = cloud.link.run_in(
            "cloud",
            [sys.executable, "manage.py", "shell", "-c", script],
            cwd=ROOT,
            env=cloud.server_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name="paced-submitter", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            parts = line.split()
            if parts[:1] == ["DONE"]:
                self.finished.set()
            elif len(parts) == 2 and parts[0].isdigit():
                self.submitted[int(parts[0])] = float(parts[1])
            elif line.strip():
                self.errors.append(line.strip())
        self.finished.set()

    def running(self) -> bool:
        """Whether it is still submitting."""
        return not self.finished.is_set()

    def wait(self, timeout: float = 3600) -> dict[int, float]:
        """Wait until every submit is done; returns :attr:`submitted`. Raises
        :class:`AgentLinkError` when it did not finish or not every submit went through."""
        if not self.finished.wait(timeout):
            raise AgentLinkError(f"the submitter did not finish in {timeout} s")
        self.process.wait(timeout=30)
        if len(self.submitted) != self.count:
            raise AgentLinkError(
                f"{len(self.submitted)} of {self.count} submitted: {self.errors[:5]}"
            )
        return self.submitted

    def stop(self) -> None:
        """End the submitter if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=10)


def latencies(submitted: dict[int, float], seen: dict[int, float]) -> dict:
    """Submit → in VH, from :class:`PacedSubmitter`'s ``submitted`` and
    :class:`LedgerWatch`'s ``first_seen`` (both wall-clock seconds on this machine):
    ``{"count", "seen", "p50_ms", "p99_ms", "max_ms", "mean_ms"}``; a discovery never seen
    counts in ``count`` only."""
    values = [(seen[pk] - at) * 1000 for pk, at in submitted.items() if pk in seen]

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return {
        "count": len(submitted),
        "seen": len(values),
        "p50_ms": ms(percentile(values, 0.50)),
        "p99_ms": ms(percentile(values, 0.99)),
        "max_ms": ms(max(values, default=None)),
        "mean_ms": ms(sum(values) / len(values) if values else None),
    }


# --- aimed kills ---------------------------------------------------------------------------


@dataclass
class Kill:
    """One aimed ``kill -9`` of an agent: the ``step`` it was aimed at (``before-commit``,
    ``before-ack``, ``during-ack``), the ``lease`` it cut short, the keeper ``items``
    keeper.db held under it and how many of them were ``in_vh`` (in the ledger) right after
    the kill, whether it ``landed`` there, and the ``evidence`` that says so (or why not)."""

    step: str
    lease: str = ""
    items: list[int] = field(default_factory=list)
    in_vh: int = 0
    landed: bool = False
    evidence: list[str] = field(default_factory=list)


def _next_line(
    cloud: CloudDesk,
    agent: AgentRun,
    pattern: re.Pattern,
    *,
    start: int,
    deadline: float,
    more_coming: Callable[[], bool],
) -> tuple[int, re.Match] | None:
    """The agent's next line from ``start`` that ``pattern`` finds something in; None at
    ``deadline``, when the agent ended, or when no more can come: nothing is being submitted
    (``more_coming()`` false) and the queue holds nothing pending or syncing."""
    while time.monotonic() < deadline:
        found = agent.wait_line(
            pattern, start=start, timeout=min(0.5, max(0.0, deadline - time.monotonic()))
        )
        if found is not None:
            return found
        if not agent.alive():
            return None
        if not more_coming():
            states = cloud.queue_states()
            if not (states.get("pending") or states.get("syncing")):
                return agent.find(pattern, start=start)
    return None


def _never() -> bool:
    return False


def kill_before_commit(
    cloud: CloudDesk,
    agent: AgentRun,
    *,
    start: int | None = None,
    timeout: float = OBSERVE_SECONDS,
    more_coming: Callable[[], bool] = _never,
) -> Kill:
    """``kill -9`` ``agent`` inside its VH transaction, before the commit: after a lease's
    "N items to write" line (from line ``start``, default the next), once the agent holds VH's
    WAL write lock (``/proc/locks``), it is frozen, seen still holding the lock with no
    "written" line for that lease, and killed. The agent needs ``pause``
    (:meth:`CloudDesk.agent_start`) for the window to be wide. A lease missed is let go and the
    next one aimed at, until ``timeout`` or until no more can come (:func:`_next_line`)."""
    kill = Kill("before-commit")
    start = agent.mark() if start is None else start
    deadline = time.monotonic() + timeout
    while True:
        found = _next_line(
            cloud, agent, _TO_WRITE, start=start, deadline=deadline, more_coming=more_coming
        )
        if found is None:
            break
        index, match = found
        token = match.group(1)
        written = re.compile(rf"lease {token}: \d+ written or held")
        holding = wait_for(
            lambda written=written, index=index: (
                agent.pid in wal_writer_pids(agent.haven)
                or agent.find(written, start=index)
                or not agent.alive()
            ),
            timeout=max(0.0, deadline - time.monotonic()),
            every=0.002,
        )
        if (
            holding is True
            and agent.freeze()
            and agent.pid in wal_writer_pids(agent.haven)
            and agent.find(written, start=index) is None
        ):
            items = cloud.lease_items(token)
            agent.kill()
            in_vh = set(items) & cloud.in_vh()
            kill.lease, kill.items, kill.landed = token, items, bool(items)
            kill.in_vh = len(in_vh)
            kill.evidence += [
                f"lease {token}: {match.group(2)} items to write, no 'written' line",
                f"the agent held VH's write lock when killed (/proc/locks, pid {agent.pid})",
                f"{len(items) - len(in_vh)} of the lease's {len(items)} items not in the "
                "ledger after the kill",
            ]
            return kill
        agent.thaw()
        start = index + 1
    kill.evidence.append("no lease was caught inside its VH transaction")
    return kill


def kill_before_ack(
    cloud: CloudDesk,
    agent: AgentRun,
    *,
    start: int | None = None,
    timeout: float = OBSERVE_SECONDS,
    more_coming: Callable[[], bool] = _never,
) -> Kill:
    """``kill -9`` ``agent`` between its VH commit and its ack: at a lease's "N written or held
    in VH … reporting" line (N > 0, from line ``start``), while it pauses before reporting, it
    is frozen, seen with no ack line for that lease, and killed. It landed when every item
    keeper.db still holds under the lease is in the ledger. Needs ``pause``; a lease missed
    is let go as in :func:`kill_before_commit`."""
    kill = Kill("before-ack")
    start = agent.mark() if start is None else start
    deadline = time.monotonic() + timeout
    while True:
        found = _next_line(
            cloud, agent, _WRITTEN, start=start, deadline=deadline, more_coming=more_coming
        )
        if found is None:
            break
        index, match = found
        token = match.group(1)
        acked = re.compile(rf"lease {token}: \d+ reported to")
        if int(match.group(2)) and agent.freeze() and agent.find(acked, start=index) is None:
            items = cloud.lease_items(token)
            agent.kill()
            in_vh = set(items) & cloud.in_vh()
            kill.lease, kill.items, kill.in_vh = token, items, len(in_vh)
            kill.landed = bool(items) and in_vh == set(items)
            kill.evidence += [
                f"lease {token}: {match.group(2)} written or held in VH, no ack line",
                f"{len(in_vh)} of the {len(items)} items keeper.db still held as syncing under "
                "the lease were in the ledger when killed",
            ]
            return kill
        agent.thaw()
        start = index + 1
    kill.evidence.append("no lease was caught between its VH commit and its ack")
    return kill


def kill_during_ack(
    cloud: CloudDesk,
    agent: AgentRun,
    *,
    start: int | None = None,
    timeout: float = OBSERVE_SECONDS,
    more_coming: Callable[[], bool] = _never,
    hold: float = 60,
) -> Kill:
    """``kill -9`` ``agent`` with its ack in flight: at a lease's "reporting" line (N > 0, from
    line ``start``) the proxy holds all traffic (:meth:`tests.netlab.FaultProxy.hold`, ``hold``
    seconds at most); once the proxy counts a connection held beyond its delay (the report on
    its way: the agent does nothing else meanwhile) and no ack line has come, the agent is
    frozen and killed, and the hold let go, so the ack reaches the server after its sender
    died, or never. It landed when keeper.db still held the lease's items as ``syncing``.
    Needs ``pause``; a lease missed is let go as in :func:`kill_before_commit`."""
    kill = Kill("during-ack")
    proxy = cloud.proxy
    start = agent.mark() if start is None else start
    deadline = time.monotonic() + timeout
    while True:
        found = _next_line(
            cloud, agent, _WRITTEN, start=start, deadline=deadline, more_coming=more_coming
        )
        if found is None:
            break
        index, match = found
        start = index + 1
        token = match.group(1)
        acked = re.compile(rf"lease {token}: \d+ reported to")
        if not int(match.group(2)):
            continue
        stalled = proxy.stats().stalled
        proxy.hold(hold)
        try:
            held = wait_for(
                lambda stalled=stalled, acked=acked, index=index: (
                    proxy.stats().stalled > stalled
                    or agent.find(acked, start=index)
                    or not agent.alive()
                ),
                timeout=min(hold, max(0.0, deadline - time.monotonic())),
                every=0.005,
            )
            if (
                held is True
                and agent.freeze()
                and agent.find(acked, start=index) is None
                and proxy.stats().stalled > stalled
            ):
                items = cloud.lease_items(token)
                agent.kill()
                kill.lease, kill.items = token, items
                kill.in_vh = len(set(items) & cloud.in_vh())
                kill.landed = bool(items)
                kill.evidence += [
                    f"lease {token}: {match.group(2)} written or held in VH; its report was "
                    "held in the proxy (a connection stalled) and no ack line came",
                    f"{len(items)} items still syncing under the lease in keeper.db when killed",
                ]
                return kill
            agent.thaw()
        finally:
            proxy.hold(0)
    kill.evidence.append("no lease was caught with its ack in flight")
    return kill


KILLS: dict[str, Callable[..., Kill]] = {
    "before-commit": kill_before_commit,
    "before-ack": kill_before_ack,
    "during-ack": kill_during_ack,
}
#: How many batches an aimed kill may go through before it counts as not landed.
KILL_TRIES = 5


def kills_at_each_step(
    cloud: CloudDesk,
    *,
    rounds: int = 1,
    batch: int = 10,
    tag: str = "kill",
    name: str = "desk",
    pause: float = KILL_PAUSE_SECONDS,
) -> tuple[list[Kill], list[int]]:
    """Kill agent ``name`` at each step of a lease (:data:`KILLS`), ``rounds`` times, each
    kill on a fresh run started with ``pause`` (whatever agent ``name`` ran before is
    stopped first) and restarted after it. For each kill ``batch`` discoveries are submitted
    while the kill is aimed, and again (up to :data:`KILL_TRIES` batches) while it has not
    landed. Ends with a run of agent ``name`` without the pause, so the queue drains. Returns
    the kills, in order, and the keeper ids submitted."""
    for agent in cloud.agents:
        if agent.name == name and agent.alive():
            agent.stop()
    ids: list[int] = []
    kills: list[Kill] = []
    agent = cloud.agent_start(name, pause=pause)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kill-submit") as pool:
        for number in range(rounds):
            for step, aim in KILLS.items():
                for attempt in range(KILL_TRIES):
                    start = agent.mark()
                    submitted = pool.submit(
                        cloud.submit, batch, tag=f"{tag}-{number}-{step}-{attempt}"
                    )
                    kill = aim(
                        cloud, agent, start=start, more_coming=lambda s=submitted: not s.done()
                    )
                    ids += submitted.result()
                    if kill.landed or not agent.alive():
                        break
                kills.append(kill)
                agent.stop()
                last = number == rounds - 1 and step == list(KILLS)[-1]
                agent = cloud.agent_start(name, pause=None if last else pause)
    return kills, ids


# --- the fault run: kills, a lossy link and a cut -----------------------------------------


def fault_run(
    cloud: CloudDesk,
    *,
    count: int,
    cut_seconds: float,
    kill_rounds: int = 1,
    rate: float = 50.0,
    drain_limit: float = DRAIN_AFTER_RESTORE_SECONDS,
    stop_seconds: float = 0.0,
) -> dict:
    """The faults of the chaos scenario and of the measurement, on a fresh :class:`CloudDesk`
    (made with ``seed=LOSSY_SEED``), all under :data:`LOSSY`'s delay, drops and resets:

    1. the agent killed at each step of a lease, ``kill_rounds`` times each
       (:func:`kills_at_each_step`);
    2. ``count`` discoveries submitted at ``rate`` a second, the link cut for ``cut_seconds``
       once half of them are in, the server's pickers read all along (:class:`PickerWatch`);
    3. with ``stop_seconds``, the agent stopped that long, the pickers read again.

    Returns a JSON-ready report: ``kills`` (:class:`Kill`, its items counted),
    ``cut`` (its length, the pickers' reads during it, ``restore_to_all_synced_seconds``: None
    when not all synced within ``drain_limit`` + 60 s), ``agent_stopped``, ``verdict``
    (:meth:`Verdict.counts`, and ``verdict_kills`` and ``verdict_cut`` for the discoveries of
    each part) with examples, the proxy's counts, the logs' tracebacks and
    whether the server ever made a VH file."""
    report: dict = {}
    cloud.proxy.set(delay_ms=LOSSY.delay_ms, drop=LOSSY.drop, reset=LOSSY.reset)
    kills, killed_ids = kills_at_each_step(cloud, rounds=kill_rounds)
    report["kills"] = [asdict(k) | {"items": len(k.items)} for k in kills]
    catalog = cloud.pickers() or []
    pickers = cloud.watch_pickers()
    pickers.wait_reading()
    submitter = cloud.submit_paced(count, rate=rate, tag="cut")
    # The cut comes once half of them are in, so the agent is busy when it comes.
    wait_for(
        lambda: len(submitter.submitted) >= count // 2 or not submitter.running(),
        timeout=OBSERVE_SECONDS,
    )
    cut_at = time.time()
    cloud.link.cut()
    # The cut's length is the fault itself; meanwhile the pickers are read from the cloud.
    time.sleep(cut_seconds)
    cloud.link.restore()
    restored_at, restored = time.time(), time.monotonic()
    cut_ids = list(submitter.wait())
    ids = killed_ids + cut_ids
    drained = cloud.wait_synced(ids, timeout=drain_limit + 60)
    drain = None if drained is None else round(time.monotonic() - restored, 1)
    report["cut"] = {
        "seconds": round(restored_at - cut_at, 1),
        "pickers": pickers.summary(cut_at, restored_at, catalog),
        "restore_to_all_synced_seconds": drain,
        "within_limit": drain is not None and drain <= drain_limit,
    }
    if stop_seconds:
        for agent in cloud.agents:
            if agent.alive():
                agent.stop()
        stopped_at = time.time()
        time.sleep(stop_seconds)
        report["agent_stopped"] = {"pickers": pickers.summary(stopped_at, time.time(), catalog)}
        cloud.agent_start("desk")
    pickers.stop()
    report["catalog_systems"] = len(catalog)
    verdict = cloud.verdict(ids)
    report["verdict"] = verdict.counts()
    report["verdict_kills"] = cloud.verdict(killed_ids).counts()
    report["verdict_cut"] = cloud.verdict(cut_ids).counts()
    report["verdict_examples"] = {
        "lost": verdict.lost[:5],
        "duplicated": dict(list(verdict.duplicated.items())[:5]),
        "stuck": dict(list(verdict.stuck.items())[:5]),
    }
    report["proxy"] = asdict(cloud.proxy.stats())
    report["log_problems"] = cloud.log_problems()
    report["server_made_a_vh_file"] = cloud.server_haven.exists()
    return report


# --- the measurement ---------------------------------------------------------------------


def measure(
    *, count: int, rate: float, cut_seconds: float, stop_seconds: float, keep: bool
) -> dict:
    """The figures ``python -m chaos.agent_link measure`` prints (see :func:`main`)."""
    began = time.monotonic()
    result: dict = {
        "count": count,
        "pace": f"{rate:g} submissions a second, each on its own, not waiting for the previous "
        "one to reach VH",
        "link": "veth between network namespaces, fault proxy with 100 ms one-way delay",
    }
    with CloudDesk(keep=keep) as cloud:
        cloud.agent_start("desk")
        watch = cloud.watch_ledger()
        submitter = cloud.submit_paced(count, rate=rate, tag="latency")
        submitted = submitter.wait()
        cloud.wait_synced(submitted, timeout=OBSERVE_SECONDS)
        wait_for(lambda: set(submitted) <= set(watch.first_seen), timeout=10)
        watch.stop()
        result["latency_submit_to_vh"] = latencies(submitted, watch.first_seen)
        result["latency_verdict"] = cloud.verdict(submitted).counts()
        result["ledger_reads"] = {"reads": watch.reads, "failed": watch.errors}
    with CloudDesk(keep=keep, faults=LOSSY, seed=LOSSY_SEED) as cloud:
        faults = fault_run(
            cloud, count=count, cut_seconds=cut_seconds, stop_seconds=stop_seconds, kill_rounds=2
        )
    result["faults"] = {
        "link": "100 ms one-way delay, 5 % of connections dropped, 5 % reset mid-request",
        **faults,
    }
    result["seconds"] = round(time.monotonic() - began, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m chaos.agent_link measure [--count N] [--rate R] [--cut S] [--stop S]``:
    submit ``count`` discoveries one at a time at ``rate`` a second over a 100 ms link and
    print, as JSON, their latency from submit to VH (p50, p99, max); then, on a fresh pair,
    kill the agent at each step of a lease twice, submit ``count`` more while the link is cut
    ``cut`` seconds (with 5 % of connections dropped and 5 % reset), stop the agent ``stop``
    seconds, and print what was lost or doubled, how long after the link's return all was
    synced, and how the server's pickers answered while the desktop was away."""
    parser = argparse.ArgumentParser(prog="python -m chaos.agent_link", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("measure", help="measure latency and faults; print JSON")
    run.add_argument("--count", type=int, default=1000)
    run.add_argument("--rate", type=float, default=20.0, help="submissions a second")
    run.add_argument("--cut", type=float, default=30.0, help="seconds the link is cut")
    run.add_argument("--stop", type=float, default=10.0, help="seconds the agent is stopped")
    run.add_argument("--keep", action="store_true", help="keep the folders for a look")
    args = parser.parse_args(argv)
    reason = netlab_unavailable()
    if reason:
        print(json.dumps({"skipped": reason}))
        return 2
    result = measure(
        count=args.count,
        rate=args.rate,
        cut_seconds=args.cut,
        stop_seconds=args.stop,
        keep=args.keep,
    )
    print(json.dumps(result, indent=2))
    clean = result["latency_verdict"]["lost"] == result["latency_verdict"]["duplicated"] == 0
    verdict = result["faults"]["verdict"]
    clean = clean and not (verdict["lost"] or verdict["duplicated"] or verdict["stuck"])
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
