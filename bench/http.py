"""The HTTP benchmark: the Control Room API under 16 clients, and the memory of the service.

For each size (100 k and 1 M queue rows; ``--smoke``: 3 k), a fresh folder: a copy of the
keeper.db :func:`bench.growth.keeper_filled` filled for that size (once per ``make bench``), a
copy of the Control Room's schema fixture, a user holding only ``syncq.view_syncqueueitem``
(what the Control Room reads with) and its API token. ``manage.py runservice`` then starts as
``make run`` starts it (the django-q2 cluster and gunicorn, one process of 8 threads, sharing
one file cache) on a free port, in its own session, and Debian's ``wrk`` drives it: 16 connections,
2 threads, ``--latency``, ``Authorization: Token …``, one run of :data:`SECONDS` per endpoint
whatever ``--runs`` says (its percentiles are over its own requests); :data:`WRK_SCRIPT` prints
wrk's exact percentiles as JSON. After each run, the requests it left queued in the web server
are waited for, so that the next endpoint starts on an idle server. Figures per endpoint and
size: req/s, p50 and p99 (ms; n/a when no request was answered within the run); every non-2xx
answer, socket error or timeout is counted (target 0).

Memory: the PSS (``/proc/<pid>/smaps_rollup``) summed over every process ``runservice``
started (its whole tree; target ``<= 300`` MiB), and the same with ``runservice`` itself
(no target), idle (median of 5 samples, after the endpoints were measured) and while the
worker drains :data:`BACKLOG` discoveries queued through ``manage.py submit_discovery --file``
(the largest sum seen, sampled every 0.25 s; the sum of each process's own peak is kept in
the results too). The service is stopped with SIGTERM, as Ctrl-C would, and whatever of its
tree is still alive after that is killed by pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.growth import keeper_copy, keeper_filled, queue_states, size_label
from bench.harness import ROOT, entries, manage, manage_env, median, places, vh_copy

#: Queue rows of the two servers; ``--smoke`` uses one.
SIZES = (100_000, 1_000_000)
SMOKE_SIZES = (3_000,)
#: wrk: connections, threads, seconds per run (``--smoke``: 1 s).
CONNECTIONS = 16
THREADS = 2
SECONDS = 5
SMOKE_SECONDS = 1
#: Discoveries queued while the service runs, to see its memory while it drains them.
BACKLOG = 2_000
SMOKE_BACKLOG = 100

#: (figure key, path, sizes measured at: "small", "large"), in the order they run.
ENDPOINTS = (
    ("status", "/sync/status", ("small", "large")),
    ("statistics", "/sync/statistics", ("small", "large")),
    ("failed", "/sync/failed?limit=20", ("small",)),
    ("health", "/health", ("small",)),
)
#: Targets of issue 14, by (endpoint, size, measure).
TARGETS = {
    ("status", "small", "rps"): ">= 1000",
    ("status", "small", "p99"): "<= 25",
    ("status", "large", "rps"): ">= 1000",
    ("status", "large", "p99"): "<= 25",
    ("statistics", "large", "p99"): "<= 100",
}
PSS_TARGET = "<= 300"

#: wrk's ``done`` hook: its summary, errors and exact latency percentiles (µs) as one JSON line.
WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, '
    .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, '
    .. '"p99_us": %d, "max_us": %d, "mean_us": %.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""

_API_USER_CODE = (
    "from django.contrib.auth import get_user_model; "
    "from django.contrib.auth.models import Permission; "
    "from rest_framework.authtoken.models import Token; "
    "user = get_user_model().objects.create_user('control-room', None, None); "
    "user.user_permissions.add(Permission.objects.get("
    "content_type__app_label='syncq', codename='view_syncqueueitem')); "
    "print(Token.objects.create(user=user).key)"
)


# --- processes and memory -----------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    """A process's start (clock ticks after boot), which tells it from a later one of the
    same pid; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def process_tree(root: int) -> dict[int, int]:
    """``{pid: start time}`` of ``root`` and every process under it, from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree: dict[int, int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        started = _start_time(pid)
        if started is None:
            continue
        tree[pid] = started
        todo.extend(children.get(pid, []))
    return tree


def _pss_kib(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


def _name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in argv if w]
    if not words:
        return "?"
    useful = [Path(w).name for w in words[1:] if not w.startswith("-")][:2]
    return " ".join(useful) or Path(words[0]).name


def pss(root: int) -> dict[str, object]:
    """PSS of ``root``'s tree now: ``{"total_mib": float, "processes": {pid: (name, MiB)}}``."""
    processes = {}
    for pid in process_tree(root):
        kib = _pss_kib(pid)
        if kib is not None:
            processes[pid] = (_name(pid), kib / 1024)
    return {"total_mib": sum(m for _, m in processes.values()), "processes": processes}


