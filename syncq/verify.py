"""Checking that VH-Database.db still holds what keeper.db says was synced, and putting back
what it lost.

A Control Room file restored from an older backup loses our rows and their ledger rows while
keeper.db still calls them synced, or holds an older version of a row we have rewritten since;
:func:`sync_verify` finds them (and rows the Control Room changed, and ledger rows of keeper
discoveries deleted behind the sync's back) by reading every keeper discovery once and handing
it to :func:`discoveries.haven.verify.haven_verify`, which compares in bulk and links the rows
an old bot's queue said it had synced. Each run is kept as a :class:`SyncVerifyRun`. With
``repair`` the missing and outdated discoveries are queued again; the sync then writes each
exactly once, since the ledger (or an identical row an old bot left) is consulted before any
insert, and rewrites an outdated row in place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, transaction
from django.utils import timezone

from discoveries.haven.errors import HavenError
from discoveries.haven.verify import Finding, KeeperDiscovery, haven_verify, keeper_identity
from discoveries.models import Discovery
from syncq.models import VERIFY_IDS_KEPT, Operation, SyncQueueItem, SyncStatus, SyncVerifyRun
from syncq.services import NOT_WAITING, operator_action_record, sync_kick

logger = logging.getLogger(__name__)

#: Ids per statement when keeper.db is asked about many discoveries at once: below SQLite's
#: oldest limit on bound parameters (999).
CHUNK = 900


def sync_verify(
    *, repair: bool, source: str = "command", actor_name: str = "manage.py sync_verify"
) -> SyncVerifyRun:
    """Check VH-Database.db against keeper.db and keep the result as a :class:`SyncVerifyRun`.

    Reads every keeper discovery with its queue item's state and kept row hash (one query);
    those keeper.db says are in VH (item ``synced``, or pruned after syncing) are checked.
    Ledger rows naming a discovery keeper.db did not hold are looked up again in keeper.db
    before they count as orphaned, and outdated items again before they count, so a discovery
    submitted, edited or synced during the check is never reported. The old bot's rows that
    keeper.db says are synced but no ledger row names are linked in the ledger by the check
    (descriptions read for those only). With ``repair`` the missing and outdated discoveries
    are queued again in one keeper.db transaction (their items ``pending``, attempts 0,
    operation ``write``, due now; an item pruned after syncing is made again), recorded as an
    :class:`~syncq.models.OperatorAction` ``verify_repair`` of ``actor_name`` via ``source``;
    a sync run is requested after the commit.

    When VH cannot be read (switched off, missing, locked past the busy timeout, no
    ``discoveries`` table), the run is returned with ``error`` set and nothing repaired.
    keeper.db's own errors are raised (``DatabaseError``).
    """
    run = SyncVerifyRun.objects.create(started_at=timezone.now(), repair=repair)
    keeper = _keeper_discoveries()
    try:
        report = haven_verify(discoveries=keeper, descriptions=_descriptions)
    except (HavenError, DatabaseError) as exc:
        run.error = f"VH-Database.db could not be checked: {type(exc).__name__}: {exc}"
        logger.warning("sync verify: %s", run.error)
    else:
        orphaned = _orphans_confirm(report.orphaned)
        outdated = _outdated_confirm(report.outdated, keeper)
        run.checked = report.checked
        run.baseline_recorded = report.baseline_recorded
        run.linked = report.linked
        for name, findings in (
            ("missing", report.missing),
            ("changed", report.changed),
            ("outdated", outdated),
            ("orphaned", orphaned),
        ):
            setattr(run, name, len(findings))
            setattr(run, f"{name}_ids", [_as_ids(f) for f in findings[:VERIFY_IDS_KEPT]])
        if repair and (report.missing or outdated):
            run.repaired = _requeue(
                [f.discovery_id for f in (*report.missing, *outdated)],
                run=run,
                source=source,
                actor_name=actor_name,
            )
        if run.missing or run.changed or run.outdated or run.orphaned:
            logger.warning("sync verify: %s", run)
    run.finished_at = timezone.now()
    run.save()
    return run


def _keeper_discoveries() -> list[KeeperDiscovery]:
    """Every keeper discovery with what keeper.db knows of its VH row, in one query (the
    queue item joined, if any)."""
    rows = Discovery.objects.order_by().values_list(
        "id",
        "user_id",
        "submission_timestamp",
        "haven_discovery_id",
        "queue_item__sync_status",
        "queue_item__haven_discovery_id",
        "queue_item__metadata",
    )
    return [
        KeeperDiscovery(
            discovery_id,
            user_id,
            stamp,
            # A synced item, or none left (pruned after syncing) while the discovery has a row.
            status == SyncStatus.SYNCED or (status is None and haven_id is not None),
            item_haven_id if item_haven_id is not None else haven_id,
            _row_hash(metadata),
        )
        for discovery_id, user_id, stamp, haven_id, status, item_haven_id, metadata in (
            rows.iterator(chunk_size=5000)
        )
    ]


def _row_hash(metadata: object) -> str | None:
    """The hash of the VH row as the sync last left it, kept in an item's ``metadata``
    (:func:`syncq.services.queue_item_succeed`); ``None`` for items synced before it was kept.
    Read in Python, not with SQL's JSON functions: an old bot's item may hold text that is no
    JSON, which the ORM hands back as it is."""
    row_hash = metadata.get("row_hash") if isinstance(metadata, dict) else None
    return row_hash if isinstance(row_hash, str) else None


def _descriptions(discovery_ids: list[int]) -> dict[int, str]:
    """The descriptions of ``discovery_ids``, for :func:`haven_verify` to tell an old bot's row
    of each (a few statements of :data:`CHUNK` ids)."""
    found: dict[int, str] = {}
    for start in range(0, len(discovery_ids), CHUNK):
        rows = Discovery.objects.filter(id__in=discovery_ids[start : start + CHUNK]).values_list(
            "id", "description"
        )
        found.update(rows)
    return found


def _orphans_confirm(candidates: list[Finding]) -> list[Finding]:
    """The ``candidates`` (ledger rows naming a discovery keeper.db lacked when first read)
    whose discovery keeper.db still lacks: same keeper id, submitter and submission second."""
    ids = sorted({c.discovery_id for c in candidates})
    present = set()
    for start in range(0, len(ids), CHUNK):
        rows = Discovery.objects.filter(id__in=ids[start : start + CHUNK]).values_list(
            "id", "user_id", "submission_timestamp"
        )
        present.update(keeper_identity(*row) for row in rows)
    return [c for c in candidates if c.identity not in present]


def _outdated_confirm(candidates: list[Finding], keeper: list[KeeperDiscovery]) -> list[Finding]:
    """The ``candidates`` (found outdated against the row hash their items kept when first
    read) whose item is still ``synced`` with that same hash: an item edited and synced again
    during the check compared an older hash than VH now holds."""
    if not candidates:
        return []
    wanted = {c.discovery_id for c in candidates}
    read = {k.discovery_id: k.row_hash for k in keeper if k.discovery_id in wanted}
    ids = sorted(wanted)
    still: set[int] = set()
    for start in range(0, len(ids), CHUNK):
        rows = SyncQueueItem.objects.filter(
            discovery_id__in=ids[start : start + CHUNK], sync_status=SyncStatus.SYNCED
        ).values_list("discovery_id", "metadata")
        still.update(d for d, metadata in rows if _row_hash(metadata) == read[d])
    return [c for c in candidates if c.discovery_id in still]


def _as_ids(finding: Finding) -> dict[str, int | None]:
    return {
        "discovery_id": finding.discovery_id,
        "haven_discovery_id": finding.haven_discovery_id,
    }


def _requeue(
    discovery_ids: Iterable[int], *, run: SyncVerifyRun, source: str, actor_name: str
) -> int:
    """Queue again the discoveries ``discovery_ids`` found missing from VH or outdated there,
    in one keeper.db transaction: a ``synced`` item becomes ``pending`` (attempts 0,
    operation ``write``, due now); a discovery whose item was pruned gets a new one. An item
    that changed state since the check (an edit, a delete) is left to its own round. Returns
    how many were queued."""
    ids = sorted(set(discovery_ids))
    now = timezone.now()
    queued: list[int] = []
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            synced = SyncQueueItem.objects.filter(
                discovery_id__in=chunk, sync_status=SyncStatus.SYNCED
            )
            found = list(synced.select_for_update().values_list("discovery_id", flat=True))
            synced.update(
                sync_status=SyncStatus.PENDING,
                sync_attempts=0,
                sync_error=None,
                operation=Operation.WRITE,
                waiting_on=None,
                **NOT_WAITING,
            )
            pruned = list(
                Discovery.objects.filter(
                    id__in=chunk, queue_item__isnull=True, haven_discovery_id__isnull=False
                ).values_list("id", flat=True)
            )
            SyncQueueItem.objects.bulk_create(
                SyncQueueItem(
                    discovery_id=discovery_id,
                    max_attempts=settings.SYNC_MAX_ATTEMPTS,
                    created_at=now,
                )
                for discovery_id in pruned
            )
            queued += found + pruned
        if queued:
            operator_action_record(
                actor=None,
                actor_name=actor_name,
                source=source,
                action="verify_repair",
                items_changed=len(queued),
                detail={"verify_run": run.id, "discovery_ids": sorted(queued)[:VERIFY_IDS_KEPT]},
            )
            transaction.on_commit(sync_kick, robust=True)
    return len(queued)
