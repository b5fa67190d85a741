"""Supervision and recovery with real processes: runservice's children die with it, two services
share no fixed path, a killed worker's items are synced again at once after a restart, Ctrl-C
while VH is locked leaves nothing ``syncing``, ``migrate`` runs one at a time, and the
worker's status belongs to its own keeper database."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest

from syncq.processes import child_exited, children_start, children_stop, parent_death_signal
from tests.conftest import (
    ROOT,
    SAMPLE_VH_CONTROL_ROOM_SCHEMA,
    manage_env,
    run_manage,
    writable_copy,
)
from tests.process_support import (
    alive_in_sessions,
    cleanup,
    free_port,
    health,
    processes,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; children die with it on Linux"
)

#: A planet of the Control Room's sample file (examples/vh_control_room_schema.db).
PLACE = {"system_name": "Luzhilar XVIII", "location": "Disey", "location_type": "planet"}


def _env(folder: Path, **extra: str) -> dict[str, str]:
    """A ``manage.py`` environment on ``folder``'s keeper.db, VH copy and file cache; gunicorn's
    default control socket places (``XDG_RUNTIME_DIR``, ``HOME``) are in the folder too."""
    for name in ("xdg", "home"):
        (folder / name).mkdir(exist_ok=True)
    settings = {
        "CACHE_URL": f"filecache://{folder / 'cache'}",
        "Q_WORKERS": "2",
        "XDG_RUNTIME_DIR": str(folder / "xdg"),
        "HOME": str(folder / "home"),
        **extra,
    }
    return manage_env(keeper=folder / "keeper.db", haven=folder / "VH-Database.db", **settings)


def _prepared(folder: Path, **extra: str) -> dict[str, str]:
    """:func:`_env` after copying the sample VH file in and migrating keeper.db."""
    folder.mkdir(parents=True, exist_ok=True)
    writable_copy(SAMPLE_VH_CONTROL_ROOM_SCHEMA, folder / "VH-Database.db")
    env = _env(folder, **extra)
    done = run_manage("migrate", "--no-input", "-v0", env=env)
    assert done.returncode == 0, done.stderr
    return env


def _submit(env: dict[str, str], count: int) -> None:
    folder = Path(env["KEEPER_DB_PATH"]).parent
    entries = [
        {
            "user_id": "1",
            "username": "Supervision",
            "discovery_type": "🏛️",
            **PLACE,
            "description": f"supervision {n:04d}",
            "structure_type": "Tower",
        }
        for n in range(count)
    ]
    path = folder / "submit.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    done = run_manage("submit_discovery", "--file", str(path), env=env, timeout=300)
    assert done.returncode == 0, done.stderr


def _states(env: dict[str, str]) -> dict[str, int]:
    with sqlite3.connect(env["KEEPER_DB_PATH"], timeout=60) as db:
        return dict(db.execute("SELECT sync_status, COUNT(*) FROM sync_queue GROUP BY 1"))


def _holders(env: dict[str, str]) -> int:
    with sqlite3.connect(env["KEEPER_DB_PATH"], timeout=60) as db:
        return db.execute("SELECT COUNT(*) FROM sync_lease_holder").fetchone()[0]


def _start(env: dict[str, str], *args: str, log: str) -> subprocess.Popen:
    """``manage.py args`` in a session of its own (as in a terminal of its own), its output
    appended to ``log`` in the keeper.db folder."""
    out = (Path(env["KEEPER_DB_PATH"]).parent / log).open("ab")
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _log(env: dict[str, str], log: str) -> str:
    return (Path(env["KEEPER_DB_PATH"]).parent / log).read_text(errors="replace")


def _serving(port: int) -> dict | None:
    """``/health`` once the web server answers and the sync worker reports running."""
    body = health(port)
    return body if body and body.get("sync_worker_running") else None


def _ctrl_c(process: subprocess.Popen, *, timeout: float = 60) -> int:
    """Ctrl-C as a terminal sends it (SIGINT to the foreground process group), and the exit
    code once the process ends."""
    os.killpg(process.pid, signal.SIGINT)
    return process.wait(timeout=timeout)


@contextlib.contextmanager
def _vh_locked(env: dict[str, str]):
    """Another program holds VH-Database.db's write lock for the block."""
    locker = sqlite3.connect(env["HAVEN_DB_PATH"], isolation_level=None, timeout=30)
    locker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def test_a_killed_runservice_takes_its_children_along_and_frees_its_port(tmp_path):
    """kill -9 of runservice's main process: the cluster (sentinel and workers included) and
    gunicorn (workers included) are gone within seconds, and a new runservice on the same port
    starts and answers /health."""
    port = free_port()
    env = _prepared(tmp_path, SYNC_API_PORT=str(port))
    first = _start(env, "runservice", log="first.log")
    sessions: set[int] = set()
    try:
        with cleanup(first):
            wait_until(
                lambda: _serving(port), timeout=120, what="the first runservice never served"
            )
            sessions = {pid for pid, parent, _, _ in processes() if parent == first.pid}
            assert len(sessions) == 2, processes()
            # qcluster's main, sentinel, 2 workers, monitor and pusher; gunicorn and its worker
            wait_until(
                lambda: len(alive_in_sessions(sessions)) >= 8,
                timeout=60,
                what="the children's processes never all started",
            )
            first.kill()
            first.wait()
            wait_until(
                lambda: not alive_in_sessions(sessions),
                timeout=30,
                what="processes of the killed service still run",
            )
    finally:
        for session in sessions:  # left only if the test failed
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(session, signal.SIGKILL)
    second = _start(env, "runservice", log="second.log")
    with cleanup(second):
        wait_until(lambda: _serving(port), timeout=120, what="the second runservice never served")
        assert _ctrl_c(second) == 0
    assert "Connection in use" not in _log(env, "second.log")


