"""Checking VH-Database.db against keeper.db's account of it: rows lost to a restored backup,
rows the Control Room changed, and ledger rows whose keeper discovery is gone.

The ledger (:mod:`discoveries.haven.ledger`) lives inside VH-Database.db, so a file restored
from an older backup loses our rows *and* their ledger rows, while keeper.db still says they
were synced; SQLite may even have given the restored file's new rows the ids ours had. A row of
ours is therefore found by the ledger's discovery identity (keeper id, submitter, submission
second), never by a VH id alone. :func:`haven_verify` reads the whole ledger with each row's
mapped columns in one streamed query, whatever the number of discoveries, and records the hash
of rows whose ledger row has none yet (ledger rows made before hashes were kept) as their
baseline. It never opens keeper.db: the caller hands in keeper's side as plain tuples.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from django.db import transaction

from discoveries.haven.connection import haven_close, haven_connection, haven_replaced_check
from discoveries.haven.errors import HavenSchemaError
from discoveries.haven.ledger import ledger_ensure, ledger_identity
from discoveries.haven.mapping import HAVEN_COMMON_COLUMNS, haven_row_hash
from discoveries.haven.router import HAVEN_ALIAS
from discoveries.types import ALL_TYPE_FIELD_KEYS

logger = logging.getLogger(__name__)

#: Ledger rows read from SQLite at a time: the read streams, so memory does not grow with VH.
FETCH_SIZE = 2000


class KeeperDiscovery(NamedTuple):
    """One keeper discovery as keeper.db sees it: its ``discovery_id``, ``user_id`` and
    ``submission_timestamp`` (an aware datetime, as the ORM reads it, or text, or ``None``),
    ``in_vh`` (keeper.db says it is in VH: its queue item is ``synced``, or was pruned after
    syncing) and ``haven_discovery_id``, the VH row keeper.db last recorded (or ``None``)."""

    discovery_id: int
    user_id: str
    submission_timestamp: datetime | str | None
    in_vh: bool
    haven_discovery_id: int | None


class Identity(NamedTuple):
    """A ledger row's name for a keeper discovery: keeper id, submitter id and submission
    second as VH's UTC text (``""`` when the discovery has no time)."""

    discovery_id: int
    user_id: str
    submission_timestamp: str


def keeper_identity(
    discovery_id: int, user_id: object, submission_timestamp: datetime | str | None
) -> Identity:
    """The :class:`Identity` the ledger records for a keeper discovery with these columns
    (:func:`discoveries.haven.ledger.ledger_identity`)."""
    return Identity(*ledger_identity(discovery_id, user_id, submission_timestamp))


@dataclass(frozen=True)
class Finding:
    """A discrepancy about one keeper discovery: ``identity`` and ``haven_discovery_id``, the VH
    row concerned (the ledger's, else the one keeper.db last recorded; ``None`` if neither)."""

    identity: Identity
    haven_discovery_id: int | None

    @property
    def discovery_id(self) -> int:
        return self.identity.discovery_id


@dataclass
class HavenVerifyReport:
    """What :func:`haven_verify` found, every list complete and ordered by keeper id:

    - ``checked``: discoveries keeper.db says are in VH;
    - ``missing``: those with no live ledger row (none, or one marked ``deleted``), or whose
      ledger's VH row no longer exists: a restored backup, or a row deleted in the Control Room;
    - ``changed``: those whose VH row no longer hashes as the ledger says we left it;
    - ``orphaned``: ledger rows (not ``deleted``) naming a discovery keeper.db did not hold
      (as read by the caller: confirm against keeper.db again before reporting them);
    - ``baseline_recorded``: ledger rows that had no hash and now hold their row's current one;
    - ``ledger_found``: whether the file has a ledger at all.
    """

    checked: int = 0
    missing: list[Finding] = field(default_factory=list)
    changed: list[Finding] = field(default_factory=list)
    orphaned: list[Finding] = field(default_factory=list)
    baseline_recorded: int = 0
    ledger_found: bool = True


