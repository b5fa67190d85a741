"""The sync queue's state machine, driven through syncq.services (REFERENCE.md, "sync_queue",
"Retry schedule"), the operators' SQL run as written, and the django-q2 schedules."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import DatabaseError, connection, connections
from django.utils import timezone

from discoveries.haven.connection import haven_close
from discoveries.haven.models import HavenDiscovery, LedgerEntry
from discoveries.haven.writer import HavenBatch, haven_discovery_write
from discoveries.models import Discovery
from syncq import services
from syncq.models import SyncQueueItem, SyncStatus
from syncq.selectors import queue_status
from syncq.services import (
    queue_backfill,
    queue_exhausted_close,
    queue_item_create,
    queue_item_fail,
    queue_item_succeed,
    queue_items_claim,
    queue_leases_expire,
    queue_prune,
    sync_batch,
)
from tests.factories import (
    discovery_make,
    queue_item_backing_off,
    queue_item_exceeded,
    queue_item_kinds,
    queue_item_synced,
    queue_item_syncing,
)

WITH_HAVEN = pytest.mark.django_db(transaction=True, databases=["default", "haven"])
KEEPER_ONLY = pytest.mark.django_db


def _item(discovery: Discovery) -> SyncQueueItem:
    return SyncQueueItem.objects.get(discovery_id=discovery.id)


def _make_due(item: SyncQueueItem) -> None:
    """Move the item's due time into the past, as if its backoff had run out."""
    SyncQueueItem.objects.filter(id=item.id).update(
        next_retry_after=timezone.now() - timedelta(seconds=1)
    )


def _claim_ids(**kwargs) -> list[int]:
    _, items = queue_items_claim(limit=kwargs.pop("limit", 100), **kwargs)
    return [item.id for item in items]


def _fail_once(item: SyncQueueItem, error: str = "VH said no") -> SyncQueueItem:
    """Claim ``item`` (which must be the only due item) and record a failed attempt; returns
    it reloaded."""
    token, items = queue_items_claim(limit=100)
    assert [i.id for i in items] == [item.id]
    queue_item_fail(item=items[0], token=token, error=error)
    return SyncQueueItem.objects.get(id=item.id)


# --- the state machine ------------------------------------------------------------------------


@KEEPER_ONLY
def test_new_item_is_pending_and_due_at_once():
    """A submitted discovery gets a pending queue item that the next claim takes."""
    discovery = discovery_make()
    item = _item(discovery)
    assert item.sync_status == SyncStatus.PENDING
    assert item.sync_attempts == 0
    assert item.max_attempts == 10
    assert _claim_ids() == [item.id]


@KEEPER_ONLY
def test_claim_makes_item_syncing_under_a_lease(settings):
    """Claiming marks the item syncing, counts the attempt and leases it to the claimer."""
    settings.SYNC_LEASE_SECONDS = 300
    item = _item(discovery_make())
    now = timezone.now()
    token, items = queue_items_claim(limit=10, now=now)
    assert [i.id for i in items] == [item.id]
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.SYNCING
    assert item.sync_attempts == 1
    assert item.last_sync_attempt == now
    assert item.leased_until == now + timedelta(seconds=300)
    assert item.lease_token == token
    assert _claim_ids() == [], "an item under a live lease is not claimed twice"


@WITH_HAVEN
def test_success_stores_vh_id_on_item_and_discovery(haven_db):
    """A synced item and its discovery both name the VH row the discovery became."""
    discovery = discovery_make(description="A tower with no door.")
    before = timezone.now()
    report = sync_batch()
    assert (report.claimed, report.synced) == (1, 1), report.errors
    item = _item(discovery)
    vh_row = HavenDiscovery.objects.get()
    assert item.sync_status == SyncStatus.SYNCED
    assert item.haven_discovery_id == vh_row.id
    assert item.synced_at >= before
    assert item.sync_error is None
    assert item.lease_token is None
    discovery.refresh_from_db()
    assert discovery.haven_discovery_id == vh_row.id
    assert vh_row.description == "A tower with no door."
    assert vh_row.discord_user_id == discovery.user_id