def test_a_port_in_use_stops_runservice_before_it_starts_anything(tmp_path):
    """With another program on SYNC_API_PORT, runservice says so in one line naming the
    setting, starts no child, and exits 1."""
    port = free_port()
    env = _prepared(tmp_path, SYNC_API_PORT=str(port))
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen()
        done = run_manage("runservice", env=env, timeout=120)
    assert done.returncode == 1
    assert f"the web server cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "SYNC_API_PORT" in done.stderr and "Traceback" not in done.stderr
    assert "Keeper Sync: keeper.db" not in done.stdout


def test_two_services_share_no_control_socket(tmp_path):
    """Two runservices at once on different ports: gunicorn's control socket is created at
    neither's default place (one per user and host), so stopping one leaves the other whole;
    the other still answers after the first stopped."""
    first_port, second_port = free_port(), free_port()
    env = _prepared(tmp_path, SYNC_API_PORT=str(first_port))
    first = _start(env, "runservice", log="first.log")
    second = _start(dict(env, SYNC_API_PORT=str(second_port)), "runservice", log="second.log")
    with cleanup(first, second):
        for port in (first_port, second_port):
            wait_until(
                lambda port=port: _serving(port), timeout=120, what=f"port {port} never served"
            )
        assert [*(tmp_path / "xdg").rglob("*"), *(tmp_path / "home").rglob("*")] == []
        assert _ctrl_c(first) == 0
        assert health(second_port) is not None
        assert _ctrl_c(second) == 0


def test_a_killed_workers_items_are_synced_within_30_s_of_the_restart(tmp_path):
    """kill -9 of the whole cluster mid-drain of 300 items leaves items ``syncing`` under a
    5-minute lease; a restarted cluster takes them back at once, without waiting out the lease,
    and every item is synced, each exactly once in VH."""
    env = _prepared(tmp_path, LOG_LEVEL="WARNING")
    _submit(env, 300)
    # The first cluster is slowed (batches of 10, a pause before and after each VH commit) so
    # that the kill lands mid-drain; the restarted one runs as configured.
    slow_env = dict(env, SYNC_CHAOS_PAUSE_SECONDS="0.05", SYNC_BATCH_SIZE="10")
    slow = _start(slow_env, "qcluster", log="cluster.log")
    with cleanup(slow):
        wait_until(
            lambda: _states(env).get("synced", 0) >= 30 and _states(env).get("syncing"),
            timeout=120,
            what="the first cluster never got going",
            interval=0.05,
        )
        os.killpg(slow.pid, signal.SIGKILL)
        slow.wait()
        wait_until(lambda: not alive_in_sessions({slow.pid}), timeout=30, what="the kill")
    left = _states(env)
    assert left.get("syncing", 0) > 0 and left.get("pending", 0) > 0, left
    restarted = _start(env, "qcluster", log="cluster.log")
    began = time.monotonic()
    with cleanup(restarted):
        wait_until(
            lambda: set(_states(env)) == {"synced"},
            timeout=120,
            what=f"the queue never drained: {_states(env)}",
            interval=0.1,
        )
        seconds = time.monotonic() - began
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=60)
    print(f"\nrestart -> all 300 synced in {seconds:.1f} s ({left} when killed)")
    with sqlite3.connect(env["HAVEN_DB_PATH"]) as vh:
        ledger = vh.execute(
            "SELECT COUNT(*), COUNT(DISTINCT keeper_discovery_id) FROM keeper_sync_ledger"
        ).fetchone()
        rows = vh.execute(
            "SELECT COUNT(*) FROM discoveries WHERE description LIKE 'supervision %'"
        ).fetchone()[0]
    assert ledger == (300, 300) and rows == 300
    assert "took back" in _log(env, "cluster.log")
    # The mechanism, not the speed: waiting out the lease would take 300 s at least. The time
    # itself (about 5 s here, 14 s with both cores busy) is a measurement, printed above.
    assert seconds < 120, f"all synced {seconds:.1f} s after the restart"


