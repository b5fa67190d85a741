"""Every write to the queue: a discovery submitted with its queue item, each change of an item's
state, the sync batch that drives them, and the operators' retries.

Submitting: :func:`discovery_submit` (keyword arguments), :func:`discovery_submit_once`
(idempotent by a key) and :func:`discovery_submit_payload` (a JSON object) check a discovery by
:mod:`discoveries.rules`, then store it and its queue item in one keeper.db transaction and ask
for a sync batch after the commit. The bot, ``manage.py submit_discovery`` and any later door
go through them.

State machine (REFERENCE.md): ``pending → syncing`` by :func:`queue_items_claim`;
``syncing → synced`` by success; ``syncing → pending`` (with backoff) or
``→ max_retries_exceeded`` (the ``max_attempts``-th attempt) by failure. An attempt is counted
when it is claimed, so a worker that dies mid-item still uses one up and a poison item cannot
loop forever. Two outcomes give the attempt back: ``syncing → waiting`` (the place is not in
VH; :func:`queue_waiting_wake` makes it ``pending`` again when VH's catalog changes, and an edit
does too) and ``syncing → conflict`` (the Control Room changed our row; an operator chooses,
:func:`queue_item_conflict_resolve`). Edits (:func:`discovery_update`) and deletes
(:func:`discovery_delete`) go to VH through the same queue item, so the ledger keeps them
exactly once. Timestamps are UTC.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connections, transaction
from django.db.models import F, Max
from django.utils import timezone
from django_q.tasks import async_task

from discoveries.catalog import catalog_copy
from discoveries.haven.catalog import catalog_version
from discoveries.haven.connection import haven_close, haven_connection
from discoveries.haven.errors import HavenError, HavenTransactionLost
from discoveries.haven.writer import (
    HavenBatch,
    WriteOutcome,
    haven_discovery_write,
    haven_unplaced_problem,
)
from discoveries.models import Discovery, discovery_timestamp_problem
from discoveries.rules import EDITABLE, discovery_payload_validate, discovery_validate
from discoveries.services import discovery_changes_apply, discovery_values
from syncq.agent_protocol import values_digest
from syncq.backoff import retry_delay
from syncq.cache_keys import HAVEN_STATE, SYNC_KICK, keeper_cache_key
from syncq.errors import (
    ConflictVersionChanged,
    DiscoveryBeingDeleted,
    QueueItemNotFound,
    QueueItemNotInConflict,
    QueueItemNotRetryable,
)
from syncq.models import (
    AttemptOutcome,
    LeaseHolder,
    Operation,
    OperatorAction,
    SyncAttempt,
    SyncQueueItem,
    SyncStatus,
)
from syncq.processes import cluster_stopping, process_alive, process_identity

logger = logging.getLogger(__name__)


# --- submitting --------------------------------------------------------------------------------


def discovery_submit(*, submitted_at: datetime | None = None, **fields: object) -> Discovery:
    """Check and store one discovery with its queue item, in one keeper.db transaction;
    after the commit, ask django-q2 for a sync batch now.

    ``fields`` are the keyword arguments of :func:`discoveries.rules.discovery_validate`.
    ``submitted_at`` (aware; default now) is stored in UTC, to the second, as the legacy rows
    are. Returns the saved :class:`Discovery`. Raises
    :class:`discoveries.rules.DiscoveryInvalid` (nothing written), and ``ValueError`` for a
    naive ``submitted_at``.
    """
    discovery, _ = _discovery_store(discovery_validate(**fields), submitted_at, key=None)
    return discovery


def discovery_submit_once(
    *,
    submission_key: str,
    submitted_at: datetime | None = None,
    first_submitted_here: bool = True,
    imported_keeper_id: int | None = None,
    **fields: object,
) -> tuple[Discovery, bool]:
    """:func:`discovery_submit`, idempotent by ``submission_key`` (text of 1 to 64 characters
    naming the act of submitting, such as ``discord:<interaction id>``).

    Returns ``(discovery, created)``: the first call with a key stores the discovery and its
    queue item (``created`` True); every later call with the same key, even one racing it from
    another process, stores nothing and returns that discovery (``created`` False). The
    fields are checked on every call: ``DiscoveryInvalid`` as for :func:`discovery_submit`;
    ``ValueError`` for an empty or over-long key. ``first_submitted_here`` false (an imported
    discovery, which another keeper.db may already have written into this VH) leaves its
    queue item unmarked (:func:`submitted_here`), so its sync looks for that row first and
    links it rather than write a second. ``imported_keeper_id`` (an imported discovery's id in
    the keeper.db that exported it, with its submitter and ``submitted_at`` kept) is stored on
    the new discovery: its sync then takes over the VH row that keeper.db wrote
    (:func:`discoveries.haven.ledger.ledger_take_over`). A discovery already stored under the
    key is returned as it is.
    """
    if not isinstance(submission_key, str) or not 1 <= len(submission_key) <= 64:
        raise ValueError("submission_key must be text of 1 to 64 characters")
    values = discovery_validate(**fields)
    if imported_keeper_id is not None:
        values["imported_keeper_id"] = imported_keeper_id
    return _discovery_store(
        values, submitted_at, key=submission_key, submitted=first_submitted_here
    )


def discovery_submit_payload(payload: object) -> Discovery:
    """Submit one discovery given as a JSON object (see
    :func:`discoveries.rules.discovery_payload_validate`). Raises ``DiscoveryInvalid``
    (nothing written)."""
    discovery, _ = _discovery_store(discovery_payload_validate(payload), None, key=None)
    return discovery


def _discovery_store(
    values: dict[str, object],
    submitted_at: datetime | None,
    *,
    key: str | None,
    submitted: bool = True,
) -> tuple[Discovery, bool]:
    if submitted_at is not None and timezone.is_naive(submitted_at):
        raise ValueError("submitted_at must be timezone-aware")
    stamp = (submitted_at or timezone.now()).astimezone(UTC).replace(microsecond=0)
    try:
        with transaction.atomic(using=DEFAULT_DB_ALIAS):
            if key is not None and (found := Discovery.objects.filter(submission_key=key).first()):
                return found, False
            discovery = Discovery.objects.create(
                submission_timestamp=stamp, submission_key=key, **values
            )
            queue_item_create(discovery=discovery, submitted=submitted)
            transaction.on_commit(sync_kick, robust=True)
    except IntegrityError:
        # Another process stored the same key between our check and our insert (PostgreSQL;
        # SQLite's IMMEDIATE transactions serialize the two).
        if key is None:
            raise
        found = Discovery.objects.filter(submission_key=key).first()
        if found is None:
            raise
        return found, False
    return discovery, True


# --- the queue -------------------------------------------------------------------------------


#: ``metadata[ORIGIN]`` of an item made as its discovery was submitted through Keeper Sync:
#: no old bot can have written that discovery into VH, so its sync never searches VH for an
#: old bot's identical row (a scan of VH's ``discoveries``; see ``submitted_here``).
ORIGIN = "origin"
SUBMITTED = "submitted"


def submitted_here(item: SyncQueueItem) -> bool:
    """Whether ``item`` was made as its discovery was submitted through Keeper Sync's doors
    (``metadata["origin"] == "submitted"``), rather than for a discovery from before the queue
    (backfill, an old bot's queue): only the latter may have an old bot's row in VH."""
    metadata = item.metadata if isinstance(item.metadata, dict) else {}
    return metadata.get(ORIGIN) == SUBMITTED


def queue_item_create(
    *, discovery: Discovery, synced_to: int | None = None, submitted: bool = False
) -> SyncQueueItem:
    """Add the queue item of ``discovery``: due at once, or already ``synced`` to VH row
    ``synced_to`` (a row linked rather than written). ``submitted``: the discovery is being
    submitted now (:func:`submitted_here`). Call inside the discovery's transaction; the
    unique ``discovery_id`` makes a second call fail with ``IntegrityError``."""
    now = timezone.now()
    if synced_to is None:
        return SyncQueueItem.objects.create(
            discovery=discovery,
            max_attempts=settings.SYNC_MAX_ATTEMPTS,
            created_at=now,
            metadata={ORIGIN: SUBMITTED} if submitted else {},
        )
    return SyncQueueItem.objects.create(
        discovery=discovery,
        max_attempts=settings.SYNC_MAX_ATTEMPTS,
        created_at=now,
        sync_status=SyncStatus.SYNCED,
        synced_at=now,
        haven_discovery_id=synced_to,
        metadata={"how": "linked"},
    )


#: The columns of a queue item that no worker holds.
UNLEASED = {"leased_until": None, "lease_token": None}
#: ... and that waits for no due time either: synced, given up, or due at once.
NOT_WAITING = {**UNLEASED, "next_retry_after": None}

#: How long a sync request stands (:data:`syncq.cache_keys.SYNC_KICK`) before another may be
#: made.
KICK_WINDOW_SECONDS = 2


def sync_kick() -> None:
    """Ask django-q2 to run a sync batch now, so a new discovery reaches VH in about a second
    rather than at the next scheduled run. Does nothing when VH is switched off.

    A burst of submissions asks once: the request is skipped while an earlier one has not
    started (the cache entry :data:`~syncq.cache_keys.SYNC_KICK` of this keeper database,
    cleared by :func:`syncq.tasks.sync_due` as it starts, or after
    ``KICK_WINDOW_SECONDS``), since that run will take every item committed before it claims.
    """
    if not settings.USE_HAVEN_DATABASE:
        return
    if not cache.add(keeper_cache_key(SYNC_KICK), True, timeout=KICK_WINDOW_SECONDS):
        return
    async_task("syncq.tasks.sync_due", group="keeper-sync", task_name="keeper-sync-kick")


def haven_state_note(*, state: str, now: datetime) -> dict[str, object]:
    """Note that VH-Database.db was found in ``state`` (``ok``, ``missing``, ``locked``,
    ``disabled``, or the agent's word for it with ``USE_HAVEN_AGENT``) at ``now`` (aware),
    in the cache every process shares (:data:`~syncq.cache_keys.HAVEN_STATE`, kept until the
    state changes), and return what is known: ``{"state", "since", "known"}``. ``since`` is
    when it was first found in that state: the moment of the change when ``known`` is true,
    else the first look after the entry was lost or never written (it was so then, and may
    have been for longer). A cache that cannot be read or written gives ``since`` None."""
    key = keeper_cache_key(HAVEN_STATE)
    try:
        noted = cache.get(key)
    except Exception as exc:  # the cache backend's own errors vary by backend
        logger.warning("cannot read VH-Database.db's noted state: %s", exc)
        return {"state": state, "since": None, "known": False}
    if (
        isinstance(noted, dict)
        and noted.get("state") == state
        and isinstance(noted.get("since"), datetime)
    ):
        return {"state": state, "since": noted["since"], "known": bool(noted.get("known"))}
    # A change seen (an entry of another state), or the first look: since now, either way.
    entry = {"state": state, "since": now, "known": isinstance(noted, dict)}
    try:
        cache.set(key, entry, timeout=None)
    except Exception as exc:  # as above
        logger.warning("cannot note VH-Database.db's state: %s", exc)
    return entry


def queue_leases_expire(*, now=None) -> int:
    """Mark ``max_retries_exceeded`` the items still ``syncing`` past their lease on their last
    attempt (their worker died); returns how many. Items with attempts left are taken again by
    :func:`queue_items_claim` instead."""
    now = now or timezone.now()
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        return SyncQueueItem.objects.abandoned_on_last_attempt(now).update(
            sync_status=SyncStatus.MAX_RETRIES_EXCEEDED,
            sync_error="the worker was lost during the last attempt (lease expired)",
            **NOT_WAITING,
        )


#: How often a batch's worker refreshes its :class:`LeaseHolder`'s heartbeat, in seconds.
HOLDER_HEARTBEAT_SECONDS = 5
#: A holder on another host whose heartbeat is older than this many seconds is taken for dead;
#: it is raised to twice ``KEEPER_BUSY_TIMEOUT_SECONDS``, which one heartbeat may wait behind.
HOLDER_STALE_SECONDS = 60


def _holder_stale_seconds() -> float:
    return max(HOLDER_STALE_SECONDS, 2 * settings.KEEPER_BUSY_TIMEOUT_SECONDS)


@dataclass
class LeaseRelease:
    """What :func:`queue_leases_release` did: items of dead holders made ``pending``, due now
    (``released``), or ``exceeded`` (``max_retries_exceeded``: it was their last attempt), and
    the ``holders`` found dead, each as one line saying why."""

    released: int = 0
    exceeded: int = 0
    holders: list[str] = field(default_factory=list)


def _holder_dead(holder: LeaseHolder, *, stale_before) -> str | None:
    """Why ``holder`` is known to be dead, or None while it may live."""
    alive = process_alive(host_key=holder.host_key, pid=holder.pid, started=holder.pid_started)
    if alive is False:
        return f"process {holder.pid} on {holder.host} has ended"
    if alive is None and holder.heartbeat_at < stale_before:
        since = holder.heartbeat_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        return f"no heartbeat from process {holder.pid} on {holder.host} since {since} UTC"
    return None


def queue_leases_release(*, now=None) -> LeaseRelease:
    """Take back at once the items whose lease holder is known to be dead, rather than when
    their lease runs out (``SYNC_LEASE_SECONDS``, minutes): a holder on this host whose process
    is gone (or is another process now), or a holder on another host with no heartbeat for
    :data:`HOLDER_STALE_SECONDS`. Each such item still ``syncing`` under that lease becomes
    ``pending`` and due now, its lost attempt counted and said in ``sync_error``; one on its
    last attempt becomes ``max_retries_exceeded``, as :func:`queue_leases_expire` does. The
    holders are deleted. Run at each batch's start, before the claim.

    A holder taken for dead that still works (another host's, whose heartbeat was late) finds
    the lease token changed when it records its outcome, which is then dropped; the ledger
    in VH keeps a write it made single. Returns a :class:`LeaseRelease`."""
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=_holder_stale_seconds())
    dead = {
        holder.token: why
        for holder in LeaseHolder.objects.all()
        if (why := _holder_dead(holder, stale_before=stale_before))
    }
    result = LeaseRelease()
    if not dead:
        return result
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        for token, why in dead.items():
            held = SyncQueueItem.objects.filter(sync_status=SyncStatus.SYNCING, lease_token=token)
            result.exceeded += held.filter(sync_attempts__gte=F("max_attempts")).update(
                sync_status=SyncStatus.MAX_RETRIES_EXCEEDED,
                sync_error=f"the worker was lost during the last attempt ({why})",
                **NOT_WAITING,
            )
            result.released += held.update(
                sync_status=SyncStatus.PENDING,
                sync_error=f"the worker was lost during this attempt ({why}); due again at once",
                **NOT_WAITING,
            )
            result.holders.append(why)
        LeaseHolder.objects.filter(token__in=list(dead)).delete()
    if result.released or result.exceeded:
        logger.warning(
            "took back %s queue items at once (%s of them on their last attempt) from dead "
            "workers: %s",
            result.released + result.exceeded,
            result.exceeded,
            "; ".join(result.holders),
        )
    return result


def lease_holder_forget(*, token: str) -> None:
    """Delete the :class:`LeaseHolder` of ``token``: its batch is over. Items it still leaves
    ``syncing`` (keeper.db refused their outcome) are taken again when their lease runs out.
    keeper.db refusing this too is logged: :func:`queue_leases_release` deletes the row once
    this process has ended."""
    try:
        with transaction.atomic(using=DEFAULT_DB_ALIAS):
            LeaseHolder.objects.filter(token=token).delete()
    except DatabaseError as exc:
        logger.warning("lease %s: could not delete its holder: %s", token, exc)


class _HolderHeartbeat:
    """While a batch runs, a thread that refreshes its lease holder's ``heartbeat_at`` every
    :data:`HOLDER_HEARTBEAT_SECONDS` through a keeper.db connection of its own (a refresh may
    wait keeper.db's busy timeout; the batch never waits for it)."""

    def __init__(self, token: str):
        self.token = token
        self.done = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"lease-heartbeat-{token[:8]}", daemon=True
        )

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.done.set()
        self.thread.join(timeout=1)

    def _run(self) -> None:
        try:
            while not self.done.wait(HOLDER_HEARTBEAT_SECONDS):
                try:
                    LeaseHolder.objects.filter(token=self.token).update(heartbeat_at=timezone.now())
                except DatabaseError as exc:
                    logger.warning("lease %s: heartbeat not recorded: %s", self.token, exc)
        finally:
            connections.close_all()  # this thread's own connections


def queue_items_give_back(*, items: list[SyncQueueItem], token: str) -> int:
    """Give back ``items``, claimed under ``token`` but not started: ``pending`` and due now,
    the attempt their claim counted taken back (its time stays in ``last_sync_attempt``).
    Items no longer held under ``token`` are left alone. Returns how many were given back."""
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        return SyncQueueItem.objects.filter(
            id__in=[item.id for item in items],
            sync_status=SyncStatus.SYNCING,
            lease_token=token,
        ).update(
            sync_status=SyncStatus.PENDING,
            sync_attempts=F("sync_attempts") - 1,
            **NOT_WAITING,
        )


#: How often, at most, a batch asks whether its cluster is stopping (a read of the cache).
STOP_CHECK_SECONDS = 1.0


class StopWatch:
    """Whether this worker's cluster is stopping (:func:`syncq.processes.cluster_stopping`),
    asked at most every :data:`STOP_CHECK_SECONDS`; once it is, it stays so."""

    def __init__(self):
        self.stopping = False
        self._asked_at: float | None = None

    def __call__(self) -> bool:
        if not self.stopping:
            now = time.monotonic()
            if self._asked_at is None or now - self._asked_at >= STOP_CHECK_SECONDS:
                self._asked_at = now
                self.stopping = cluster_stopping()
        return self.stopping


def queue_exhausted_close() -> int:
    """Mark ``max_retries_exceeded`` the ``pending`` items that have no attempt left (an old
    bot's rows, or ``max_attempts`` lowered by hand), which would otherwise wait forever;
    their last error is kept. Returns how many."""
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        return SyncQueueItem.objects.filter(
            sync_status=SyncStatus.PENDING, sync_attempts__gte=F("max_attempts")
        ).update(sync_status=SyncStatus.MAX_RETRIES_EXCEEDED, next_retry_after=None)


def queue_items_claim(
    *, limit: int, now=None, holder: LeaseHolder | None = None
) -> tuple[str, list[SyncQueueItem]]:
    """Atomically take up to ``limit`` due items (oldest first) for one worker.

    Each taken item becomes ``syncing`` with one more attempt, ``last_sync_attempt`` now and a
    lease of ``SYNC_LEASE_SECONDS`` under a fresh token, whose :class:`LeaseHolder` (this
    process) is recorded in the same transaction; the caller deletes it when done
    (:func:`lease_holder_forget`). On SQLite the IMMEDIATE transaction
    holds the write lock from its first statement; on PostgreSQL ``FOR UPDATE SKIP LOCKED``
    lets concurrent workers take disjoint items. Returns ``(lease_token, items)`` with each
    item's discovery loaded. ``holder`` (unsaved, its token ignored) describes a holder other
    than this process: the Control Room agent (:mod:`syncq.agent_services`).
    """
    now = now or timezone.now()
    token = uuid.uuid4().hex
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        ids = SyncQueueItem.objects.due_ids(now, limit=limit, skip_locked=True)
        if not ids:
            return token, []
        SyncQueueItem.objects.filter(id__in=ids).update(
            sync_status=SyncStatus.SYNCING,
            sync_attempts=F("sync_attempts") + 1,
            last_sync_attempt=now,
            leased_until=now + timedelta(seconds=settings.SYNC_LEASE_SECONDS),
            lease_token=token,
        )
        if holder is None:
            me = process_identity()
            holder = LeaseHolder(
                host=me.host, host_key=me.host_key, pid=me.pid, pid_started=me.started
            )
        holder.token = token
        holder.claimed_at = holder.heartbeat_at = now
        holder.save(force_insert=True)
    items = list(SyncQueueItem.objects.filter(id__in=ids).order_by("id"))
    # Not select_related: its inner join would hide an item whose discovery row is gone, and
    # that item must fail visibly instead.
    discoveries, unreadable = _discoveries_read([item.discovery_id for item in items])
    for item in items:
        if item.discovery_id in discoveries:
            item.discovery = discoveries[item.discovery_id]
        elif item.discovery_id in unreadable:
            item.discovery_unreadable = unreadable[item.discovery_id]
    return token, items


def _discoveries_read(ids: list[int]) -> tuple[dict[int, Discovery], dict[int, str]]:
    """``({id: discovery}, {id: why it cannot be read})`` for ``ids``: in one query, or, when
    one row cannot be read (bytes that are not UTF-8 where text is stored, say), one query
    each, so that only that row's item fails."""
    try:
        return Discovery.objects.in_bulk(ids), {}
    except (ValueError, DatabaseError):
        pass
    found, unreadable = {}, {}
    for pk in ids:
        try:
            found.update(Discovery.objects.in_bulk([pk]))
        except (ValueError, DatabaseError) as exc:
            unreadable[pk] = _error_text(exc)
    return found, unreadable


#: Keys of an item's ``metadata`` that hold for one round only: why it waits, its conflict,
#: and an operator's choice for its next attempt. A new state or a new request drops them.
ROUND_KEYS = ("waiting", "conflict", "force_hash", "accept_hash", "write_unplaced")


def _merged_metadata(item: SyncQueueItem, *, drop=(), **values) -> dict:
    merged = dict(item.metadata) if isinstance(item.metadata, dict) else {}
    for key in drop:
        merged.pop(key, None)
    merged.update(values)
    return merged


def _attempt_numbers_load(items: list[SyncQueueItem]) -> None:
    """Give each of ``items`` its next attempt's number as ``attempt_number``: one more than
    the highest number its history holds, so that numbers count on across operator retries
    and resets (1, 2, 3, not 1, 2, 1) while ``sync_attempts``, the backoff's and
    ``max_attempts``' counter, starts again; never less than ``sync_attempts`` (an item
    tried before attempts were kept). One grouped query for all of them, none when each
    already has its number."""
    missing = [item for item in items if getattr(item, "attempt_number", None) is None]
    if not missing:
        return
    highest = dict(
        SyncAttempt.objects.filter(queue_item_id__in=[item.id for item in missing])
        .order_by()
        .values("queue_item_id")
        .annotate(highest=Max("number"))
        .values_list("queue_item_id", "highest")
    )
    for item in missing:
        item.attempt_number = max((highest.get(item.id) or 0) + 1, item.sync_attempts)


def _attempt_row(
    item: SyncQueueItem,
    *,
    started_at,
    finished_at,
    outcome: str,
    error: str | None = None,
    haven_discovery_id: int | None = None,
) -> SyncAttempt:
    started_at = started_at or item.last_sync_attempt or finished_at
    _attempt_numbers_load([item])
    number, item.attempt_number = item.attempt_number, None
    return SyncAttempt(
        queue_item_id=item.id,
        number=number,
        started_at=started_at,
        duration_ms=max(0, round((finished_at - started_at).total_seconds() * 1000)),
        outcome=outcome,
        error=error,
        haven_discovery_id=haven_discovery_id,
    )


def _attempt_record(item: SyncQueueItem, **fields) -> None:
    _attempt_row(item, **fields).save(force_insert=True)


def _asked_again(item: SyncQueueItem, operation_now: str | None, stored: dict | None) -> bool:
    """Whether ``item`` was asked for something else while a worker held it: its operation is
    now ``operation_now`` (a delete asked for), or its discovery, whose editable values are
    ``stored`` now (:func:`_stored_values`), was edited since the claim loaded it."""
    if operation_now != item.operation:
        return True
    if stored is None:
        return False
    digest = getattr(item, "digest", None)
    if digest is not None:
        # Written by the Control Room agent: the digest of the values it was sent.
        return values_digest(stored) != digest
    claimed = getattr(item, "discovery", None)
    if claimed is None:
        return False
    return stored != discovery_values(claimed)


def _stored_values(discovery_ids) -> dict[int, dict[str, object]]:
    """``{discovery id: its editable values as stored now}`` (as
    :func:`discoveries.services.discovery_values` reads them), in one query."""
    rows = Discovery.objects.filter(id__in=list(discovery_ids)).values_list("id", *EDITABLE)
    return {row[0]: dict(zip(EDITABLE, row[1:], strict=True)) for row in rows}


def _changed_since_claim(item: SyncQueueItem) -> bool:
    """:func:`_asked_again` for one item, read now. Runs inside the caller's keeper.db
    transaction, after the lease check, so an edit either committed before (and is seen here)
    or sees the outcome and queues the item again itself."""
    current_operation = (
        SyncQueueItem.objects.filter(id=item.id).values_list("operation", flat=True).first()
    )
    stored = _stored_values([item.discovery_id]).get(item.discovery_id)
    return _asked_again(item, current_operation, stored)


def queue_item_succeed(
    *,
    item: SyncQueueItem,
    token: str,
    haven_discovery_id: int,
    how: str,
    unresolved: str | None,
    neutralised: tuple[str, ...] = (),
    row_hash: str | None = None,
    kept_base: dict | None = None,
    started_at=None,
) -> str | None:
    """Record that ``item`` is in VH as row ``haven_discovery_id`` (``how``: written, linked,
    ledger, updated or kept; ``unresolved``: what of the location was not found;
    ``neutralised``: keeper fields whose markup was made harmless in VH; ``row_hash``: the
    row's hash as VH holds it now, which ``sync_verify`` compares with the ledger's;
    ``kept_base``: what is left of the Control Room's kept version, ``{}`` when nothing).
    :func:`queue_items_succeed` for one item; returns its new state."""
    outcome = WriteOutcome(
        haven_discovery_id, how, neutralised=neutralised, row_hash=row_hash, kept_base=kept_base
    )
    attempted = Attempted(item, started_at, outcome, unresolved=unresolved)
    return queue_items_succeed(token=token, results=[attempted])[item.id]


@dataclass
class Attempted:
    """One item's attempt: when it ``started_at`` (aware; ``None``: the claim time), and its
    writer ``outcome``, or the ``error`` text that stopped it. ``unresolved`` is what of the
    place was not found (default: from ``outcome.location``)."""

    item: SyncQueueItem
    started_at: datetime | None
    outcome: WriteOutcome | None = None
    error: str | None = None
    unresolved: str | None = None

    def __post_init__(self) -> None:
        if self.unresolved is None and self.outcome is not None and self.outcome.location:
            self.unresolved = self.outcome.location.unresolved


def _succeed_metadata(item: SyncQueueItem, outcome: WriteOutcome, unresolved: str | None) -> dict:
    extra: dict[str, object] = {"how": outcome.how}
    if outcome.how in ("written", "updated"):
        extra["location_resolved"] = unresolved is None
        extra["location_unresolved"] = unresolved
    if outcome.neutralised:
        extra["neutralised"] = list(outcome.neutralised)
    if outcome.row_hash is not None:
        extra["row_hash"] = outcome.row_hash
    written = outcome.how in ("written", "updated")
    drop = (*ROUND_KEYS, "neutralised") if written else ROUND_KEYS
    if outcome.kept_base:
        extra["kept_base"] = outcome.kept_base
    elif outcome.kept_base is not None:
        drop = (*drop, "kept_base")
    return _merged_metadata(item, drop=drop, **extra)


def _column(model, name: str) -> str:
    return connections[DEFAULT_DB_ALIAS].ops.quote_name(model._meta.get_field(name).column)


def _prepared(model, name: str, value):
    return model._meta.get_field(name).get_db_prep_save(value, connections[DEFAULT_DB_ALIAS])


def queue_items_succeed(*, token: str, results: list[Attempted]) -> dict[int, str | None]:
    """Record, in one keeper.db transaction, that each item of ``results`` is in VH: each
    :class:`Attempted` has an ``outcome`` whose ``how`` is written, linked, ledger, updated or
    kept and whose ``haven_discovery_id`` is its row.

    Each item held under ``token`` becomes ``synced`` (``synced_at`` now, its VH id on the
    item and its discovery, error and lease cleared, ``metadata`` saying how, whether the
    place was found, which fields were neutralised and the row's hash), or ``pending`` (due
    now, attempts 0) when its discovery was edited or its deletion asked for while the
    attempt ran, so the next attempt applies that. Its attempt joins its history. One read of
    the leases, one read of the discoveries, one statement run for all rows
    (``executemany``) and one bulk insert of attempts, whatever the number of items.

    Returns ``{item id: new state}``, ``None`` for an item whose lease was lost meanwhile
    (another worker or an operator took it); the ledger makes its next attempt find the same
    row. Raises the database's own error (then nothing is recorded)."""
    now = timezone.now()
    states: dict[int, str | None] = {r.item.id: None for r in results}
    connection = connections[DEFAULT_DB_ALIAS]
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        held = dict(
            SyncQueueItem.objects.select_for_update()
            .filter(id__in=list(states), sync_status=SyncStatus.SYNCING, lease_token=token)
            .values_list("id", "operation")
        )
        mine = [r for r in results if r.item.id in held]
        stored = _stored_values(r.item.discovery_id for r in mine)
        _attempt_numbers_load([r.item for r in mine])
        rows, discovery_rows, attempts = [], [], []
        again_any = False
        for attempted in mine:
            item, outcome = attempted.item, attempted.outcome
            again = _asked_again(item, held[item.id], stored.get(item.discovery_id))
            again_any = again_any or again
            state = SyncStatus.PENDING if again else SyncStatus.SYNCED
            states[item.id] = state
            metadata = _succeed_metadata(item, outcome, attempted.unresolved)
            rows.append(
                (
                    state,
                    again,
                    _prepared(SyncQueueItem, "synced_at", now),
                    outcome.haven_discovery_id,
                    _prepared(SyncQueueItem, "metadata", metadata),
                    item.id,
                    token,
                )
            )
            discovery_rows.append((outcome.haven_discovery_id, item.discovery_id))
            attempts.append(
                _attempt_row(
                    item,
                    started_at=attempted.started_at,
                    finished_at=now,
                    outcome=AttemptOutcome.SYNCED,
                    haven_discovery_id=outcome.haven_discovery_id,
                )
            )
        if rows:
            q = partial(_column, SyncQueueItem)
            table = connection.ops.quote_name(SyncQueueItem._meta.db_table)
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"UPDATE {table} SET {q('sync_status')} = %s,"  # noqa: S608 - model names
                    f" {q('sync_attempts')} = CASE WHEN %s THEN 0 ELSE {q('sync_attempts')} END,"
                    f" {q('synced_at')} = %s, {q('haven_discovery_id')} = %s,"
                    f" {q('sync_error')} = NULL, {q('waiting_on')} = NULL, {q('metadata')} = %s,"
                    f" {q('leased_until')} = NULL, {q('lease_token')} = NULL,"
                    f" {q('next_retry_after')} = NULL"
                    f" WHERE {q('id')} = %s AND {q('lease_token')} = %s",
                    rows,
                )
                d = partial(_column, Discovery)
                cursor.executemany(
                    f"UPDATE {connection.ops.quote_name(Discovery._meta.db_table)}"  # noqa: S608
                    f" SET {d('haven_discovery_id')} = %s WHERE {d('id')} = %s",
                    discovery_rows,
                )
            SyncAttempt.objects.bulk_create(attempts)
        if again_any:
            transaction.on_commit(sync_kick, robust=True)
    for item_id, state in states.items():
        if state is None:
            logger.warning("queue item %s: lease lost before it could be marked synced", item_id)
    return states


def queue_item_fail(*, item: SyncQueueItem, token: str, error: str, started_at=None) -> str | None:
    """Record a failed attempt of ``item`` with the whole ``error`` text: back to ``pending``
    due after :func:`retry_delay` of its attempt number, or ``max_retries_exceeded`` on its
    ``max_attempts``-th; the attempt is added to the item's history. An item edited, or whose
    deletion was asked for, while this attempt ran is ``pending`` instead, attempts 0 and due
    now, as the edit would have left it. Returns the new state, or ``None`` if the lease was
    lost meanwhile."""
    now = timezone.now()
    attempt = item.sync_attempts
    if attempt >= item.max_attempts:
        changes = {"sync_status": SyncStatus.MAX_RETRIES_EXCEEDED, "next_retry_after": None}
    else:
        changes = {
            "sync_status": SyncStatus.PENDING,
            "next_retry_after": now + retry_delay(attempt),
        }
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        held = SyncQueueItem.objects.select_for_update().filter(
            id=item.id, sync_status=SyncStatus.SYNCING, lease_token=token
        )
        updated = held.exists()
        if updated and _changed_since_claim(item):
            changes = {"sync_status": SyncStatus.PENDING, "sync_attempts": 0, **NOT_WAITING}
            transaction.on_commit(sync_kick, robust=True)
        if updated:
            held.update(sync_error=error, **{**UNLEASED, **changes})
            exceeded = changes["sync_status"] == SyncStatus.MAX_RETRIES_EXCEEDED
            _attempt_record(
                item,
                started_at=started_at,
                finished_at=now,
                outcome=AttemptOutcome.EXCEEDED if exceeded else AttemptOutcome.RETRYING,
                error=error,
            )
    return changes["sync_status"] if updated else None


def _held_text(outcome: WriteOutcome) -> str:
    text = f"waiting: {outcome.waiting}"
    if outcome.suggestions:
        text += "; nearest in the Control Room: " + ", ".join(repr(s) for s in outcome.suggestions)
    return text


def _held_record(
    item: SyncQueueItem,
    token: str,
    *,
    status: str,
    outcome: str,
    text: str,
    started_at,
    metadata: dict,
    **changes,
) -> bool:
    """Record an attempt that ended neither in VH nor in failure (``waiting``, ``conflict``):
    the state, the reason in ``sync_error`` and ``metadata``, the attempt given back and kept in
    the history, all under ``item``'s lease; ``pending`` instead, due now, when the discovery
    was edited or its deletion asked for meanwhile. Returns ``False`` when the lease was
    lost."""
    now = timezone.now()
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        held = SyncQueueItem.objects.select_for_update().filter(
            id=item.id, sync_status=SyncStatus.SYNCING, lease_token=token
        )
        if not held.exists():
            return False
        if _changed_since_claim(item):
            # Edited, or its deletion asked for, while this attempt ran: the next attempt
            # looks at what is asked now, instead of holding the old question.
            status, changes = SyncStatus.PENDING, {"sync_attempts": 0}
            transaction.on_commit(sync_kick, robust=True)
        else:
            changes = {"sync_attempts": F("sync_attempts") - 1, **changes}
        held.update(
            sync_status=status,
            sync_error=text,
            metadata=_merged_metadata(item, drop=ROUND_KEYS, **metadata),
            **NOT_WAITING,
            **changes,
        )
        _attempt_record(item, started_at=started_at, finished_at=now, outcome=outcome, error=text)
    return True


def queue_item_wait(
    *, item: SyncQueueItem, token: str, outcome: WriteOutcome, started_at=None
) -> bool:
    """Record that ``item``'s place is not in VH (``outcome.how == "waiting"``): ``waiting``,
    with the reason and the nearest names in ``sync_error`` and ``metadata["waiting"]``
    (``reason``, ``suggestions``, ``since``), the attempt given back, and ``waiting_on`` set
    to the catalog version read, so that :func:`queue_waiting_wake` takes it again only when
    VH's map changes. Returns ``False`` when the lease was lost meanwhile."""
    waiting = {
        "reason": outcome.waiting,
        "suggestions": list(outcome.suggestions),
        "since": timezone.now().isoformat(),
    }
    return _held_record(
        item,
        token,
        status=SyncStatus.WAITING,
        outcome=AttemptOutcome.WAITING,
        text=_held_text(outcome),
        started_at=started_at,
        metadata={"waiting": waiting},
        waiting_on=outcome.catalog_version,
    )


def queue_item_conflict(
    *, item: SyncQueueItem, token: str, outcome: WriteOutcome, started_at=None
) -> bool:
    """Record that the Control Room changed ``item``'s VH row since we wrote it, so our edit or
    delete was not applied: ``conflict``, the attempt given back, both versions kept in
    ``metadata["conflict"]`` (``haven_discovery_id``, ``operation``, ``ours``, ``theirs``,
    ``theirs_hash``, ``at``) for :func:`queue_item_conflict_resolve`. Returns ``False`` when
    the lease was lost meanwhile."""
    conflict = outcome.conflict
    what = "delete" if item.operation == Operation.DELETE else "update"
    detail = {
        "haven_discovery_id": conflict.haven_discovery_id,
        "operation": item.operation,
        "ours": conflict.ours,
        "theirs": conflict.theirs,
        "theirs_hash": conflict.theirs_hash,
        "theirs_deleted": conflict.theirs_deleted,
        "base": conflict.base,
        "at": timezone.now().isoformat(),
    }
    return _held_record(
        item,
        token,
        status=SyncStatus.CONFLICT,
        outcome=AttemptOutcome.CONFLICT,
        text=(
            f"conflict: the Control Room "
            f"{'deleted' if conflict.theirs_deleted else 'changed'} VH row "
            f"#{conflict.haven_discovery_id} since we wrote it; the {what} waits for an "
            "operator to choose which version to keep"
        ),
        started_at=started_at,
        metadata={"conflict": detail},
    )


def queue_item_delete_finish(*, item: SyncQueueItem, token: str) -> bool:
    """After ``item``'s VH row was deleted (or found absent), delete its keeper discovery, and
    with it the queue item and its history, in one keeper.db transaction. Returns ``False``
    when the lease was lost meanwhile: the ledger's ``deleted`` mark makes the next attempt
    find the work done."""
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        held = SyncQueueItem.objects.filter(
            id=item.id,
            sync_status=SyncStatus.SYNCING,
            lease_token=token,
            operation=Operation.DELETE,
        ).exists()
        if held:
            Discovery.objects.filter(id=item.discovery_id).delete()
    return held


def queue_waiting_wake() -> int:
    """Make ``pending`` again the ``waiting`` items that last looked at another version of VH's
    catalog (:func:`discoveries.haven.catalog.catalog_version`): a system, planet or moon was
    added or renamed since, so their place may be found now. Reads the catalog only when items
    wait; one UPDATE, however many wait. With ``USE_HAVEN_AGENT``, the version is that of the
    catalog the agent last uploaded. Returns how many were woken (0 when VH cannot be read:
    they stay waiting, and the reason is logged)."""
    if not (settings.USE_HAVEN_DATABASE or settings.USE_HAVEN_AGENT):
        return 0
    if not SyncQueueItem.objects.filter(sync_status=SyncStatus.WAITING).exists():
        return 0
    if settings.USE_HAVEN_AGENT:
        copy = catalog_copy()
        if copy is None:
            return 0
        version = copy.version
    else:
        try:
            haven_connection()
            version = catalog_version()
        except (HavenError, DatabaseError) as exc:
            logger.warning("waiting items: VH's catalog cannot be read now: %s", exc)
            return 0
        finally:
            haven_close()
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        return (
            SyncQueueItem.objects.filter(sync_status=SyncStatus.WAITING)
            .exclude(waiting_on=version)
            .update(sync_status=SyncStatus.PENDING, **NOT_WAITING)
        )


@dataclass
class BatchReport:
    """What one batch did: how many items it ``claimed`` and how they ended (``synced``,
    ``retrying`` with backoff, ``exceeded``, ``waiting`` for their place, ``conflict``,
    ``deleted`` from VH), plus ``woken``, waiting items made pending because VH's catalog
    changed, ``errors`` as ``[(queue_id, text)]`` and ``lease_expired``, items whose worker was
    lost on their last attempt; ``released``, items of dead workers taken back at once
    (:func:`queue_leases_release`; those on their last attempt count in ``exceeded`` too), and
    ``given_back``, items claimed but not started when the cluster began to stop.
    ``stopped_early`` is set by :func:`sync_until_idle` when it ran out of time with items
    possibly still due; ``stopping`` when the cluster is stopping (no run is asked for)."""

    claimed: int = 0
    synced: int = 0
    retrying: int = 0
    exceeded: int = 0
    lease_expired: int = 0
    released: int = 0
    given_back: int = 0
    waiting: int = 0
    conflict: int = 0
    deleted: int = 0
    woken: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    stopped_early: bool = False
    stopping: bool = False

    COUNTS = (
        "claimed",
        "synced",
        "retrying",
        "exceeded",
        "lease_expired",
        "released",
        "given_back",
        "waiting",
        "conflict",
        "deleted",
        "woken",
    )

    def add(self, other: BatchReport) -> None:
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)
        self.stopping = self.stopping or other.stopping

    def __str__(self) -> str:
        text = (
            f"claimed {self.claimed}, synced {self.synced}, retrying {self.retrying}, "
            f"exceeded {self.exceeded}"
        )
        for name in ("waiting", "conflict", "deleted", "woken", "released", "given_back"):
            if getattr(self, name):
                text += f", {name} {getattr(self, name)}"
        return text


def queue_housekeep(report: BatchReport) -> None:
    """What comes before any claim, by the server's worker or for the Control Room agent: take
    back the items of dead lease holders (:func:`queue_leases_release`), close lapsed leases on
    a last attempt and items with no attempt left, and wake waiting items whose catalog
    changed; each counted in ``report``."""
    released = queue_leases_release()
    report.released += released.released + released.exceeded
    expired = queue_leases_expire()
    report.lease_expired += expired
    report.exceeded += released.exceeded + expired + queue_exhausted_close()
    report.woken += queue_waiting_wake()


def sync_batch(*, batch_size: int | None = None, stop: StopWatch | None = None) -> BatchReport:
    """Claim up to ``batch_size`` (default ``SYNC_BATCH_SIZE``) due items and copy them into
    VH-Database.db; one item's failure is recorded on it and never stops the others.

    First the items of dead workers are taken back (:func:`queue_leases_release`) and lapsed
    leases on a last attempt closed. Then the items are written in VH transactions
    (:func:`haven_write_some`), each holding the Control Room's write lock for at most about
    ``HAVEN_WRITE_HOLD_SECONDS``: one transaction for a few items, as many as a backlog needs.
    After each, one keeper.db transaction records their outcomes (:func:`outcomes_record`),
    with the Control Room's file free meanwhile. While the items are worked on, their lease
    holder's heartbeat is kept. Before each VH transaction ``stop`` (default: a new
    :class:`StopWatch`) is asked whether the cluster is stopping; if it is, or once the batch
    has run ``SYNC_BATCH_SECONDS``, the items not started are given back
    (:func:`queue_items_give_back`; ``stopping`` is set on the report when the cluster stops).

    Does nothing while ``USE_HAVEN_DATABASE`` is false, but the housekeeping
    (:func:`queue_housekeep`) when ``USE_HAVEN_AGENT`` is on. Closes the VH connection at the
    end so the Control Room's file is not held open between batches.
    """
    report = BatchReport()
    if not (settings.USE_HAVEN_DATABASE or settings.USE_HAVEN_AGENT):
        return report
    queue_housekeep(report)
    if not settings.USE_HAVEN_DATABASE:
        return report  # the Control Room agent takes the items (syncq.agent_services)
    stop = stop or StopWatch()
    token, items = queue_items_claim(limit=batch_size or settings.SYNC_BATCH_SIZE)
    report.claimed = len(items)
    if not items:
        return report
    try:
        with _HolderHeartbeat(token):
            _sync_claimed(items, token, report, stop=stop)
    finally:
        haven_close()
    # Only a batch that ended normally drops its holder: one cut short (Ctrl-C in sync_now)
    # leaves it, so once this process has ended the next batch takes its items back at once.
    lease_holder_forget(token=token)
    return report


def _sync_claimed(
    items: list[SyncQueueItem], token: str, report: BatchReport, *, stop: StopWatch | None = None
) -> None:
    """Write ``items``, claimed under ``token``, into VH a transaction at a time and record
    each transaction's outcomes in ``report``, giving back the items not started when ``stop``
    says the cluster is stopping or ``SYNC_BATCH_SECONDS`` have passed."""
    stop = stop or StopWatch()
    deadline = time.monotonic() + settings.SYNC_BATCH_SECONDS
    rest = items
    while rest:
        if stop() or time.monotonic() >= deadline:
            report.stopping = stop.stopping
            report.given_back += queue_items_give_back(items=rest, token=token)
            logger.info(
                "%s: gave back %s queue items not started",
                "the cluster is stopping" if stop.stopping else "the batch ran its time",
                len(rest),
            )
            return
        attempted = haven_write_some(rest)
        rest = rest[len(attempted) :]
        if settings.SYNC_CHAOS_PAUSE_SECONDS and any(a.error is None for a in attempted):
            time.sleep(settings.SYNC_CHAOS_PAUSE_SECONDS)
        outcomes_record(attempted, token, report)


def haven_apply(batch: HavenBatch, item: SyncQueueItem) -> WriteOutcome:
    """Do ``item``'s operation in ``batch``, with the operator's choice for this round, if any."""
    metadata = item.metadata if isinstance(item.metadata, dict) else {}
    unreadable = getattr(item, "discovery_unreadable", None)
    if unreadable:
        raise HavenError(
            f"discovery {item.discovery_id} cannot be read from keeper.db: {unreadable}"
        )
    discovery = item.discovery
    problem = discovery_timestamp_problem(discovery)
    if problem:
        raise HavenError(problem)
    if isinstance(discovery.metadata, str):
        # JSON text that holds a string and text that is not JSON read alike; the stored text
        # tells the mapping which, for the message on the VH row.
        discovery.metadata_stored = discovery.metadata_raw()
    known = item.haven_discovery_id or discovery.haven_discovery_id
    if item.operation == Operation.DELETE:
        return batch.delete(
            discovery=discovery, force_hash=metadata.get("force_hash"), known_haven_id=known
        )
    return batch.write(
        discovery=discovery,
        write_unplaced=settings.SYNC_WRITE_UNPLACED or bool(metadata.get("write_unplaced")),
        force_hash=metadata.get("force_hash"),
        accept_hash=metadata.get("accept_hash"),
        kept_base=metadata.get("kept_base"),
        known_haven_id=known,
        search_legacy=not submitted_here(item),
    )


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def haven_write_some(items: list[SyncQueueItem]) -> list[Attempted]:
    """Write the first of ``items`` into VH in one :class:`HavenBatch`, as many as fit in
    ``HAVEN_WRITE_HOLD_SECONDS`` of its write lock (at least one); returns their
    :class:`Attempted`, in order.

    An item whose write raises carries its error; the others stand. A fault of the whole
    transaction carries its error on every item it covered, none of which is in VH: when it
    could not begin (VH locked past its busy timeout, missing, switched off, its table without
    the columns every write needs), every item of ``items``, since each would meet the same;
    when it could not commit, was rolled back whole by the file (:class:`HavenTransactionLost`),
    or the file was replaced meanwhile, the items written in it.
    ``SYNC_CHAOS_PAUSE_SECONDS`` pauses before the commit, for fault injection. The connection
    is closed afterwards."""
    attempted: list[Attempted] = []
    began = False
    taken = 0
    try:
        with HavenBatch() as batch:
            began = True
            for item in items:
                taken += 1
                attempted.append(_haven_attempt(batch, item))
                if batch.held_seconds >= settings.HAVEN_WRITE_HOLD_SECONDS:
                    break
            if settings.SYNC_CHAOS_PAUSE_SECONDS:
                time.sleep(settings.SYNC_CHAOS_PAUSE_SECONDS)
    except (HavenError, DatabaseError) as exc:
        error = _error_text(exc)
        logger.warning("a VH transaction failed: %s", error)
        now = timezone.now()
        covered = items[:taken] if began else items
        return [Attempted(item, now, error=error) for item in covered]
    finally:
        # Closed after every transaction: with no other program holding the file open, SQLite
        # folds the WAL into the file itself, so the file alone (moved away without its -wal)
        # holds every row keeper.db is about to record as synced.
        haven_close()
    return attempted


def _haven_attempt(batch: HavenBatch, item: SyncQueueItem) -> Attempted:
    started_at = timezone.now()
    try:
        return Attempted(item, started_at, haven_apply(batch, item))
    except HavenTransactionLost:
        raise  # the whole transaction's: haven_write_some fails every item of it
    except (HavenError, DatabaseError, Discovery.DoesNotExist) as exc:
        return Attempted(item, started_at, error=_error_text(exc))
    except Exception as exc:
        # An unforeseen fault in one item must not strand the rest of the batch in `syncing`:
        # it is recorded on the item (where operators look) and logged with its traceback.
        logger.exception("queue item %s: unexpected error", item.id)
        return Attempted(item, started_at, error=_error_text(exc))


#: Outcomes that leave the discovery in VH, recorded together by :func:`queue_items_succeed`.
IN_VH = ("written", "linked", "ledger", "updated", "kept")


def outcomes_record(attempted: list[Attempted], token: str, report: BatchReport) -> None:
    """Record every attempt of one VH transaction in one keeper.db transaction, and count them
    in ``report`` once it has committed. When keeper.db refuses (locked past its busy timeout,
    say), nothing is recorded: the items keep their lease and are taken again when it lapses,
    and the ledger keeps each VH write single."""
    in_vh = [a for a in attempted if a.error is None and a.outcome.how in IN_VH]
    ended: list[tuple[Attempted, str | None]] = []
    try:
        with transaction.atomic(using=DEFAULT_DB_ALIAS):
            _attempt_numbers_load([a.item for a in attempted])
            states = queue_items_succeed(token=token, results=in_vh) if in_vh else {}
            ended.extend((a, states[a.item.id]) for a in in_vh)
            for a in attempted:
                if a.error is not None:
                    state = queue_item_fail(
                        item=a.item, token=token, error=a.error, started_at=a.started_at
                    )
                    ended.append((a, state))
                elif a.outcome.how not in IN_VH:
                    ended.append((a, _held_outcome_record(a, token)))
    except DatabaseError:
        logger.exception(
            "queue items %s: could not record the attempts in keeper.db",
            ", ".join(str(a.item.id) for a in attempted),
        )
        report.errors.extend(
            (a.item.id, "keeper.db could not record the attempt") for a in attempted
        )
        return
    for a, state in ended:
        _report_count(report, a, state)


def _held_outcome_record(a: Attempted, token: str) -> str | None:
    """Record an outcome that leaves the item out of VH (waiting, conflict, deleted, absent);
    returns the state it counts as, or ``None`` when the lease was lost."""
    item, outcome, started_at = a.item, a.outcome, a.started_at
    if outcome.how == "waiting":
        held = queue_item_wait(item=item, token=token, outcome=outcome, started_at=started_at)
        return SyncStatus.WAITING if held else None
    if outcome.how == "conflict":
        held = queue_item_conflict(item=item, token=token, outcome=outcome, started_at=started_at)
        return SyncStatus.CONFLICT if held else None
    return "deleted" if queue_item_delete_finish(item=item, token=token) else None


def _report_count(report: BatchReport, a: Attempted, state: str | None) -> None:
    if a.error is not None:
        report.errors.append((a.item.id, a.error))
        if state == SyncStatus.MAX_RETRIES_EXCEEDED:
            report.exceeded += 1
        elif state == SyncStatus.PENDING:
            report.retrying += 1
        logger.warning(
            "queue item %s attempt %s failed: %s", a.item.id, a.item.sync_attempts, a.error
        )
    elif state == SyncStatus.SYNCED:
        report.synced += 1
    elif state == SyncStatus.WAITING:
        report.waiting += 1
        logger.info("queue item %s waits: %s", a.item.id, a.outcome.waiting)
    elif state == SyncStatus.CONFLICT:
        report.conflict += 1
        logger.warning("queue item %s: conflict with the Control Room", a.item.id)
    elif state == "deleted":
        report.deleted += 1


def sync_until_idle(
    *, batch_size: int | None = None, max_seconds: float | None = None, on_batch=None
) -> BatchReport:
    """Run batches until one claims nothing, or until ``max_seconds`` have passed (``None``:
    no limit), or until the cluster is stopping (:class:`StopWatch`; the report's
    ``stopping``). ``on_batch(number, report)`` is called after each batch that claimed items.
    Items failing with backoff are not due again at once, so this ends."""
    total = BatchReport()
    started = time.monotonic()
    number = 0
    stop = StopWatch()
    while True:
        if stop():
            total.stopping = True
            return total
        report = sync_batch(batch_size=batch_size, stop=stop)
        total.add(report)
        if not report.claimed or report.stopping:
            return total
        number += 1
        if on_batch is not None:
            on_batch(number, report)
        if max_seconds is not None and time.monotonic() - started >= max_seconds:
            total.stopped_early = True
            return total


def queue_prune(*, older_than_days: int | None = None) -> int:
    """Delete ``synced`` items synced more than ``older_than_days`` (default
    ``SYNC_PRUNE_AFTER_DAYS``) ago, with their attempt history; their discoveries keep
    ``haven_discovery_id``, so they are never queued again. Rows an old bot synced carry the
    VH id on the queue item only: it is copied to the discovery first, and an item with no VH
    id anywhere is kept, being the only record that its discovery is in VH. Returns how many
    queue items were deleted."""
    days = settings.SYNC_PRUNE_AFTER_DAYS if older_than_days is None else older_than_days
    cutoff = timezone.now() - timedelta(days=days)
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        old = SyncQueueItem.objects.filter(sync_status=SyncStatus.SYNCED, synced_at__lt=cutoff)
        _haven_ids_carry(old)
        _, per_model = old.filter(discovery__haven_discovery_id__isnull=False).delete()
    return per_model.get(SyncQueueItem._meta.label, 0)


def _haven_ids_carry(items) -> int:
    """Copy the VH id of synced queue items onto discoveries that lack it (rows an old bot
    synced keep it on the queue item only); returns how many discoveries were updated."""
    carried = items.filter(
        sync_status=SyncStatus.SYNCED,
        haven_discovery_id__isnull=False,
        discovery__haven_discovery_id__isnull=True,
    ).values_list("discovery_id", "haven_discovery_id")
    for discovery_id, haven_id in list(carried):
        Discovery.objects.filter(id=discovery_id).update(haven_discovery_id=haven_id)
    return len(carried)


@dataclass
class BackfillReport:
    """What :func:`queue_backfill` did: discoveries ``linked`` to a VH row the old bot wrote
    (queue item ``synced``), ``queued`` as ``pending``, and ``haven_error``, why VH could not
    be searched (then everything was queued, and each attempt still links before writing)."""

    linked: int = 0
    queued: int = 0
    haven_error: str | None = None


def queue_backfill() -> BackfillReport:
    """Give every discovery without a queue item (and not already in VH) its queue item.

    A discovery the old bot already wrote into VH (same submitter id, submission timestamp and
    description; REFERENCE.md) is linked to that row through the ledger and marked synced, not
    written again. Discoveries whose queue item an old bot marked synced get its VH id. Safe to
    run again: it only looks at discoveries with no queue item.
    """
    report = BackfillReport()
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        _haven_ids_carry(SyncQueueItem.objects.all())
    # Ids first: an open read cursor would keep SQLite from taking the write lock later.
    waiting = list(
        Discovery.objects.filter(queue_item__isnull=True, haven_discovery_id__isnull=True)
        .order_by("id")
        .values_list("id", flat=True)
    )
    for start in range(0, len(waiting), 500):
        chunk = Discovery.objects.in_bulk(waiting[start : start + 500])
        for discovery in chunk.values():
            outcome = None
            if report.haven_error is None:
                try:
                    outcome = haven_discovery_write(discovery=discovery, link_only=True)
                except (HavenError, DatabaseError) as exc:
                    report.haven_error = f"{type(exc).__name__}: {exc}"
                finally:
                    haven_close()
            with transaction.atomic(using=DEFAULT_DB_ALIAS):
                if outcome is None:
                    queue_item_create(discovery=discovery)
                    report.queued += 1
                else:
                    queue_item_create(discovery=discovery, synced_to=outcome.haven_discovery_id)
                    Discovery.objects.filter(id=discovery.id).update(
                        haven_discovery_id=outcome.haven_discovery_id
                    )
                    report.linked += 1
    return report


#: The states an operator retry may reset (REFERENCE.md: "An operator retry resets attempts to
#: 0 and makes the item due at once"); a waiting item looks for its place again at once.
#: Synced and syncing items are refused, and so are conflicts, which need a choice
#: (:func:`queue_item_conflict_resolve`).
RETRYABLE = (SyncStatus.PENDING, SyncStatus.MAX_RETRIES_EXCEEDED, SyncStatus.WAITING)


@dataclass
class RetryReport:
    """What a bulk retry did: ``reset`` item ids, ``refused`` as ``{id: state}`` for synced or
    syncing items, and ``missing`` ids that name no item."""

    reset: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)


