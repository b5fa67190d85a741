"""Writing a keeper discovery into VH-Database.db exactly once, keeping that row true, and
previewing the write.

What Keeper Sync adds to the Control Room's file is the ledger (:mod:`discoveries.haven.ledger`)
and one row in ``discoveries`` per keeper discovery, changed only together with its ledger row in
one VH transaction. :func:`haven_discovery_write` makes that one row match the discovery: it
links an old bot's identical row, takes over the row another keeper.db wrote for an imported
discovery (:func:`discoveries.haven.ledger.ledger_take_over`), inserts a new one, or (after an
edit, or when the row went missing) updates or writes it again through the ledger, never adding a
second row.
:func:`haven_discovery_delete` removes it. Neither overwrites a row the Control Room changed
since we wrote it (its hash no longer matches the ledger's): they report a conflict, with both
versions, for an operator to settle. A discovery whose place is not in VH gets no row unless
asked (``write_unplaced``), and then only if the file's own constraints take it
(:func:`haven_unplaced_problem` tries).

Both work inside a :class:`HavenBatch`: one VH transaction, on one connection, in which any number
of discoveries are written, each in a savepoint of its own, so that a row the file refuses is
rolled back alone while its neighbours commit. The file's columns and the ledger are checked once
per batch, and each place is resolved once per batch: nobody else can change the file while the
batch holds its write lock. The caller bounds how long a batch holds that lock
(:attr:`HavenBatch.held_seconds`), and closes the file between batches
(:func:`discoveries.haven.connection.haven_close`), so SQLite folds the writes into the file itself
whenever no other program holds it open.
"""

from __future__ import annotations

import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from django.db import DatabaseError, IntegrityError, transaction

from discoveries.haven.catalog import catalog_location_resolve, catalog_version
from discoveries.haven.connection import haven_close, haven_connection, haven_replaced_check
from discoveries.haven.errors import (
    HavenRowIgnored,
    HavenRowMoved,
    HavenSchemaError,
    HavenTransactionLost,
    HavenUnavailable,
    MappingError,
)
from discoveries.haven.ledger import (
    LedgerRow,
    known_row_match,
    ledger_ensure,
    ledger_find,
    ledger_owner,
    ledger_record,
    ledger_take_over,
    ledger_update,
    legacy_match,
)
from discoveries.haven.mapping import (
    ResolvedLocation,
    discovery_to_haven_row,
    haven_row_hash,
    haven_row_mapped,
    haven_row_neutralised,
)
from discoveries.haven.router import HAVEN_ALIAS
from discoveries.types import ALL_TYPE_FIELD_KEYS

logger = logging.getLogger(__name__)

#: VH columns the exactly-once checks read, before any mapped column is needed.
LOOKUP_COLUMNS = ("discord_user_id", "description", "submission_timestamp")

#: The ``theirs_hash`` of a conflict in which the Control Room deleted our row: an operator's
#: choice of our version (``force_hash``) then writes the row again.
ROW_ABSENT = "absent"
#: The ledger's ``row_hash`` for an old bot's row linked while it differs from the discovery:
#: nobody knows which side changed it, so it matches no row and changing it needs a choice.
ROW_UNKNOWN = "unknown"


@dataclass(frozen=True)
class Conflict:
    """A row of ours the Control Room changed since we wrote it: its VH id, ``ours``, the
    mapped columns we meant to write (``None`` for a delete), ``theirs``, the mapped columns
    now in VH, and ``theirs_hash``, which an operator's choice names so that it applies only
    to the version they saw."""

    haven_discovery_id: int
    ours: dict[str, object] | None
    theirs: dict[str, object] | None
    theirs_hash: str
    base: dict[str, object] | None = None

    @property
    def theirs_deleted(self) -> bool:
        """Whether the Control Room deleted the row (``theirs`` is ``None``)."""
        return self.theirs is None


