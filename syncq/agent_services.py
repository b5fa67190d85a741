"""The server's side of the Control Room agent: its heartbeat, the leases it takes, the outcomes
it reports and the catalog it uploads (README, "The Control Room agent").

The agent runs on the Control Room's desktop and only calls out (:mod:`syncq.agent_client`);
these services are what its calls do, reached through :mod:`syncq.agent_api`. Items are claimed
by the queue's own claim (:func:`syncq.services.queue_items_claim`) under a
:class:`~syncq.models.LeaseHolder` that names the agent's run, and their outcomes are recorded
by the local worker's own recorders (:func:`syncq.services.outcomes_record`), so backoff,
waiting, conflicts, edits during a lease and deletes behave alike whoever writes VH. A lease the
agent never acknowledges comes back to the queue: at once when the agent starts again (a new run
releases the old run's leases), or when its heartbeat has been silent for
:data:`syncq.services.HOLDER_STALE_SECONDS`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from discoveries.catalog import catalog_copy
from discoveries.haven.catalog import (
    CatalogInvalid,
    catalog_canonical,
    catalog_content_hash,
    catalog_patch,
)
from discoveries.models import CatalogCopy
from syncq.agent_protocol import item_problem, item_to_wire, outcome_from_wire
from syncq.models import HavenAgent, LeaseHolder, Operation, SyncQueueItem, SyncStatus
from syncq.services import (
    NOT_WAITING,
    Attempted,
    BatchReport,
    queue_housekeep,
    queue_item_fail,
    queue_items_claim,
    queue_waiting_wake,
)
from syncq.services import outcomes_record as _record

logger = logging.getLogger(__name__)

#: How often a waiting lease request looks for a due item, in seconds: a discovery submitted
#: while the agent waits is sent within about this long.
POLL_STEP_SECONDS = 0.2
#: The most items one lease request takes.
LEASE_MAX_ITEMS = 500
#: How often a waiting lease request marks its agent seen, in seconds (each a keeper.db write).
TOUCH_EVERY_SECONDS = 5.0


class LeaseConflict(Exception):
    """A lease the agent no longer holds (it lapsed and was taken back, or an operator reset
    its items) or never held (another agent's): the API answers 409 and nothing is changed.
    ``held`` lists the ids of the request still held under that lease by this agent."""

    def __init__(self, message: str, *, held: list[int]):
        super().__init__(message)
        self.held = held


class ReportInvalid(ValueError):
    """A report that cannot be true of the item it names (an outcome of a delete for an item
    leased to write, or the other way round): the API answers 400 and nothing is recorded."""


#: The outcomes each operation can have (:class:`~discoveries.haven.writer.WriteOutcome`).
OUTCOMES_OF = {
    Operation.WRITE: frozenset(
        {"written", "linked", "ledger", "updated", "kept", "waiting", "conflict"}
    ),
    Operation.DELETE: frozenset({"deleted", "absent", "conflict"}),
}


class CatalogBaseStale(Exception):
    """A catalog diff made against a catalog the server no longer keeps: the agent sends the
    whole catalog instead (409)."""


def agent_for(user) -> HavenAgent:
    """The :class:`HavenAgent` row of the token user ``user`` (named ``agent:<name>`` by
    ``manage.py agent_token``), made on first use."""
    name = user.get_username().removeprefix("agent:")[:64]
    agent, _ = HavenAgent.objects.get_or_create(name=name)
    return agent


def _holder_key(agent: HavenAgent, instance: str, agent_id: str = "") -> str:
    """The ``host_key`` of the leases of ``agent``'s run ``instance`` on the desktop whose
    state file is ``agent_id``."""
    return f"{agent.holder_key()}:{agent_id}:{instance}"


def _touch(agent: HavenAgent, instance: str, agent_id: str, now: datetime) -> None:
    """Mark ``agent`` seen now and keep the leases of its run ``instance`` alive."""
    HavenAgent.objects.filter(pk=agent.pk).update(last_seen_at=now)
    LeaseHolder.objects.filter(host_key=_holder_key(agent, instance, agent_id)).update(
        heartbeat_at=now
    )


#: How many runs' first-heard times an agent's row keeps (:func:`_run_started`).
RUNS_KEPT = 20


def _run_started(agent: HavenAgent, instance: str, now: datetime) -> datetime:
    """When the server first heard from ``agent``'s run ``instance`` (``now`` for a new run),
    kept in ``HavenAgent.runs`` for the last :data:`RUNS_KEPT` runs. The server's clock, not
    the desktop's."""
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        row = HavenAgent.objects.select_for_update().get(pk=agent.pk)
        runs = dict(row.runs) if isinstance(row.runs, dict) else {}
        if instance not in runs:
            runs[instance] = now.isoformat()
            runs = dict(sorted(runs.items(), key=lambda run: run[1])[-RUNS_KEPT:])
            HavenAgent.objects.filter(pk=agent.pk).update(runs=runs)
    started = parse_datetime(str(runs.get(instance, "")))
    return started if started is not None and started.tzinfo is not None else now


def _earlier_runs_release(
    agent: HavenAgent, instance: str, agent_id: str, *, started: datetime, this_run_too=False
) -> int:
    """Take back at once the items still leased by earlier runs of ``agent`` on the same
    desktop (same ``agent_id``) that have been silent since run ``instance`` ``started``: it
    was killed or restarted before reporting them. With ``this_run_too``, those of run
    ``instance`` itself too. They become ``pending``, due now, their attempt counted (as a dead
    worker's: an item that kills its agent cannot loop for ever), or ``max_retries_exceeded``
    on their last attempt. Returns how many.

    A run asks for a lease only once it has reported (or given up on) every item it holds,
    so at a lease request whatever its run still holds is a lease whose answer was lost on
    the way: taken back here, it is leased again at once rather than after
    ``SYNC_LEASE_SECONDS``; the ledger keeps a write made meanwhile single. Another run still
    heard from (the agent started twice on one desktop), and another desktop sharing the
    token, keep their leases: they lapse with their heartbeat
    (:func:`syncq.services.queue_leases_release`)."""
    mine = _holder_key(agent, instance, agent_id)
    earlier = (
        Q(host_key__startswith=f"{agent.holder_key()}:{agent_id}:")
        & ~Q(host_key=mine)
        & Q(heartbeat_at__lt=started)
    )
    held = LeaseHolder.objects.filter(earlier | Q(host_key=mine) if this_run_too else earlier)
    stale = list(held.values_list("token", flat=True))
    if not stale:
        return 0
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        held_items = SyncQueueItem.objects.filter(
            sync_status=SyncStatus.SYNCING, lease_token__in=stale
        )
        exceeded = held_items.filter(sync_attempts__gte=F("max_attempts")).update(
            sync_status=SyncStatus.MAX_RETRIES_EXCEEDED,
            sync_error="the Control Room agent did not report its last attempt (it restarted, "
            "or the lease's answer was lost on the way)",
            **NOT_WAITING,
        )
        released = exceeded + held_items.update(
            sync_status=SyncStatus.PENDING,
            sync_error="the Control Room agent did not report this attempt (it restarted, or "
            "the lease's answer was lost on the way); due again at once",
            **NOT_WAITING,
        )
        LeaseHolder.objects.filter(token__in=stale).delete()
    if released:
        logger.info("agent %s: took back %s leased items not reported", agent.name, released)
    return released


@dataclass
class Heartbeat:
    """What the agent tells with each heartbeat: its run ``instance`` (a new one each start),
    ``agent_id`` (its state file's), ``version``, ``host``, ``vh_state`` / ``vh_detail``, what
    it found of VH-Database.db, and ``catalog_hash``, the content hash of VH's catalog as it
    last read it."""

    instance: str
    agent_id: str = ""
    version: str = ""
    host: str = ""
    vh_state: str = ""
    vh_detail: str = ""
    catalog_hash: str = ""


def agent_heartbeat(*, agent: HavenAgent, beat: Heartbeat) -> dict[str, object]:
    """Record ``beat`` on ``agent`` (seen now; a new run's start time), release what its
    earlier runs still hold, keep its current leases alive, and mark the kept catalog
    confirmed when the agent's is the same. Returns what the agent needs
    back: ``catalog_hash`` (the catalog the server keeps, ``None`` for none),
    ``poll_seconds`` (the longest lease wait), ``lease_seconds`` and ``server_time``."""
    now = timezone.now()
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        changes = {
            "agent_id": beat.agent_id[:64],
            "version": beat.version[:64],
            "host": beat.host[:255],
            "vh_state": beat.vh_state[:32],
            "vh_detail": beat.vh_detail[:2000],
            "last_seen_at": now,
        }
        if agent.instance != beat.instance:
            changes.update(instance=beat.instance[:64], started_at=now)
        HavenAgent.objects.filter(pk=agent.pk).update(**changes)
    started = _run_started(agent, beat.instance, now)
    released = _earlier_runs_release(agent, beat.instance, beat.agent_id, started=started)
    _touch(agent, beat.instance, beat.agent_id, now)
    copy = catalog_copy()
    if copy is not None and beat.catalog_hash and beat.catalog_hash == copy.content_hash:
        # The desktop's map is still the one kept here: the copy is as good as new.
        CatalogCopy.objects.filter(pk=1).update(checked_at=now)
    return {
        "catalog_hash": copy.content_hash if copy else None,
        "poll_seconds": settings.HAVEN_AGENT_POLL_SECONDS,
        "lease_seconds": settings.SYNC_LEASE_SECONDS,
        "released": released,
        "server_time": now,
    }


@dataclass
class Lease:
    """What :func:`agent_lease` took: the lease ``token`` and its ``items`` as the agent gets
    them (:func:`syncq.agent_protocol.item_to_wire`); ``failed`` counts items no worker could
    write (discovery gone or unreadable, its time unwritable), failed here instead of sent."""

    token: str | None
    items: list[dict] = field(default_factory=list)
    failed: int = 0


def agent_lease(
    *,
    agent: HavenAgent,
    instance: str,
    limit: int,
    wait_seconds: float,
    agent_id: str = "",
    stopping=None,
) -> Lease:
    """Claim up to ``limit`` (1 to :data:`LEASE_MAX_ITEMS`) due items for ``agent``'s run
    ``instance`` (on the desktop of state file ``agent_id``), waiting up to ``wait_seconds``
    (at most ``HAVEN_AGENT_POLL_SECONDS``) for one to become due: a long poll, looking every
    :data:`POLL_STEP_SECONDS` (a read; the claim's write transaction only once one is due).
    What earlier runs, and this one, still hold unreported is released first
    (:func:`_earlier_runs_release`), and the queue's housekeeping runs (dead holders, lapsed
    leases, waiting items). ``stopping()`` (optional) ends the wait early. Returns a
    :class:`Lease` (``token`` ``None`` when nothing was due)."""
    limit = max(1, min(int(limit), LEASE_MAX_ITEMS))
    deadline = time.monotonic() + max(0.0, min(wait_seconds, settings.HAVEN_AGENT_POLL_SECONDS))
    started = _run_started(agent, instance, timezone.now())
    _earlier_runs_release(agent, instance, agent_id, started=started, this_run_too=True)
    queue_housekeep(BatchReport())
    lease = Lease(token=None)
    touched = None
    while True:
        now = timezone.now()
        if touched is None or time.monotonic() - touched >= TOUCH_EVERY_SECONDS:
            _touch(agent, instance, agent_id, now)
            touched = time.monotonic()
        # A read first: only a due item makes the claim's write transaction worth taking.
        if SyncQueueItem.objects.due_ids(now, limit=1):
            holder = LeaseHolder(
                host=(agent.host or agent.name)[:255],
                host_key=_holder_key(agent, instance, agent_id),
                pid=0,
                pid_started=None,
            )
            token, items = queue_items_claim(limit=limit, holder=holder)
            if items:
                return _lease_fill(lease, token, items)
        if time.monotonic() >= deadline or (stopping is not None and stopping()):
            return lease
        time.sleep(POLL_STEP_SECONDS)


def _lease_fill(lease: Lease, token: str, items: list[SyncQueueItem]) -> Lease:
    lease.token = token
    for item in items:
        problem = item_problem(item)
        if problem is None:
            lease.items.append(item_to_wire(item, write_unplaced=settings.SYNC_WRITE_UNPLACED))
            continue
        queue_item_fail(item=item, token=token, error=f"HavenError: {problem}")
        lease.failed += 1
    if not lease.items:
        LeaseHolder.objects.filter(token=token).delete()
    return lease


@dataclass
class Reported:
    """One item's result as the agent reports it (checked by :mod:`syncq.agent_api`): its
    ``id``, the ``operation`` and ``digest`` it was leased with, when its attempt
    ``started_at``, and either ``outcome`` (:func:`~syncq.agent_protocol.outcome_to_wire`'s
    shape) or ``error`` (text)."""

    id: int
    operation: str
    digest: str
    started_at: datetime | None
    outcome: dict | None = None
    error: str | None = None


def agent_results_record(
    *, agent: HavenAgent, instance: str, token: str, results: list[Reported]
) -> dict[str, object]:
    """Record ``results`` of lease ``token``, all or nothing, as the server's own worker
    records a VH transaction's (:func:`syncq.services.outcomes_record`): synced, waiting,
    conflict, deleted, or a failure with its backoff.

    Raises :class:`LeaseConflict` (nothing recorded) when ``token`` is not a lease of this
    agent, or when any of the items is no longer ``syncing`` under it, and
    :class:`ReportInvalid` (nothing recorded) for an outcome its operation cannot have. Once
    no item is left under the lease, its holder is deleted. Returns ``{"recorded": n,
    "states": {id: state}, "errors": [[id, text], …]}`` (``errors``: keeper.db could not
    record; the agent reports them again)."""
    ids = [r.id for r in results]
    for result in results:
        how = (result.outcome or {}).get("how")
        if how is not None and how not in OUTCOMES_OF.get(result.operation, ()):
            raise ReportInvalid(f"item {result.id}: a {result.operation} cannot end {how}")
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        holder = LeaseHolder.objects.select_for_update().filter(token=token).first()
        if holder is None or not holder.host_key.startswith(agent.holder_key() + ":"):
            why = "is not held" if holder is None else "belongs to another agent"
            raise LeaseConflict(f"lease {token} {why}", held=[])
        items = {
            item.id: item
            for item in SyncQueueItem.objects.select_for_update().filter(
                id__in=ids, sync_status=SyncStatus.SYNCING, lease_token=token
            )
        }
        if len(items) != len(set(ids)):
            lost = sorted(set(ids) - set(items))
            raise LeaseConflict(
                f"items {', '.join(map(str, lost))} are no longer held under lease {token}",
                held=sorted(items),
            )
        copy = catalog_copy()
        now = timezone.now()
        attempted = []
        for result in results:
            item = items[result.id]
            if result.operation == Operation.DELETE and item.operation != Operation.DELETE:
                # Only a delete that was asked for can end in the discovery's deletion.
                raise ReportInvalid(f"item {result.id} was not leased to delete")
            item.operation = result.operation  # as leased: a delete asked since is "again"
            item.digest = result.digest
            started_at = result.started_at
            if started_at is not None and not (item.last_sync_attempt <= started_at <= now):
                started_at = None  # the desktop's clock is off: the claim's time instead
            if result.error is not None:
                attempted.append(Attempted(item, started_at, error=result.error))
                continue
            outcome = outcome_from_wire(result.outcome)
            if outcome.how == "waiting" and copy is not None:
                # It waits for the map to change as the server knows it: the agent read its
                # own VH, which the uploaded copy may not show yet.
                outcome = replace(outcome, catalog_version=copy.version)
            attempted.append(Attempted(item, started_at, outcome))
        report = BatchReport()
        _record(attempted, token, report)
        states = dict(SyncQueueItem.objects.filter(id__in=ids).values_list("id", "sync_status"))
        if not SyncQueueItem.objects.filter(
            sync_status=SyncStatus.SYNCING, lease_token=token
        ).exists():
            LeaseHolder.objects.filter(token=token).delete()
        else:
            holder.heartbeat_at = timezone.now()
            holder.save(update_fields=["heartbeat_at"])
    keeper_errors = [
        [item_id, text]
        for item_id, text in report.errors
        if text == "keeper.db could not record the attempt"
    ]
    HavenAgent.objects.filter(pk=agent.pk).update(last_seen_at=timezone.now())
    return {
        "recorded": len(results) - len(keeper_errors),
        "states": {item_id: states.get(item_id, "deleted") for item_id in ids},
        "errors": keeper_errors,
    }


def agent_catalog_upload(
    *,
    agent: HavenAgent,
    content_hash: str,
    version: str,
    full: object = None,
    diff: object = None,
    base_hash: str | None = None,
) -> dict[str, object]:
    """Keep the catalog the agent uploads: ``full`` (the whole canonical catalog,
    :func:`discoveries.haven.catalog.catalog_canonical`) or ``diff`` against ``base_hash``
    (:func:`~discoveries.haven.catalog.catalog_diff`). The result must hash to
    ``content_hash``; ``version`` is VH's own catalog version, which waiting items compare
    (they are woken here when it changed). Uploading the catalog the server already keeps only
    marks it checked.

    Raises :class:`~discoveries.haven.catalog.CatalogInvalid` (400: wrong shape, or the result
    does not hash to ``content_hash``) and :class:`CatalogBaseStale` (409: the server keeps no
    catalog of ``base_hash``). Returns ``{"content_hash", "uploaded_at", "changed", "woken"}``.
    """
    now = timezone.now()
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        copy = CatalogCopy.objects.select_for_update().filter(pk=1).first()
        if copy is not None and copy.content_hash == content_hash and copy.version == version:
            CatalogCopy.objects.filter(pk=1).update(checked_at=now)
            return {
                "content_hash": content_hash,
                "uploaded_at": copy.uploaded_at,
                "changed": False,
                "woken": 0,
            }
        if (full is None) == (diff is None):
            raise CatalogInvalid("send exactly one of full and diff")
        if full is not None:
            snapshot = catalog_canonical(full)
        else:
            if copy is None or copy.content_hash != base_hash:
                raise CatalogBaseStale(
                    "the server keeps no catalog of that base_hash: send the whole catalog"
                )
            current = {"systems": copy.systems, "planets": copy.planets, "moons": copy.moons}
            snapshot = catalog_patch(current, diff)
        if catalog_content_hash(snapshot) != content_hash:
            raise CatalogInvalid("the catalog does not hash to content_hash")
        CatalogCopy.objects.update_or_create(
            pk=1,
            defaults={
                **snapshot,
                "content_hash": content_hash,
                "version": version[:64],
                "uploaded_at": now,
                "checked_at": now,
                "uploaded_by": agent.name,
            },
        )
        HavenAgent.objects.filter(pk=agent.pk).update(catalog_hash=content_hash, last_seen_at=now)
    woken = queue_waiting_wake()
    logger.info(
        "agent %s uploaded VH's catalog %s (%s systems); %s waiting items woken",
        agent.name,
        content_hash[:12],
        len(snapshot["systems"]),
        woken,
    )
    return {"content_hash": content_hash, "uploaded_at": now, "changed": True, "woken": woken}


#: The operations an agent may report an item as leased with.
OPERATIONS = tuple(Operation.values)