def _retry_reset(queryset, *, clear_error: bool = True) -> list[int]:
    """Reset the retryable items of ``queryset`` as the operators' SQL does (pending, attempts
    0, and the error cleared unless ``clear_error`` is false) and also make them due now;
    returns their ids. Runs inside the caller's keeper.db transaction."""
    changes = {"sync_error": None} if clear_error else {}
    ids = list(
        queryset.select_for_update().filter(sync_status__in=RETRYABLE).values_list("id", flat=True)
    )
    SyncQueueItem.objects.filter(id__in=ids, sync_status__in=RETRYABLE).update(
        sync_status=SyncStatus.PENDING,
        sync_attempts=0,
        **NOT_WAITING,
        **changes,
    )
    if ids:
        transaction.on_commit(sync_kick, robust=True)
    return ids


def _reset_by_ids(ids: list[int], *, clear_error: bool) -> RetryReport:
    """Reset the retryable items among ``ids``; report the others as refused or missing."""
    wanted = list(dict.fromkeys(ids))
    report = RetryReport(
        reset=_retry_reset(SyncQueueItem.objects.filter(id__in=wanted), clear_error=clear_error)
    )
    states = dict(SyncQueueItem.objects.filter(id__in=wanted).values_list("id", "sync_status"))
    done = set(report.reset)
    for item_id in wanted:
        if item_id not in states:
            report.missing.append(item_id)
        elif item_id not in done:
            report.refused[item_id] = states[item_id]
    return report


