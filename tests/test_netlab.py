"""The network lab of :mod:`tests.netlab`: two namespaces joined by a veth pair, the fault
proxy between them, and their teardown. Skipped where namespaces cannot be made (not root, no
``ip``); under CI that fails instead."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from tests import netlab
from tests.netlab import (
    ROOT,
    FaultProxy,
    Faults,
    Link,
    netlab_argv,
    netlab_require,
    netlab_sweep,
)

ECHO_PORT = 7007


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for its reaper is not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture
def link():
    netlab_require()
    with Link("nltest") as made:
        yield made


@pytest.fixture
def echo(link) -> int:
    """An echo server in the cloud namespace, on ``link.cloud_ip``; its port."""
    link.run_in(
        "cloud",
        netlab_argv("echo", f"{link.cloud_ip}:{ECHO_PORT}"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    link.wait_connectable("desk", link.cloud_ip, ECHO_PORT)
    return ECHO_PORT


@pytest.fixture
def proxy(link, echo):
    """A fault proxy on the desk namespace's loopback, in front of the cloud echo server."""
    with FaultProxy((link.cloud_ip, echo), link=link, seed=1) as started:
        yield started


def _through(link, proxy, **probe):
    return link.probe("desk", "127.0.0.1", proxy.port, **probe)


def test_desk_reaches_a_cloud_server_over_the_link(link, echo):
    """A client in the desk namespace gets its bytes back from an echo server in the cloud
    namespace, at the cloud end's address of the veth."""
    (result,) = link.probe("desk", link.cloud_ip, echo, send="hello cloud")

    assert result.ok, result
    assert result.reply == "hello cloud"
    assert {link.cloud, link.desk} <= _namespaces()


