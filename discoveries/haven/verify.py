"""Checking VH-Database.db against keeper.db's account of it: rows lost to a restored backup,
rows the Control Room changed, rows a restored backup put back at an older version of ours,
ledger rows whose keeper discovery is gone, and the old bot's rows keeper.db already knows.

The ledger (:mod:`discoveries.haven.ledger`) lives inside VH-Database.db, so a file restored
from an older backup loses our rows *and* their ledger rows, while keeper.db still says they
were synced; SQLite may even have given the restored file's new rows the ids ours had. A row of
ours is therefore found by the ledger's discovery identity (keeper id, submitter, submission
second), never by a VH id alone. A restored backup may instead hold an older version of a row
we have since rewritten, with the ledger row that goes with it: row and ledger agree, and only
keeper.db's queue item, which keeps the hash of the row as the sync last left it, tells. An
old bot's keeper.db adopted with its queue says rows are in VH that no ledger row names; those
are recognised as :func:`discoveries.haven.ledger.legacy_match` would and linked.

:func:`haven_verify` reads the whole ledger with each row's mapped columns in one streamed
query, whatever the number of discoveries, and then, in short write transactions, records the
hash of rows whose ledger row has none yet (ledger rows made before hashes were kept) as their
baseline and links the old bot's rows. It never opens keeper.db: the caller hands in
keeper's side as plain tuples, and a function that reads descriptions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from django.db import transaction
from django.utils import timezone

from discoveries.haven.connection import haven_close, haven_connection, haven_replaced_check
from discoveries.haven.errors import HavenSchemaError
from discoveries.haven.ledger import ledger_ensure, ledger_identity
from discoveries.haven.mapping import HAVEN_COMMON_COLUMNS, HAVEN_TIMESTAMP_FORMAT, haven_row_hash
from discoveries.haven.router import HAVEN_ALIAS
from discoveries.timestamps import timestamp_read
from discoveries.types import ALL_TYPE_FIELD_KEYS

logger = logging.getLogger(__name__)

#: Ledger rows read from SQLite at a time: the read streams, so memory does not grow with VH.
FETCH_SIZE = 2000

#: Ledger rows written per VH transaction: a few tens of milliseconds of the file's write lock.
WRITE_BATCH = 2000

#: VH ids per statement when rows are read by id: below SQLite's oldest limit on bound
#: parameters (999).
CHUNK = 900


class KeeperDiscovery(NamedTuple):
    """One keeper discovery as keeper.db sees it: its ``discovery_id``, ``user_id`` and
    ``submission_timestamp`` (an aware datetime, as the ORM reads it, or text, or ``None``),
    ``in_vh`` (keeper.db says it is in VH: its queue item is ``synced``, or was pruned after
    syncing), ``haven_discovery_id``, the VH row keeper.db last recorded (or ``None``), and
    ``row_hash``, the hash of that row as the sync last left it, kept on the queue item
    (``None`` for items synced before it was kept, and for pruned items)."""

    discovery_id: int
    user_id: str
    submission_timestamp: datetime | str | None
    in_vh: bool
    haven_discovery_id: int | None
    row_hash: str | None = None


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
    - ``outdated``: those whose VH row is as the ledger says we left it, but the ledger's hash
      is not the one keeper.db's queue item kept: VH holds an older version of ours (a restored
      backup). Items that kept no hash are never outdated;
    - ``orphaned``: ledger rows (not ``deleted``, nor ``moved`` to another keeper.db) naming
      a discovery keeper.db did not hold (as read by the caller: confirm against keeper.db
      again before reporting them);
    - ``baseline_recorded``: ledger rows that had no hash and now hold their row's current one;
    - ``linked``: discoveries with no ledger row whose VH row keeper.db recorded is the old
      bot's row of the same discovery, now in the ledger as ``linked`` (and not missing);
    - ``ledger_found``: whether the file had a ledger when the check began.
    """

    checked: int = 0
    missing: list[Finding] = field(default_factory=list)
    changed: list[Finding] = field(default_factory=list)
    outdated: list[Finding] = field(default_factory=list)
    orphaned: list[Finding] = field(default_factory=list)
    baseline_recorded: int = 0
    linked: int = 0
    ledger_found: bool = True