@KEEPER_ONLY
def test_failures_back_off_30_then_60_seconds_and_keep_the_whole_error(settings):
    """The 1st failure waits 30 s and the 2nd 60 s; the error text is stored in full."""
    settings.SYNC_BASE_DELAY_SECONDS = 30
    item = _item(discovery_make())
    long_error = "OperationalError: disk I/O error\n" + "detail " * 1000

    before = timezone.now()
    item = _fail_once(item, long_error)
    after = timezone.now()
    assert item.sync_status == SyncStatus.PENDING
    assert item.sync_attempts == 1
    assert item.sync_error == long_error
    assert before + timedelta(seconds=30) <= item.next_retry_after <= after + timedelta(seconds=30)
    assert item.lease_token is None
    assert _claim_ids() == [], "an item in backoff is not due"

    _make_due(item)
    before = timezone.now()
    item = _fail_once(item, "second")
    after = timezone.now()
    assert item.sync_attempts == 2
    assert item.sync_error == "second"
    assert before + timedelta(seconds=60) <= item.next_retry_after <= after + timedelta(seconds=60)


#: New York's clock changes in 2027, in UTC: 02:00 EST → 03:00 EDT, and 02:00 EDT → 01:00 EST.
DST_FORWARD = datetime(2027, 3, 14, 7, 0, tzinfo=UTC)
DST_BACK = datetime(2027, 11, 7, 6, 0, tzinfo=UTC)


@KEEPER_ONLY
@pytest.mark.parametrize("change", [DST_FORWARD, DST_BACK], ids=["forward", "back"])
def test_backoff_across_a_dst_change_counts_real_seconds(settings, change):
    """With TIME_ZONE America/New_York, an attempt failing 10 s before the clocks change is
    due again exactly 30 s later in real time: not an hour early or late, and not before."""
    settings.TIME_ZONE = "America/New_York"
    settings.SYNC_BASE_DELAY_SECONDS = 30
    item = _item(discovery_make())
    with time_machine.travel(change - timedelta(seconds=10), tick=False):
        item = _fail_once(item)
    assert item.next_retry_after == change + timedelta(seconds=20)
    assert item.next_retry_after.utcoffset() == timedelta(0)
    assert _claim_ids(now=change + timedelta(seconds=19, microseconds=999_999)) == []
    assert _claim_ids(now=change + timedelta(seconds=20)) == [item.id]


@KEEPER_ONLY
@pytest.mark.parametrize("change", [DST_FORWARD, DST_BACK], ids=["forward", "back"])
def test_sync_schedules_step_one_real_minute_across_a_dst_change(settings, change):
    """django-q2 moves a registered sync schedule on by 60 real seconds across the change
    (its daily prune keeps its local hour instead, which is fine for a prune)."""
    from django_q.models import Schedule

    from syncq.schedules import schedules_register

    settings.TIME_ZONE = "America/New_York"
    settings.SYNC_INTERVAL_SECONDS = 30
    with time_machine.travel(change - timedelta(seconds=40), tick=False):
        schedules_register()
        for schedule in Schedule.objects.filter(name__startswith="keeper-sync-"):
            following = schedule.calculate_next_run()
            assert following - schedule.next_run == timedelta(minutes=1), schedule.name


@KEEPER_ONLY
def test_max_attempts_th_failure_is_final(settings):
    """An item with max_attempts 3 is max_retries_exceeded after its 3rd failure, not retried."""
    settings.SYNC_MAX_ATTEMPTS = 3
    item = _item(discovery_make())
    for attempt in (1, 2):
        item = _fail_once(item)
        assert item.sync_status == SyncStatus.PENDING, f"after attempt {attempt}"
        _make_due(item)
    item = _fail_once(item, "third strike")
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED
    assert item.sync_attempts == 3
    assert item.sync_error == "third strike"
    assert item.next_retry_after is None
    assert _claim_ids(now=timezone.now() + timedelta(days=365)) == []