@dataclass(frozen=True)
class WriteOutcome:
    """The result of :func:`haven_discovery_write` or :func:`haven_discovery_delete`.

    ``how`` is one of: ``written`` (inserted now), ``linked`` (an old bot's row), ``ledger``
    (VH already holds exactly this row: an earlier attempt wrote it), ``updated`` (our row
    changed to match an edit), ``kept`` (the Control Room's version accepted, the row left
    alone), ``waiting`` (no row: the place is not in VH, or the file refuses a row without it;
    ``waiting`` says why and ``catalog_version`` names the catalog read), ``conflict`` (nothing
    changed; see ``conflict``), ``deleted`` (our row removed) or ``absent`` (no row of ours
    to delete). ``haven_discovery_id`` is the VH row, ``None`` when there is none;
    ``location`` the resolution when one was made; ``neutralised`` the keeper fields whose
    markup was made harmless in the row; ``row_hash`` the hash of the row as VH now holds it
    (``None`` when there is no row of ours), which keeper.db keeps to tell later whether VH
    still holds this version."""

    haven_discovery_id: int | None
    how: str
    location: ResolvedLocation | None = None
    neutralised: tuple[str, ...] = ()
    conflict: Conflict | None = None
    waiting: str | None = None
    catalog_version: str | None = None
    suggestions: tuple[str, ...] = field(default=())
    row_hash: str | None = None
    kept_base: dict[str, object] | None = None


def _haven_columns(cursor) -> frozenset[str]:
    # Read for every batch: an operator may add a missing column back at any moment.
    columns = frozenset(_table_names(cursor))
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
    return catalog_location_resolve(
        system_name=discovery.system_name,
        location=discovery.location,
        location_type=discovery.location_type,
    )


def _table_names(cursor) -> list[str]:
    """The columns of VH's ``discoveries``, in the file's order."""
    cursor.execute("PRAGMA table_info(discoveries)")
    return [row[1] for row in cursor.fetchall()]


def _row_select(names: list[str]) -> str:
    """The SELECT of one VH row by id that :meth:`HavenBatch.row_read` runs."""
    quoted = [name.replace('"', '""') for name in names]
    selected = ", ".join(f'CAST("{name}" AS TEXT)' for name in quoted)
    return f"SELECT {selected} FROM discoveries WHERE id = %s"  # noqa: S608 - the file's own names


def _check_clauses(cursor) -> str:
    """The CHECK clauses of VH's ``discoveries`` table as the file declares them, for messages."""
    cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'discoveries'")
    found = cursor.fetchone()
    sql = (found[0] if found else "") or ""
    clauses = []
    for match in re.finditer(r"\bCHECK\s*\(", sql, flags=re.IGNORECASE):
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(sql)):
            depth += {"(": 1, ")": -1}.get(sql[end], 0)
            if depth == 0:
                break
        clauses.append(" ".join(sql[match.start() : end + 1].split()))
    return "; ".join(clauses)


def _waiting(txn: HavenBatch, location: ResolvedLocation, reason: str) -> WriteOutcome:
    return WriteOutcome(
        None,
        "waiting",
        location,
        waiting=reason,
        catalog_version=txn.catalog_version(),
        suggestions=tuple(getattr(location, "suggestions", ()) or ()),
    )


def _refusal(cursor, exc: IntegrityError) -> str:
    clauses = _check_clauses(cursor)
    return "VH-Database.db refuses a discovery without its place" + (
        f" ({clauses})" if clauses else f" ({exc})"
    )


