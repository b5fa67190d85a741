"""Writing discoveries into VH-Database.db exactly once.

What Keeper Sync adds to the Control Room's file, and nothing else:

* table ``keeper_sync_ledger (keeper_discovery_id, discord_user_id, submission_timestamp,
  haven_discovery_id, how, location_resolved, recorded_at)`` with primary key
  ``(keeper_discovery_id, discord_user_id, submission_timestamp)``, and index
  ``keeper_sync_ledger_haven`` on ``haven_discovery_id``; both made on the first write with
  ``CREATE … IF NOT EXISTS``;
* one row in ``discoveries`` per keeper discovery, and its ledger row, in one VH transaction.

Because the ledger row commits with the VH row, a worker that dies after the VH commit but
before keeper.db records it leaves a ledger row behind, and the next attempt returns the same
VH id instead of inserting again. The ledger names a discovery by its keeper id *and* its
submitter and submission second, so a keeper.db restored from a backup, or a new one, whose
ids are used again for other discoveries is never mistaken for the one that wrote a row. A VH
row the old bot wrote before the queue existed (same ``discord_user_id``,
``submission_timestamp`` and ``description``, not yet in the ledger) is linked rather than
written twice (REFERENCE.md). The file is opened read-write without create (``mode=rw``), with
a busy timeout, and closed after each discovery, so SQLite folds each write into the file
itself whenever no other program holds it open; its journal mode and pragmas are left alone.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from discoveries.mapping import (
    HAVEN_TIMESTAMP_FORMAT,
    ResolvedLocation,
    SystemSnapshot,
    discovery_to_haven_row,
    haven_timestamp,
    location_resolve,
)
from discoveries.routers import HAVEN_ALIAS
from syncq.errors import HavenSchemaError, HavenUnavailable

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

#: VH columns the exactly-once checks read, before any mapped column is needed.
LOOKUP_COLUMNS = ("discord_user_id", "description", "submission_timestamp")

_file_identity: tuple[int, int] | None = None


@dataclass(frozen=True)
class WriteOutcome:
    """The result of :func:`haven_discovery_write`: the VH row id, ``how`` it was obtained
    (``written``, ``linked`` to an old bot's row, or ``ledger`` when an earlier attempt had
    already written it), and the location resolution."""

    haven_discovery_id: int
    how: str
    location: ResolvedLocation | None


def haven_status() -> str:
    """``disabled``, ``missing`` or ``ok`` by configuration and the file's presence alone
    (opens nothing)."""
    if not settings.USE_HAVEN_DATABASE:
        return "disabled"
    return "ok" if os.path.isfile(settings.HAVEN_DB_PATH) else "missing"


def haven_probe(*, timeout_seconds: float = 0.2) -> str:
    """The Control Room file's state for ``/health``: ``disabled``, ``missing``, ``locked``
    (another program holds its write lock now, or the file is read-only) or ``ok``; a file
    that is not a SQLite database counts as missing. Opens it read-write without create and
    takes and releases the write lock, writing nothing."""
    status = haven_status()
    if status != "ok":
        return status
    try:
        # SQLite quietly opens a write-protected file read-only; the OS tells the truth.
        os.close(os.open(settings.HAVEN_DB_PATH, os.O_RDWR))
    except PermissionError:
        return "locked"
    except OSError:
        return "missing"
    uri = f"file:{quote(str(settings.HAVEN_DB_PATH), safe='/')}?mode=rw"
    try:
        probe = sqlite3.connect(uri, uri=True, timeout=timeout_seconds, isolation_level=None)
    except sqlite3.Error:
        return "missing"
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
    except sqlite3.DatabaseError as exc:
        # A read-only file cannot take writes either: to the operator it is locked.
        text = str(exc)
        locked = any(word in text for word in ("locked", "busy", "readonly"))
        return "locked" if locked else "missing"
    finally:
        probe.close()
    return "ok"


def haven_connection():
    """The ``haven`` connection, checked to point at the file now at ``HAVEN_DB_PATH``.

    Raises :class:`HavenUnavailable` when the sync is switched off or the file is missing. If
    the file was replaced since the connection opened (moved away and restored, say), the old
    connection is closed first, so no write lands in a file that is no longer the Control
    Room's.
    """
    global _file_identity
    if not settings.USE_HAVEN_DATABASE:
        raise HavenUnavailable("USE_HAVEN_DATABASE is false: the queue is kept, VH is not used")
    try:
        st = os.stat(settings.HAVEN_DB_PATH)
    except FileNotFoundError:
        haven_close()
        raise HavenUnavailable(
            "VH-Database.db is missing at HAVEN_DB_PATH; waiting for it to come back"
        ) from None
    identity = (st.st_dev, st.st_ino)
    conn = connections[HAVEN_ALIAS]
    if conn.connection is not None and identity != _file_identity:
        conn.close()
    conn.ensure_connection()
    _file_identity = identity
    return conn


def _path_identity() -> tuple[int, int] | None:
    try:
        st = os.stat(settings.HAVEN_DB_PATH)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _replaced_during_write(conn) -> None:
    """Raise :class:`HavenUnavailable` if the file at ``HAVEN_DB_PATH`` is no longer the one
    this connection opened (moved away, or another put in its place, while we wrote).

    SQLite finds a WAL file by name: our committed pages still sit in ``VH-Database.db-wal``,
    which now stands beside the new file and would be replayed into it. A TRUNCATE checkpoint
    through our connection first moves those pages into the file we wrote (wherever it went)
    and empties the WAL, so the new file is left intact. The caller's item is then retried
    into the file now at the path.
    """
    if _path_identity() == _file_identity:
        return
    with conn.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    haven_close()
    raise HavenUnavailable(
        "VH-Database.db was moved or replaced while this discovery was being written; it is "
        "written again into the file now at HAVEN_DB_PATH"
    )


def haven_close() -> None:
    """Close the ``haven`` connection so that no file handle is held between batches."""
    connections[HAVEN_ALIAS].close()


def _haven_columns(cursor) -> frozenset[str]:
    # Read on every write: an operator may add a missing column back at any moment.
    cursor.execute("PRAGMA table_info(discoveries)")
    columns = frozenset(row[1] for row in cursor.fetchall())
    if not columns:
        raise HavenSchemaError("VH-Database.db has no table 'discoveries'")
    return columns


def system_snapshot(cursor, system_name: str | None) -> SystemSnapshot | None:
    """Read one system by exact name with its planets and their moons, or ``None``."""
    if not system_name:
        return None
    cursor.execute("SELECT id FROM systems WHERE name = %s", [system_name])
    found = cursor.fetchone()
    if found is None:
        return None
    system_id = found[0]
    cursor.execute("SELECT id, name FROM planets WHERE system_id = %s", [system_id])
    planets = {name: pid for pid, name in cursor.fetchall()}
    cursor.execute(
        "SELECT m.name, m.id, m.planet_id FROM moons m JOIN planets p ON p.id = m.planet_id"
        " WHERE p.system_id = %s ORDER BY m.id",
        [system_id],
    )
    moons = tuple((name, mid, pid) for name, mid, pid in cursor.fetchall())
    return SystemSnapshot(system_id, planets, moons)


def _identity(discovery) -> tuple[int, str, str]:
    return (
        discovery.id,
        str(discovery.user_id),
        haven_timestamp(discovery.submission_timestamp) or "",
    )


def _legacy_match(cursor, discovery) -> int | None:
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


def _ledger_find(cursor, discovery) -> int | None:
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


def _ledger_record(cursor, discovery, haven_id: int, how: str, resolved: bool) -> None:
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


def _require_columns(columns: frozenset[str], needed, purpose: str) -> None:
    missing = sorted(set(needed) - columns)
    if missing:
        raise HavenSchemaError(
            "VH-Database.db table 'discoveries' has no column "
            + ", ".join(repr(c) for c in missing)
            + f" ({purpose})"
        )


def haven_discovery_write(*, discovery, link_only: bool = False) -> WriteOutcome | None:
    """Put one keeper discovery into VH-Database.db exactly once.

    In one VH write transaction: return the ledger's row if this discovery was written before;
    else link an old bot's identical row; else (unless ``link_only``) resolve the location,
    map, insert the row and its ledger entry. ``link_only`` returns ``None`` when there is
    nothing to link. Raises :class:`HavenUnavailable` (missing/disabled), :class:`HavenSchemaError`
    (a column the row needs is missing, named in the message), :class:`MappingError`, or the
    database's own error (``OperationalError: database is locked`` after the busy timeout).
    """
    conn = haven_connection()
    with transaction.atomic(using=HAVEN_ALIAS), conn.cursor() as cursor:
        outcome = _write_in_transaction(cursor, discovery, link_only=link_only)
    _replaced_during_write(conn)
    if outcome is not None and outcome.location and outcome.location.unresolved:
        logger.warning(
            "discovery %s written to VH #%s with an unresolved location: %s",
            discovery.id,
            outcome.haven_discovery_id,
            outcome.location.unresolved,
        )
    return outcome


def _write_in_transaction(cursor, discovery, *, link_only: bool) -> WriteOutcome | None:
    columns = _haven_columns(cursor)
    _require_columns(columns, LOOKUP_COLUMNS, "needed to find rows already written")
    for statement in LEDGER_DDL:
        cursor.execute(statement)
    done = _ledger_find(cursor, discovery)
    if done is not None:
        return WriteOutcome(done, "ledger", None)
    linked = _legacy_match(cursor, discovery)
    if linked is not None:
        _ledger_record(cursor, discovery, linked, "linked", True)
        return WriteOutcome(linked, "linked", None)
    if link_only:
        return None
    location = location_resolve(
        system_name=discovery.system_name,
        location=discovery.location,
        location_type=discovery.location_type,
        system=system_snapshot(cursor, discovery.system_name),
    )
    row = discovery_to_haven_row(discovery, location=location, keeper_discovery_id=discovery.id)
    _require_columns(columns, row, f"needed for {row['discovery_type']} discoveries")
    names = ", ".join(f'"{c}"' for c in row)
    marks = ", ".join(["%s"] * len(row))
    cursor.execute(
        f"INSERT INTO discoveries ({names}) VALUES ({marks})",  # noqa: S608 - names from the mapping
        list(row.values()),
    )
    haven_id = cursor.lastrowid
    _ledger_record(cursor, discovery, haven_id, "written", location.resolved)
    return WriteOutcome(haven_id, "written", location)