def queue_item_retry(
    *, item_id: int, actor=None, source: str = "api", actor_name: str | None = None
) -> SyncQueueItem:
    """Retry one item now (operators: API, admin, bot). Raises :class:`QueueItemNotFound` or
    :class:`QueueItemNotRetryable` (synced or syncing); returns the reset item. A reset is
    recorded as an :class:`OperatorAction` of ``actor`` (a user, or None) via ``source``;
    ``actor_name`` names an operator who has no account here (a Discord member)."""
    report = queue_items_retry(ids=[item_id], actor=actor, source=source, actor_name=actor_name)
    if report.missing:
        raise QueueItemNotFound(f"no queue item {item_id}")
    if report.refused:
        raise QueueItemNotRetryable(item_id, report.refused[item_id])
    return SyncQueueItem.objects.get(id=item_id)


def queue_items_retry(
    *,
    ids: list[int] | None = None,
    status: str | None = None,
    actor=None,
    source: str = "api",
    actor_name: str | None = None,
) -> RetryReport:
    """Retry many items by ``ids`` or by ``status`` (``max_retries_exceeded``, ``pending`` or
    ``waiting``),
    with the same rule per item as :func:`queue_item_retry`. Exactly one of the two must be
    given (``ValueError`` otherwise). Each call that resets anything is recorded as an
    :class:`OperatorAction` of ``actor`` via ``source`` (``api``, ``admin``, ``bot``), in the
    same keeper.db transaction as the reset: both happen, or neither."""
    if (ids is None) == (status is None):
        raise ValueError("give either ids or status")
    if status is not None and status not in RETRYABLE:
        raise ValueError(f"status must be one of {', '.join(RETRYABLE)}")
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        if status is not None:
            items = SyncQueueItem.objects.filter(sync_status=status)
            report = RetryReport(reset=_retry_reset(items))
        else:
            report = _reset_by_ids(ids, clear_error=True)
        if report.reset:
            operator_action_record(
                actor=actor,
                actor_name=actor_name,
                source=source,
                action="retry",
                items_changed=len(report.reset),
                detail={"status": status} if status is not None else {"ids": report.reset[:1000]},
            )
    return report


