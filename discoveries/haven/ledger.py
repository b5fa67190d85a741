"""The ledger: the one table Keeper Sync adds to VH-Database.db, and how a discovery is found in it.

``keeper_sync_ledger (keeper_discovery_id, discord_user_id, submission_timestamp,
haven_discovery_id, how, location_resolved, recorded_at)``, primary key ``(keeper_discovery_id,
discord_user_id, submission_timestamp)``, index ``keeper_sync_ledger_haven`` on
``haven_discovery_id``; both made on the first write with ``CREATE … IF NOT EXISTS``.

A ledger row commits in the same VH transaction as the discovery's row, so a worker that dies
after the VH commit but before keeper.db records it leaves the ledger row behind, and the next
attempt finds the VH id instead of inserting again. The ledger names a discovery by its keeper id
*and* its submitter and submission second, so a keeper.db restored from a backup, or a new one,
whose ids are used again for other discoveries is never mistaken for the one that wrote a row.
A VH row the old bot wrote before the queue existed (same ``discord_user_id``,
``submission_timestamp`` and ``description``, not yet in the ledger) is found by
:func:`legacy_match` and linked rather than written twice (REFERENCE.md).

Every function takes a cursor on the ``haven`` connection inside the caller's transaction.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from discoveries.haven.mapping import HAVEN_TIMESTAMP_FORMAT, haven_timestamp

logger = logging.getLogger(__name__)

LEDGER_DDL = (
    "CREATE TABLE IF NOT EXISTS keeper_sync_ledger ("
    " keeper_discovery_id INTEGER NOT NULL,"
    " discord_user_id TEXT NOT NULL,"
    " submission_timestamp TEXT NOT NULL,"
    " haven_discovery_id INTEGER NOT NULL,"
    " how TEXT NOT NULL,"
    " location_resolved INTEGER NOT NULL,"
    " recorded_at TEXT NOT NULL,"
    " PRIMARY KEY (keeper_discovery_id, discord_user_id, submission_timestamp))",
    "CREATE INDEX IF NOT EXISTS keeper_sync_ledger_haven"
    " ON keeper_sync_ledger (haven_discovery_id)",
)


def ledger_ensure(cursor) -> None:
    """Create the ledger table and its index if they are missing."""
    for statement in LEDGER_DDL:
        cursor.execute(statement)


def _identity(discovery) -> tuple[int, str, str]:
    return (
        discovery.id,
        str(discovery.user_id),
        haven_timestamp(discovery.submission_timestamp) or "",
    )


def ledger_find(cursor, discovery) -> int | None:
    """The VH id the ledger records for ``discovery`` (anything with the keeper columns
    ``id``, ``user_id`` and ``submission_timestamp``), or ``None``. A ledger row under the
    same keeper id but another submitter or second is another discovery: it is logged, and
    ``None`` returned."""
    cursor.execute(
        "SELECT haven_discovery_id, discord_user_id, submission_timestamp"
        " FROM keeper_sync_ledger WHERE keeper_discovery_id = %s",
        [discovery.id],
    )
    rows = cursor.fetchall()
    identity = _identity(discovery)
    for haven_id, user_id, stamp in rows:
        if (discovery.id, user_id, stamp) == identity:
            return haven_id
    if rows:
        logger.warning(
            "keeper discovery %s: the ledger holds another discovery under this id (keeper.db "
            "restored from a backup, or replaced?); this one is written as new",
            discovery.id,
        )
    return None


def legacy_match(cursor, discovery) -> int | None:
    """The id of a VH row the old bot wrote for ``discovery`` (same submitter id, description
    and submission second, and in no ledger row yet), or ``None``."""
    stamp = haven_timestamp(discovery.submission_timestamp)
    cursor.execute(
        "SELECT d.id FROM discoveries d"
        " WHERE d.discord_user_id = %s AND d.description = %s"
        " AND (d.submission_timestamp = %s OR datetime(d.submission_timestamp) = %s)"
        " AND NOT EXISTS (SELECT 1 FROM keeper_sync_ledger l"
        "                 WHERE l.haven_discovery_id = d.id)"
        " ORDER BY d.id LIMIT 1",
        [discovery.user_id, discovery.description, stamp, stamp],
    )
    row = cursor.fetchone()
    return row[0] if row else None


def ledger_record(cursor, discovery, *, haven_id: int, how: str, resolved: bool) -> None:
    """Record that ``discovery`` is VH row ``haven_id``: ``how`` is ``written`` or ``linked``;
    ``resolved`` whether its location was found. ``recorded_at`` is now, UTC text."""
    cursor.execute(
        "INSERT INTO keeper_sync_ledger (keeper_discovery_id, discord_user_id,"
        " submission_timestamp, haven_discovery_id, how, location_resolved, recorded_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        [
            *_identity(discovery),
            haven_id,
            how,
            1 if resolved else 0,
            timezone.now().strftime(HAVEN_TIMESTAMP_FORMAT),
        ],
    )