def haven_verify(*, discoveries: Iterable[KeeperDiscovery]) -> HavenVerifyReport:
    """Compare keeper.db's ``discoveries`` (every keeper discovery, each once) with
    VH-Database.db in bulk: the ledger and its rows' mapped columns in one streamed query,
    hashed by :func:`discoveries.haven.mapping.haven_row_hash` from SQLite's own text
    (``CAST … AS TEXT``, as the writer reads a row), then one short write transaction
    recording a baseline hash for ledger rows that have none (``AND row_hash IS NULL``, so a
    hash the sync recorded meanwhile is kept). A file with no ledger has nothing of ours: every
    discovery keeper.db says is in VH is missing, and nothing is written.

    Returns a :class:`HavenVerifyReport`. Raises :class:`~discoveries.haven.errors.HavenUnavailable`
    (switched off, missing, or replaced during the check),
    :class:`~discoveries.haven.errors.HavenSchemaError` (no ``discoveries`` table) or the
    database's own error. The connection is closed afterwards.
    """
    expected: dict[Identity, int | None] = {}
    known: set[Identity] = set()
    for row in discoveries:
        identity = keeper_identity(row.discovery_id, row.user_id, row.submission_timestamp)
        known.add(identity)
        if row.in_vh:
            expected[identity] = row.haven_discovery_id
    report = HavenVerifyReport(checked=len(expected))
    try:
        conn = haven_connection()
        with conn.cursor() as cursor:
            columns = _mapped_columns(cursor)
            if not _table_exists(cursor, "keeper_sync_ledger"):
                report.ledger_found = False
                report.missing = [Finding(i, h) for i, h in expected.items()]
            else:
                baseline = _ledger_compare(cursor, columns, expected, known, report)
                report.missing.extend(Finding(i, h) for i, h in expected.items())
                if baseline:
                    report.baseline_recorded = _baseline_record(conn, baseline)
        haven_replaced_check(conn)
    finally:
        haven_close()
    for findings in (report.missing, report.changed, report.orphaned):
        findings.sort(key=lambda f: f.identity)
    return report


def _table_exists(cursor, name: str) -> bool:
    cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = %s", [name])
    return cursor.fetchone() is not None


def _table_columns(cursor, table: str) -> list[str]:
    cursor.execute(f"PRAGMA table_info({table})")
    return [row[1] for row in cursor.fetchall()]


def _mapped_columns(cursor) -> list[str]:
    """The mapped columns (of any type) the file's ``discoveries`` table has, in its order."""
    present = _table_columns(cursor, "discoveries")
    if not present:
        raise HavenSchemaError("VH-Database.db has no table 'discoveries'")
    mapped = set(HAVEN_COMMON_COLUMNS) | set(ALL_TYPE_FIELD_KEYS)
    return [name for name in present if name in mapped]


def _ledger_compare(
    cursor,
    columns: list[str],
    expected: dict[Identity, int | None],
    known: set[Identity],
    report: HavenVerifyReport,
) -> list[tuple[str, Identity]]:
    """Walk every live ledger row with its VH row; fill ``report.changed`` and
    ``report.orphaned``, move missing rows from ``expected`` to ``report.missing`` and leave in
    ``expected`` the discoveries with no live ledger row. Returns ``[(hash, identity)]`` for
    ledger rows without a hash whose VH row exists."""
    has_hash = "row_hash" in _table_columns(cursor, "keeper_sync_ledger")
    # As SQLite's own text, as the writer reads a row: no converter of a declared type applies.
    selected = ", ".join(f'CAST(d."{name}" AS TEXT)' for name in columns)
    cursor.execute(
        "SELECT l.keeper_discovery_id, l.discord_user_id, l.submission_timestamp,"
        f" l.haven_discovery_id, {'l.row_hash' if has_hash else 'NULL'}, d.id"
        f"{', ' + selected if selected else ''}"
        " FROM keeper_sync_ledger l LEFT JOIN discoveries d ON d.id = l.haven_discovery_id"
        " WHERE l.how <> 'deleted'"
    )
    baseline: list[tuple[str, Identity]] = []
    while rows := cursor.fetchmany(FETCH_SIZE):
        for kid, user_id, stamp, haven_id, row_hash, present, *values in rows:
            identity = Identity(kid, str(user_id), stamp if stamp is not None else "")
            ours = identity in expected
            if ours:
                del expected[identity]
            elif identity not in known:
                report.orphaned.append(Finding(identity, haven_id))
            if present is None:
                if ours:
                    report.missing.append(Finding(identity, haven_id))
                continue
            if not ours and row_hash is not None:
                continue
            current = haven_row_hash(dict(zip(columns, values, strict=True)))
            if row_hash is None:
                baseline.append((current, identity))
            elif current != row_hash:
                report.changed.append(Finding(identity, haven_id))
    return baseline


def _baseline_record(conn, baseline: list[tuple[str, Identity]]) -> int:
    """Record each ``(hash, identity)`` on its ledger row still without one; returns how many
    were recorded. One short write transaction: the Control Room waits for it at most as long
    as for one sync batch."""
    with transaction.atomic(using=HAVEN_ALIAS), conn.cursor() as cursor:
        ledger_ensure(cursor)  # a ledger older than row_hash gets the column first
        cursor.executemany(
            "UPDATE keeper_sync_ledger SET row_hash = %s WHERE keeper_discovery_id = %s"
            " AND discord_user_id = %s AND submission_timestamp = %s AND row_hash IS NULL",
            [(row_hash, *identity) for row_hash, identity in baseline],
        )
        recorded = max(cursor.rowcount, 0)
    logger.info("sync verify: recorded the baseline hash of %s ledger rows", recorded)
    return recorded
