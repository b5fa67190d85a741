"""Lease holders: who holds each claimed batch, how a dead worker's items are taken back at the
next batch's start instead of after their lease, how a stopping cluster gives back what it has
not started, and how a holder taken for dead that still works cannot change anything."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from syncq import processes, services
from syncq.models import LeaseHolder, SyncQueueItem, SyncStatus
from syncq.processes import process_alive, process_identity
from syncq.services import (
    queue_item_succeed,
    queue_items_claim,
    queue_leases_release,
    sync_batch,
    sync_until_idle,
)
from tests.factories import queue_item_pending, queue_item_syncing

WITH_HAVEN = pytest.mark.django_db(transaction=True, databases=["default", "haven"])
KEEPER_ONLY = pytest.mark.django_db


def _dead_process() -> tuple[int, int | None]:
    """``(pid, start time)`` of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    stat = processes._process_stat(child.pid)
    child.kill()
    child.wait()
    return child.pid, stat[1] if stat else None


def _held_by(item: SyncQueueItem, **holder) -> SyncQueueItem:
    """``item``, its lease holder changed to ``holder``'s fields."""
    assert LeaseHolder.objects.filter(token=item.lease_token).update(**holder) == 1
    return item


def _reloaded(item: SyncQueueItem) -> SyncQueueItem:
    return SyncQueueItem.objects.get(id=item.id)


def test_a_process_is_alive_until_it_ends_or_its_pid_is_another_process():
    """This process is alive; a reaped child is not; a live pid with another start time is
    another process; a process of another host cannot be told from here."""
    me = process_identity()
    assert process_alive(host_key=me.host_key, pid=me.pid, started=me.started) is True
    pid, started = _dead_process()
    assert process_alive(host_key=me.host_key, pid=pid, started=started) is False
    if me.started is not None:
        assert process_alive(host_key=me.host_key, pid=me.pid, started=me.started - 1) is False
    assert process_alive(host_key="elsewhere boot=x", pid=me.pid, started=me.started) is None


@KEEPER_ONLY
def test_a_claim_records_its_holder_and_an_empty_claim_none():
    """The claim writes its lease holder, this process, in its own transaction; a claim that
    takes nothing records none."""
    queue_item_pending()
    token, items = queue_items_claim(limit=10)
    holder = LeaseHolder.objects.get(token=token)
    me = process_identity()
    assert (holder.pid, holder.host_key, holder.pid_started) == (me.pid, me.host_key, me.started)
    assert len(items) == 1
    token, items = queue_items_claim(limit=10)
    assert items == [] and not LeaseHolder.objects.filter(token=token).exists()


@KEEPER_ONLY
def test_the_batch_end_removes_its_holder(monkeypatch):
    """Once a batch is over, its lease holder is gone."""
    queue_item_pending()
    tokens = []
    monkeypatch.setattr(
        services, "_sync_claimed", lambda items, token, report, stop: tokens.append(token)
    )
    assert sync_batch().claimed == 1 and len(tokens) == 1
    assert not LeaseHolder.objects.filter(token=tokens[0]).exists()