def queue_items_reset_attempts(*, ids: list[int], actor=None, source: str = "api") -> RetryReport:
    """Give items back their whole allowance: ``sync_attempts`` 0 and due now, a
    ``max_retries_exceeded`` item ``pending`` again. Unlike a retry, the last error text is
    kept, so operators still see why the item failed until its next attempt replaces it.

    Same rule per item as :func:`queue_items_retry` (REFERENCE.md: synced and syncing items are
    refused); returns a :class:`RetryReport` of ``ids``. A call that changes anything is recorded
    as an :class:`OperatorAction` ``reset_attempts`` of ``actor`` via ``source``, in the same
    transaction.
    """
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        report = _reset_by_ids(ids, clear_error=False)
        if report.reset:
            operator_action_record(
                actor=actor,
                source=source,
                action="reset_attempts",
                items_changed=len(report.reset),
                detail={"ids": report.reset[:1000]},
            )
    return report


# --- edits and deletes ------------------------------------------------------------------------


def _round_reset(**changes) -> dict:
    """The columns that start an item's next round: ``pending``, attempts 0, due now."""
    return {
        "sync_status": SyncStatus.PENDING,
        "sync_attempts": 0,
        "sync_error": None,
        "waiting_on": None,
        **NOT_WAITING,
        **changes,
    }