class HavenBatch:
    """One VH transaction on one connection, in which discoveries are written
    (:meth:`write`) and deleted (:meth:`delete`), each in a savepoint of its own.

    ``with HavenBatch() as batch:`` checks the file (:func:`haven_connection`: raises
    :class:`HavenUnavailable` when it is switched off, missing or replaced), takes its write
    lock (``BEGIN IMMEDIATE``, waiting up to ``HAVEN_BUSY_TIMEOUT_SECONDS``, then the
    database's ``OperationalError: database is locked``), reads the columns of
    ``discoveries`` and requires :data:`LOOKUP_COLUMNS` (:class:`HavenSchemaError`) and makes
    sure the ledger exists: once for the batch. :attr:`held_seconds` is how long the write
    lock has been held, for the caller to end the batch in time.

    A discovery whose :meth:`write` or :meth:`delete` raises has had its own changes rolled
    back; the others stand. Leaving the block without an exception commits every row with its
    ledger row (or, if the commit fails, none), then raises :class:`HavenUnavailable` if the
    file was moved or replaced meanwhile (:func:`haven_replaced_check`): the caller must then
    treat every discovery of the batch as not written. Leaving it with an exception rolls
    everything back. The connection stays open for the next batch; the caller closes it.
    """

    def __init__(self) -> None:
        self.cursor = None
        self.columns: frozenset[str] = frozenset()
        self._names: list[str] = []
        self._select = ""
        self._places: dict[tuple, ResolvedLocation] = {}
        self._version: str | None = None
        self._locked_at = 0.0

    def __enter__(self) -> HavenBatch:
        self.connection = haven_connection()
        self._atomic = transaction.atomic(using=HAVEN_ALIAS)
        self._atomic.__enter__()
        self._locked_at = time.monotonic()
        try:
            self.cursor = self.connection.cursor()
            self._names = _table_names(self.cursor)
            self.columns = frozenset(self._names)
            if not self.columns:
                raise HavenSchemaError("VH-Database.db has no table 'discoveries'")
            _require_columns(self.columns, LOOKUP_COLUMNS, "needed to find rows already written")
            self._select = _row_select(self._names)
            ledger_ensure(self.cursor)
        except BaseException as exc:
            self._close_cursor()
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._close_cursor()
        lost = exc_type is None and not self._alive()
        self._atomic.__exit__(exc_type, exc, traceback)
        if lost:
            raise HavenTransactionLost("VH-Database.db rolled back the transaction")
        if exc_type is None:
            haven_replaced_check(self.connection)

    def _alive(self) -> bool:
        """Whether the batch's transaction is still open in SQLite and usable: a statement
        can make SQLite roll back the whole transaction, not only its savepoint."""
        raw = self.connection.connection
        return raw is not None and raw.in_transaction and not self.connection.needs_rollback

    @contextmanager
    def _own_savepoint(self):
        """One discovery's savepoint. When the discovery's error rolled back the whole
        transaction, :class:`HavenTransactionLost` is raised instead, from it: the rows written
        before it in this batch are gone too."""
        try:
            with transaction.atomic(using=HAVEN_ALIAS):
                yield
        except Exception as exc:
            if not self._alive():
                raise HavenTransactionLost(
                    f"VH-Database.db rolled back the whole transaction: {exc}"
                ) from exc
            raise

    def _close_cursor(self) -> None:
        if self.cursor is not None:
            self.cursor.close()
            self.cursor = None

    @property
    def held_seconds(self) -> float:
        """Seconds since this batch took VH's write lock."""
        return time.monotonic() - self._locked_at

    def resolve(self, discovery) -> ResolvedLocation:
        """``discovery``'s place (:func:`catalog_location_resolve`), read once per batch for each
        (system, location, type): the map cannot change while the batch holds the lock."""
        key = (discovery.system_name, discovery.location, discovery.location_type)
        found = self._places.get(key)
        if found is None:
            found = self._places[key] = _resolve(discovery)
        return found

    def catalog_version(self) -> str:
        """:func:`catalog_version`, read once per batch."""
        if self._version is None:
            self._version = catalog_version()
        return self._version

    def row_read(self, haven_id: int) -> dict[str, object] | None:
        """VH row ``haven_id`` as ``{column: text or None}``, or ``None`` when there is no such
        row. Every value is read as SQLite's own text (``CAST … AS TEXT``), so no converter of
        a declared column type (a ``TIMESTAMP`` read as a datetime) changes what is compared
        or shown."""
        self.cursor.execute(self._select, [haven_id])
        found = self.cursor.fetchone()
        if found is None:
            return None
        return dict(zip(self._names, found, strict=True))

    def write(
        self,
        *,
        discovery,
        link_only: bool = False,
        write_unplaced: bool = False,
        force_hash: str | None = None,
        accept_hash: str | None = None,
        kept_base: dict[str, object] | None = None,
        known_haven_id: int | None = None,
        search_legacy: bool = True,
    ) -> WriteOutcome | None:
        """Make VH hold ``discovery`` as exactly one row, in this batch (arguments and
        outcomes as :func:`haven_discovery_write`), in a savepoint of its own. Raises
        :class:`HavenSchemaError`, :class:`MappingError` or the database's own error
        (a CHECK's ``IntegrityError``), with this discovery's changes rolled back;
        :class:`HavenTransactionLost` when the error rolled back the whole batch."""
        with self._own_savepoint():
            outcome = _write_in_transaction(
                self,
                discovery,
                link_only=link_only,
                write_unplaced=write_unplaced,
                force_hash=force_hash,
                accept_hash=accept_hash,
                kept_base=kept_base,
                known_haven_id=known_haven_id,
                search_legacy=search_legacy,
            )
        if outcome is not None and outcome.how == "written" and outcome.location.unresolved:
            logger.warning(
                "discovery %s written to VH #%s without its place: %s",
                discovery.id,
                outcome.haven_discovery_id,
                outcome.location.unresolved,
            )
        return outcome

    def delete(
        self, *, discovery, force_hash: str | None = None, known_haven_id: int | None = None
    ) -> WriteOutcome:
        """Remove ``discovery``'s one VH row in this batch (as :func:`haven_discovery_delete`),
        in a savepoint of its own; raises as :meth:`write`."""
        with self._own_savepoint():
            return _delete_in_transaction(
                self, discovery, force_hash=force_hash, known_haven_id=known_haven_id
            )