class _Link(NamedTuple):
    """An old bot's row that may be ``keeper``'s: VH row ``haven_id`` with its submission time
    as SQLite's text (``stamp``, a guard for the write) and ``row_hash``."""

    keeper: KeeperDiscovery
    identity: Identity
    haven_id: int
    stamp: str | None
    row_hash: str


def haven_verify(
    *,
    discoveries: Iterable[KeeperDiscovery],
    descriptions: Callable[[list[int]], Mapping[int, str]] | None = None,
) -> HavenVerifyReport:
    """Compare keeper.db's ``discoveries`` (every keeper discovery, each once) with
    VH-Database.db in bulk: the ledger and its rows' mapped columns in one streamed query,
    hashed by :func:`discoveries.haven.mapping.haven_row_hash` from SQLite's own text
    (``CAST … AS TEXT``, as the writer reads a row); then the VH rows keeper.db recorded for
    discoveries no ledger row names, read by id in chunks; then short write transactions
    (usually one) that record a baseline hash for ledger rows that have none (``AND row_hash
    IS NULL``, so a hash the sync recorded meanwhile is kept) and link the old bot's rows.

    A discovery with no ledger row is linked (ledger ``how`` ``linked``, with its row's hash)
    when its recorded VH row exists, no ledger row names that row, and it is the same
    discovery as :func:`discoveries.haven.ledger.legacy_match` judges: same submitter and
    description, and the same submission instant to the second as
    :func:`discoveries.timestamps.timestamp_read` reads both sides. ``descriptions`` maps
    keeper ids to their descriptions (keeper.db read by the caller, only for those whose row
    passed the other tests); without it nothing is linked. The ledger is created for a link
    if the file has none; otherwise a file with no ledger is left as it is and every
    discovery keeper.db says is in VH is missing.

    Returns a :class:`HavenVerifyReport`. Raises :class:`~discoveries.haven.errors.HavenUnavailable`
    (switched off, missing, or replaced during the check),
    :class:`~discoveries.haven.errors.HavenSchemaError` (no ``discoveries`` table) or the
    database's own error. The connection is closed afterwards.
    """
    expected: dict[Identity, KeeperDiscovery] = {}
    known: set[Identity] = set()
    for row in discoveries:
        identity = keeper_identity(row.discovery_id, row.user_id, row.submission_timestamp)
        known.add(identity)
        if row.in_vh:
            expected[identity] = row
    report = HavenVerifyReport(checked=len(expected))
    try:
        conn = haven_connection()
        baseline: list[tuple[str, Identity]] = []
        with conn.cursor() as cursor:
            columns = _mapped_columns(cursor)
            report.ledger_found = _table_exists(cursor, "keeper_sync_ledger")
            if report.ledger_found:
                baseline = _ledger_compare(cursor, columns, expected, known, report)
            links = (
                _links_find(cursor, columns, expected, ledger=report.ledger_found)
                if descriptions is not None
                else []
            )
        described: Mapping[int, str] = {}
        if links:
            described = descriptions(sorted({link.keeper.discovery_id for link in links}))
            links = [link for link in links if link.keeper.discovery_id in described]
        if baseline or links:
            report.baseline_recorded, linked = _ledger_write(conn, baseline, links, described)
            for link in linked:
                del expected[link.identity]
                _hash_compare(link.keeper, link.identity, link.haven_id, link.row_hash, report)
            report.linked = len(linked)
        report.missing.extend(Finding(i, k.haven_discovery_id) for i, k in expected.items())
        haven_replaced_check(conn)
    finally:
        haven_close()
    for findings in (report.missing, report.changed, report.outdated, report.orphaned):
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