@KEEPER_ONLY
def test_a_batch_cut_short_keeps_its_holder_for_the_next_batch_to_judge(monkeypatch):
    """A batch cut short (Ctrl-C in sync_now) leaves its holder, so that once its process has
    ended the next batch takes its items back at once rather than after the lease."""
    item = queue_item_pending()

    def interrupted(items, token, report, stop):
        raise KeyboardInterrupt

    monkeypatch.setattr(services, "_sync_claimed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sync_batch()
    held = _reloaded(item)
    assert held.sync_status == SyncStatus.SYNCING
    assert LeaseHolder.objects.filter(token=held.lease_token).exists()
    pid, started = _dead_process()
    _held_by(held, pid=pid, pid_started=started)
    assert queue_leases_release().released == 1
    assert _reloaded(item).sync_status == SyncStatus.PENDING


@KEEPER_ONLY
def test_a_dead_holders_items_are_pending_and_due_at_once():
    """Items held by a process of this host that has ended are pending again, due now, their
    lost attempt counted and said; the holder is gone; the 5-minute lease is not waited
    out."""
    item = queue_item_syncing(attempts=2)
    pid, started = _dead_process()
    _held_by(item, pid=pid, pid_started=started)
    assert _reloaded(item).leased_until > timezone.now() + timedelta(seconds=60)
    released = queue_leases_release()
    assert (released.released, released.exceeded) == (1, 0)
    after = _reloaded(item)
    assert after.sync_status == SyncStatus.PENDING
    assert after.sync_attempts == 2
    assert after.lease_token is None and after.leased_until is None
    assert after.next_retry_after is None and after.is_due(timezone.now())
    assert "worker was lost" in after.sync_error and str(pid) in after.sync_error
    assert not LeaseHolder.objects.filter(token=item.lease_token).exists()


@KEEPER_ONLY
def test_a_pid_now_held_by_another_process_is_a_dead_holder():
    """A holder whose pid runs another process now (another start time) is dead."""
    me = process_identity()
    if me.started is None:
        pytest.skip("no /proc: process start times are unknown here")
    item = _held_by(queue_item_syncing(), pid=me.pid, pid_started=me.started - 1)
    assert queue_leases_release().released == 1
    assert _reloaded(item).sync_status == SyncStatus.PENDING


@KEEPER_ONLY
def test_a_live_holders_items_stay_held():
    """Items of a holder that still runs (this process) are left alone."""
    item = queue_item_syncing()
    assert queue_leases_release().released == 0
    after = _reloaded(item)
    assert after.sync_status == SyncStatus.SYNCING and after.lease_token == item.lease_token
    assert LeaseHolder.objects.filter(token=item.lease_token).exists()


@KEEPER_ONLY
def test_another_hosts_holder_is_dead_only_once_its_heartbeat_is_stale():
    """A holder on another host counts as alive while its heartbeat is recent, and as dead
    once it is older than the stale threshold."""
    item = _held_by(queue_item_syncing(), host="elsewhere", host_key="elsewhere boot=other")
    assert queue_leases_release().released == 0
    assert _reloaded(item).sync_status == SyncStatus.SYNCING
    stale = timezone.now() - timedelta(seconds=services.HOLDER_STALE_SECONDS + 5)
    _held_by(item, heartbeat_at=stale)
    released = queue_leases_release()
    assert released.released == 1 and "no heartbeat" in released.holders[0]
    assert _reloaded(item).sync_status == SyncStatus.PENDING


@KEEPER_ONLY
def test_a_dead_holders_item_on_its_last_attempt_is_exceeded():
    """An item whose lost attempt was its last becomes max_retries_exceeded, saying so."""
    item = queue_item_syncing(attempts=3)
    SyncQueueItem.objects.filter(id=item.id).update(max_attempts=3)
    pid, started = _dead_process()
    _held_by(item, pid=pid, pid_started=started)
    released = queue_leases_release()
    assert (released.released, released.exceeded) == (0, 1)
    after = _reloaded(item)
    assert after.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED
    assert "last attempt" in after.sync_error and after.lease_token is None


@KEEPER_ONLY
def test_a_holder_taken_for_dead_that_still_works_changes_nothing():
    """When a holder taken for dead records its outcome later, its lease token no longer
    holds: the outcome is dropped and the item stays as the next claim left it."""
    item = queue_item_syncing()
    old_token = item.lease_token
    claimed = SyncQueueItem.objects.get(id=item.id)
    claimed.discovery = item.discovery
    _held_by(
        item,
        host="elsewhere",
        host_key="elsewhere boot=other",
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )
    assert queue_leases_release().released == 1
    new_token, again = queue_items_claim(limit=10)
    assert [i.id for i in again] == [item.id]
    state = queue_item_succeed(
        item=claimed, token=old_token, haven_discovery_id=7, how="written", unresolved=None
    )
    assert state is None
    after = _reloaded(item)
    assert after.sync_status == SyncStatus.SYNCING and after.lease_token == new_token
    assert after.haven_discovery_id is None


@WITH_HAVEN
def test_a_batch_takes_a_dead_workers_items_and_syncs_them(haven_db):
    """The next batch starts by taking back a dead worker's items, then syncs them; its
    report counts them as released."""
    items = [queue_item_syncing() for _ in range(1)]
    items += [queue_item_pending()]
    pid, started = _dead_process()
    _held_by(items[0], pid=pid, pid_started=started)
    report = sync_batch()
    assert report.released == 1 and report.synced == 2, report
    assert set(SyncQueueItem.objects.values_list("sync_status", flat=True)) == {"synced"}
    assert not LeaseHolder.objects.exclude(pid=os.getpid()).exists()


@WITH_HAVEN
def test_a_stopping_cluster_gives_back_the_items_it_has_not_started(
    haven_db, monkeypatch, settings
):
    """When the worker's cluster begins to stop, the batch finishes the VH transaction in hand,
    gives back the other items (pending, due now, their attempt taken back) and no further
    batch runs."""
    settings.HAVEN_WRITE_HOLD_SECONDS = 0  # one item per VH transaction
    items = [queue_item_pending() for _ in range(5)]
    asked = []

    def stopping() -> bool:
        asked.append(True)
        return len(asked) > 3  # asked before the batch, then before each transaction: after two

    monkeypatch.setattr(services, "cluster_stopping", stopping)
    monkeypatch.setattr(services, "STOP_CHECK_SECONDS", 0)
    report = sync_until_idle(batch_size=5)
    assert report.stopping and report.synced == 2 and report.given_back == 3, report
    states = {i.id: _reloaded(i) for i in items}
    assert [s.sync_status for s in states.values()].count(SyncStatus.SYNCED) == 2
    given = [s for s in states.values() if s.sync_status == SyncStatus.PENDING]
    assert len(given) == 3
    assert all(s.sync_attempts == 0 and s.lease_token is None for s in given)
    assert all(s.is_due(timezone.now()) for s in given)
    assert not LeaseHolder.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_refreshes_the_holder_while_the_batch_runs(monkeypatch):
    """While a batch runs, its holder's heartbeat moves on every few seconds."""
    item = queue_item_syncing()
    old = timezone.now() - timedelta(minutes=5)
    _held_by(item, heartbeat_at=old)
    monkeypatch.setattr(services, "HOLDER_HEARTBEAT_SECONDS", 0.05)
    with services._HolderHeartbeat(item.lease_token):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if LeaseHolder.objects.get(token=item.lease_token).heartbeat_at > old:
                break
            time.sleep(0.05)
    assert LeaseHolder.objects.get(token=item.lease_token).heartbeat_at > old


def test_outside_a_cluster_nothing_is_stopping():
    """sync_now and the tests are not django-q2 workers: never told to stop."""
    assert processes.cluster_stopping() is False