def haven_discovery_write(*, discovery, **options) -> WriteOutcome | None:
    """Make VH-Database.db hold ``discovery`` as exactly one row, in one VH transaction.
    ``options`` are :meth:`HavenBatch.write`'s: ``link_only``, ``write_unplaced``,
    ``force_hash``, ``accept_hash``, ``kept_base``, ``known_haven_id``, ``search_legacy``.

    ``discovery`` is anything with the keeper columns (a ``Discovery``). A discovery the
    ledger names is compared with its row: the same → ``ledger``; different → ``updated``
    (mapped columns rewritten in place) unless the Control Room changed the row since we wrote
    it → ``conflict``; a row gone from VH is written again. A discovery imported from another
    keeper.db (``imported_keeper_id``) that the ledger does not name yet first takes over the
    ledger row of its earlier life there (:func:`discoveries.haven.ledger.ledger_take_over`)
    and is then compared with that row as above: ``updated`` (the row's ``metadata`` then names
    the new keeper id, and an edit made since the export is written), ``linked`` when the row is
    already as wanted, and a ``conflict`` when the Control Room changed or deleted it since the
    other keeper.db last left it. Otherwise an old bot's identical row is ``linked``; else
    (unless ``link_only``, which then returns ``None``) the place is resolved and the row
    inserted → ``written``. A place not in VH gives ``waiting`` and no
    row, unless ``write_unplaced`` and the file's constraints take the row.

    ``force_hash`` overwrites a changed row only while it still hashes to that value (an
    operator chose our version of what they saw); ``accept_hash`` keeps the Control Room's
    row while it hashes to that value → ``kept``. ``kept_base`` is our version (mapped columns
    as text) at the time an operator kept the Control Room's: an update then writes only the
    columns whose value differs from it (changed in keeper.db since), leaving the Control
    Room's values in the others; the outcome's ``kept_base`` is what remains of it.
    ``known_haven_id`` is the VH row keeper.db records for the discovery (an old bot's synced
    queue row): with no ledger row, it is linked when it is that discovery's
    (:func:`discoveries.haven.ledger.known_row_match`), and a conflict when it differs from
    the discovery, since either side may have changed it. A row the Control Room deleted is
    a ``conflict`` (``theirs`` ``None``) unless ``force_hash`` is :data:`ROW_ABSENT`, which
    writes it again. ``search_legacy`` false skips the search for an old bot's identical row
    (it scans VH's ``discoveries``): right for a discovery submitted since the queue existed,
    whose only row can be one the ledger names. Raises :class:`HavenRowMoved` when the row is
    another keeper.db's now (an import there took it over), :class:`HavenUnavailable` (missing,
    disabled, or replaced during the write), :class:`HavenSchemaError` (a column the row needs
    is missing, named in the message), :class:`MappingError`, or the database's own error
    (``OperationalError: database is locked`` after the busy timeout). One discovery in a
    batch of its own: :class:`HavenBatch` writes many in one transaction.
    """
    with HavenBatch() as batch:
        outcome = batch.write(discovery=discovery, **options)
    return outcome


