"""Processes: the children of the service commands (``runservice``, ``runbot --with-worker``),
the process tree of a django-q2 cluster, and telling whether a process is still the one it was
(for the lease holders of :mod:`syncq.services`).

Each child runs in its own session, so a Ctrl-C or a SIGTERM sent to the service's process
group reaches only the service, which then stops each child through its main process:
django-q2's cluster does not stop when SIGTERM reaches all of its processes at once (as
systemd's default KillMode does), but stops cleanly when only its main process gets it.

Nothing outlives its parent. On Linux each child asks the kernel for SIGTERM when the service
dies, even by ``kill -9`` (``PR_SET_PDEATHSIG``, prctl(2)), and stops as it would on Ctrl-C;
inside a cluster, each process django-q2 forks (the sentinel, its workers, monitor and pusher)
asks for SIGKILL when the process that forked it dies, since nothing is left to stop it
cleanly. Elsewhere these are no-ops, and a service that is killed leaves its children running.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.util
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

from django.conf import settings
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.status import Stat

#: prctl(2)'s option that names the signal a process gets when its parent thread dies.
PR_SET_PDEATHSIG = 1


@cache
def _prctl():
    """libc's ``prctl`` on Linux, else None. Looked up before any fork: a child between fork
    and exec may not take the locks ``dlsym`` can need."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def parent_death_signal(signum: int, *, parent_pid: int) -> None:
    """Ask the kernel to send ``signum`` to this process when its parent dies (Linux; a no-op
    elsewhere). Call it in the child, right after the fork.

    The kernel sends the signal when the *thread* that forked this process ends, so the fork
    must come from a thread that lives as long as the parent (its main thread). The parent may
    also have died before the request was made, and then nothing would ever be sent: if this
    process's parent is no longer ``parent_pid`` (the child was adopted), it exits at once,
    with status 1."""
    prctl = _prctl()
    if prctl is None:
        return
    prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def children_start(
    commands: dict[str, list[str]], *, env: dict[str, str] | None = None
) -> dict[str, subprocess.Popen]:
    """Start each ``{name: argv}`` in the project folder, in its own session, with ``env``
    (default: this process's environment); returns ``{name: Popen}``. Each child gets SIGTERM
    when this process dies (:func:`parent_death_signal`): call this from the main thread."""
    _prctl()
    return {
        name: subprocess.Popen(
            argv,
            env=dict(os.environ) if env is None else env,
            cwd=settings.BASE_DIR,
            start_new_session=True,
            preexec_fn=partial(parent_death_signal, signal.SIGTERM, parent_pid=os.getpid()),
        )
        for name, argv in commands.items()
    }


def child_exited(child: subprocess.Popen) -> bool:
    """Whether ``child`` has exited, without reaping it: until it is reaped its pid, and so its
    process group's id, cannot be given to another process, so what it left in that group can
    still be killed safely (:func:`children_stop`)."""
    if child.returncode is not None:
        return True
    if not hasattr(os, "waitid"):
        return child.poll() is not None
    try:
        found = os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return child.poll() is not None
    return found is not None