@WITH_HAVEN
def test_ten_failed_syncs_follow_the_whole_retry_schedule(haven_db, settings):
    """A failing item is retried after 30 s·2^(n−1) nine times and given up on the 10th."""
    settings.SYNC_BASE_DELAY_SECONDS = 30
    discovery = discovery_make()
    Discovery.objects.filter(id=discovery.id).update(discovery_type="not a type")
    item = _item(discovery)
    assert item.max_attempts == 10
    for attempt in range(1, 10):
        before = timezone.now()
        report = sync_batch()
        after = timezone.now()
        assert (report.claimed, report.retrying) == (1, 1), f"attempt {attempt}"
        item.refresh_from_db()
        delay = timedelta(seconds=30 * 2 ** (attempt - 1))
        assert item.sync_status == SyncStatus.PENDING
        assert item.sync_attempts == attempt
        assert before + delay <= item.next_retry_after <= after + delay, f"attempt {attempt}"
        assert sync_batch().claimed == 0, "not due again before its backoff ends"
        _make_due(item)
    report = sync_batch()
    item.refresh_from_db()
    assert report.exceeded == 1
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED
    assert item.sync_attempts == 10
    assert "not a type" in item.sync_error
    assert HavenDiscovery.objects.count() == 0


@KEEPER_ONLY
def test_items_not_yet_due_are_left_alone():
    """Only items whose backoff has ended are claimed; the rest wait for their due time."""
    waiting = queue_item_backing_off(description="waiting", retry_in=timedelta(minutes=5))
    fresh = _item(discovery_make(description="fresh"))
    due_at = waiting.next_retry_after
    assert _claim_ids(now=due_at - timedelta(seconds=1)) == [fresh.id]
    assert _claim_ids(now=due_at) == [waiting.id]


@pytest.mark.django_db(transaction=True)
def test_two_workers_claim_every_item_exactly_once():
    """Two workers claiming at once over 40 due items never take the same item twice."""
    ids = {_item(discovery_make(description=f"item {n}")).id for n in range(40)}
    claimed: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(name: str) -> None:
        try:
            start.wait(timeout=10)
            while True:
                _, items = queue_items_claim(limit=10)
                if not items:
                    return
                claimed[name].extend(item.id for item in items)
        except BaseException as exc:  # reported to the test thread below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(name,)) for name in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert not set(claimed["a"]) & set(claimed["b"])
    assert sorted(claimed["a"] + claimed["b"]) == sorted(ids)
    assert set(SyncQueueItem.objects.values_list("sync_status", "sync_attempts")) == {
        (SyncStatus.SYNCING, 1)
    }


# --- leases -----------------------------------------------------------------------------------


@KEEPER_ONLY
def test_item_whose_lease_ran_out_is_claimed_again():
    """An item left syncing by a dead worker is taken again once its lease has passed."""
    item = _item(discovery_make())
    first_token, _ = queue_items_claim(limit=10)
    SyncQueueItem.objects.filter(id=item.id).update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )
    second_token, items = queue_items_claim(limit=10)
    assert [i.id for i in items] == [item.id]
    item.refresh_from_db()
    assert item.sync_attempts == 2
    assert item.lease_token == second_token != first_token


@KEEPER_ONLY
def test_lost_worker_on_last_attempt_is_marked_exceeded():
    """A lapsed lease on the last attempt ends as max_retries_exceeded, a live one is kept."""
    lost = queue_item_syncing(attempts=10, description="lost")
    busy = queue_item_syncing(attempts=10, description="busy")
    now = timezone.now()
    # The worker holding ``lost`` died: its lease ran out; ``busy``'s runs five minutes more.
    SyncQueueItem.objects.filter(id=lost.id).update(leased_until=now - timedelta(seconds=1))

    assert queue_leases_expire() == 1
    lost.refresh_from_db()
    busy.refresh_from_db()
    assert lost.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED
    assert "lease" in lost.sync_error
    assert busy.sync_status == SyncStatus.SYNCING
    assert _claim_ids(now=now + timedelta(hours=1)) == [], "neither is claimable"


@KEEPER_ONLY
def test_pending_item_without_attempts_left_is_closed_not_left_waiting():
    """A pending row with no attempt left (an old bot's, or max lowered by hand) is marked
    max_retries_exceeded, keeping its last error, instead of waiting forever."""
    spent = _item(discovery_make(description="spent"))
    fresh = _item(discovery_make(description="fresh"))
    SyncQueueItem.objects.filter(id=spent.id).update(
        sync_attempts=10, max_attempts=10, sync_error="old bot: database is locked"
    )

    assert queue_exhausted_close() == 1
    spent.refresh_from_db()
    fresh.refresh_from_db()
    assert spent.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED
    assert spent.sync_error == "old bot: database is locked"
    assert fresh.sync_status == SyncStatus.PENDING


