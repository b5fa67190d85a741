"""Helpers of the tests that start real processes (``runservice``, ``qcluster``, the container's
start command): a free port, the processes now running and their sessions (proc(5)), polling
with a deadline, ``/health``, and killing whatever a test leaves running."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def processes() -> list[tuple[int, int, int, str]]:
    """``(pid, parent pid, session id, state)`` of every process now (proc(5))."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        found.append((int(entry.name), int(fields[1]), int(fields[3]), fields[0]))
    return found


def alive_in_sessions(sessions: set[int]) -> list[int]:
    """Pids of live (not zombie) processes in ``sessions``."""
    return [pid for pid, _, sid, state in processes() if sid in sessions and state != "Z"]


def wait_until(predicate, *, timeout: float, what: str | Callable[[], str], interval: float = 0.25):
    """Poll ``predicate`` every ``interval`` seconds until it returns something true, and
    return that; after ``timeout`` seconds, fail the test naming ``what`` (or what it returns
    then, when it is a function: a log read at the time of the failure)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"after {timeout} s: {what() if callable(what) else what}")
        time.sleep(interval)


def health(port: int) -> dict | None:
    """The JSON of ``GET http://127.0.0.1:port/health`` when it answers 200, else None (no
    answer yet, another status, or not JSON)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            return json.loads(answer.read())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def cleanup(*started: subprocess.Popen):
    """Kill whatever a test leaves running, with everything in its session and in the
    sessions of its children (a service's children have sessions of their own), even when
    they would not die with it."""
    try:
        yield
    finally:
        for process in started:
            if process.poll() is None:
                groups = [process.pid]
                groups += [pid for pid, parent, _, _ in processes() if parent == process.pid]
                for group in groups:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(group, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
