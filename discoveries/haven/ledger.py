"""The ledger: the one table Keeper Sync adds to VH-Database.db, and how a discovery is found in it.

``keeper_sync_ledger (keeper_discovery_id, discord_user_id, submission_timestamp,
haven_discovery_id, how, location_resolved, recorded_at, row_hash)``, primary key
``(keeper_discovery_id, discord_user_id, submission_timestamp)``, index
``keeper_sync_ledger_haven`` on ``haven_discovery_id``; both made on the first write with
``CREATE … IF NOT EXISTS``, and ``row_hash`` added to a ledger made before it existed.

``row_hash`` (:func:`discoveries.haven.mapping.haven_row_hash`) is the hash of the VH row as we
last wrote or linked it. A row whose hash differs now was changed by the Control Room, and an
edit or delete of ours does not overwrite it. ``how`` is ``written``, ``linked``, ``updated`` or
``deleted``: a deleted row keeps its ledger row, so deleting again finds it already done.

A ledger row commits in the same VH transaction as the discovery's row, so a worker that dies
after the VH commit but before keeper.db records it leaves the ledger row behind, and the next
attempt finds the VH id instead of inserting again. The ledger names a discovery by its keeper id
*and* its submitter and submission second, so a keeper.db restored from a backup, or a new one,
whose ids are used again for other discoveries is never mistaken for the one that wrote a row.
A VH row the old bot wrote before the queue existed (same ``discord_user_id`` and
``description``, a ``submission_timestamp`` naming the same instant to the second in whatever
form it was stored, and not yet in the ledger) is found by
:func:`legacy_match` and linked rather than written twice (REFERENCE.md).

A discovery imported into a new keeper.db (``manage.py import_discoveries``) carries the id it
had in the keeper.db that exported it (``imported_keeper_id``); its submitter and second are
kept. When the new keeper.db syncs into the same VH, :func:`ledger_take_over` moves the old
keeper.db's ledger row to the new identity: a copy under the new identity, and the old row kept
as ``how = 'moved'``, in the caller's VH transaction. A moved row names its VH row still, so
:func:`legacy_match` never links that row again, but it is nobody's: the keeper.db that wrote it
may no longer change the row, and a second import of the same file (into a third keeper.db)
finds it moved and is refused, so one VH row never has two owners whose edits would overwrite
each other.

Every function takes a cursor on the ``haven`` connection inside the caller's transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from discoveries.haven.mapping import HAVEN_TIMESTAMP_FORMAT, haven_timestamp
from discoveries.timestamps import timestamp_read

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
    " row_hash TEXT,"
    " PRIMARY KEY (keeper_discovery_id, discord_user_id, submission_timestamp))",
    "CREATE INDEX IF NOT EXISTS keeper_sync_ledger_haven"
    " ON keeper_sync_ledger (haven_discovery_id)",
)


def ledger_ensure(cursor) -> None:
    """Create the ledger table and its index if they are missing, and add ``row_hash`` to a
    ledger made before that column existed (its rows get NULL: nothing known of them)."""
    for statement in LEDGER_DDL:
        cursor.execute(statement)
    cursor.execute("PRAGMA table_info(keeper_sync_ledger)")
    if "row_hash" not in {row[1] for row in cursor.fetchall()}:
        cursor.execute("ALTER TABLE keeper_sync_ledger ADD COLUMN row_hash TEXT")


#: ``how`` of a ledger row whose VH row we deleted (the ledger row stays).
DELETED = "deleted"
#: ``how`` of a ledger row an import into another keeper.db took over (:func:`ledger_take_over`).
MOVED = "moved"


@dataclass(frozen=True)
class LedgerRow:
    """One ledger row of a keeper discovery: its VH row id, ``how`` it came to be (written,
    linked, updated, deleted) and ``row_hash``, the hash of the VH row as we left it (``None``
    for rows recorded before hashes were kept)."""

    haven_id: int
    how: str
    row_hash: str | None

    @property
    def deleted(self) -> bool:
        """Whether the row was deleted by us (``how`` ``deleted``)."""
        return self.how == DELETED

    @property
    def moved(self) -> bool:
        """Whether an import into another keeper.db took the row over (``how`` ``moved``)."""
        return self.how == MOVED


def ledger_identity(
    discovery_id: int, user_id: object, submission_timestamp: datetime | str | None
) -> tuple[int, str, str]:
    """The primary key under which the ledger names a keeper discovery with these columns:
    ``(keeper id, submitter id as text, submission second as VH's UTC text or "")``."""
    return (discovery_id, str(user_id), haven_timestamp(submission_timestamp) or "")


def _identity(discovery) -> tuple[int, str, str]:
    return ledger_identity(discovery.id, discovery.user_id, discovery.submission_timestamp)


def ledger_find(cursor, discovery) -> LedgerRow | None:
    """The ledger row of ``discovery`` (anything with the keeper columns ``id``, ``user_id``
    and ``submission_timestamp``), or ``None``. A ledger row under the same keeper id but
    another submitter or second is another discovery: it is logged, and ``None`` returned."""
    cursor.execute(
        "SELECT haven_discovery_id, discord_user_id, submission_timestamp, how, row_hash"
        " FROM keeper_sync_ledger WHERE keeper_discovery_id = %s",
        [discovery.id],
    )
    rows = cursor.fetchall()
    identity = _identity(discovery)
    for haven_id, user_id, stamp, how, row_hash in rows:
        if (discovery.id, user_id, stamp) == identity:
            return LedgerRow(haven_id, how, row_hash)
    if rows:
        logger.warning(
            "keeper discovery %s: the ledger holds another discovery under this id (keeper.db "
            "restored from a backup, or replaced?); this one is written as new",
            discovery.id,
        )
    return None


def legacy_match(cursor, discovery) -> int | None:
    """The id of a VH row the old bot wrote for ``discovery`` (same submitter id, description
    and submission second, and in no ledger row yet), or ``None``; the lowest such id when
    there are several.

    Times are compared as instants, to the second: both sides are read by
    :func:`discoveries.timestamps.timestamp_read`, since either file may hold
    ``YYYY-MM-DD HH:MM:SS`` text, ISO 8601 with ``T``/``Z``/an offset, or epoch seconds or
    milliseconds. A discovery with no readable time, or a VH row whose time cannot be read,
    matches nothing: a link is never guessed."""
    wanted = _second(timestamp_read(discovery.submission_timestamp))
    if wanted is None:
        return None
    # As text: VH declares the column DATETIME, and the sqlite3 converter for that reads an
    # epoch integer as missing.
    cursor.execute(
        "SELECT d.id, CAST(d.submission_timestamp AS TEXT) FROM discoveries d"
        " WHERE d.discord_user_id = %s AND d.description = %s"
        " AND NOT EXISTS (SELECT 1 FROM keeper_sync_ledger l"
        "                 WHERE l.haven_discovery_id = d.id)"
        " ORDER BY d.id",
        [str(discovery.user_id), discovery.description],
    )
    for haven_id, stamp in cursor.fetchall():
        if _second(timestamp_read(stamp)) == wanted:
            return haven_id
    return None


def known_row_match(cursor, discovery, haven_id: int | None) -> bool:
    """Whether VH row ``haven_id``, which keeper.db records for ``discovery`` (an old bot's
    synced queue row), is that discovery's: it exists, no ledger row names it, and it has the
    same submitter id and submission second. The description is not compared: it may have been
    edited since, on either side, which is for the caller to tell apart."""
    wanted = _second(timestamp_read(discovery.submission_timestamp))
    if haven_id is None or wanted is None:
        return False
    cursor.execute(
        "SELECT CAST(d.submission_timestamp AS TEXT) FROM discoveries d"
        " WHERE d.id = %s AND d.discord_user_id = %s"
        " AND NOT EXISTS (SELECT 1 FROM keeper_sync_ledger l"
        "                 WHERE l.haven_discovery_id = d.id)",
        [haven_id, str(discovery.user_id)],
    )
    found = cursor.fetchone()
    return found is not None and _second(timestamp_read(found[0])) == wanted


def _second(instant: datetime | None) -> datetime | None:
    return None if instant is None else instant.replace(microsecond=0)


def ledger_record(
    cursor, discovery, *, haven_id: int, how: str, resolved: bool, row_hash: str | None
) -> None:
    """Record that ``discovery`` is VH row ``haven_id``: ``how`` is ``written`` or ``linked``;
    ``resolved`` whether its location was found; ``row_hash`` the hash of the row as it now
    stands in VH. A ledger row left by an earlier life of the discovery (deleted, or its VH row
    lost to a restored backup) is replaced. ``recorded_at`` is now, UTC text."""
    cursor.execute(
        "INSERT OR REPLACE INTO keeper_sync_ledger (keeper_discovery_id, discord_user_id,"
        " submission_timestamp, haven_discovery_id, how, location_resolved, recorded_at,"
        " row_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        [
            *_identity(discovery),
            haven_id,
            how,
            1 if resolved else 0,
            timezone.now().strftime(HAVEN_TIMESTAMP_FORMAT),
            row_hash,
        ],
    )


