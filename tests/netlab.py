"""A network for tests that put the cloud server and the desktop Control Room agent on two
machines: two network namespaces, "cloud" and "desk", joined by a veth pair (:class:`Link`),
and a fault-injecting TCP proxy between them (:class:`FaultProxy`).

The kernel this runs on has neither netem nor iptables, so latency, dropped and reset
connections and stalls come from the proxy, a process of its own (``python -m tests.netlab
proxy``) that usually runs in the desk namespace, listens on its loopback and connects to the
server over the veth. Its faults change while it runs, through a control socket.

What a namespace reaches: its own loopback and the other end of the veth, nothing else. A
process started in either namespace cannot reach services listening on 127.0.0.1 in the root
namespace (PostgreSQL, Redis, a test's own server): its 127.0.0.1 is another loopback. Files
are shared by every namespace, so a server under test uses SQLite files, and the proxy's
control socket (a Unix socket, found by its path) is reachable from the test process.

Namespaces need root and ``ip`` (iproute2); :func:`netlab_unavailable` says why they cannot be
used, and :func:`netlab_require` turns that into a pytest skip, or a failure under CI.

Command line, run from the project folder (what :func:`netlab_argv` builds)::

    python -m tests.netlab proxy --listen 127.0.0.1:0 --target 10.213.0.1:8000 \\
        --control /tmp/p/control.sock [--delay-ms 100] [--drop P] [--reset P] \\
        [--reset-after-bytes N] [--stall P] [--stall-s S] [--seed N] [--connect-timeout S]
    python -m tests.netlab ctl /tmp/p/control.sock stats
    python -m tests.netlab ctl /tmp/p/control.sock set delay_ms=0 drop=0.5
    python -m tests.netlab ctl /tmp/p/control.sock hold 3
    python -m tests.netlab echo 0.0.0.0:7000
    python -m tests.netlab probe HOST:PORT [--send TEXT] [--connections N] [--timeout S] [--wait S]

This module imports neither pytest nor Django at module level: the chaos package uses it too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import itertools
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: The /16 every link takes its /30 from: 16384 links, numbered by process id and a counter.
SUBNET_PREFIX = "10.213"
_SUBNETS = 16384
#: The veth's name at each end; each end lives in its own namespace, so names never clash.
CLOUD_DEV = "nl-cloud"
DESK_DEV = "nl-desk"
ROLES = ("cloud", "desk")

_link_numbers = itertools.count()
_link_numbers_lock = threading.Lock()
_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_]{1,20}")


class NetlabError(RuntimeError):
    """An ``ip`` command, a process in a namespace or the proxy did not do what was asked; the
    message carries the command and what it printed."""


def under_ci() -> bool:
    """Whether this runs under CI: ``CI`` set to anything but empty, ``0``, ``false`` or
    ``no`` (as :func:`chaos.harness.under_ci`). Under CI a facility a test needs must be there:
    its absence fails the test instead of skipping it."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def netlab_unavailable() -> str | None:
    """Why network namespaces cannot be used here (not root, no ``ip``, ``ip netns add``
    refused), as one sentence; None when they can. Adds and deletes one namespace to find
    out."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); this runs as uid " + str(os.geteuid())
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) on PATH"
    name = f"netlab-check-{os.getpid()}-{secrets.token_hex(3)}"
    added = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if added.returncode != 0:
        return f"`ip netns add` failed: {_one_line(added.stderr or added.stdout)}"
    deleted = subprocess.run(["ip", "netns", "delete", name], capture_output=True, text=True)
    if deleted.returncode != 0:
        return f"`ip netns delete {name}` failed: {_one_line(deleted.stderr or deleted.stdout)}"
    return None


def netlab_require() -> None:
    """For pytest tests and fixtures: return when namespaces can be used; otherwise skip the
    test with :func:`netlab_unavailable`'s reason, or fail it under CI (:func:`under_ci`),
    where a missing facility is a broken machine, not a reason to skip."""
    reason = netlab_unavailable()
    if reason is None:
        return
    import pytest  # the chaos package imports this module without pytest installed

    if under_ci():
        pytest.fail(f"network namespaces are required under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def netlab_argv(*args: str) -> list[str]:
    """The argv that runs this module's command line (``proxy``, ``ctl``, ``echo``,
    ``probe``) with this interpreter; start it with ``cwd=ROOT`` so ``tests`` imports."""
    return [sys.executable, "-m", "tests.netlab", *args]


def netlab_sweep(prefix: str = "netlab") -> list[str]:
    """Delete the namespaces a :class:`Link` named ``prefix`` left behind when its process died
    without closing it (``kill -9``): those whose name carries a process id that no longer
    exists. Returns their names. Processes still inside such a namespace are not touched
    (they belong to the dead run); the namespace goes away when they end.

    Raises :class:`NetlabError` when ``ip netns list`` or a delete fails."""
    removed = []
    for name in _netns_names():
        parts = name.rsplit("-", 4)
        if len(parts) != 5 or parts[0] != prefix or parts[4] not in ROLES:
            continue
        if not parts[1].isdigit() or _pid_alive(int(parts[1])):
            continue
        _ip("netns", "delete", name)
        removed.append(name)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _netns_names() -> list[str]:
    """The names ``ip netns list`` shows (it appends `` (id: N)`` to some)."""
    out = _ip("netns", "list")
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _ip(*args: str) -> str:
    """Run ``ip *args``; its stdout, or :class:`NetlabError` naming the command."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NetlabError(
            f"ip {' '.join(args)}: exit {done.returncode}: {_one_line(done.stderr or done.stdout)}"
        )
    return done.stdout


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True)
class ProbeResult:
    """One TCP connection made by :meth:`Link.probe`.

    ``ok``: the payload came back whole and in order (from an echo server) or, with nothing to
    send, the connection was made. ``error``: None when ok, else ``"eof"`` (closed before the
    reply was complete), ``"reset"`` (ECONNRESET or EPIPE), ``"refused"``, ``"unreachable"``
    (no route, network or host unreachable), ``"timeout"``, ``"mismatch"`` (as many bytes came
    back, but others), or another exception's name. ``reply``: its first 200 characters,
    decoded as UTF-8 with replacement. ``seconds``: from the connection being made
    to the reply being complete, or from the start of the last connect attempt to the error."""

    ok: bool
    error: str | None
    reply: str
    seconds: float


