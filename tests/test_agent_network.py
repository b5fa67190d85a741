"""The cloud server and the desktop Control Room agent as two machines (:mod:`chaos.agent_link`):
gunicorn on keeper.db in one network namespace, ``manage.py haven_agent`` on a VH copy in
another, joined by a veth and a fault proxy with 100 ms of delay each way. Discoveries arrive
once whatever the agent is killed in, two agents never share an item, a place added on the
desktop reaches the server's pickers and wakes what waited for it, and a lossy link with a cut
loses and doubles nothing. Two faults of the agent found this way are pinned as expected
failures until they are mended. Skipped where namespaces cannot be made; under CI that
fails."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import time

import pytest

import chaos.scenarios
from chaos.agent_link import (
    DRAIN_AFTER_RESTORE_SECONDS,
    FIXTURE,
    LOSSY,
    LOSSY_SEED,
    CloudDesk,
    kills_at_each_step,
    latencies,
    percentile,
    sqlite_read,
    wait_for,
    wal_writer_pids,
)
from chaos.harness import Workspace
from syncq.agent_client import CATALOG_CHECK_SECONDS, LONG_POLL_SECONDS
from tests.netlab import netlab_require

#: Each test starts real processes in namespaces of its own; none should take long.
pytestmark = pytest.mark.timeout(240)

#: A place the fixture's VH lacks, added on the desktop by the catalog test.
NEW_SYSTEM = "Keeper Link Test"
NEW_PLANET = "Link Prime"
#: How long the link is cut in the fault test, in seconds (the chaos suite's full run: 30).
CUT_SECONDS = 10.0


@pytest.fixture
def cloud(tmp_path):
    """A server in the cloud namespace and a desk namespace for agents, 100 ms apart."""
    netlab_require()
    with CloudDesk(tmp_path / "link", delay_ms=100) as made:
        yield made


@pytest.fixture
def lossy_cloud(tmp_path):
    """As :func:`cloud`, but 5 % of connections are dropped and 5 % reset mid-request."""
    netlab_require()
    with CloudDesk(tmp_path / "link", faults=LOSSY, seed=LOSSY_SEED) as made:
        yield made


def _lease_times(agent, words: str) -> dict[str, float]:
    """When the agent printed its line with ``words`` for each lease (monotonic seconds)."""
    pattern = re.compile(rf"lease ([0-9a-f]{{32}}): .*{words}")
    return {m.group(1): line.at for line in agent.lines if (m := pattern.search(line.text))}


def _discoveries(haven) -> int:
    return sqlite_read(haven, "SELECT COUNT(*) FROM discoveries")[0][0]


def test_discoveries_submitted_in_the_cloud_arrive_once_in_the_desktops_vh(cloud):
    """100 discoveries submitted on the server cross the 100 ms link into the desktop's VH:
    one VH row and one ledger row each, every queue item synced after one attempt, and the
    server never opens a VH file of its own."""
    agent = cloud.agent_start("desk")
    haven = cloud.havens["desk"]
    before = _discoveries(haven)

    ids = cloud.submit(100, tag="e2e")

    assert cloud.wait_synced(ids, timeout=60) is not None, cloud.queue_states()
    verdict = cloud.verdict(ids)
    assert verdict.clean, verdict
    assert _discoveries(haven) == before + 100
    assert sorted(pk for pk, _ in cloud.ledger(haven)) == sorted(ids)
    assert set(cloud.attempts(ids).values()) == {1}
    assert not cloud.server_haven.exists()
    assert cloud.log_problems() == []
    # Each ack waited at least a round trip of the proxy's delay: the traffic crossed it.
    acked = wait_for(lambda: _lease_times(agent, "reported to"), timeout=10)
    written = _lease_times(agent, "reporting")
    assert acked, agent.text()
    assert min(at - written[lease] for lease, at in acked.items()) >= 0.2


def test_kill_9_of_the_agent_at_each_step_of_a_lease_loses_and_doubles_nothing(cloud):
    """The agent is killed -9 inside its VH transaction (holding VH's write lock, its rows
    not committed), between its VH commit and its ack (its rows in the ledger, keeper.db
    still syncing them), and with its ack held in flight by the proxy, and restarted each
    time: every discovery ends in VH once and synced."""
    kills, ids = kills_at_each_step(cloud, batch=10)

    assert [kill.step for kill in kills] == ["before-commit", "before-ack", "during-ack"]
    for kill in kills:
        assert kill.landed, kill
        assert kill.items, kill
    before_commit, before_ack, during_ack = kills
    assert before_commit.in_vh < len(before_commit.items), before_commit
    assert "held VH's write lock" in before_commit.evidence[1]
    assert before_ack.in_vh == len(before_ack.items), before_ack
    assert during_ack.in_vh == len(during_ack.items), during_ack
    assert "held in the proxy" in during_ack.evidence[0]
    assert cloud.wait_synced(ids, timeout=60) is not None, cloud.queue_states()
    verdict = cloud.verdict(ids)
    assert verdict.clean, verdict
    ledger = [pk for pk, _ in cloud.ledger(cloud.havens["desk"])]
    assert sorted(ledger) == sorted(set(ids))


def test_two_agents_at_once_never_take_the_same_item(cloud):
    """Agents desk-a and desk-b, each on its own VH copy, poll the same server while 200
    discoveries come in: each discovery is in exactly one of the two ledgers, each agent
    wrote some, and keeper.db counts one claim and one attempt per item."""
    cloud.agent_start("desk-a", pause=0.2)
    cloud.agent_start("desk-b", pause=0.2)

    submitter = cloud.submit_paced(200, rate=50, tag="two")
    ids = list(submitter.wait())

    assert cloud.wait_synced(ids, timeout=60) is not None, cloud.queue_states()
    first = {pk for pk, _ in cloud.ledger(cloud.havens["desk-a"])}
    second = {pk for pk, _ in cloud.ledger(cloud.havens["desk-b"])}
    assert first.isdisjoint(second)
    assert first | second == set(ids)
    assert first and second, (len(first), len(second))
    verdict = cloud.verdict(ids)
    assert verdict.clean, verdict
    assert set(cloud.claims(ids).values()) == {1}
    assert set(cloud.attempts(ids).values()) == {1}


def test_a_place_added_on_the_desktop_reaches_the_pickers_and_wakes_what_waited(cloud):
    """A discovery on a system VH lacks waits, unwritten; once the Control Room adds the
    system and planet, the server's pickers offer it within the agent's catalog check and
    one long poll, and the discovery is written on it, once."""
    cloud.agent_start("desk")
    assert NEW_SYSTEM not in cloud.pickers()
    ids = cloud.submit(1, tag="catalog", system=NEW_SYSTEM, planet=NEW_PLANET)
    assert wait_for(lambda: cloud.statuses(ids) == {ids[0]: "waiting"}, timeout=30), (
        cloud.queue_states()
    )
    assert ids[0] not in cloud.in_vh()
    watch = cloud.watch_pickers(every=0.1)
    assert watch.wait_reading()

    added = time.time()
    system_id = cloud.haven_place_add("desk", system=NEW_SYSTEM, planet=NEW_PLANET)

    limit = CATALOG_CHECK_SECONDS + LONG_POLL_SECONDS + 3
    shown = wait_for(
        lambda: next(
            (r for r in watch.between(added, time.time()) if NEW_SYSTEM in (r.systems or [])),
            None,
        ),
        timeout=limit + 30,
    )
    assert shown is not None, "the pickers never offered the new system"
    assert shown.at - added <= limit
    assert NEW_SYSTEM in cloud.pickers()
    assert cloud.wait_synced(ids, timeout=30) is not None, cloud.queue_states()
    verdict = cloud.verdict(ids)
    assert verdict.clean, verdict
    rows = sqlite_read(
        cloud.havens["desk"],
        "SELECT d.system_id, p.name FROM discoveries d JOIN planets p ON p.id = d.planet_id "
        "WHERE json_extract(d.metadata, '$.keeper_discovery_id') = ?",
        ids,
    )
    assert rows == [(system_id, NEW_PLANET)]


def test_a_lossy_link_and_a_cut_lose_and_double_nothing_and_the_pickers_keep_answering(
    lossy_cloud,
):
    """Over 100 ms of delay with 5 % of connections dropped and 5 % reset, 150 discoveries
    come in while the agent is stopped a while and then the link is cut for 10 s: nothing
    reaches VH during the cut, everything is synced once within a minute of the link's
    return, and the server's pickers answer with the uploaded catalog all the while the
    desktop is away."""
    cloud = lossy_cloud
    agent = cloud.agent_start("desk")
    catalog = cloud.pickers()
    assert catalog
    pickers = cloud.watch_pickers()
    assert pickers.wait_reading()
    ledger = cloud.watch_ledger()
    submitter = cloud.submit_paced(150, rate=30, tag="lossy")

    assert wait_for(lambda: len(submitter.submitted) >= 30, timeout=60)
    agent.stop()
    stopped_at = time.time()
    # The agent stays away until the pickers have been read a few times without it.
    assert wait_for(lambda: len(pickers.between(stopped_at + 1, time.time())) >= 5, timeout=30)
    restarted_at = time.time()
    cloud.agent_start("desk")
    assert wait_for(lambda: len(submitter.submitted) >= 90, timeout=60)
    cut_at = time.time()
    cloud.link.cut()
    time.sleep(CUT_SECONDS)
    cloud.link.restore()
    restored_at, restored = time.time(), time.monotonic()
    ids = list(submitter.wait())

    left = DRAIN_AFTER_RESTORE_SECONDS - (time.monotonic() - restored)
    assert cloud.wait_synced(ids, timeout=left) is not None, cloud.queue_states()
    verdict = cloud.verdict(ids)
    assert verdict.clean, verdict
    # Nothing crossed the cut: no ledger row appeared in VH while it lasted (data already
    # past the veth when it came, in the proxy's delay, may land in its first seconds).
    assert wait_for(lambda: set(ids) <= set(ledger.first_seen), timeout=10)
    during = [pk for pk, at in ledger.first_seen.items() if cut_at + 2 < at < restored_at]
    assert during == []
    for start, end in ((stopped_at, restarted_at), (cut_at, restored_at)):
        summary = pickers.summary(start, end, catalog)
        assert summary["reads"] >= 5, summary
        assert summary["with_catalog"] == summary["reads"], summary
    stats = cloud.proxy.stats()
    assert stats.dropped >= 1 and stats.reset >= 1, stats
    assert not cloud.server_haven.exists()


def test_the_helpers_read_the_databases_read_only(tmp_path):
    """What these tests read of VH and keeper.db is read through a read-only connection: a
    write through it is refused and the file is left as it was."""
    haven = tmp_path / "VH.db"
    shutil.copyfile(FIXTURE, haven)
    before = haven.read_bytes()

    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        sqlite_read(haven, "CREATE TABLE probe (x)")

    assert sqlite_read(haven, "SELECT COUNT(*) FROM systems") == [(5,)]
    assert haven.read_bytes() == before


def test_the_wal_write_lock_is_seen_in_proc_locks_while_a_transaction_is_open(tmp_path):
    """What proves a kill landed inside the agent's VH transaction: the holder of a WAL
    file's write lock is named while its write transaction is open, and no longer after."""
    path = tmp_path / "wal.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
        assert wal_writer_pids(path) == set()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (1)")
        assert wal_writer_pids(path) == {os.getpid()}
        db.execute("COMMIT")
        assert wal_writer_pids(path) == set()