def ledger_take_over(cursor, discovery) -> LedgerRow | None:
    """Move to ``discovery`` (a keeper discovery with ``imported_keeper_id``, the id it had in
    the keeper.db that exported it) the ledger row of its earlier life: the row naming
    ``(imported_keeper_id, user_id, submission second)``. Returns ``None`` when there is none
    (no imported id, the same identity as the discovery's own, or no such row): nothing changed.

    Otherwise, in the caller's VH transaction, the old row is copied under ``discovery``'s own
    identity with the same VH id, ``location_resolved`` and ``row_hash`` (so a row the Control
    Room changed since is still seen as changed), ``how`` ``linked`` (``deleted`` for a row we
    had deleted), and the old row becomes ``moved``; the copy is returned. The caller holds
    VH's write lock (:class:`discoveries.haven.writer.HavenBatch`), so of two keeper.dbs syncing
    the same import at once, the first takes the row and the second finds it moved. When the
    old row is ``moved`` already (another import took it first), nothing changes and that row is
    returned (``moved`` true): the caller refuses the write rather than give the VH row a second
    owner. Raises the database's ``IntegrityError`` if a row under ``discovery``'s identity
    exists, which the caller's :func:`ledger_find` has ruled out.
    """
    old_id = getattr(discovery, "imported_keeper_id", None)
    if old_id is None:
        return None
    old = ledger_identity(old_id, discovery.user_id, discovery.submission_timestamp)
    if old == _identity(discovery):
        return None
    cursor.execute(
        "SELECT haven_discovery_id, how, location_resolved, row_hash FROM keeper_sync_ledger"
        " WHERE keeper_discovery_id = %s AND discord_user_id = %s AND submission_timestamp = %s",
        list(old),
    )
    found = cursor.fetchone()
    if found is None:
        return None
    haven_id, how, resolved, row_hash = found
    if how == MOVED:
        return LedgerRow(haven_id, MOVED, row_hash)
    taken = DELETED if how == DELETED else "linked"
    now = timezone.now().strftime(HAVEN_TIMESTAMP_FORMAT)
    # A plain INSERT: the caller found no row under the new identity (ledger_find), and one
    # appearing meanwhile is an error to report, never a row to overwrite.
    cursor.execute(
        "INSERT INTO keeper_sync_ledger (keeper_discovery_id, discord_user_id,"
        " submission_timestamp, haven_discovery_id, how, location_resolved, recorded_at,"
        " row_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        [*_identity(discovery), haven_id, taken, resolved, now, row_hash],
    )
    cursor.execute(
        "UPDATE keeper_sync_ledger SET how = %s, recorded_at = %s"
        " WHERE keeper_discovery_id = %s AND discord_user_id = %s AND submission_timestamp = %s",
        [MOVED, now, *old],
    )
    logger.info(
        "keeper discovery %s (imported; %s in the keeper.db it came from) took over VH row #%s",
        discovery.id,
        old_id,
        haven_id,
    )
    return LedgerRow(haven_id, taken, row_hash)


def ledger_owner(cursor, haven_id: int) -> int | None:
    """The keeper discovery id of the ledger row that owns VH row ``haven_id`` now (any ``how``
    but ``moved``; the lowest when there are several), or ``None``: for messages."""
    cursor.execute(
        "SELECT MIN(keeper_discovery_id) FROM keeper_sync_ledger"
        " WHERE haven_discovery_id = %s AND how <> %s",
        [haven_id, MOVED],
    )
    found = cursor.fetchone()
    return found[0] if found else None


def ledger_update(cursor, discovery, *, how: str, row_hash: str | None) -> None:
    """Change ``discovery``'s ledger row after an update (``how`` ``updated``), a kept Control
    Room version (``linked``) or a delete (``deleted``, ``row_hash`` None); ``recorded_at``
    becomes now."""
    cursor.execute(
        "UPDATE keeper_sync_ledger SET how = %s, row_hash = %s, recorded_at = %s"
        " WHERE keeper_discovery_id = %s AND discord_user_id = %s AND submission_timestamp = %s",
        [how, row_hash, timezone.now().strftime(HAVEN_TIMESTAMP_FORMAT), *_identity(discovery)],
    )