def test_a_namespace_cannot_reach_the_root_namespaces_loopback(link):
    """A server on 127.0.0.1 in the root namespace (where PostgreSQL and Redis listen) is out
    of reach from inside the desk namespace: its 127.0.0.1 is its own."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        (result,) = link.probe("desk", "127.0.0.1", port, send="", timeout=1.0)

    assert not result.ok
    assert result.error == "refused"


def test_delay_is_added_each_way_and_can_change_while_running(link, echo):
    """With 100 ms of one-way delay a round trip takes at least 200 ms; raised to 150 ms at
    run time, at least 300 ms."""
    with FaultProxy((link.cloud_ip, echo), link=link, faults=Faults(delay_ms=100)) as proxy:
        (first,) = _through(link, proxy)
        proxy.set(delay_ms=150)
        (second,) = _through(link, proxy)

    assert first.ok and second.ok, (first, second)
    assert first.seconds >= 0.2
    assert second.seconds >= 0.3


def test_delayed_connections_run_side_by_side_and_keep_their_order(link, proxy):
    """Ten connections at once through a 100 ms proxy each take one round trip, not ten in
    a row, and a 1 MB echo comes back whole and in order."""
    proxy.set(delay_ms=100)

    results = _through(link, proxy, connections=10)
    (bulk,) = _through(link, proxy, size=1_000_000, timeout=10.0)

    assert all(result.ok for result in results), results
    assert min(result.seconds for result in results) >= 0.2
    assert max(result.seconds for result in results) < 10 * 0.2
    assert bulk.ok, bulk
    assert proxy.stats().bytes_up == 10 * len("netlab probe") + 1_000_000


def test_a_dropped_connection_closes_without_an_answer(link, proxy):
    """With drop at 1.0 every client sees its connection closed with no reply, and the server
    never gets a byte."""
    proxy.set(drop=1.0)

    results = _through(link, proxy, connections=3)

    assert [result.error for result in results] == ["eof"] * 3
    stats = proxy.stats()
    assert (stats.connections, stats.dropped, stats.bytes_up, stats.bytes_down) == (3, 3, 0, 0)


def test_a_reset_connection_is_cut_mid_request(link, proxy):
    """With reset at 1.0 the client gets an RST instead of a reply, and the server got only
    the first ``reset_after_bytes`` bytes of the request."""
    proxy.set(reset=1.0, reset_after_bytes=4)

    (result,) = _through(link, proxy, send="x" * 100)

    assert not result.ok
    assert result.error == "reset"
    stats = proxy.stats()
    assert (stats.reset, stats.bytes_up, stats.bytes_down) == (1, 4, 0)


def test_a_stalled_connection_waits_then_completes(link, proxy):
    """With stall at 1.0 and 0.5 s, a round trip waits at least half a second, then completes."""
    proxy.set(stall=1.0, stall_s=0.5)

    (result,) = _through(link, proxy)

    assert result.ok, result
    assert result.seconds >= 0.5
    assert proxy.stats().stalled == 1


def test_hold_freezes_traffic_until_released(link, proxy):
    """While the proxy holds all data no reply arrives (the client times out); after
    ``hold(0)`` replies flow again."""
    proxy.hold(60)
    (held,) = _through(link, proxy, timeout=1.0)
    proxy.hold(0)
    (released,) = _through(link, proxy)

    assert held.error == "timeout"
    assert released.ok, released
    assert proxy.stats().stalled >= 1


def test_faults_out_of_range_are_refused():
    """A probability outside [0, 1], a negative delay or an unknown fault is refused."""
    with pytest.raises(ValueError, match="drop"):
        Faults(drop=1.5)
    with pytest.raises(ValueError, match="delay_ms"):
        Faults(delay_ms=-1)
    with pytest.raises(ValueError, match="unknown fault"):
        Faults.from_dict({"latency": 5})


def test_a_refused_change_leaves_the_running_faults_alone(proxy):
    """The running proxy refuses a bad change and keeps the faults it had."""
    proxy.set(delay_ms=20)

    with pytest.raises(ValueError, match="reset"):
        proxy.set(delay_ms=0, reset=2)

    assert proxy.faults() == Faults(delay_ms=20)


def test_cut_fails_connections_and_restore_brings_them_back(link, proxy):
    """After cut() connections across the link fail, directly (no route) and through the
    proxy (closed, counted as upstream failures); after restore() both work again."""
    link.cut()
    (direct_cut,) = link.probe("desk", link.cloud_ip, ECHO_PORT, timeout=1.0)
    (proxied_cut,) = _through(link, proxy, timeout=1.0)
    link.restore()
    (direct_back,) = link.probe("desk", link.cloud_ip, ECHO_PORT)
    (proxied_back,) = _through(link, proxy)

    assert direct_cut.error in ("unreachable", "timeout")
    assert not proxied_cut.ok
    assert proxy.stats().upstream_failed == 1
    assert direct_back.ok, direct_back
    assert proxied_back.ok, proxied_back
    assert not link.is_cut


def test_closing_deletes_the_namespaces_and_ends_their_processes():
    """Closing a link ends the processes started in it, and their children, and leaves no
    namespace behind."""
    netlab_require()
    with Link("nltest") as link:
        names = {link.cloud, link.desk}
        shell = link.run_in(
            "cloud",
            ["sh", "-c", "sleep 60 & echo $!; wait"],
            stdout=subprocess.PIPE,
            text=True,
        )
        child = int(shell.stdout.readline())
        assert names <= _namespaces()

    assert shell.poll() is not None
    assert not _running(child)
    assert not names & _namespaces()


def test_a_failure_inside_the_block_still_deletes_the_namespaces():
    """An exception inside ``with Link()`` leaves no namespace behind."""
    netlab_require()
    with pytest.raises(RuntimeError, match="scenario failed"), Link("nltest") as link:
        names = {link.cloud, link.desk}
        raise RuntimeError("scenario failed")

    assert not names & _namespaces()


def test_sweep_deletes_only_namespaces_of_dead_processes():
    """``netlab_sweep`` deletes a namespace named after a process that has ended and keeps
    one named after a live process."""
    netlab_require()
    ended = subprocess.Popen(["true"])
    ended.wait()
    dead = f"nlsweep-{ended.pid}-0-abcd-cloud"
    alive = f"nlsweep-{os.getpid()}-0-abcd-desk"
    try:
        for name in (dead, alive):
            subprocess.run(["ip", "netns", "add", name], check=True)

        removed = netlab_sweep("nlsweep")

        assert dead in removed
        assert alive not in removed
        assert alive in _namespaces()
    finally:
        for name in (dead, alive):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    assert not {dead, alive} & _namespaces()


def test_unavailable_names_the_missing_facility(monkeypatch):
    """Without root, or without ``ip``, the reason says which."""
    monkeypatch.setattr(netlab.os, "geteuid", lambda: 1000)
    assert "root" in netlab.netlab_unavailable()

    monkeypatch.setattr(netlab.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netlab.shutil, "which", lambda name: None)
    assert "`ip`" in netlab.netlab_unavailable()


def test_require_skips_outside_ci_and_fails_under_ci(monkeypatch):
    """A missing facility skips a test on a developer's machine and fails it under CI."""
    monkeypatch.setattr(netlab, "netlab_unavailable", lambda: "no namespaces here")

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no namespaces here"):
        netlab_require()

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no namespaces here"):
        netlab_require()