@KEEPER_ONLY
def test_legacy_syncing_row_without_lease_is_recovered(settings):
    """An old bot's row stuck in 'syncing' with no lease columns set is claimed again."""
    settings.SYNC_LEASE_SECONDS = 300
    stuck = _item(discovery_make(description="stuck since 2025"))
    recent = _item(discovery_make(description="tried a moment ago"))
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE sync_queue SET sync_status = 'syncing', sync_attempts = 1,"
            " leased_until = NULL, lease_token = NULL, last_sync_attempt = %s WHERE id = %s",
            ["2025-11-09 01:40:00", stuck.id],
        )
    SyncQueueItem.objects.filter(id=recent.id).update(
        sync_status=SyncStatus.SYNCING, sync_attempts=1, last_sync_attempt=timezone.now()
    )
    assert _claim_ids() == [stuck.id]
    stuck.refresh_from_db()
    assert (stuck.sync_status, stuck.sync_attempts) == (SyncStatus.SYNCING, 2)
    assert stuck.leased_until is not None


@KEEPER_ONLY
def test_worker_that_lost_its_lease_changes_nothing():
    """Success or failure reported under a stale lease token leaves the item as it is."""
    discovery = discovery_make()
    token, (item,) = queue_items_claim(limit=10)
    fields = ("sync_status", "sync_attempts", "sync_error", "next_retry_after", "lease_token")
    before = SyncQueueItem.objects.values(*fields).get(id=item.id)

    assert (
        queue_item_succeed(
            item=item, token="stale", haven_discovery_id=99, how="written", unresolved=None
        )
        is None
    )
    assert queue_item_fail(item=item, token="stale", error="late") is None

    assert SyncQueueItem.objects.values(*fields).get(id=item.id) == before
    discovery.refresh_from_db()
    assert discovery.haven_discovery_id is None
    assert queue_item_succeed(
        item=item, token=token, haven_discovery_id=99, how="written", unresolved=None
    )


# --- one batch, VH, and the ledger -----------------------------------------------------------


@WITH_HAVEN
def test_bad_items_do_not_block_the_rest_of_their_batch(haven_db):
    """An item that cannot be mapped fails on its own; the good items of its batch sync, and
    one with unreadable legacy metadata is written without its type fields."""
    good_1 = discovery_make(description="good one")
    bad_type = discovery_make(description="bad type")
    bad_meta = discovery_make(description="bad metadata")
    good_2 = discovery_make(description="good two")
    Discovery.objects.filter(id=bad_type.id).update(discovery_type="🧀")
    Discovery.objects.filter(id=bad_meta.id).update(metadata=["not", "an", "object"])

    report = sync_batch()

    assert (report.claimed, report.synced, report.retrying) == (4, 3, 1)
    for discovery in (good_1, good_2, bad_meta):
        assert _item(discovery).sync_status == SyncStatus.SYNCED
    type_item = _item(bad_type)
    assert type_item.sync_status == SyncStatus.PENDING
    assert "🧀" in type_item.sync_error
    assert sorted(HavenDiscovery.objects.values_list("description", flat=True)) == [
        "bad metadata",
        "good one",
        "good two",
    ]
    written = HavenDiscovery.objects.get(description="bad metadata")
    assert written.structure_type is None
    assert "not a JSON object" in written.metadata


@WITH_HAVEN
def test_unexpected_error_in_one_item_is_recorded_and_the_batch_goes_on(haven_db, monkeypatch):
    """An unforeseen exception while writing one item fails that item only, with its text."""
    real_write = HavenBatch.write

    def flaky_write(self, *, discovery, **kwargs):
        if discovery.description == "trips a bug":
            raise RuntimeError("unforeseen fault")
        return real_write(self, discovery=discovery, **kwargs)

    monkeypatch.setattr(HavenBatch, "write", flaky_write)
    discovery_make(description="before")
    buggy = discovery_make(description="trips a bug")
    discovery_make(description="after")

    report = sync_batch()

    assert (report.claimed, report.synced, report.retrying) == (3, 2, 1)
    item = _item(buggy)
    assert item.sync_status == SyncStatus.PENDING
    assert item.sync_error == "RuntimeError: unforeseen fault"
    assert HavenDiscovery.objects.count() == 2