def discovery_update(
    *, discovery_id: int, changes: Mapping[str, object], actor=None, source: str = "admin"
) -> Discovery:
    """Change the columns ``changes`` names (of :data:`discoveries.rules.EDITABLE`; the type's
    fields as a JSON object under ``metadata``) of discovery ``discovery_id``, checked by the
    submission's own rules, and send the change to VH through its queue item, in one keeper.db
    transaction.

    A changed discovery's item becomes ``pending`` (attempts 0, due now) whatever its state: a
    synced one then updates its one VH row through the ledger (never a second row), a waiting
    or failed one looks for its place again. An item a worker holds now is left to it: the
    worker's outcome sees the edit and makes the item pending itself. A discovery with no item
    but a VH row (its item was pruned) gets one. An edit that changes nothing touches nothing.
    Recorded as an
    :class:`OperatorAction` ``edit`` of ``actor`` via ``source``. Returns the saved
    :class:`Discovery`. Raises :class:`discoveries.rules.DiscoveryInvalid` (nothing written),
    ``Discovery.DoesNotExist``, and :class:`DiscoveryBeingDeleted` for one queued for deletion.
    """
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        discovery = Discovery.objects.select_for_update().get(pk=discovery_id)
        item = SyncQueueItem.objects.select_for_update().filter(discovery_id=discovery_id).first()
        if item is not None and item.operation == Operation.DELETE:
            raise DiscoveryBeingDeleted(
                f"discovery {discovery_id} is being deleted from VH; it cannot be edited"
            )
        changed = discovery_changes_apply(discovery=discovery, changes=changes)
        if not changed:
            return discovery
        if item is None and discovery.haven_discovery_id is not None:
            item = queue_item_create(discovery=discovery)
        elif item is not None and _held_by_worker(item):
            # The worker's outcome sees this edit and queues the item again (never two workers
            # on one discovery); an operator's choice for that attempt no longer applies.
            SyncQueueItem.objects.filter(id=item.id).update(
                metadata=_merged_metadata(item, drop=ROUND_KEYS)
            )
        elif item is not None:
            SyncQueueItem.objects.filter(id=item.id).update(
                operation=Operation.WRITE,
                metadata=_merged_metadata(item, drop=ROUND_KEYS),
                **_round_reset(),
            )
        operator_action_record(
            actor=actor,
            source=source,
            action="edit",
            items_changed=1 if item is not None else 0,
            detail={"discovery_id": discovery_id, "fields": sorted(changed)},
        )
        if item is not None:
            transaction.on_commit(sync_kick, robust=True)
    return discovery