def _selected(columns: list[str]) -> str:
    # As SQLite's own text, as the writer reads a row: no converter of a declared type applies.
    return "".join(f', CAST(d."{name}" AS TEXT)' for name in columns)


def _hash_compare(
    keeper: KeeperDiscovery,
    identity: Identity,
    haven_id: int,
    ledger_hash: str,
    report: HavenVerifyReport,
) -> None:
    """Report ``keeper`` outdated when VH's row, as the ledger says we left it
    (``ledger_hash``), is not the version its queue item says the sync last left."""
    if keeper.row_hash is not None and keeper.row_hash != ledger_hash:
        report.outdated.append(Finding(identity, haven_id))


def _ledger_compare(
    cursor,
    columns: list[str],
    expected: dict[Identity, KeeperDiscovery],
    known: set[Identity],
    report: HavenVerifyReport,
) -> list[tuple[str, Identity]]:
    """Walk every live ledger row with its VH row; fill ``report.changed``,
    ``report.outdated`` and ``report.orphaned``, move missing rows from ``expected`` to
    ``report.missing`` and leave in ``expected`` the discoveries with no live ledger row.
    Returns ``[(hash, identity)]`` for ledger rows without a hash whose VH row exists (their
    row counts as the ledger's, as the writer takes it)."""
    has_hash = "row_hash" in _table_columns(cursor, "keeper_sync_ledger")
    cursor.execute(
        "SELECT l.keeper_discovery_id, l.discord_user_id, l.submission_timestamp,"
        f" l.haven_discovery_id, {'l.row_hash' if has_hash else 'NULL'}, d.id"
        f"{_selected(columns)}"
        " FROM keeper_sync_ledger l LEFT JOIN discoveries d ON d.id = l.haven_discovery_id"
        " WHERE l.how NOT IN ('deleted', 'moved')"
    )
    baseline: list[tuple[str, Identity]] = []
    while rows := cursor.fetchmany(FETCH_SIZE):
        for kid, user_id, stamp, haven_id, row_hash, present, *values in rows:
            identity = Identity(kid, str(user_id), stamp if stamp is not None else "")
            keeper = expected.pop(identity, None)
            if keeper is None and identity not in known:
                report.orphaned.append(Finding(identity, haven_id))
            if present is None:
                if keeper is not None:
                    report.missing.append(Finding(identity, haven_id))
                continue
            if keeper is None and row_hash is not None:
                continue
            current = haven_row_hash(dict(zip(columns, values, strict=True)))
            if row_hash is None:
                baseline.append((current, identity))
            elif current != row_hash:
                report.changed.append(Finding(identity, haven_id))
                continue
            if keeper is not None:
                _hash_compare(keeper, identity, haven_id, current, report)
    return baseline


def _links_find(
    cursor, columns: list[str], expected: dict[Identity, KeeperDiscovery], *, ledger: bool
) -> list[_Link]:
    """The discoveries left in ``expected`` (no live ledger row) whose recorded VH row exists,
    is named by no ledger row (when the file has a ledger) and was submitted at the same
    second; the submitter and description are left to the write's guard."""
    wanted: dict[int, list[tuple[Identity, KeeperDiscovery]]] = {}
    for identity, keeper in expected.items():
        if keeper.haven_discovery_id is not None:
            wanted.setdefault(keeper.haven_discovery_id, []).append((identity, keeper))
    ids = sorted(wanted)
    claimed = (
        "EXISTS (SELECT 1 FROM keeper_sync_ledger l WHERE l.haven_discovery_id = d.id)"
        if ledger
        else "0"
    )
    links: list[_Link] = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        marks = ", ".join(["%s"] * len(chunk))
        cursor.execute(
            f"SELECT d.id, CAST(d.submission_timestamp AS TEXT), {claimed}{_selected(columns)}"
            f" FROM discoveries d WHERE d.id IN ({marks})",  # noqa: S608 - mapped names
            chunk,
        )
        for haven_id, stamp, in_ledger, *values in cursor.fetchall():
            if in_ledger:
                continue
            instant = _second(timestamp_read(stamp))
            for identity, keeper in wanted[haven_id]:
                if instant is not None and instant == _second(
                    timestamp_read(keeper.submission_timestamp)
                ):
                    row_hash = haven_row_hash(dict(zip(columns, values, strict=True)))
                    links.append(_Link(keeper, identity, haven_id, stamp, row_hash))
    return links