def _write_in_transaction(
    txn: HavenBatch,
    discovery,
    *,
    link_only,
    write_unplaced,
    force_hash,
    accept_hash,
    kept_base,
    known_haven_id=None,
    search_legacy=True,
) -> WriteOutcome | None:
    cursor = txn.cursor
    entry = ledger_find(cursor, discovery)
    taken_over = False
    if entry is None:
        entry = ledger_take_over(cursor, discovery)
        taken_over = entry is not None
    if entry is not None and entry.moved:
        raise HavenRowMoved(_moved_message(cursor, discovery, entry, imported=taken_over))
    if entry is not None and not entry.deleted:
        if link_only:
            return WriteOutcome(entry.haven_id, "ledger")
        current = txn.row_read(entry.haven_id)
        if current is not None:
            outcome = _update(
                txn,
                discovery,
                entry,
                current,
                write_unplaced=write_unplaced,
                force_hash=force_hash,
                accept_hash=accept_hash,
                kept_base=kept_base,
            )
            # Taken over as the other keeper.db left it: linked, not "written by us before".
            return (
                replace(outcome, how="linked")
                if taken_over and outcome.how == "ledger"
                else outcome
            )
        if force_hash != ROW_ABSENT:
            # Our ledger row is there and our row is not: the Control Room deleted it (a
            # restored backup loses both). Writing it again is an operator's call.
            row = discovery_to_haven_row(
                discovery, location=txn.resolve(discovery), keeper_discovery_id=discovery.id
            )
            return _conflict(entry, row, None, ROW_ABSENT)
        logger.warning(
            "discovery %s: its VH row #%s was deleted in the Control Room; it is written again",
            discovery.id,
            entry.haven_id,
        )
    elif entry is None:
        linked = legacy_match(cursor, discovery) if search_legacy else None
        if linked is not None:
            current = txn.row_read(linked)
            linked_hash = haven_row_hash(current) if current else None
            ledger_record(
                cursor,
                discovery,
                haven_id=linked,
                how="linked",
                resolved=True,
                row_hash=linked_hash,
            )
            return WriteOutcome(linked, "linked", row_hash=linked_hash)
        known = _link_known(txn, discovery, known_haven_id)
        if known is not None:
            entry, current, row = known
            if entry.row_hash == ROW_UNKNOWN:
                return _conflict(entry, row, current, haven_row_hash(current))
            return WriteOutcome(entry.haven_id, "linked", row_hash=entry.row_hash)
    if link_only:
        return None
    return _insert(txn, discovery, write_unplaced=write_unplaced)


def _row_insert(cursor, columns: frozenset[str], row: dict[str, object]) -> None:
    """Insert ``row`` into VH's ``discoveries`` (raising :class:`HavenSchemaError` first when the
    file lacks one of its columns, the database's own error, such as a CHECK's
    ``IntegrityError``, as it comes, and :class:`HavenRowIgnored` when the file takes the
    statement but writes no row)."""
    _require_columns(columns, row, f"needed for {row['discovery_type']} discoveries")
    names = ", ".join(f'"{c}"' for c in row)
    marks = ", ".join(["%s"] * len(row))
    cursor.execute(
        f"INSERT INTO discoveries ({names}) VALUES ({marks})",  # noqa: S608 - mapped names
        list(row.values()),
    )
    if cursor.rowcount != 1:
        # lastrowid would name another row (the batch's last insert).
        raise HavenRowIgnored(
            "VH-Database.db took the row without writing it (a trigger's RAISE(IGNORE) or an "
            "ON CONFLICT IGNORE constraint of the Control Room's)"
        )