def test_latencies_pair_each_submit_with_its_first_sight_in_vh():
    """Latency is the first sight in VH less the submit's time, by keeper id; p50 and p99
    are nearest-rank; a discovery never seen counts only in ``count``."""
    submitted = {n: 100.0 + n for n in range(1, 101)}
    seen = {n: 100.0 + n + n / 1000 for n in range(1, 100)}

    figures = latencies(submitted, seen)

    assert figures["count"] == 100 and figures["seen"] == 99
    assert figures["p50_ms"] == pytest.approx(50, abs=0.2)
    assert figures["p99_ms"] == pytest.approx(99, abs=0.2)
    assert figures["max_ms"] == pytest.approx(99, abs=0.2)
    assert percentile([], 0.5) is None


@pytest.mark.parametrize("ci", ["", "true"])
def test_the_chaos_scenario_says_why_it_cannot_run_without_namespaces(tmp_path, monkeypatch, ci):
    """Where namespaces cannot be made, ``python -m chaos --only agent-link`` skips with the
    reason, and under CI fails with it instead."""
    monkeypatch.setattr(chaos.scenarios, "netlab_unavailable", lambda: "no namespaces here")
    monkeypatch.setenv("CI", ci)

    outcome = chaos.scenarios.SCENARIOS["agent-link"](Workspace(tmp_path / "ws"), full=False)

    if ci:
        assert outcome.skipped is None and not outcome.clean
        assert "no namespaces here" in outcome.violations[0]
    else:
        assert outcome.skipped == "no namespaces here" and outcome.clean