def _second(instant: datetime | None) -> datetime | None:
    return None if instant is None else instant.replace(microsecond=0)


def _ledger_write(
    conn,
    baseline: list[tuple[str, Identity]],
    links: list[_Link],
    described: Mapping[int, str],
) -> tuple[int, list[_Link]]:
    """Record each baseline ``(hash, identity)`` on its ledger row still without one, and each
    of ``links`` as a ``linked`` ledger row while its VH row is still the old bot's row of the
    discovery (same submitter, description and stored time, and no ledger row names it or the
    discovery). Short write transactions of :data:`WRITE_BATCH` of each: the Control Room
    waits for one at most as long as for one sync batch, even when a whole adopted keeper.db
    is linked at once. Returns how many baselines were recorded and the links made."""
    recorded_at = timezone.now().strftime(HAVEN_TIMESTAMP_FORMAT)
    recorded = 0
    linked: list[_Link] = []
    for start in range(0, max(len(baseline), len(links)), WRITE_BATCH):
        with transaction.atomic(using=HAVEN_ALIAS), conn.cursor() as cursor:
            # A missing ledger is made, and one older than row_hash gets the column, first.
            ledger_ensure(cursor)
            recorded += _baseline_record(cursor, baseline[start : start + WRITE_BATCH])
            for link in links[start : start + WRITE_BATCH]:
                if _link_record(cursor, link, described[link.keeper.discovery_id], recorded_at):
                    linked.append(link)
    if recorded:
        logger.info("sync verify: recorded the baseline hash of %s ledger rows", recorded)
    if linked:
        logger.info("sync verify: linked %s rows the old bot wrote into the ledger", len(linked))
    return recorded, linked


def _baseline_record(cursor, baseline: list[tuple[str, Identity]]) -> int:
    if not baseline:
        return 0
    cursor.executemany(
        "UPDATE keeper_sync_ledger SET row_hash = %s WHERE keeper_discovery_id = %s"
        " AND discord_user_id = %s AND submission_timestamp = %s AND row_hash IS NULL",
        [(row_hash, *identity) for row_hash, identity in baseline],
    )
    return max(cursor.rowcount, 0)


def _link_record(cursor, link: _Link, description: str, recorded_at: str) -> bool:
    # Row by row, each guarded: two discoveries may name the same row, and the sync or the
    # Control Room may have moved since the read.
    cursor.execute(
        "INSERT OR IGNORE INTO keeper_sync_ledger (keeper_discovery_id, discord_user_id,"
        " submission_timestamp, haven_discovery_id, how, location_resolved, recorded_at,"
        " row_hash)"
        " SELECT %s, %s, %s, d.id, 'linked', 1, %s, %s FROM discoveries d"
        " WHERE d.id = %s AND d.discord_user_id = %s AND d.description = %s"
        " AND CAST(d.submission_timestamp AS TEXT) IS %s AND NOT EXISTS"
        " (SELECT 1 FROM keeper_sync_ledger l WHERE l.haven_discovery_id = d.id)",
        [
            *link.identity,
            recorded_at,
            link.row_hash,
            link.haven_id,
            link.identity.user_id,
            description,
            link.stamp,
        ],
    )
    return cursor.rowcount == 1