def _insert(txn: HavenBatch, discovery, *, write_unplaced: bool) -> WriteOutcome:
    cursor = txn.cursor
    location = txn.resolve(discovery)
    if location.unresolved and not write_unplaced:
        return _waiting(txn, location, location.unresolved)
    row = discovery_to_haven_row(discovery, location=location, keeper_discovery_id=discovery.id)
    if location.resolved:
        # A refusal of a placed row is this discovery's error: its savepoint (HavenBatch.write)
        # rolls it back.
        _row_insert(cursor, txn.columns, row)
    else:
        try:
            with transaction.atomic(using=HAVEN_ALIAS):
                _row_insert(cursor, txn.columns, row)
        except IntegrityError as exc:
            return _waiting(txn, location, f"{location.unresolved}; {_refusal(cursor, exc)}")
    haven_id = cursor.lastrowid
    written_hash = haven_row_hash(txn.row_read(haven_id) or row)
    ledger_record(
        cursor,
        discovery,
        haven_id=haven_id,
        how="written",
        resolved=location.resolved,
        row_hash=written_hash,
    )
    return WriteOutcome(
        haven_id, "written", location, haven_row_neutralised(row), row_hash=written_hash
    )


def _moved_message(cursor, discovery, entry: LedgerRow, *, imported: bool) -> str:
    """Why ``discovery`` may not write VH row ``entry.haven_id``, which an import into another
    keeper.db took over (``entry`` is ``moved``), naming that keeper.db's discovery and what an
    operator may do: a discovery ``imported`` here (the moved row is its earlier life's) may
    become a row of its own; one exported from here (the moved row is its own) lives on in the
    other keeper.db."""
    owner = ledger_owner(cursor, entry.haven_id)
    taken = (
        f"keeper discovery {discovery.id}: VH row #{entry.haven_id} was taken over by an import "
        "into another keeper.db"
        + (f" (its discovery {owner})" if owner is not None else "")
        + ", which alone may change it now; it is not written a second time."
    )
    if imported:
        return taken + (
            " To keep this discovery as a row of its own instead, clear its imported_keeper_id"
            " and retry it"
        )
    return taken + " Edit it there, or delete it here (the row stays)"


def _conflict(entry: LedgerRow, ours, current, current_hash: str, base=None) -> WriteOutcome:
    # Both versions as text, as SQLite shows the row (HavenBatch.row_read), so they compare alike.
    theirs = haven_row_mapped(current) if current is not None else None
    conflict = Conflict(
        entry.haven_id, _as_text(ours), theirs, current_hash, base=_as_text(base or ours)
    )
    return WriteOutcome(entry.haven_id, "conflict", conflict=conflict)


def _link_known(txn: HavenBatch, discovery, known_haven_id):
    """Link the VH row keeper.db records for ``discovery`` when it is that discovery's; returns
    ``(ledger row, VH row, our row)`` or ``None``. Its hash is the ledger's baseline when it
    holds exactly our row, else :data:`ROW_UNKNOWN`."""
    if not known_row_match(txn.cursor, discovery, known_haven_id):
        return None
    current = txn.row_read(known_haven_id)
    row = discovery_to_haven_row(
        discovery, location=txn.resolve(discovery), keeper_discovery_id=discovery.id
    )
    current_hash = haven_row_hash(current)
    row_hash = current_hash if haven_row_hash(row) == current_hash else ROW_UNKNOWN
    ledger_record(
        txn.cursor,
        discovery,
        haven_id=known_haven_id,
        how="linked",
        resolved=True,
        row_hash=row_hash,
    )
    return LedgerRow(known_haven_id, "linked", row_hash), current, row


def _as_text(row) -> dict[str, object] | None:
    if row is None:
        return None
    return {k: None if v is None else str(v) for k, v in haven_row_mapped(row).items()}