@WITH_HAVEN
def test_write_committed_before_a_crash_is_not_written_again(haven_db):
    """A VH write whose worker died before marking the item is found again, not duplicated."""
    discovery = discovery_make(description="written just before the crash")
    token, (item,) = queue_items_claim(limit=10)
    outcome = haven_discovery_write(discovery=item.discovery)
    haven_close()
    assert outcome.how == "written"
    # The worker dies here: the item stays syncing until its lease runs out.
    SyncQueueItem.objects.filter(id=item.id).update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )

    report = sync_batch()

    assert (report.claimed, report.synced) == (1, 1), report.errors
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.SYNCED
    assert item.haven_discovery_id == outcome.haven_discovery_id
    assert item.sync_attempts == 2
    discovery.refresh_from_db()
    assert discovery.haven_discovery_id == outcome.haven_discovery_id
    assert HavenDiscovery.objects.filter(description="written just before the crash").count() == 1
    assert HavenDiscovery.objects.count() == 1
    assert LedgerEntry.objects.count() == 1


@WITH_HAVEN
def test_reused_discovery_id_writes_its_own_row(haven_db):
    """A keeper.db restored from a backup (or a new one) that gives an id already in the ledger
    to another discovery gets that discovery written, not marked synced to the other's row."""
    first = discovery_make(description="from before the backup was restored")
    assert sync_batch().synced == 1
    first_vh_id = _item(first).haven_discovery_id

    same_id = first.id
    first.delete()
    second = Discovery.objects.create(
        id=same_id,
        user_id="222222222222222222",
        username="Someone else",
        discovery_type="🦴",
        location="Beta Rock",
        system_name="Demo Beta",
        description="submitted after the restore",
        metadata={"species_type": "Crab"},
    )
    queue_item_create(discovery=second)

    assert sync_batch().synced == 1
    second_vh_id = _item(second).haven_discovery_id
    assert second_vh_id != first_vh_id
    first_row = HavenDiscovery.objects.get(id=first_vh_id)
    assert first_row.description == "from before the backup was restored"
    assert HavenDiscovery.objects.get(id=second_vh_id).description == "submitted after the restore"
    assert LedgerEntry.objects.filter(keeper_discovery_id=same_id).count() == 2


@WITH_HAVEN
def test_same_discovery_after_its_queue_table_is_rebuilt_is_not_written_again(haven_db):
    """Queue rows lost and made again (migrate syncq zero, then migrate) find the ledger entry
    of the same discovery and do not duplicate its VH row."""
    discovery = discovery_make(description="synced once")
    assert sync_batch().synced == 1
    SyncQueueItem.objects.all().delete()
    Discovery.objects.filter(id=discovery.id).update(haven_discovery_id=None)
    discovery.refresh_from_db()
    queue_item_create(discovery=discovery)

    report = sync_batch()

    assert report.synced == 1
    assert _item(discovery).metadata["how"] == "ledger"
    assert HavenDiscovery.objects.filter(description="synced once").count() == 1


# --- operators' SQL (REFERENCE.md), run as written -------------------------------------------