class Link:
    """Two network namespaces, ``cloud`` and ``desk``, joined by a veth pair with a private
    /30 (``cloud_ip`` ends in .1 of it, ``desk_ip`` in .2), loopback up in both.

    Use as a context manager (``with Link("chaos") as link:``), or call :meth:`open` and
    :meth:`close`. Names are ``<name_prefix>-<pid>-<n>-<random>-<role>``, unique across
    processes and threads; the subnet is ``10.213.x.y/30`` picked from the process id and a
    counter (two links that got the same one would not clash: each veth lives only inside its
    two namespaces). Closing kills the processes started through :meth:`run_in` and any other
    process left in the namespaces, then deletes both namespaces (which deletes the veth).

    Processes inside cannot reach the root namespace's 127.0.0.1 (see the module docstring).
    ``name_prefix``: letters, digits and ``_``, at most 20. Raises :class:`ValueError` for
    another prefix, :class:`NetlabError` when an ``ip`` command fails."""

    def __init__(self, name_prefix: str = "netlab") -> None:
        if not _PREFIX_PATTERN.fullmatch(name_prefix):
            raise ValueError(
                f"name_prefix {name_prefix!r}: use 1 to 20 letters, digits or underscores"
            )
        with _link_numbers_lock:
            number = next(_link_numbers)
        pid = os.getpid()
        stem = f"{name_prefix}-{pid}-{number}-{secrets.token_hex(2)}"
        self.namespaces = {role: f"{stem}-{role}" for role in ROLES}
        third, fourth = divmod(((pid * 61 + number) % _SUBNETS) * 4, 256)
        self.cloud_ip = f"{SUBNET_PREFIX}.{third}.{fourth + 1}"
        self.desk_ip = f"{SUBNET_PREFIX}.{third}.{fourth + 2}"
        self.prefixlen = 30
        self.devices = {"cloud": CLOUD_DEV, "desk": DESK_DEV}
        self._processes: list[subprocess.Popen] = []
        self._created: list[str] = []
        self._cut = False

    @property
    def cloud(self) -> str:
        """The cloud namespace's name (for ``ip netns exec``)."""
        return self.namespaces["cloud"]

    @property
    def desk(self) -> str:
        """The desk namespace's name."""
        return self.namespaces["desk"]

    @property
    def is_cut(self) -> bool:
        """Whether :meth:`cut` was called without a :meth:`restore` since."""
        return self._cut

    def __enter__(self) -> Link:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> Link:
        """Create both namespaces and the veth, address and bring everything up; returns self.
        On failure, whatever was created is deleted and :class:`NetlabError` is raised."""
        try:
            for role in ROLES:
                _ip("netns", "add", self.namespaces[role])
                self._created.append(self.namespaces[role])
                _ip("-n", self.namespaces[role], "link", "set", "lo", "up")
            _ip(
                "-n",
                self.cloud,
                "link",
                "add",
                CLOUD_DEV,
                "type",
                "veth",
                "peer",
                "name",
                DESK_DEV,
                "netns",
                self.desk,
            )
            for role, address in (("cloud", self.cloud_ip), ("desk", self.desk_ip)):
                ns, dev = self.namespaces[role], self.devices[role]
                _ip("-n", ns, "addr", "add", f"{address}/{self.prefixlen}", "dev", dev)
                _ip("-n", ns, "link", "set", dev, "up")
            self._wait_usable(timeout=5.0)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Kill what runs in the namespaces and delete them. Safe to call twice. Every step is
        tried; a step that failed is raised afterwards as :class:`NetlabError`."""
        failures = []
        for process in self._processes:
            _process_end(process)
        self._processes.clear()
        for name in self._created:
            try:
                pids = _ip("netns", "pids", name).split()
            except NetlabError as exc:
                failures.append(str(exc))
                pids = []
            for pid in pids:
                # Left in a namespace of ours: a child of a process started through run_in.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        for name in list(self._created):
            try:
                _ip("netns", "delete", name)
            except NetlabError as exc:
                failures.append(str(exc))
            else:
                self._created.remove(name)
        if failures:
            raise NetlabError("closing the link: " + "; ".join(failures))

    def namespace(self, ns: str) -> str:
        """The namespace name for ``ns``: a role (``"cloud"``, ``"desk"``) or a name of this
        link's. Raises :class:`ValueError` for anything else."""
        if ns in self.namespaces:
            return self.namespaces[ns]
        if ns in self.namespaces.values():
            return ns
        raise ValueError(f"{ns!r} is neither 'cloud' nor 'desk' nor one of {self.namespaces}")

    def run_in(self, ns: str, argv: list[str], **popen_kwargs: Any) -> subprocess.Popen:
        """Start ``argv`` inside namespace ``ns`` (``"cloud"`` or ``"desk"``) through ``ip netns
        exec``, with :class:`subprocess.Popen`'s keyword arguments. ``ip`` execs the program,
        so the returned process is the program itself. It is killed when the link closes,
        if still running."""
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace(ns), *argv], **popen_kwargs
        )
        self._processes.append(process)
        return process

    def cut(self) -> None:
        """Pull the cable: take both ends of the veth down. New connections across it fail at
        once (the route is gone: ENETUNREACH); data on open connections is lost, and TCP
        retransmits it after :meth:`restore`."""
        for role in ROLES:
            _ip("-n", self.namespaces[role], "link", "set", self.devices[role], "down")
        self._cut = True

    def restore(self, timeout: float = 5.0) -> None:
        """Bring both ends up again and wait, up to ``timeout`` seconds, until both report a
        carrier and each side has its route to the other. Raises :class:`NetlabError` when the
        link is not usable in time."""
        for role in ROLES:
            _ip("-n", self.namespaces[role], "link", "set", self.devices[role], "up")
        self._wait_usable(timeout=timeout)
        self._cut = False

    def _wait_usable(self, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            problem = self._unusable()
            if problem is None:
                return
            if time.monotonic() > deadline:
                raise NetlabError(f"link not usable after {timeout} s: {problem}")
            time.sleep(0.02)

    def _unusable(self) -> str | None:
        """Why the link cannot carry traffic yet, or None."""
        peers = {"cloud": self.desk_ip, "desk": self.cloud_ip}
        for role in ROLES:
            ns, dev = self.namespaces[role], self.devices[role]
            shown = _ip("-n", ns, "-o", "link", "show", "dev", dev)
            if "LOWER_UP" not in shown:
                return f"{dev} in {ns} has no carrier: {_one_line(shown)}"
            route = subprocess.run(
                ["ip", "-n", ns, "-o", "route", "get", peers[role]],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if route.returncode != 0 or f"dev {dev}" not in route.stdout:
                return f"no route in {ns} to {peers[role]}: {_one_line(route.stderr)}"
        return None

    def probe(
        self,
        ns: str,
        host: str,
        port: int,
        *,
        send: str = "netlab probe",
        size: int | None = None,
        connections: int = 1,
        timeout: float = 2.0,
        wait: float = 0.0,
    ) -> list[ProbeResult]:
        """Open ``connections`` TCP connections at once from inside ``ns`` to ``host:port``,
        send ``send`` on each and read until as many bytes came back (an echo server's reply);
        with ``send=""``, only connect. ``size``: send that many bytes of numbered lines
        instead, so that a reply out of order fails. ``timeout``: seconds for each connect and
        each read.
        ``wait``: seconds to keep retrying a failing connect (a server still starting).
        Returns one :class:`ProbeResult` per connection, in order. Raises
        :class:`NetlabError` when the probe process itself fails."""
        argv = netlab_argv(
            "probe",
            f"{host}:{port}",
            "--send",
            send,
            "--connections",
            str(connections),
            "--timeout",
            str(timeout),
            "--wait",
            str(wait),
            *(["--size", str(size)] if size is not None else []),
        )
        process = self.run_in(
            ns, argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            out, err = process.communicate(timeout=wait + 2 * timeout + 30)
        except subprocess.TimeoutExpired as exc:
            _process_end(process)
            raise NetlabError(f"probe of {host}:{port} from {ns} did not finish") from exc
        if process.returncode != 0:
            raise NetlabError(
                f"probe of {host}:{port} from {ns}: exit {process.returncode}: {_one_line(err)}"
            )
        return [ProbeResult(**result) for result in json.loads(out)["results"]]

    def wait_connectable(self, ns: str, host: str, port: int, timeout: float = 10.0) -> None:
        """Return once a TCP connection from inside ``ns`` to ``host:port`` succeeds (a server
        started in a namespace is listening); :class:`NetlabError` after ``timeout`` s."""
        (result,) = self.probe(ns, host, port, send="", timeout=1.0, wait=timeout)
        if not result.ok:
            raise NetlabError(
                f"{host}:{port} not connectable from {ns} after {timeout} s: {result.error}"
            )


def _process_end(process: subprocess.Popen, grace: float = 3.0) -> None:
    """Stop ``process`` (one of ours): SIGTERM, then SIGKILL after ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class Faults:
    """What :class:`FaultProxy` does to traffic. Decisions are drawn per connection when it is
    accepted, from the faults in force then; ``delay_ms`` is read for each chunk.

    - ``delay_ms``: one-way delay added to every chunk of data, in each direction, in ms;
      order is kept, connections are not serialised (a round trip takes 2 × ``delay_ms``).
      Connection set-up is not delayed.
    - ``drop``: probability in [0, 1] that a connection is dropped: the proxy reads the
      client's first data, never connects to the server, and closes (FIN): the client gets no
      answer (``"eof"``).
    - ``reset``: probability that a connection is reset mid-request: the server gets at most
      ``reset_after_bytes`` bytes of the client's first data, then both sides get an RST
      (SO_LINGER 0); nothing the server sends reaches the client.
    - ``stall``: probability that a connection is stalled: from its first data, nothing moves
      either way for ``stall_s`` seconds; then it goes on.

    Raises :class:`ValueError` for a value out of range."""

    delay_ms: float = 0.0
    drop: float = 0.0
    reset: float = 0.0
    reset_after_bytes: int = 8
    stall: float = 0.0
    stall_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("delay_ms", "stall_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value!r}: must be a finite number >= 0")
        for name in ("drop", "reset", "stall"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value <= 1):
                raise ValueError(f"{name}={value!r}: must be a probability in [0, 1]")
        value = self.reset_after_bytes
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise ValueError(f"reset_after_bytes={value!r}: must be an integer >= 0")

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: Faults | None = None) -> Faults:
        """``base`` (default: no faults) with the keys of ``values`` changed; numbers may be
        given as strings (``"0.5"``). Raises :class:`ValueError` for an unknown key or a bad
        value."""
        base = base or cls()
        known = {f.name: f.type for f in fields(cls)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown fault {key!r}; known: {', '.join(known)}")
            try:
                changes[key] = int(value) if key == "reset_after_bytes" else float(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{key}={value!r}: not a number") from exc
        return replace(base, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The faults as ``{field: value}`` (JSON-ready)."""
        return asdict(self)

    def to_argv(self) -> list[str]:
        """The ``proxy`` command line's options for these faults."""
        return [
            arg
            for name, value in self.as_dict().items()
            for arg in (f"--{name.replace('_', '-')}", str(value))
        ]


@dataclass(frozen=True)
class ProxyStats:
    """What :class:`FaultProxy` has done since it started (counts, bytes).

    ``connections`` accepted; ``active`` open now; ``dropped``, ``reset`` and ``stalled``
    connections (a connection counts as stalled once, when its data is first held beyond its
    delay by a stall or a :meth:`FaultProxy.hold`); ``upstream_failed``: connections closed
    because the server could not be reached; ``bytes_up`` (client to server) and
    ``bytes_down`` forwarded. Every count is made before the client can notice its effect, so
    a stats call after the client saw an error includes it."""

    connections: int = 0
    active: int = 0
    dropped: int = 0
    reset: int = 0
    stalled: int = 0
    upstream_failed: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


class FaultProxy:
    """The fault-injecting TCP proxy, in a process of its own, controlled from this one.

    ``target``: ``(host, port)`` it connects to for each accepted connection. ``listen``:
    where it listens (port 0: any free port; :attr:`address` says which). ``faults``: the
    initial :class:`Faults`. ``link`` and ``ns``: run it inside that link's namespace
    (typically desk, listening on its 127.0.0.1, with the server at ``link.cloud_ip``);
    without a link it runs in this namespace. ``seed``: makes the per-connection choices
    repeatable. ``connect_timeout``: seconds to reach the target before giving up.

    Use as a context manager or :meth:`start` / :meth:`stop`. Control goes through a Unix
    socket in a temporary folder (:attr:`control_path`), which every namespace can reach; the
    proxy writes its log (upstream failures) to :attr:`log_path`."""

    def __init__(
        self,
        target: tuple[str, int],
        *,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        faults: Faults | None = None,
        link: Link | None = None,
        ns: str = "desk",
        seed: int | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self.target = target
        self.listen = listen
        self.initial_faults = faults or Faults()
        self.link = link
        self.ns = ns
        self.seed = seed
        self.connect_timeout = connect_timeout
        self.process: subprocess.Popen | None = None
        self._folder: Path | None = None
        self._address: tuple[str, int] | None = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def control_path(self) -> Path:
        """The control socket's path (what ``python -m tests.netlab ctl`` takes)."""
        if self._folder is None:
            raise NetlabError("the proxy is not started")
        return self._folder / "control.sock"

    @property
    def log_path(self) -> Path:
        """The file the proxy process writes its stderr to."""
        if self._folder is None:
            raise NetlabError("the proxy is not started")
        return self._folder / "proxy.log"

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the proxy listens on, inside its namespace."""
        if self._address is None:
            raise NetlabError("the proxy is not started")
        return self._address

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        return self.address[1]

    def start(self, timeout: float = 10.0) -> FaultProxy:
        """Start the proxy process and wait, up to ``timeout`` seconds, until it answers on its
        control socket; returns self. Raises :class:`NetlabError` (with the proxy's log) when
        it exits or does not answer in time."""
        self._folder = Path(tempfile.mkdtemp(prefix="netlab-proxy-"))
        argv = netlab_argv(
            "proxy",
            "--listen",
            f"{self.listen[0]}:{self.listen[1]}",
            "--target",
            f"{self.target[0]}:{self.target[1]}",
            "--control",
            str(self.control_path),
            "--connect-timeout",
            str(self.connect_timeout),
            *self.initial_faults.to_argv(),
            *(["--seed", str(self.seed)] if self.seed is not None else []),
        )
        with self.log_path.open("wb") as log:
            popen_kwargs: dict[str, Any] = {
                "cwd": ROOT,
                "stdin": subprocess.DEVNULL,
                "stdout": subprocess.DEVNULL,
                "stderr": log,
            }
            if self.link is not None:
                self.process = self.link.run_in(self.ns, argv, **popen_kwargs)
            else:
                self.process = subprocess.Popen(argv, **popen_kwargs)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                log_text = self.log_path.read_text(errors="replace")
                self.stop()
                raise NetlabError(f"the proxy exited with {self.process.returncode}: {log_text}")
            try:
                answer = proxy_control(self.control_path, {"op": "stats"}, timeout=1.0)
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise NetlabError(f"the proxy did not answer within {timeout} s") from None
                time.sleep(0.02)
                continue
            self._address = (answer["listen"][0], int(answer["listen"][1]))
            return self

    def stop(self) -> None:
        """Stop the proxy process and delete its folder. Safe to call twice."""
        if self.process is not None:
            _process_end(self.process)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        self._address = None

    def set(self, **changes: Any) -> Faults:
        """Change some faults now (``proxy.set(delay_ms=0, drop=0.5)``); returns the faults in
        force. Connections already accepted keep their drop, reset and stall choices; the new
        delay applies to the next chunk of every connection. Raises :class:`ValueError` for an
        unknown or bad value (nothing is changed then)."""
        return Faults(**self._ask({"op": "set", "faults": changes})["faults"])

    def hold(self, seconds: float) -> None:
        """Hold all data, on every connection and both ways, for ``seconds`` from now (a
        network that freezes, then recovers); ``hold(0)`` releases it at once."""
        self._ask({"op": "hold", "seconds": seconds})

    def faults(self) -> Faults:
        """The faults in force."""
        return Faults(**self._ask({"op": "stats"})["faults"])

    def stats(self) -> ProxyStats:
        """The counters since the proxy started."""
        return ProxyStats(**self._ask({"op": "stats"})["stats"])

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = proxy_control(self.control_path, request)
        if not answer.get("ok"):
            raise ValueError(answer.get("error", f"the proxy refused {request}"))
        return answer


def proxy_control(path: str | Path, request: dict[str, Any], timeout: float = 5.0) -> dict:
    """Send one request to a proxy's control socket and return its answer.

    Requests: ``{"op": "stats"}``; ``{"op": "set", "faults": {name: value}}``;
    ``{"op": "hold", "seconds": s}``. Answers: ``{"ok": true, "stats": {...}, "faults":
    {...}, "listen": [host, port], "held_s": s}``, or ``{"ok": false, "error": "..."}``.
    Raises :class:`OSError` (``FileNotFoundError``, ``ConnectionRefusedError``) when nothing
    listens there, :class:`NetlabError` on a malformed answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    try:
        return json.loads(data)
    except ValueError as exc:
        raise NetlabError(f"the proxy at {path} answered {data!r}") from exc


# The proxy process.

_CHUNK = 65536
#: How much of a probe's reply :class:`ProbeResult` keeps, in characters.
_PROBE_REPLY_CHARS = 200
#: How long a dropped connection waits for the client's data, then for its close, in seconds.
_DROP_WAIT_S = 10.0
_EOF = object()
_RESET = object()
_ABORT = object()


class _Connection:
    """One client connection through the proxy and the choices drawn for it."""

    def __init__(self, *, will_reset: bool, will_stall: bool, reset_after: int, stall_s: float):
        self.will_reset = will_reset
        self.will_stall = will_stall
        self.reset_after = reset_after
        self.stall_s = stall_s
        self.stall_until = 0.0
        self.stall_counted = False
        self.closed = False
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task] = []


class _Proxy:
    def __init__(
        self,
        *,
        faults: Faults,
        target: tuple[str, int],
        connect_timeout: float,
        rng: random.Random,
    ) -> None:
        self.faults = faults
        self.target = target
        self.connect_timeout = connect_timeout
        self.rng = rng
        self.stats = asdict(ProxyStats())
        self.hold_until = 0.0
        self.listen: tuple[str, int] = ("", 0)
        self._changed = asyncio.Event()

    def _notify(self) -> None:
        """Wake every writer waiting on a hold, so it looks again."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats["connections"] += 1
        self.stats["active"] += 1
        try:
            await self._serve(reader, writer)
        finally:
            self.stats["active"] -= 1
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        faults = self.faults
        drop, reset, stall = (self.rng.random() for _ in range(3))
        if drop < faults.drop:
            self.stats["dropped"] += 1
            await self._drop(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target), self.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            self.stats["upstream_failed"] += 1
            _log(f"upstream {self.target[0]}:{self.target[1]}: {exc!r}")
            return
        connection = _Connection(
            will_reset=reset < faults.reset,
            will_stall=stall < faults.stall,
            reset_after=faults.reset_after_bytes,
            stall_s=faults.stall_s,
        )
        connection.writers = [writer, up_writer]
        up: asyncio.Queue = asyncio.Queue(maxsize=256)
        down: asyncio.Queue = asyncio.Queue(maxsize=256)
        connection.tasks = [
            asyncio.create_task(self._read(connection, reader, up, "up")),
            asyncio.create_task(self._write(connection, up, up_writer, "up")),
            asyncio.create_task(self._read(connection, up_reader, down, "down")),
            asyncio.create_task(self._write(connection, down, writer, "down")),
        ]
        await asyncio.gather(*connection.tasks, return_exceptions=True)
        up_writer.close()

    async def _drop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read the client's first data, answer with a FIN, then wait for the client to close:
        a close with unread data would send an RST instead of the silence a drop is."""
        # A client that sends nothing, or resets, within the wait has been dropped all the same.
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(reader.read(_CHUNK), _DROP_WAIT_S)
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(_DROP_WAIT_S):
                while await reader.read(_CHUNK):
                    pass

    async def _read(
        self,
        connection: _Connection,
        reader: asyncio.StreamReader,
        queue: asyncio.Queue,
        direction: str,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                chunk = await reader.read(_CHUNK)
            except ConnectionError:
                await queue.put((loop.time() + self.faults.delay_ms / 1000, _ABORT))
                return
            now = loop.time()
            if chunk and connection.will_stall and not connection.stall_until:
                connection.stall_until = now + connection.stall_s
            deadline = now + self.faults.delay_ms / 1000
            if not chunk:
                await queue.put((deadline, _EOF))
                return
            if connection.will_reset:
                if direction == "down":
                    self._reset(connection)
                    return
                head = chunk[: connection.reset_after]
                if head:
                    await queue.put((deadline, head))
                await queue.put((deadline, _RESET))
                return
            await queue.put((deadline, chunk))

    async def _write(
        self,
        connection: _Connection,
        queue: asyncio.Queue,
        writer: asyncio.StreamWriter,
        direction: str,
    ) -> None:
        while True:
            deadline, item = await queue.get()
            await self._wait(connection, deadline)
            if item is _RESET:
                self._reset(connection)
                return
            if item is _ABORT:
                self._abort(connection)
                return
            try:
                if item is _EOF:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                self.stats[f"bytes_{direction}"] += len(item)
                writer.write(item)
                await writer.drain()
            except OSError:
                self._abort(connection)
                return

    async def _wait(self, connection: _Connection, deadline: float) -> None:
        """Sleep until ``deadline`` (loop time), or longer while the connection is stalled or
        all data is held; a change of hold wakes it to look again."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            until = max(deadline, connection.stall_until, self.hold_until)
            if now >= until:
                return
            if until > deadline and not connection.stall_counted:
                connection.stall_counted = True
                self.stats["stalled"] += 1
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), until - now)

    def _reset(self, connection: _Connection) -> None:
        if not connection.closed:
            self.stats["reset"] += 1
        self._abort(connection)

    def _abort(self, connection: _Connection) -> None:
        """Close both sides with an RST (SO_LINGER 0) and stop the connection's other tasks."""
        if connection.closed:
            return
        connection.closed = True
        for writer in connection.writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        current = asyncio.current_task()
        for task in connection.tasks:
            if task is not current:
                task.cancel()

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline())
            answer = self._command(request)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            answer = {"ok": False, "error": str(exc)}
        writer.write(json.dumps(answer).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def _command(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        loop = asyncio.get_running_loop()
        if op == "set":
            self.faults = Faults.from_dict(request["faults"], self.faults)
            self._notify()
        elif op == "hold":
            seconds = float(request["seconds"])
            if not (math.isfinite(seconds) and seconds >= 0):
                raise ValueError(f"seconds={seconds!r}: must be a finite number >= 0")
            self.hold_until = loop.time() + seconds
            self._notify()
        elif op != "stats":
            raise ValueError(f"unknown op {op!r}; known: stats, set, hold")
        return {
            "ok": True,
            "stats": dict(self.stats),
            "faults": self.faults.as_dict(),
            "listen": list(self.listen),
            "held_s": max(0.0, self.hold_until - loop.time()),
        }


def _log(message: str) -> None:
    print(f"netlab proxy: {message}", file=sys.stderr, flush=True)


async def _proxy_main(args: argparse.Namespace) -> None:
    faults = Faults(
        delay_ms=args.delay_ms,
        drop=args.drop,
        reset=args.reset,
        reset_after_bytes=args.reset_after_bytes,
        stall=args.stall,
        stall_s=args.stall_s,
    )
    proxy = _Proxy(
        faults=faults,
        target=args.target,
        connect_timeout=args.connect_timeout,
        rng=random.Random(args.seed),
    )
    server = await asyncio.start_server(proxy.serve, *args.listen)
    proxy.listen = server.sockets[0].getsockname()[:2]
    control = await asyncio.start_unix_server(proxy.control, path=args.control)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()
    control.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.control)


# The echo server and the probe, for checking a link from inside a namespace.


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        # A client that resets is part of what the tests do to it.
        with contextlib.suppress(ConnectionError):
            while data := self.request.recv(_CHUNK):
                self.request.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def _echo_main(args: argparse.Namespace) -> None:
    with _EchoServer(args.listen, _EchoHandler) as server:
        host, port = server.server_address[:2]
        print(f"listening {host} {port}", flush=True)
        server.serve_forever()


def _probe_error(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "unreachable"
    return type(exc).__name__


def _probe_payload(send: str, size: int | None) -> bytes:
    """``send`` as UTF-8, or with ``size``, that many bytes of numbered lines
    (``00000000\\n00000001\\n``…), so bytes out of order or missing change the reply."""
    if size is None:
        return send.encode()
    return b"".join(b"%08d\n" % i for i in range(size // 9 + 1))[:size]


def _probe_one(address: tuple[str, int], payload: bytes, timeout: float, wait: float) -> dict:
    give_up = time.monotonic() + wait
    while True:
        start = time.monotonic()
        try:
            sock = socket.create_connection(address, timeout=timeout)
            break
        except OSError as exc:
            if time.monotonic() < give_up:
                time.sleep(0.05)
                continue
            return {
                "ok": False,
                "error": _probe_error(exc),
                "reply": "",
                "seconds": time.monotonic() - start,
            }
    reply = bytearray()
    errors: list[str] = []

    def send() -> None:
        try:
            sock.sendall(payload)
        except OSError as exc:
            errors.append(_probe_error(exc))

    with sock:
        start = time.monotonic()
        # Sending from a thread of its own: an echo of a large payload fills the buffers
        # both ways while the payload is still going out.
        sender = threading.Thread(target=send)
        sender.start()
        try:
            while len(reply) < len(payload):
                chunk = sock.recv(_CHUNK)
                if not chunk:
                    errors.append("eof")
                    break
                reply += chunk
        except OSError as exc:
            errors.append(_probe_error(exc))
        if errors:
            # Stops the sender; a socket already reset may refuse the shutdown itself.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        sender.join()
    if not errors and reply != payload:
        errors.append("mismatch")
    return {
        "ok": not errors,
        "error": errors[0] if errors else None,
        "reply": bytes(reply[:_PROBE_REPLY_CHARS]).decode(errors="replace"),
        "seconds": time.monotonic() - start,
    }


def _probe_main(args: argparse.Namespace) -> None:
    results: list[dict | None] = [None] * args.connections
    payload = _probe_payload(args.send, args.size)

    def one(index: int) -> None:
        results[index] = _probe_one(args.address, payload, args.timeout, args.wait)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"results": results}))


def _ctl_main(args: argparse.Namespace) -> int:
    if args.op == "stats":
        request: dict[str, Any] = {"op": "stats"}
    elif args.op == "hold":
        if len(args.values) != 1:
            raise SystemExit("usage: ctl PATH hold SECONDS")
        request = {"op": "hold", "seconds": args.values[0]}
    else:
        pairs = [value.partition("=") for value in args.values]
        if not pairs or any(not sep for _, sep, _ in pairs):
            raise SystemExit("usage: ctl PATH set NAME=VALUE...")
        request = {"op": "set", "faults": {name: value for name, _, value in pairs}}
    answer = proxy_control(args.path, request)
    print(json.dumps(answer, indent=2))
    return 0 if answer.get("ok") else 1


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tests.netlab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    proxy = commands.add_parser("proxy", help="run the fault-injecting TCP proxy")
    proxy.add_argument("--listen", type=_address, default=("127.0.0.1", 0))
    proxy.add_argument("--target", type=_address, required=True)
    proxy.add_argument("--control", required=True, help="path of the control Unix socket")
    defaults = Faults()
    proxy.add_argument("--delay-ms", type=float, default=defaults.delay_ms)
    proxy.add_argument("--drop", type=float, default=defaults.drop)
    proxy.add_argument("--reset", type=float, default=defaults.reset)
    proxy.add_argument("--reset-after-bytes", type=int, default=defaults.reset_after_bytes)
    proxy.add_argument("--stall", type=float, default=defaults.stall)
    proxy.add_argument("--stall-s", type=float, default=defaults.stall_s)
    proxy.add_argument("--seed", type=int, default=None)
    proxy.add_argument("--connect-timeout", type=float, default=5.0)

    ctl = commands.add_parser("ctl", help="ask a running proxy: stats, set NAME=VALUE…, hold S")
    ctl.add_argument("path")
    ctl.add_argument("op", choices=("stats", "set", "hold"))
    ctl.add_argument("values", nargs="*")

    echo = commands.add_parser("echo", help="a TCP echo server")
    echo.add_argument("listen", type=_address)

    probe = commands.add_parser("probe", help="connect, send, read the echo; print JSON")
    probe.add_argument("address", type=_address)
    probe.add_argument("--send", default="netlab probe")
    probe.add_argument("--size", type=int, default=None, help="send N numbered bytes instead")
    probe.add_argument("--connections", type=int, default=1)
    probe.add_argument("--timeout", type=float, default=2.0)
    probe.add_argument("--wait", type=float, default=0.0)

    args = parser.parse_args(argv)
    if args.command == "proxy":
        try:
            asyncio.run(_proxy_main(args))
        except ValueError as exc:
            parser.error(str(exc))
    elif args.command == "ctl":
        return _ctl_main(args)
    elif args.command == "echo":
        _echo_main(args)
    else:
        _probe_main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