def test_ctrl_c_while_vh_is_locked_leaves_nothing_syncing(tmp_path):
    """Ctrl-C to runservice while another program holds VH's write lock: the worker ends the
    VH transaction it is waiting to begin (its items fail with the lock, with backoff), gives
    back any items it has not started, and stops; nothing is left ``syncing`` and no lease
    holder remains. Once VH is free, everything syncs."""
    env = _prepared(
        tmp_path,
        HAVEN_BUSY_TIMEOUT_SECONDS="2",
        SYNC_BASE_DELAY_SECONDS="1",
        SYNC_API_PORT=str(free_port()),
    )
    with _vh_locked(env):
        _submit(env, 30)
        service = _start(env, "runservice", log="service.log")
        with cleanup(service):
            wait_until(lambda: _states(env).get("syncing"), timeout=120, what="no batch began")
            assert _ctrl_c(service) == 0
        after = _states(env)
        assert after.get("syncing", 0) == 0 and sum(after.values()) == 30, after
        assert _holders(env) == 0

    def drained() -> bool:
        # The item in hand when VH refused it waits out its (1-second) backoff first.
        done = run_manage("sync_now", "--until-idle", env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return _states(env) == {"synced": 30}

    wait_until(drained, timeout=120, what=f"not all synced: {_states(env)}", interval=1)


def test_items_a_killed_worker_left_syncing_are_taken_at_once_by_the_next_run(tmp_path):
    """When the stop outlasts runservice's grace (a VH wait longer than it) the worker is
    killed with items ``syncing`` under a lease of more than 10 minutes; the next run takes
    them back at once and syncs them."""
    env = _prepared(
        tmp_path,
        HAVEN_BUSY_TIMEOUT_SECONDS="30",
        SYNC_LEASE_SECONDS="700",
        SYNC_API_PORT=str(free_port()),
    )
    with _vh_locked(env):
        _submit(env, 10)
        service = _start(env, "runservice", log="service.log")
        with cleanup(service):
            wait_until(lambda: _states(env).get("syncing"), timeout=120, what="no batch began")
            assert _ctrl_c(service, timeout=120) == 0
        left = _states(env)
    assert left.get("syncing", 0) > 0, left
    done = run_manage("sync_now", "--until-idle", env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _states(env) == {"synced": 10}
    assert "took back" in done.stderr


def test_migrates_started_together_run_one_after_the_other(tmp_path):
    """Two ``migrate`` at once on a new keeper.db, five times: every run exits 0 without a
    traceback (the second waits for the first)."""
    for round_ in range(5):
        folder = tmp_path / f"round-{round_}"
        folder.mkdir()
        env = _env(folder)
        runs = [
            subprocess.Popen(
                [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for run in runs:
            out, err = run.communicate(timeout=300)
            assert run.returncode == 0, f"round {round_}: {err}"
            assert "Traceback" not in err + out
        with sqlite3.connect(folder / "keeper.db") as db:
            schedules = db.execute("SELECT COUNT(*) FROM django_q_schedule").fetchone()[0]
        assert schedules == 4


def test_the_worker_status_is_its_keeper_databases_own(tmp_path):
    """A cluster serving keeper.db A, through a cache shared with keeper.db B: syncq_status on
    A says the worker runs, on B that it does not."""
    served = _prepared(tmp_path / "a")
    other = _prepared(tmp_path / "b", CACHE_URL=served["CACHE_URL"])
    cluster = _start(served, "qcluster", log="cluster.log")

    def running(env) -> bool:
        done = run_manage("syncq_status", "--json", env=env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["sync_worker"]["is_running"]

    with cleanup(cluster):
        wait_until(lambda: running(served), timeout=120, what="the cluster never reported")
        assert running(other) is False
        done = run_manage("syncq_status", env=other)
        assert "worker: not running" in done.stdout
        assert running(served) is True
        cluster.send_signal(signal.SIGTERM)
        cluster.wait(timeout=60)


def test_a_child_whose_parent_is_already_gone_never_runs():
    """The race where the parent dies before the child asks for its death signal: the child
    finds itself adopted and exits at once (status 1) instead of running on unwatched."""
    done = subprocess.run(
        [sys.executable, "-c", "print('ran')"],
        preexec_fn=partial(parent_death_signal, signal.SIGTERM, parent_pid=1),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (1, "")


def test_stopping_a_child_that_exited_kills_what_it_left_in_its_group():
    """A child that exited leaving a process of its own behind in its group (a cluster's main
    killed alone, say): stopping the children kills that process too."""
    children = children_start({"leaver": ["sh", "-c", "sleep 300 & echo $! ; exit 0"]})
    leaver = children["leaver"]
    wait_until(lambda: child_exited(leaver), timeout=60, what="the child never exited")
    left = alive_in_sessions({leaver.pid})
    assert left, "the child's background process must still run"
    children_stop(children, grace_seconds=5)
    wait_until(
        lambda: not alive_in_sessions({leaver.pid}),
        timeout=30,
        what="the process the child left behind still runs",
    )