@KEEPER_ONLY
def test_operator_group_by_counts_states():
    """The operators' GROUP BY query counts the items per state."""
    queue_item_exceeded(description="exceeded")
    _item(discovery_make(description="pending"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT sync_status, COUNT(*) FROM sync_queue GROUP BY sync_status;")
        counts = dict(cursor.fetchall())
    assert counts == {"pending": 1, "max_retries_exceeded": 1}


@KEEPER_ONLY
def test_operator_failed_items_query_lists_them_with_their_discovery():
    """The operators' JOIN lists exceeded items with system name, location and username."""
    item = queue_item_exceeded(description="exceeded")
    _item(discovery_make(description="pending"))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sq.id, sq.discovery_id, sq.sync_attempts, sq.sync_error,"
            " d.system_name, d.location, d.username\n"
            "  FROM sync_queue sq JOIN discoveries d ON sq.discovery_id = d.id\n"
            " WHERE sq.sync_status = 'max_retries_exceeded';"
        )
        rows = cursor.fetchall()
    assert rows == [
        (
            item.id,
            item.discovery_id,
            1,
            "VH-Database.db is missing",
            "Demo Alpha",
            "Alpha Prime",
            "Tester",
        )
    ]


@KEEPER_ONLY
def test_operator_retry_update_makes_items_due_at_once():
    """The operators' reset UPDATE makes an exceeded item and one in backoff claimable now."""
    exceeded = queue_item_exceeded(description="gave up")
    backing_off = queue_item_backing_off(description="in backoff")
    assert backing_off.next_retry_after > timezone.now()
    assert _claim_ids() == []

    with connection.cursor() as cursor:
        for item in (exceeded, backing_off):
            cursor.execute(
                "UPDATE sync_queue SET sync_status = 'pending', sync_attempts = 0,"
                " sync_error = NULL WHERE id = %s",
                [item.id],
            )

    assert _claim_ids() == [exceeded.id, backing_off.id]
    exceeded.refresh_from_db()
    assert (exceeded.sync_status, exceeded.sync_attempts) == (SyncStatus.SYNCING, 1)


# --- pruning, backfill, status, schedules ---------------------------------------------------


@WITH_HAVEN
def test_prune_deletes_only_old_synced_items_and_backfill_leaves_them_alone(haven_db, settings):
    """Old synced items are pruned; their discoveries keep the VH id and are never re-queued."""
    settings.SYNC_PRUNE_AFTER_DAYS = 30
    old_failed = queue_item_exceeded(description="failed long ago")
    old_synced = discovery_make(description="synced long ago")
    new_synced = discovery_make(description="synced yesterday")
    requeued = discovery_make(description="synced long ago, then re-queued by an operator")
    assert sync_batch().synced == 3
    old_pending = discovery_make(description="pending for ages")
    long_ago = timezone.now() - timedelta(days=31)
    SyncQueueItem.objects.filter(discovery_id__in=[old_synced.id, requeued.id]).update(
        synced_at=long_ago
    )
    SyncQueueItem.objects.filter(discovery_id=new_synced.id).update(
        synced_at=timezone.now() - timedelta(days=29)
    )
    SyncQueueItem.objects.filter(discovery_id__in=[old_pending.id, old_failed.discovery_id]).update(
        created_at=long_ago, last_sync_attempt=long_ago
    )
    with connection.cursor() as cursor:  # the operators' retry leaves synced_at as it was
        cursor.execute(
            "UPDATE sync_queue SET sync_status = 'pending', sync_attempts = 0,"
            " sync_error = NULL WHERE id = %s",
            [_item(requeued).id],
        )
    vh_id = _item(old_synced).haven_discovery_id

    assert queue_prune() == 1

    assert not SyncQueueItem.objects.filter(discovery_id=old_synced.id).exists()
    assert SyncQueueItem.objects.count() == 4
    assert _item(requeued).sync_status == SyncStatus.PENDING
    old_synced.refresh_from_db()
    assert old_synced.haven_discovery_id == vh_id
    report = queue_backfill()
    assert (report.linked, report.queued) == (0, 0)
    assert not SyncQueueItem.objects.filter(discovery_id=old_synced.id).exists()
    assert HavenDiscovery.objects.count() == 3


@WITH_HAVEN
def test_prune_keeps_the_vh_id_of_rows_an_old_bot_synced(haven_db):
    """Pruning an old bot's synced row keeps its VH id on the discovery, so backfill skips it."""
    long_ago = timezone.now() - timedelta(days=400)
    recorded = discovery_make(description="synced by the old bot")
    unrecorded = discovery_make(description="synced by the old bot, VH id not recorded")
    # As adopted from an old sync_queue: the VH id is on the queue item only, or nowhere.
    SyncQueueItem.objects.filter(discovery_id=recorded.id).update(
        sync_status=SyncStatus.SYNCED, haven_discovery_id=24, synced_at=long_ago
    )
    SyncQueueItem.objects.filter(discovery_id=unrecorded.id).update(
        sync_status=SyncStatus.SYNCED, synced_at=long_ago
    )

    assert queue_prune() == 1

    recorded.refresh_from_db()
    assert recorded.haven_discovery_id == 24
    assert _item(unrecorded).sync_status == SyncStatus.SYNCED, "its only record of being in VH"
    report = queue_backfill()
    assert (report.linked, report.queued) == (0, 0)
    assert sync_batch().claimed == 0
    assert HavenDiscovery.objects.count() == 0


@KEEPER_ONLY
def test_queue_status_has_the_control_room_shape_and_counts(settings):
    """queue_status gives every key old /sync/status clients read, with the right counts."""
    settings.SYNC_INTERVAL_SECONDS = 30
    queue_item_exceeded(description="failed")
    for n in range(3):
        queue_item_synced(description=f"synced {n}")
    syncing = queue_item_syncing(description="syncing")
    for n in range(2):
        discovery_make(description=f"pending {n}")
    last = syncing.last_sync_attempt

    status = queue_status()

    assert set(status) == {"status", "sync_worker", "queue", "totals"}
    assert status["status"] == "ok"
    assert set(status["sync_worker"]) == {
        "is_running",
        "sync_interval",
        "uptime_seconds",
        "last_sync_time",
    }
    assert status["sync_worker"]["is_running"] is False
    assert status["sync_worker"]["sync_interval"] == 30
    assert status["sync_worker"]["last_sync_time"] == last.isoformat().replace("+00:00", "Z")
    assert status["queue"] == {
        "pending": 2,
        "syncing": 1,
        "synced": 3,
        "failed": 1,
        "waiting": 0,
        "conflict": 0,
    }
    assert status["totals"] == {"total_synced": 3, "total_failed": 1}


def _schedules():
    from django_q.models import Schedule

    return sorted(
        (s.name, s.func, s.schedule_type, s.minutes, s.repeats) for s in Schedule.objects.all()
    )


@KEEPER_ONLY
def test_schedules_register_is_idempotent_and_removes_duplicates(settings):
    """Registering twice gives two 1-minute sync schedules 30 s apart plus the daily prune
    and the daily verify."""
    from django_q.models import Schedule

    from syncq.schedules import PRUNE_FUNC, SYNC_FUNC, VERIFY_FUNC, schedules_register

    settings.SYNC_INTERVAL_SECONDS = 30
    Schedule.objects.all().delete()
    expected = [
        ("keeper-prune-synced", PRUNE_FUNC, Schedule.DAILY, None, -1),
        ("keeper-sync-1", SYNC_FUNC, Schedule.MINUTES, 1, -1),
        ("keeper-sync-2", SYNC_FUNC, Schedule.MINUTES, 1, -1),
        ("keeper-verify", VERIFY_FUNC, Schedule.DAILY, None, -1),
    ]

    schedules_register()
    first = Schedule.objects.get(name="keeper-sync-1").next_run
    second = Schedule.objects.get(name="keeper-sync-2").next_run
    assert second - first == timedelta(seconds=30)
    schedules_register()
    assert _schedules() == expected

    Schedule.objects.create(name="keeper-sync-1", func=SYNC_FUNC, schedule_type=Schedule.MINUTES)
    Schedule.objects.create(name="hand-made sync", func=SYNC_FUNC, schedule_type=Schedule.HOURLY)
    Schedule.objects.create(name="keeper-prune-synced", func=PRUNE_FUNC)
    Schedule.objects.create(name="someone else's", func="other.app.task")
    schedules_register()
    assert _schedules() == sorted(
        [*expected, ("someone else's", "other.app.task", Schedule.ONCE, None, -1)]
    )


@KEEPER_ONLY
def test_schedules_follow_a_longer_interval(settings):
    """With a 120 s interval there is one 2-minute sync schedule (plus the prune and the
    verify), no leftover."""
    from django_q.models import Schedule

    from syncq.schedules import PRUNE_FUNC, SYNC_FUNC, VERIFY_FUNC, schedules_register

    Schedule.objects.all().delete()
    settings.SYNC_INTERVAL_SECONDS = 30
    schedules_register()
    settings.SYNC_INTERVAL_SECONDS = 120
    schedules_register()
    schedules_register()
    assert _schedules() == [
        ("keeper-prune-synced", PRUNE_FUNC, Schedule.DAILY, None, -1),
        ("keeper-sync-1", SYNC_FUNC, Schedule.MINUTES, 2, -1),
        ("keeper-verify", VERIFY_FUNC, Schedule.DAILY, None, -1),
    ]


@WITH_HAVEN
def test_keeper_db_refusing_one_record_does_not_stop_the_batch(haven_db, monkeypatch, settings):
    """If keeper.db cannot record the outcomes of one VH transaction (locked past its busy
    timeout), its items keep their lease for a later attempt and the rest of the batch, in
    the next transactions, is still synced."""
    from django.db import OperationalError

    settings.HAVEN_WRITE_HOLD_SECONDS = 0  # one item per VH transaction
    first = discovery_make(description="record refused")
    second = discovery_make(description="recorded")
    real_succeed = services.queue_items_succeed

    def refuse_first(*, token, results):
        if any(a.item.discovery_id == first.id for a in results):
            raise OperationalError("database is locked")
        return real_succeed(token=token, results=results)

    monkeypatch.setattr(services, "queue_items_succeed", refuse_first)

    report = sync_batch()

    assert report.synced == 1
    assert _item(second).sync_status == SyncStatus.SYNCED
    stuck = _item(first)
    assert stuck.sync_status == SyncStatus.SYNCING and stuck.leased_until is not None
    # When the lease lapses, the ledger turns the retry into a record, not a second row.
    monkeypatch.setattr(services, "queue_items_succeed", real_succeed)
    SyncQueueItem.objects.filter(id=stuck.id).update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )
    assert sync_batch().synced == 1
    assert _item(first).metadata["how"] == "ledger"
    assert HavenDiscovery.objects.filter(description="record refused").count() == 1