def _held_by_worker(item: SyncQueueItem) -> bool:
    """Whether a live worker holds ``item`` now (``syncing`` under a lease not yet lapsed)."""
    return item.sync_status == SyncStatus.SYNCING and not item.lease_lapsed(timezone.now())


def discovery_vh_row(discovery: Discovery) -> int | None:
    """The VH row id keeper.db knows for ``discovery`` (on the discovery, or on its queue item
    for rows an old bot synced), or ``None``."""
    if discovery.haven_discovery_id is not None:
        return discovery.haven_discovery_id
    return (
        SyncQueueItem.objects.filter(discovery_id=discovery.id)
        .values_list("haven_discovery_id", flat=True)
        .first()
    )


def _may_be_in_vh(discovery: Discovery, item: SyncQueueItem | None) -> bool:
    # An item never tried since its creation or last reset has written nothing; any other may
    # have (a worker can die after VH's commit), and the ledger will tell.
    if discovery.haven_discovery_id is not None:
        return True
    if item is None:
        return False
    if item.haven_discovery_id is not None:
        return True
    untouched = item.sync_status in (SyncStatus.PENDING, SyncStatus.WAITING)
    return not (untouched and item.sync_attempts == 0 and item.last_sync_attempt is None)


def discovery_delete(
    *, discovery_id: int, actor=None, source: str = "admin", actor_name: str | None = None
) -> str:
    """Delete discovery ``discovery_id``. One that never reached VH is deleted at once
    (returns ``"deleted"``). One that may have a VH row keeps existing until that row is gone:
    its queue item becomes a ``delete`` (``pending``, due now; returns ``"queued"``), which
    removes the row through the ledger under the conflict rule of
    :func:`discoveries.haven.writer.haven_discovery_delete`, then deletes the discovery.
    Recorded as an :class:`OperatorAction` ``delete``. Raises ``Discovery.DoesNotExist``."""
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        discovery = Discovery.objects.select_for_update().get(pk=discovery_id)
        item = SyncQueueItem.objects.select_for_update().filter(discovery_id=discovery_id).first()
        detail = {"discovery_id": discovery_id, "haven_discovery_id": discovery_vh_row(discovery)}
        if not _may_be_in_vh(discovery, item):
            discovery.delete()
            result = "deleted"
        else:
            if item is None:
                item = queue_item_create(discovery=discovery)
            if _held_by_worker(item):
                # Its worker sees the new operation when it records its outcome, and leaves the
                # item pending for the delete.
                SyncQueueItem.objects.filter(id=item.id).update(operation=Operation.DELETE)
            else:
                SyncQueueItem.objects.filter(id=item.id).update(
                    operation=Operation.DELETE,
                    metadata=_merged_metadata(item, drop=ROUND_KEYS),
                    **_round_reset(),
                )
            transaction.on_commit(sync_kick, robust=True)
            result = "queued"
        operator_action_record(
            actor=actor,
            actor_name=actor_name,
            source=source,
            action="delete",
            items_changed=1,
            detail={**detail, "result": result},
        )
    return result