# --- the service --------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, token: str | None, timeout: float = 30.0) -> tuple[int, dict]:
    request = urllib.request.Request(url)  # noqa: S310 - always http://127.0.0.1:<port>
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - as above
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


class Service:
    """``manage.py runservice`` on ``env``'s files and ``port``, its output in ``log``; a
    context manager that starts it, waits for ``/health``, and stops its whole tree."""

    def __init__(self, env: dict[str, str], port: int, log: Path):
        self.env, self.port, self.log = env, port, log
        self.base = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        self.seen: dict[int, int] = {}

    def __enter__(self) -> Service:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "runservice"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"runservice exited:\n{self.log.read_text(errors='replace')}")
            try:
                if _get(f"{self.base}/health", None, timeout=5)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"runservice did not answer:\n{self.log.read_text(errors='replace')}")

    def __exit__(self, *exc) -> None:
        self.stop()

    def tree(self) -> dict[int, int]:
        """The service's processes now (``{pid: start}``), remembered for :meth:`stop`."""
        assert self.process is not None
        found = process_tree(self.process.pid)
        self.seen.update(found)
        return found

    def stop(self) -> None:
        """SIGTERM to ``runservice`` (it stops its children, as on Ctrl-C), then SIGKILL to
        whatever of its tree is still alive after 30 s, by pid."""
        if self.process is None:
            return
        self.tree()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = [p for p, started in self.seen.items() if _start_time(p) == started]
            if not alive:
                break
            time.sleep(0.2)
        for pid, started in self.seen.items():
            if _start_time(pid) == started:
                print(f"http: killing leftover process {pid}", file=sys.stderr)
                os.kill(pid, signal.SIGKILL)
        self.process = None

    def settle(self) -> float:
        """Wait until the requests a wrk run left queued are served (the web workers serve
        them even though wrk has gone): one ``GET /health`` queued behind them; seconds."""
        started = time.perf_counter()
        _get(f"{self.base}/health", None, timeout=300)
        return time.perf_counter() - started

    def worker_wait(self, token: str, seconds: float) -> bool:
        """Wait until ``/sync/status`` says the worker runs, at most ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            status, body = _get(f"{self.base}/sync/status", token)
            if status == 200 and body.get("sync_worker", {}).get("is_running"):
                return True
            time.sleep(0.5)
        return False


# --- wrk -------------------------------------------------------------------------------------


def wrk(url: str, token: str, script: Path, seconds: int) -> dict:
    """One wrk run against ``url``: ``{"rps", "p50_ms", "p90_ms", "p99_ms", "max_ms",
    "mean_ms", "requests", "errors", "wrk"}`` (latencies None when no request was answered
    within the run; errors: non-2xx/3xx answers, socket errors and timeouts of 10 s)."""
    done = subprocess.run(
        [
            "wrk",
            f"-t{THREADS}",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-H",
            f"Authorization: Token {token}",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 60,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    got = json.loads(lines[-1])
    errors = sum(got[k] for k in ("connect", "read", "write", "status", "timeout"))
    answered = got["requests"] > 0
    return {
        "rps": got["requests"] / (got["duration_us"] / 1e6),
        **{
            f"{key}_ms": got[f"{key}_us"] / 1000 if answered else None
            for key in ("p50", "p90", "p99", "max", "mean")
        },
        "requests": got["requests"],
        "errors": errors,
        "wrk": got,
    }


# --- one server ---------------------------------------------------------------------------------


def _children_mib(sample: dict, service: Service) -> float:
    """A :func:`pss` sample's total less ``runservice``'s own share: the processes it started
    (MiB)."""
    return sample["total_mib"] - sample["processes"].get(service.process.pid, ("", 0.0))[1]


def _idle(service: Service) -> dict:
    """The PSS of the processes ``runservice`` started (``children_mib``) and of them with
    ``runservice`` itself (``total_mib``), medians of 5 samples 0.3 s apart."""
    samples = []
    for _ in range(5):
        service.tree()
        samples.append(pss(service.process.pid))
        time.sleep(0.3)
    children = [_children_mib(s, service) for s in samples]
    return {
        "children_mib": median(children),
        "total_mib": median([s["total_mib"] for s in samples]),
        "samples_mib": children,
        "processes": samples[-1]["processes"],
    }


def _backlog(service: Service, env, keeper: Path, folder: Path, where, count: int) -> dict:
    """Queue ``count`` discoveries while the service runs and sample its PSS every 0.25 s until
    the worker has synced them (at most 120 s): the largest sum over the processes
    ``runservice`` started (``children_mib``) and with ``runservice`` (``total_mib``), and the
    sum of each process's own peak."""
    submit = folder / "backlog.json"
    submit.write_text(json.dumps(entries(count, where, "http backlog")), encoding="utf-8")
    target = queue_states(keeper).get("synced", 0) + count
    peaks: dict[int, tuple[str, float]] = {}
    totals, children = [], []
    started = time.perf_counter()
    submitter = subprocess.Popen(
        [sys.executable, "manage.py", "submit_discovery", "--file", str(submit)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    synced_s = None
    while time.perf_counter() - started < 120:
        service.tree()
        now = pss(service.process.pid)
        totals.append(now["total_mib"])
        children.append(_children_mib(now, service))
        for pid, (name, mib) in now["processes"].items():
            if mib > peaks.get(pid, ("", 0.0))[1]:
                peaks[pid] = (name, mib)
        if submitter.poll() is not None and queue_states(keeper).get("synced", 0) >= target:
            synced_s = time.perf_counter() - started
            break
        time.sleep(0.25)
    _, stderr = submitter.communicate()
    if submitter.returncode != 0:
        raise RuntimeError(f"submit_discovery failed:\n{stderr}")
    return {
        "children_mib": max(children),
        "total_mib": max(totals),
        "sum_of_peaks_mib": sum(m for _, m in peaks.values()),
        "peaks": peaks,
        "samples": len(totals),
        "items": count,
        "drained_s": synced_s,
        "items_per_s": count / synced_s if synced_s else None,
    }


def _server(top: Path, rows: int, kinds: tuple[str, ...], smoke: bool) -> dict:
    """Copy the filled keeper.db of ``rows``, start the service, measure the endpoints of
    ``kinds`` ("small", "large") and (for "small") the memory idle and draining; stop it."""
    folder = top / size_label(rows)
    folder.mkdir()
    filled, filled_s, _ = keeper_filled(rows)
    keeper = keeper_copy(filled, folder / "keeper.db")
    haven = vh_copy(folder, "VH-Database.db")
    env = manage_env(keeper, haven)
    token = manage(env, "shell", "-c", _API_USER_CODE).stdout.strip().splitlines()[-1]
    port = free_port()
    env.update(
        SYNC_API_HOST="127.0.0.1",
        SYNC_API_PORT=str(port),
        CACHE_URL=f"filecache://{folder / 'cache'}",
    )
    script = folder / "report.lua"
    script.write_text(WRK_SCRIPT, encoding="utf-8")
    seconds = SMOKE_SECONDS if smoke else SECONDS
    got: dict = {"rows": rows, "kinds": kinds, "fill_s": filled_s, "endpoints": {}}
    with Service(env, port, folder / "runservice.log") as service:
        got["worker_seen"] = service.worker_wait(token, 30)
        for _, path, _ in ENDPOINTS:
            status, body = _get(f"{service.base}{path}", token)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}: {body}")
        for name, path, where_measured in ENDPOINTS:
            if not set(where_measured) & set(kinds):
                continue
            print(f"http {size_label(rows)}: {path} ...", file=sys.stderr, flush=True)
            measured = wrk(f"{service.base}{path}", token, script, seconds)
            measured["settle_s"] = service.settle()
            got["endpoints"][name] = measured
        if "small" in kinds:
            got["idle"] = _idle(service)
            count = SMOKE_BACKLOG if smoke else BACKLOG
            got["draining"] = _backlog(service, env, keeper, folder, places(haven), count)
        got["processes"] = {pid: _name(pid) for pid in service.tree()}
    got["log_tail"] = (folder / "runservice.log").read_text(errors="replace")[-2000:]
    shutil.rmtree(folder)
    return got


def run(*, smoke: bool, runs: int) -> dict:
    """The HTTP section: for each of :data:`SIZES` (:data:`SMOKE_SIZES` when ``smoke``), the
    endpoints of :data:`ENDPOINTS` under wrk (req/s, p50 and p99 in ms, one run of
    :data:`SECONDS` s each: ``runs`` is not used) and the service's PSS idle and draining
    (MiB); returns ``{"figures": …, "servers": …}`` for :mod:`bench.__main__`."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (make bench installs Debian's wrk)")
    sizes = SMOKE_SIZES if smoke else SIZES
    servers = []
    with tempfile.TemporaryDirectory(prefix="keeper-bench-http-") as name:
        for index, rows in enumerate(sizes):
            kinds = tuple(
                kind
                for kind, applies in (("small", index == 0), ("large", index == len(sizes) - 1))
                if applies
            )
            print(f"http: {rows:,} queue rows ...", file=sys.stderr, flush=True)
            servers.append(_server(Path(name), rows, kinds, smoke))
    return _results(servers, sizes, smoke)


def _results(servers: list[dict], sizes, smoke: bool) -> dict:
    figures: dict[str, dict] = {}
    errors = []
    for got in servers:
        label, kinds = size_label(got["rows"]), got["kinds"]
        for name, path, _ in ENDPOINTS:
            measured = got["endpoints"].get(name)
            if not measured:
                continue
            errors.append(measured["errors"])
            for key, unit, what in (
                ("rps", "req/s", "req/s"),
                ("p50_ms", "ms", "p50"),
                ("p99_ms", "ms", "p99"),
            ):
                measure = key.removesuffix("_ms")
                target = next(
                    (TARGETS[(name, k, measure)] for k in kinds if (name, k, measure) in TARGETS),
                    None,
                )
                figure = {
                    "description": f"GET {path} at {label}, 16 clients: {what}",
                    "unit": unit,
                    "median": measured[key],
                    "runs": [measured[key]],
                }
                if target:
                    figure["target"] = target
                figures[f"{name}_{label}_{measure}"] = figure
        if "idle" in got:
            idle, draining = got["idle"], got["draining"]
            for key, what, value, runs in (
                ("idle", "idle", idle["children_mib"], idle["samples_mib"]),
                (
                    "draining",
                    f"draining {draining['items']:,} items (max)",
                    draining["children_mib"],
                    [draining["children_mib"]],
                ),
            ):
                figures[f"pss_{key}_{label}"] = {
                    "description": f"PSS of what runservice starts, {what}, {label} rows",
                    "unit": "MiB",
                    "median": value,
                    "runs": runs,
                    "target": PSS_TARGET,
                }
            for key, what, value in (
                ("idle", "idle", idle["total_mib"]),
                ("draining", "draining (max)", draining["total_mib"]),
            ):
                figures[f"pss_total_{key}_{label}"] = {
                    "description": f"PSS of the same and runservice itself, {what}",
                    "unit": "MiB",
                    "median": value,
                    "runs": [value],
                }
    figures["errors"] = {
        "description": "non-2xx answers, socket errors and timeouts, all wrk runs",
        "unit": "count",
        "median": sum(errors),
        "runs": errors,
        "target": "<= 0",
    }
    return {
        "figures": figures,
        "servers": servers,
        "parameters": {
            "sizes": list(sizes),
            "seconds": SMOKE_SECONDS if smoke else SECONDS,
            "connections": CONNECTIONS,
            "threads": THREADS,
            "backlog": SMOKE_BACKLOG if smoke else BACKLOG,
            "token_user": "a user with only syncq.view_syncqueueitem",
        },
    }