@KEEPER_ONLY
def test_a_burst_of_submissions_asks_the_worker_once(django_capture_on_commit_callbacks):
    """Ten submissions in a row queue one sync request; once that run starts, the next
    submission asks again."""
    from django_q.models import OrmQ

    from syncq.tasks import sync_due

    with django_capture_on_commit_callbacks(execute=True):
        for n in range(10):
            discovery_make(description=f"burst {n}")
    assert OrmQ.objects.count() == 1

    sync_due()  # the worker's run begins (VH is not reachable here; that does not matter)
    with django_capture_on_commit_callbacks(execute=True):
        discovery_make(description="after the run started")
    assert OrmQ.objects.count() == 2


@KEEPER_ONLY
def test_one_item_is_due_exactly_when_the_claims_query_says_so(settings):
    """SyncQueueItem.is_due (the console's "due now") and the claim's query agree on every
    kind of item: new, reset, waiting out or past its backoff, out of attempts, syncing under
    a live or a lapsed lease (with and without one), synced and exceeded."""
    now = timezone.now()
    lease = timedelta(seconds=settings.SYNC_LEASE_SECONDS)
    kinds = queue_item_kinds(now, lease)
    ids = {}
    for name, changes in kinds.items():
        item = _item(discovery_make(description=name))
        SyncQueueItem.objects.filter(id=item.id).update(**changes)
        ids[item.id] = name
    by_query = {ids[pk] for pk in SyncQueueItem.objects.due(now).values_list("id", flat=True)}
    by_item = {ids[item.id] for item in SyncQueueItem.objects.all() if item.is_due(now)}
    assert (
        by_query
        == by_item
        == {
            "new",
            "reset by the operators' SQL",
            "past its backoff",
            "failed without a due time",
            "syncing, lapsed lease",
            "old bot's syncing row, long ago",
        }
    )


@KEEPER_ONLY
def test_a_retry_and_its_operator_action_commit_together(monkeypatch):
    """When the operator action cannot be recorded, the retry is undone with it: an item is
    never reset without a record of who reset it."""
    item = queue_item_exceeded(attempts=10, error="gone")

    def broken(**kwargs):
        raise DatabaseError("disk I/O error")

    monkeypatch.setattr(services, "operator_action_record", broken)
    for retry in (
        lambda: services.queue_items_retry(ids=[item.id], source="api"),
        lambda: services.queue_items_retry(status="max_retries_exceeded", source="api"),
        lambda: services.queue_items_reset_attempts(ids=[item.id], source="admin"),
    ):
        with pytest.raises(DatabaseError):
            retry()
        item.refresh_from_db()
        assert (item.sync_status, item.sync_attempts, item.sync_error) == (
            SyncStatus.MAX_RETRIES_EXCEEDED,
            10,
            "gone",
        )