# --- waiting items and conflicts: an operator's choice -----------------------------------------


@dataclass
class UnplacedReport:
    """What "write without a place" did: ``queued`` item ids (written at their next attempt),
    ``refused`` as ``{id: reason}`` (not waiting, or VH-Database.db's own constraints refuse
    the row), and ``missing`` ids that name no item."""

    queued: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)


def queue_items_write_unplaced(
    *, ids: list[int], actor=None, source: str = "admin", actor_name: str | None = None
) -> UnplacedReport:
    """Let ``waiting`` items be written without their place, where the file allows it.

    Each item's row is first tried in VH-Database.db and rolled back
    (:func:`discoveries.haven.writer.haven_unplaced_problem`): the file's own constraints
    decide, and a refusal is reported with them, the item left waiting. The others become
    ``pending`` (attempts 0, due now) and are written at their next attempt, even if the
    system is still missing. Recorded as one :class:`OperatorAction` ``write_unplaced``."""
    report = UnplacedReport()
    wanted = list(dict.fromkeys(ids))
    items = SyncQueueItem.objects.in_bulk(wanted)
    allowed: list[int] = []
    for item_id in wanted:
        item = items.get(item_id)
        if item is None:
            report.missing.append(item_id)
            continue
        if item.sync_status != SyncStatus.WAITING:
            report.refused[item_id] = f"it is {item.sync_status}, not waiting for its place"
            continue
        try:
            problem = haven_unplaced_problem(discovery=item.discovery)
        except (HavenError, DatabaseError, Discovery.DoesNotExist) as exc:
            problem = f"VH-Database.db cannot be tried now ({type(exc).__name__}: {exc})"
        if problem:
            report.refused[item_id] = problem
        else:
            allowed.append(item_id)
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        for item in SyncQueueItem.objects.select_for_update().filter(
            id__in=allowed, sync_status=SyncStatus.WAITING
        ):
            SyncQueueItem.objects.filter(id=item.id).update(
                metadata=_merged_metadata(item, drop=ROUND_KEYS, write_unplaced=True),
                **_round_reset(),
            )
            report.queued.append(item.id)
        if report.queued:
            operator_action_record(
                actor=actor,
                actor_name=actor_name,
                source=source,
                action="write_unplaced",
                items_changed=len(report.queued),
                detail={"ids": report.queued[:1000]},
            )
            transaction.on_commit(sync_kick, robust=True)
    return report


