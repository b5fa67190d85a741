"""Writing a keeper discovery into VH-Database.db exactly once, and previewing that write.

What Keeper Sync adds to the Control Room's file is the ledger (:mod:`discoveries.haven.ledger`)
and one row in ``discoveries`` per keeper discovery, written with its ledger row in one VH
transaction. :func:`haven_discovery_write` returns the ledger's row when the discovery was
written before, links an old bot's identical row, or resolves, maps and inserts. The file is
closed after each discovery by the caller (:func:`discoveries.haven.connection.haven_close`), so
SQLite folds each write into the file itself whenever no other program holds it open.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import DatabaseError, transaction

from discoveries.haven.catalog import system_snapshot
from discoveries.haven.connection import haven_close, haven_connection, haven_replaced_check
from discoveries.haven.errors import HavenSchemaError, HavenUnavailable, MappingError
from discoveries.haven.ledger import ledger_ensure, ledger_find, ledger_record, legacy_match
from discoveries.haven.mapping import ResolvedLocation, discovery_to_haven_row, location_resolve
from discoveries.haven.router import HAVEN_ALIAS

logger = logging.getLogger(__name__)

#: VH columns the exactly-once checks read, before any mapped column is needed.
LOOKUP_COLUMNS = ("discord_user_id", "description", "submission_timestamp")


@dataclass(frozen=True)
class WriteOutcome:
    """The result of :func:`haven_discovery_write`: the VH row id, ``how`` it was obtained
    (``written``, ``linked`` to an old bot's row, or ``ledger`` when an earlier attempt had
    already written it), and the location resolution (``None`` unless written now)."""

    haven_discovery_id: int
    how: str
    location: ResolvedLocation | None


def _haven_columns(cursor) -> frozenset[str]:
    # Read on every write: an operator may add a missing column back at any moment.
    cursor.execute("PRAGMA table_info(discoveries)")
    columns = frozenset(row[1] for row in cursor.fetchall())
    if not columns:
        raise HavenSchemaError("VH-Database.db has no table 'discoveries'")
    return columns


def _require_columns(columns: frozenset[str], needed, purpose: str) -> None:
    missing = sorted(set(needed) - columns)
    if missing:
        raise HavenSchemaError(
            "VH-Database.db table 'discoveries' has no column "
            + ", ".join(repr(c) for c in missing)
            + f" ({purpose})"
        )


def _resolve(discovery) -> ResolvedLocation:
    return location_resolve(
        system_name=discovery.system_name,
        location=discovery.location,
        location_type=discovery.location_type,
        system=system_snapshot(discovery.system_name),
    )


def haven_discovery_write(*, discovery, link_only: bool = False) -> WriteOutcome | None:
    """Put one keeper discovery into VH-Database.db exactly once.

    ``discovery`` is anything with the keeper columns (a ``Discovery``). In one VH write
    transaction: return the ledger's row if this discovery was written before; else link an
    old bot's identical row; else (unless ``link_only``) resolve the location, map, insert the
    row and its ledger entry. ``link_only`` returns ``None`` when there is nothing to link.
    Raises :class:`HavenUnavailable` (missing, disabled, or replaced during the write),
    :class:`HavenSchemaError` (a column the row needs is missing, named in the message),
    :class:`MappingError`, or the database's own error (``OperationalError: database is
    locked`` after the busy timeout).
    """
    conn = haven_connection()
    with transaction.atomic(using=HAVEN_ALIAS), conn.cursor() as cursor:
        outcome = _write_in_transaction(cursor, discovery, link_only=link_only)
    haven_replaced_check(conn)
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
    ledger_ensure(cursor)
    done = ledger_find(cursor, discovery)
    if done is not None:
        return WriteOutcome(done, "ledger", None)
    linked = legacy_match(cursor, discovery)
    if linked is not None:
        ledger_record(cursor, discovery, haven_id=linked, how="linked", resolved=True)
        return WriteOutcome(linked, "linked", None)
    if link_only:
        return None
    location = _resolve(discovery)
    row = discovery_to_haven_row(discovery, location=location, keeper_discovery_id=discovery.id)
    _require_columns(columns, row, f"needed for {row['discovery_type']} discoveries")
    names = ", ".join(f'"{c}"' for c in row)
    marks = ", ".join(["%s"] * len(row))
    cursor.execute(
        f"INSERT INTO discoveries ({names}) VALUES ({marks})",  # noqa: S608 - names from the mapping
        list(row.values()),
    )
    haven_id = cursor.lastrowid
    ledger_record(cursor, discovery, haven_id=haven_id, how="written", resolved=location.resolved)
    return WriteOutcome(haven_id, "written", location)


@dataclass(frozen=True)
class HavenPreview:
    """What :func:`haven_discovery_write` would write for a discovery now: the VH ``row``
    (``None`` when it cannot be built), the ``location`` resolution, and ``problem``, why there
    is no row."""

    row: dict[str, object] | None
    location: ResolvedLocation | None
    problem: str | None


def haven_row_preview(discovery) -> HavenPreview:
    """Build the VH row the writer would write for ``discovery`` now, reading (never writing)
    its system from VH-Database.db.

    The connection is made query-only for the read and always closed after it, so the caller
    holds no handle on the Control Room's file. A missing or disabled VH, or one that cannot
    be read, is reported in ``problem`` rather than raised; so is a discovery the mapping
    refuses.
    """
    try:
        connection = haven_connection()
        with connection.cursor() as cursor:
            # SQLite refuses any write on this connection until it is closed below.
            cursor.execute("PRAGMA query_only = ON")
        location = _resolve(discovery)
    except HavenUnavailable as exc:
        return HavenPreview(None, None, str(exc))
    except DatabaseError as exc:
        return HavenPreview(None, None, f"VH-Database.db could not be read: {exc}")
    finally:
        haven_close()
    try:
        row = discovery_to_haven_row(discovery, location=location, keeper_discovery_id=discovery.id)
    except MappingError as exc:
        return HavenPreview(None, location, f"the mapping refuses this discovery: {exc}")
    return HavenPreview(row, location, None)