def test_a_stop_during_a_lease_still_reports_what_vh_already_holds(cloud):
    """Ctrl-C (SIGTERM) while the agent is inside a VH transaction of a lease: it commits and
    reports that transaction, starts no other, and exits, so keeper.db does not go on calling
    discoveries in VH unsynced (the items not started go back to the queue)."""
    agent = cloud.agent_start("desk", pause=1.0)
    start = agent.mark()
    ids = cloud.submit(5, tag="stop")
    assert agent.wait_line(re.compile(r"lease [0-9a-f]{32}: \d+ items to write"), start=start)
    # Inside the first transaction: the pause before its commit holds VH's write lock.
    assert wait_for(lambda: agent.pid in wal_writer_pids(agent.haven), timeout=30)

    assert agent.stop() == 0

    written = set(ids) & cloud.in_vh()
    assert written, "the lease was not written"
    statuses = cloud.statuses(ids)
    assert {statuses[i] for i in written} == {"synced"}


def test_the_same_agent_started_twice_on_one_desktop_still_syncs_everything(cloud):
    """The agent started twice on one desktop (same token, state file and VH, as an autostart
    and a hand-started one would be): every discovery still reaches VH once and is synced,
    none runs out of attempts."""
    cloud.agent_start("desk", pause=0.2)
    cloud.agent_start("desk", pause=0.2)

    ids = list(cloud.submit_paced(200, rate=50, tag="twice").wait())

    def settled() -> bool:
        states = set(cloud.statuses(ids).values())
        return states == {"synced"} or "max_retries_exceeded" in states

    assert wait_for(settled, timeout=90)
    verdict = cloud.verdict(ids)
    assert verdict.clean, verdict.counts()