#: An operator's choices for an item in conflict: keep the keeper version (overwrite or delete
#: the Control Room's row) or keep the Control Room's (leave its row as it is).
CONFLICT_CHOICES = ("keeper", "control_room")


def queue_item_conflict_resolve(
    *,
    item_id: int,
    keep: str,
    seen_hash: str | None = None,
    actor=None,
    source: str = "admin",
    actor_name: str | None = None,
) -> SyncQueueItem:
    """Settle ``item_id``'s conflict: ``keep="keeper"`` applies our update or delete to the
    Control Room's row (writing it again if the Control Room deleted it); ``keep="control_room"``
    leaves that row as it is, records it in the ledger as the row's new baseline (later edits
    change only the columns edited after it), and cancels a delete (the keeper discovery
    stays); when the Control Room deleted the row, it deletes the keeper discovery too.
    Either choice applies only to the version the operator saw: if the Control Room changed the
    row again, the item comes back in conflict with the new version. The item becomes
    ``pending`` (attempts 0, due now); the choice is recorded as an :class:`OperatorAction`.
    ``seen_hash``, when given, is the ``theirs_hash`` of the version the operator was shown:
    if the item holds another by now, nothing changes. Raises :class:`QueueItemNotFound`,
    :class:`QueueItemNotInConflict`, :class:`ConflictVersionChanged`, and ``ValueError`` for
    another ``keep``."""
    if keep not in CONFLICT_CHOICES:
        raise ValueError(f"keep must be one of {', '.join(CONFLICT_CHOICES)}")
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        item = SyncQueueItem.objects.select_for_update().filter(id=item_id).first()
        if item is None:
            raise QueueItemNotFound(f"no queue item {item_id}")
        conflict = (
            (item.metadata or {}).get("conflict") if isinstance(item.metadata, dict) else None
        )
        if item.sync_status != SyncStatus.CONFLICT or not isinstance(conflict, dict):
            raise QueueItemNotInConflict(item_id, item.sync_status)
        seen = conflict.get("theirs_hash")
        if seen_hash is not None and seen_hash != seen:
            raise ConflictVersionChanged(item_id)
        changes: dict[str, object] = {}
        drop = ROUND_KEYS
        if keep == "keeper":
            choice = {"force_hash": seen}
            drop = (*ROUND_KEYS, "kept_base")
        elif conflict.get("theirs_deleted"):
            # The Control Room deleted the row: keeping its version deletes the discovery too.
            choice = {}
            changes["operation"] = Operation.DELETE
        else:
            choice = {"accept_hash": seen}
            base = conflict.get("base") or conflict.get("ours")
            if base:
                # Later edits then change only what keeper.db changes, not the rest back.
                choice["kept_base"] = base
            changes["operation"] = Operation.WRITE
        SyncQueueItem.objects.filter(id=item.id).update(
            metadata=_merged_metadata(item, drop=drop, **choice),
            **_round_reset(**changes),
        )
        operator_action_record(
            actor=actor,
            actor_name=actor_name,
            source=source,
            action=f"conflict_keep_{keep}",
            items_changed=1,
            detail={"ids": [item.id], "haven_discovery_id": conflict.get("haven_discovery_id")},
        )
        transaction.on_commit(sync_kick, robust=True)
    return SyncQueueItem.objects.get(id=item_id)


def operator_action_record(
    *,
    actor,
    source: str,
    action: str,
    items_changed: int,
    detail: dict,
    actor_name: str | None = None,
) -> OperatorAction:
    """Keep a record of an operator's change to the queue: ``actor`` (a user or None, shown as
    ``actor_name`` when given, else "anonymous"), ``source`` (api, admin, bot), ``action``, how
    many items it changed, and ``detail`` (ids, at most 1,000, or the filter used)."""
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    if authenticated:
        actor_name = actor.get_username()
    return OperatorAction.objects.create(
        actor=actor if authenticated else None,
        actor_name=(actor_name or "anonymous")[:150],
        source=source,
        action=action,
        items_changed=items_changed,
        detail=detail,
    )