def _merged_with_kept(row: dict, current: dict, kept_base: dict | None) -> dict:
    """``row`` with the Control Room's value in every column keeper.db has not changed since an
    operator kept the Control Room's version (its value still equals ``kept_base``'s)."""
    if not kept_base:
        return row
    ours = _as_text(row)
    return {
        column: current.get(column)
        if column in kept_base and ours.get(column) == kept_base[column]
        else value
        for column, value in row.items()
    }


def _base_left(desired: dict, kept_base: dict | None) -> dict | None:
    """What of ``kept_base`` still holds after ``desired`` is written: the columns keeper.db has
    not changed since the Control Room's version was kept (the others now follow keeper.db).
    ``None`` when there was no base."""
    if kept_base is None:
        return None
    ours = _as_text(desired)
    return {c: v for c, v in kept_base.items() if c in ours and ours[c] == v}


def _changed_by_them(entry: LedgerRow, current_hash: str, force_hash: str | None) -> bool:
    # A ledger row from before hashes were kept knows nothing of the row: it is taken as ours.
    if entry.row_hash is None or current_hash == entry.row_hash:
        return False
    return current_hash != force_hash


def _update(
    txn: HavenBatch,
    discovery,
    entry: LedgerRow,
    current,
    *,
    write_unplaced,
    force_hash,
    accept_hash,
    kept_base,
) -> WriteOutcome:
    cursor = txn.cursor
    current_hash = haven_row_hash(current)
    if accept_hash is not None:
        if current_hash != accept_hash:
            return _conflict(entry, None, current, current_hash)
        ledger_update(cursor, discovery, how="linked", row_hash=current_hash)
        return WriteOutcome(entry.haven_id, "kept", row_hash=current_hash)
    location = txn.resolve(discovery)
    if location.unresolved and not write_unplaced:
        return _waiting(txn, location, location.unresolved)
    desired = discovery_to_haven_row(discovery, location=location, keeper_discovery_id=discovery.id)
    neutralised = haven_row_neutralised(desired)
    row = _merged_with_kept(desired, current, kept_base)
    base = _base_left(desired, kept_base)
    if haven_row_hash(row) == current_hash:
        if entry.row_hash != current_hash:
            ledger_update(cursor, discovery, how=entry.how, row_hash=current_hash)
        return WriteOutcome(
            entry.haven_id, "ledger", location, neutralised, row_hash=current_hash, kept_base=base
        )
    if _changed_by_them(entry, current_hash, force_hash):
        return _conflict(entry, desired, current, current_hash)
    _require_columns(txn.columns, row, f"needed for {row['discovery_type']} discoveries")
    # Another type's columns still holding values are emptied: the row is of one type.
    stale = {
        column: None
        for column in ALL_TYPE_FIELD_KEYS
        if column not in row and current.get(column) is not None
    }
    written = {**row, **stale}
    assignments = ", ".join(f'"{c}" = %s' for c in written)
    try:
        with transaction.atomic(using=HAVEN_ALIAS):
            cursor.execute(
                f"UPDATE discoveries SET {assignments} WHERE id = %s",  # noqa: S608 - mapped names
                [*written.values(), entry.haven_id],
            )
            if cursor.rowcount != 1:
                raise HavenRowIgnored(
                    f"VH-Database.db took the update of row #{entry.haven_id} without writing "
                    "it (a trigger's RAISE(IGNORE) of the Control Room's)"
                )
    except IntegrityError as exc:
        if location.resolved:
            raise
        return _waiting(txn, location, f"{location.unresolved}; {_refusal(cursor, exc)}")
    updated_hash = haven_row_hash(txn.row_read(entry.haven_id) or row)
    ledger_update(cursor, discovery, how="updated", row_hash=updated_hash)
    return WriteOutcome(
        entry.haven_id,
        "updated",
        location,
        neutralised,
        row_hash=updated_hash,
        kept_base=base,
    )


