"""Factories for the rows tests need, made through the project's own doors: users through
Django's user manager, discoveries through :func:`syncq.services.discovery_submit`, and queue
items in each state through the sync's services (claim, then fail or succeed), so every row is
one the project itself could have written.

A claim (:func:`syncq.services.queue_items_claim`) takes every due item, and a discovery just
submitted is due at once; so each queue item factory checks that its item is the only one due
when it claims it. In a test, make the items in other states first, and the pending ones last.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import Permission
from django.test import override_settings

from discoveries.models import Discovery
from syncq.models import SyncQueueItem, SyncStatus
from syncq.services import (
    discovery_submit,
    queue_item_fail,
    queue_item_succeed,
    queue_items_claim,
)

PASSWORD = "pw-for-tests"
#: Staff who may look but not change: the queue's and the discoveries' view permissions.
VIEW_ONLY = ("syncq.view_syncqueueitem", "discoveries.view_discovery")
#: An operator who may retry: viewing and changing queue items.
CHANGE = ("syncq.view_syncqueueitem", "syncq.change_syncqueueitem")

#: A valid discovery's fields: a ruins discovery on Demo Alpha's planet Alpha Prime.
DISCOVERY_FIELDS = {
    "user_id": "123456789012345678",
    "username": "Tester",
    "guild_id": "987654321098765432",
    "discovery_type": "🏛️",
    "system_name": "Demo Alpha",
    "location": "Alpha Prime",
    "description": "A broken tower.",
    "type_fields": {"structure_type": "Tower"},
}


# --- users ------------------------------------------------------------------------------------


def user_make(
    name: str,
    *,
    superuser: bool = False,
    staff: bool = False,
    perms: tuple[str, ...] | list[str] = (),
    password: str = PASSWORD,
) -> AbstractBaseUser:
    """A user named ``name`` (email ``name@example.org``, password ``password``): a superuser,
    or else staff when ``staff``, holding ``perms`` given as ``"app_label.codename"``
    (:data:`VIEW_ONLY`, :data:`CHANGE`). Raises ``Permission.DoesNotExist`` for an unknown
    permission."""
    model = get_user_model()
    email = f"{name}@example.org"
    if superuser:
        return model.objects.create_superuser(name, email, password)
    user = model.objects.create_user(name, email, password, is_staff=staff)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


# --- discoveries ------------------------------------------------------------------------------


def discovery_make(**overrides) -> Discovery:
    """A valid discovery stored through the submit service, with its pending queue item;
    keyword arguments (those of :func:`discoveries.rules.discovery_validate`, and
    ``submitted_at``) override :data:`DISCOVERY_FIELDS`."""
    return discovery_submit(**{**DISCOVERY_FIELDS, **overrides})


# --- queue items, one factory a state -----------------------------------------------------------
# Keyword arguments other than the factory's own go to discovery_make.


def queue_item_pending(**fields) -> SyncQueueItem:
    """The queue item of a discovery just submitted: pending, never tried, due at once."""
    return _item_of(discovery_make(**fields))


def queue_item_syncing(*, attempts: int = 1, error: str = "VH said no", **fields) -> SyncQueueItem:
    """An item a worker holds now: claimed for attempt ``attempts`` (``syncing`` under a live
    lease), each earlier attempt failed with ``error``, which the item still shows."""
    item = _item_of(discovery_make(**fields))
    _claimed(item, attempts, error=error)
    return _reloaded(item)


def queue_item_synced(
    *,
    attempts: int = 1,
    haven_id: int = 41,
    how: str = "written",
    unresolved: str | None = None,
    **fields,
) -> SyncQueueItem:
    """A synced item, recorded as VH row ``haven_id`` (VH itself is not touched) ``how``
    (written, linked or ledger) with ``unresolved`` saying what of the place VH lacked (None:
    all of it was found), on attempt ``attempts`` after the earlier ones failed."""
    item = _item_of(discovery_make(**fields))
    token, claimed = _claimed(item, attempts, error="VH said no")
    assert queue_item_succeed(
        item=claimed, token=token, haven_discovery_id=haven_id, how=how, unresolved=unresolved
    )
    return _reloaded(item)


def queue_item_backing_off(
    *,
    attempts: int = 1,
    error: str = "VH said no",
    retry_in: timedelta | None = None,
    **fields,
) -> SyncQueueItem:
    """A pending item whose attempt ``attempts`` (and each before it) failed with ``error``,
    waiting out its backoff: due after the retry schedule's wait, or after ``retry_in`` when
    given (the service computes it from a backoff base set to fit). With ``retry_in`` of zero
    the item is due again at once: make it last, as a pending one."""
    item = _item_of(discovery_make(**fields))
    token, claimed = _claimed(item, attempts, error=error)
    backoff = {}
    if retry_in is not None:
        backoff["SYNC_BASE_DELAY_SECONDS"] = retry_in.total_seconds() / 2 ** (attempts - 1)
    with override_settings(**backoff):
        assert queue_item_fail(item=claimed, token=token, error=error) == SyncStatus.PENDING
    return _reloaded(item)


def queue_item_exceeded(
    *, attempts: int = 1, error: str = "VH-Database.db is missing", **fields
) -> SyncQueueItem:
    """An item in ``max_retries_exceeded``: allowed ``attempts`` attempts (its
    ``max_attempts``, from ``SYNC_MAX_ATTEMPTS`` when it was queued), each of which failed
    with ``error``."""
    with override_settings(SYNC_MAX_ATTEMPTS=attempts):
        item = _item_of(discovery_make(**fields))
    token, claimed = _claimed(item, attempts, error=error)
    state = queue_item_fail(item=claimed, token=token, error=error)
    assert state == SyncStatus.MAX_RETRIES_EXCEEDED
    return _reloaded(item)


def _item_of(discovery: Discovery) -> SyncQueueItem:
    return SyncQueueItem.objects.get(discovery_id=discovery.id)


def _reloaded(item: SyncQueueItem) -> SyncQueueItem:
    return SyncQueueItem.objects.get(id=item.id)


def _claim_only(item: SyncQueueItem) -> tuple[str, SyncQueueItem]:
    """Claim ``item``, checking no other item was due (a claim takes them all)."""
    token, claimed = queue_items_claim(limit=1000)
    assert [c.id for c in claimed] == [item.id], (
        f"queue item {item.id} must be the only one due when its factory claims it: "
        "make pending items after the others"
    )
    return token, claimed[0]


def _claimed(item: SyncQueueItem, attempts: int, *, error: str) -> tuple[str, SyncQueueItem]:
    """Claim ``item`` for attempt ``attempts``: each attempt before it is claimed and fails
    with ``error`` under a backoff of zero, so the item is due again at once."""
    with override_settings(SYNC_BASE_DELAY_SECONDS=0):
        for _ in range(attempts - 1):
            token, claimed = _claim_only(item)
            assert queue_item_fail(item=claimed, token=token, error=error) == SyncStatus.PENDING
    return _claim_only(item)


# --- items held back from VH: they need a Control Room file (sample_haven_db or
# control_room_schema_haven_db) and a test marked django_db(transaction=True, databases=[
# "default", "haven"]); each runs real sync batches, which take every due item.

#: A place both sample VH files have: planet Erren of system Oculi.
SAMPLE_PLACE = {"system_name": "Oculi", "location": "Erren", "location_type": "planet"}
#: A place neither has: system ORACLE ZETA is not on the sample map.
NO_PLACE = {"system_name": "ORACLE ZETA", "location": "Zeta Prime", "location_type": "planet"}


def queue_item_waiting(**fields) -> SyncQueueItem:
    """An item ``waiting`` for its place: a discovery in :data:`NO_PLACE` (unless ``fields``
    say otherwise) taken by a sync batch, which finds the place missing from VH."""
    from syncq.services import sync_batch

    item = _item_of(discovery_make(**{**NO_PLACE, **fields}))
    sync_batch()
    item = _reloaded(item)
    assert item.sync_status == SyncStatus.WAITING, item.sync_error
    return item


def queue_item_synced_to_vh(**fields) -> SyncQueueItem:
    """An item synced by a real batch into the VH file: a discovery in :data:`SAMPLE_PLACE`
    (unless ``fields`` say otherwise), written as a new VH row."""
    from syncq.services import sync_batch

    item = _item_of(discovery_make(**{**SAMPLE_PLACE, **fields}))
    sync_batch()
    item = _reloaded(item)
    assert item.sync_status == SyncStatus.SYNCED, item.sync_error
    return item


def queue_item_in_conflict(
    vh_path,
    *,
    theirs: str = "Curated by the Control Room.",
    ours: str | None = "Our correction.",
    **fields,
) -> SyncQueueItem:
    """An item in ``conflict``: synced into the VH file at ``vh_path``, whose row the Control
    Room then gave the description ``theirs``; the discovery is then edited to ``ours`` (None:
    deleted instead) and a batch finds the row changed."""
    import sqlite3

    from syncq.services import discovery_delete, discovery_update, sync_batch

    item = queue_item_synced_to_vh(**fields)
    with sqlite3.connect(vh_path) as conn:
        conn.execute(
            "UPDATE discoveries SET description = ? WHERE id = ?", [theirs, item.haven_discovery_id]
        )
    conn.close()
    if ours is None:
        assert discovery_delete(discovery_id=item.discovery_id) == "queued"
    else:
        discovery_update(discovery_id=item.discovery_id, changes={"description": ours})
    sync_batch()
    item = _reloaded(item)
    assert item.sync_status == SyncStatus.CONFLICT, item.sync_error
    return item


def queue_item_kinds(now: datetime, lease: timedelta) -> dict[str, dict]:
    """Every kind of queue item the due rule tells apart, as ``{name: columns to set}`` on a
    pending item at ``now`` with leases of ``lease``: new, reset, waiting out or past its
    backoff, out of attempts, syncing under a live or a lapsed lease (with and without one, an
    old bot's recent or old row), on its last attempt, synced and exceeded."""
    return {
        "new": {},
        "reset by the operators' SQL": {"sync_attempts": 0, "next_retry_after": now + lease},
        "waiting out its backoff": {"sync_attempts": 2, "next_retry_after": now + lease},
        "past its backoff": {"sync_attempts": 2, "next_retry_after": now - lease},
        "failed without a due time": {"sync_attempts": 3, "next_retry_after": None},
        "out of attempts": {"sync_attempts": 10, "next_retry_after": now - lease},
        "syncing, live lease": {
            "sync_status": SyncStatus.SYNCING,
            "sync_attempts": 1,
            "leased_until": now + lease,
        },
        "syncing, lapsed lease": {
            "sync_status": SyncStatus.SYNCING,
            "sync_attempts": 1,
            "leased_until": now - timedelta(seconds=1),
        },
        "old bot's syncing row, recent": {
            "sync_status": SyncStatus.SYNCING,
            "sync_attempts": 1,
            "last_sync_attempt": now - timedelta(seconds=5),
        },
        "old bot's syncing row, long ago": {
            "sync_status": SyncStatus.SYNCING,
            "sync_attempts": 1,
            "last_sync_attempt": now - 2 * lease,
        },
        "syncing, last attempt, lapsed": {
            "sync_status": SyncStatus.SYNCING,
            "sync_attempts": 10,
            "leased_until": now - timedelta(seconds=1),
        },
        "synced": {"sync_status": SyncStatus.SYNCED, "sync_attempts": 1},
        "exceeded": {"sync_status": SyncStatus.MAX_RETRIES_EXCEEDED, "sync_attempts": 10},
    }