def children_stop(children: dict[str, subprocess.Popen], *, grace_seconds: float) -> None:
    """SIGTERM each running child's main process, wait up to ``grace_seconds`` in all, then
    kill the process group of any still running. A child that stopped (or died) leaving
    processes of its own behind in its group, such as the workers of a cluster killed alone,
    has them killed too."""
    for child in children.values():
        if not child_exited(child):
            # os.kill, not send_signal, which would reap an exited child (see below).
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for child in children.values():
        while not child_exited(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        if child.returncode is None:
            # Exited but not reaped, or still running: its group's id is still its own.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
        child.wait()


# --- the cluster's own processes ---------------------------------------------------------------


def _forked_child_bind(_registry_key: object) -> None:
    """Run by :mod:`multiprocessing` in each process it forks: die with the parent."""
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None:
        parent_death_signal(signal.SIGKILL, parent_pid=parent.pid)


class _ForkHook:
    """What :func:`multiprocessing.util.register_after_fork` keys its (weak) registry by."""


_FORK_HOOK = _ForkHook()


def cluster_tree_bind() -> None:
    """Make every process :mod:`multiprocessing` forks from now on (in a django-q2 cluster: the
    sentinel from the main process, then its workers, monitor and pusher) die by SIGKILL
    when the process that forked it dies, so a cluster killed with ``kill -9`` leaves no worker
    behind to hold leases. The hook is inherited across forks; installing it twice is harmless.
    django-q2 forks from each process's main thread (see :func:`parent_death_signal`)."""
    if _prctl() is not None:
        multiprocessing.util.register_after_fork(_FORK_HOOK, _forked_child_bind)


#: ``{pid: (broker, cluster id)}``: the cluster a worker process belongs to, once found.
_worker_cluster: dict[int, tuple[object, object]] = {}


def _cluster_of_this_worker() -> tuple[object, object] | None:
    """``(broker, cluster id)`` of the django-q2 cluster whose sentinel forked this process,
    found once in the clusters' status; None outside a cluster (or before it lists us)."""
    pid = os.getpid()
    if pid in _worker_cluster:
        return _worker_cluster[pid]
    if multiprocessing.parent_process() is None:
        return None  # not forked by a sentinel: sync_now, the tests, a web worker
    # One broker per worker: making the ORM broker closes the thread's idle connections.
    broker = get_broker()
    host = socket.gethostname()
    for stat in Stat.get_all(broker=broker):
        if pid in (stat.workers or []) and stat.host == host:
            _worker_cluster[pid] = (broker, stat.cluster_id)
            return _worker_cluster[pid]
    return None


def cluster_stopping() -> bool:
    """Whether this process is a worker of a django-q2 cluster that is stopping (Ctrl-C, or
    SIGTERM to its main process): its sentinel then reports ``Stopping`` in the cluster's
    status (``Stat``, saved every half second where the cluster keeps it) and waits for the
    worker's task to end. False outside a cluster, and when the status cannot be read or has
    lapsed (the cluster's processes die together, see :func:`cluster_tree_bind`)."""
    try:
        found = _cluster_of_this_worker()
        if found is None:
            return False
        broker, cluster_id = found
        stat = Stat.get(pid=os.getpid(), cluster_id=cluster_id, broker=broker)
    except Exception:  # the cache backend's own errors vary by backend; the batch goes on
        return False
    # A lapsed status comes back as a bare Status saying "Stopped": not a stop request.
    return isinstance(stat, Stat) and str(stat.status) in (str(Conf.STOPPING), str(Conf.STOPPED))


# --- who a process is --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as another process can recognise it later: ``host`` (the host name, shown to
    operators), ``host_key`` (the host name, the kernel's boot id and this process's pid
    namespace, where known: equal only for processes of one running system that see the same
    pids), ``pid`` and ``started`` (its start time in clock ticks after boot, None where
    unknown), which tells it from a later process given the same pid."""

    host: str
    host_key: str
    pid: int
    started: int | None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


@cache
def _host_key() -> str:
    parts = [socket.gethostname()]
    boot = _read("/proc/sys/kernel/random/boot_id")
    if boot:
        parts.append(f"boot={boot}")
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return " ".join(parts)[:200]


def _process_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time)`` of process ``pid`` from ``/proc/<pid>/stat`` (proc(5): fields 3
    and 22, counted after the command name, which may hold spaces and parentheses), or None
    when there is no such process or no ``/proc``."""
    text = _read(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def process_identity() -> ProcessIdentity:
    """This process, as :func:`process_alive` checks it later."""
    pid = os.getpid()
    found = _process_stat(pid)
    return ProcessIdentity(
        host=socket.gethostname()[:255],
        host_key=_host_key(),
        pid=pid,
        started=found[1] if found else None,
    )


def process_alive(*, host_key: str, pid: int, started: int | None) -> bool | None:
    """Whether the process described so (see :class:`ProcessIdentity`) still runs: ``None``
    when it is on another host (or pid namespace), which only its heartbeat can tell. On this
    one, a pid that is gone, a zombie, or now another process (another start time) is dead.
    Without ``/proc`` only the pid's existence is checked."""
    if host_key != _host_key():
        return None
    found = _process_stat(pid)
    if found is not None:
        state, now_started = found
        return state not in ("Z", "X", "x") and (started is None or started == now_started)
    if os.path.isdir("/proc/self"):
        return False  # /proc works and has no such process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