def haven_discovery_delete(
    *, discovery, force_hash: str | None = None, known_haven_id: int | None = None
) -> WriteOutcome:
    """Remove ``discovery``'s one VH row, found through the ledger (or, for a row the old bot
    wrote and no ledger row names yet, as :func:`discoveries.haven.ledger.legacy_match` finds
    it), in one VH transaction with its ledger row marked ``deleted``.

    Returns ``deleted``; ``absent`` when there is no row of ours (never written, already
    deleted, or gone from VH), so deleting again is harmless; or ``conflict`` when the Control
    Room changed the row since we wrote it, unless it still hashes to ``force_hash`` (an
    operator chose to delete the version they saw). ``known_haven_id`` as for
    :func:`haven_discovery_write`. An imported discovery takes over its earlier life's ledger
    row first, as for a write; a row another keeper.db took over is left to it (``absent``,
    logged). Raises as :func:`haven_discovery_write`, but never :class:`HavenRowMoved`.
    """
    with HavenBatch() as batch:
        outcome = batch.delete(
            discovery=discovery, force_hash=force_hash, known_haven_id=known_haven_id
        )
    return outcome


def _delete_in_transaction(
    txn: HavenBatch, discovery, *, force_hash, known_haven_id
) -> WriteOutcome:
    cursor = txn.cursor
    entry = ledger_find(cursor, discovery)
    imported = entry is None
    if imported:
        entry = ledger_take_over(cursor, discovery)
    if entry is not None and entry.moved:
        # The row is another keeper.db's now: deleting this discovery leaves it there.
        logger.warning(
            "%s; the discovery is deleted here only",
            _moved_message(cursor, discovery, entry, imported=imported),
        )
        return WriteOutcome(None, "absent")
    if entry is None:
        linked = legacy_match(cursor, discovery)
        known = None if linked is not None else _link_known(txn, discovery, known_haven_id)
        if linked is not None:
            ledger_record(
                cursor, discovery, haven_id=linked, how="linked", resolved=True, row_hash=None
            )
            entry = LedgerRow(linked, "linked", None)
        elif known is not None:
            entry = known[0]
        else:
            return WriteOutcome(None, "absent")
    if entry.deleted:
        return WriteOutcome(entry.haven_id, "absent")
    current = txn.row_read(entry.haven_id)
    if current is not None:
        current_hash = haven_row_hash(current)
        if _changed_by_them(entry, current_hash, force_hash):
            ours = discovery_to_haven_row(
                discovery, location=txn.resolve(discovery), keeper_discovery_id=discovery.id
            )
            return _conflict(entry, None, current, current_hash, base=ours)
        cursor.execute("DELETE FROM discoveries WHERE id = %s", [entry.haven_id])
    ledger_update(cursor, discovery, how="deleted", row_hash=None)
    return WriteOutcome(entry.haven_id, "deleted" if current is not None else "absent")


class _ProbeDone(Exception):
    """Rolls back the trial insert of :func:`haven_unplaced_problem`."""


def haven_unplaced_problem(*, discovery) -> str | None:
    """Why VH-Database.db would refuse ``discovery``'s row written without its place, or
    ``None`` when it would take it (or the place is found, so nothing is unplaced).

    The file's own constraints decide, never an assumption about which kind of file it is: the
    row is inserted inside a savepoint and rolled back, so nothing stays. The message quotes
    the file's CHECK clauses. Raises as :func:`haven_discovery_write`; the connection is
    closed afterwards.
    """
    try:
        conn = haven_connection()
        with transaction.atomic(using=HAVEN_ALIAS), conn.cursor() as cursor:
            columns = _haven_columns(cursor)
            location = _resolve(discovery)
            if location.resolved:
                return None
            row = discovery_to_haven_row(
                discovery, location=location, keeper_discovery_id=discovery.id
            )
            try:
                with transaction.atomic(using=HAVEN_ALIAS):
                    _row_insert(cursor, columns, row)
                    raise _ProbeDone
            except _ProbeDone:
                return None
            except IntegrityError as exc:
                return _refusal(cursor, exc)
    finally:
        haven_close()


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
