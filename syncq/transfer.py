"""Moving discoveries out of keeper.db and into another: ``manage.py export_discoveries`` and
``manage.py import_discoveries``.

Export (:func:`export_rows`, :func:`export_write`) streams every discovery, oldest id first,
as one flat object of :data:`EXPORT_FIELDS`: every keeper column, the type's fields in
``metadata`` (a JSON object), ``submission_timestamp`` as UTC ISO 8601 (``2025-11-09T01:39:08Z``)
and ``sync_status``, the state of its queue item. Rows are read with ``iterator()`` and written
as they come, so memory does not grow with the number of rows.

Import (:func:`import_plan`, then :func:`import_apply`) reads a file of the three formats, checks
every row by the submit service's own rules (:func:`discoveries.rules.discovery_payload_validate`,
and :func:`discoveries.rules.discovery_changes_validate` for the three analysis columns a
submission does not carry), and stores each through
:func:`syncq.services.discovery_submit_once`, under a submission key naming the row
(:func:`import_key`), so importing a file twice stores nothing the second time.

What an import does not carry over: ``id`` (the new database numbers its rows),
``haven_discovery_id`` and ``sync_status`` (each imported discovery gets a new ``pending``
queue item, as any submission does; the sync then writes or links it in VH).

Beside the same VH-Database.db (a bot moved to another host, keeping the Control Room's file),
the rows the exporting keeper.db wrote are taken over, never written again. The ledger in VH
names each row by its keeper.db's id, submitter and submission second
(:mod:`discoveries.haven.ledger`); an import keeps the submitter and second, and stores the
exported ``id`` as the new discovery's ``imported_keeper_id``. Its sync, finding no ledger row
of its own, looks up the row of that earlier identity and moves it to the new one, in the same
VH transaction (:func:`discoveries.haven.ledger.ledger_take_over`): the row keeps its VH id and
its hash, so a Control Room edit made since is still a conflict, and a row the Control Room
deleted is a conflict as for any discovery of ours. The old ledger row stays, marked ``moved``:
the exporting keeper.db may no longer change the row, and the same file imported into a third
keeper.db finds the row taken and fails those items, naming the owner, rather than give one
row two owners whose edits would overwrite each other. Beside another VH (no such ledger row),
each discovery is written or linked as any other. The Control Room agent gets
``imported_keeper_id`` with the rest of the discovery (:mod:`syncq.agent_protocol`) and runs
the same writer.

What this cannot tell apart, since the ledger names a discovery by nothing else: a discovery
the new keeper.db happens to number as the old one did is the old discovery to the ledger (it
continues that ledger row, and a later import of the same file may take the row from it, still
one owner at a time); and a discovery exported before the old keeper.db synced it has no ledger
row to take over.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path
from typing import TextIO

from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import F

from discoveries.models import Discovery
from discoveries.rules import (
    DiscoveryInvalid,
    discovery_changes_validate,
    discovery_payload_validate,
    text_blank,
    text_unsafe,
)
from discoveries.timestamps import timestamp_read
from syncq.models import SyncStatus
from syncq.services import discovery_submit_once

#: The formats both commands speak: a JSON array, one JSON object a line, CSV with a header.
FORMATS = ("json", "ndjson", "csv")
#: The columns of an exported row, in order.
EXPORT_FIELDS: tuple[str, ...] = (
    "id",
    "submission_key",
    "submission_timestamp",
    "user_id",
    "username",
    "guild_id",
    "discovery_type",
    "system_name",
    "location",
    "location_type",
    "planet_name",
    "galaxy_name",
    "description",
    "time_period",
    "condition",
    "significance",
    "evidence_url",
    "related_discoveries",
    "coordinates",
    "tags",
    "analysis_status",
    "pattern_matches",
    "mystery_tier",
    "metadata",
    "haven_discovery_id",
    "sync_status",
)
#: Columns of an exported row that an import does not store as they are (see the module's
#: docstring): ``id`` is kept as ``imported_keeper_id``, the others are read and dropped.
NOT_IMPORTED = ("id", "haven_discovery_id", "sync_status")
#: Columns a submission does not carry, checked as an edit's and set after the submit.
ANALYSIS_FIELDS = ("analysis_status", "pattern_matches", "mystery_tier")
#: Integer columns, which CSV holds as text.
_INTEGER_FIELDS = ("id", "pattern_matches", "mystery_tier", "haven_discovery_id")
#: Rows read per query while exporting.
EXPORT_CHUNK_SIZE = 2000
#: Rows stored per keeper.db transaction while importing.
IMPORT_BATCH_SIZE = 500
#: The prefix of a submission key :func:`import_key` derives.
IMPORT_KEY_PREFIX = "import:"
SUBMISSION_KEY_MAX_LENGTH = 64


class TransferFileError(Exception):
    """A file to import cannot be read as a whole (missing, not UTF-8, not a JSON array)."""


# --- export ------------------------------------------------------------------------------------


def since_parse(text: str) -> datetime:
    """Read ``--since``: a date (``2025-11-09``, midnight UTC) or an ISO 8601 date-time (no
    zone: UTC); returns an aware UTC ``datetime``. Raises ``ValueError`` naming the forms."""
    value = text.strip()
    if len(value) == 10:
        try:
            return datetime.combine(datetime.strptime(value, "%Y-%m-%d").date(), time(), UTC)
        except ValueError:
            pass
    elif not value.isdigit() and (parsed := timestamp_read(value)) is not None:
        return parsed
    raise ValueError(
        f"{text!r} is neither a date (YYYY-MM-DD) nor an ISO 8601 date-time "
        "(YYYY-MM-DDTHH:MM[:SS][Z|±HH:MM])"
    )


def export_queryset(*, since: datetime | None = None, status: str | None = None):
    """The discoveries an export takes, oldest id first, as ``values()`` rows: submitted at or
    after ``since`` (aware), and whose queue item is in state ``status`` (one of
    :class:`syncq.models.SyncStatus`). Raises ``ValueError`` for another ``status``."""
    rows = Discovery.objects.using(DEFAULT_DB_ALIAS).order_by("id")
    if since is not None:
        rows = rows.filter(submission_timestamp__gte=since)
    if status is not None:
        if status not in SyncStatus.values:
            raise ValueError(f"{status!r} is not a queue state ({', '.join(SyncStatus.values)})")
        rows = rows.filter(queue_item__sync_status=status)
    columns = [name for name in EXPORT_FIELDS if name != "sync_status"]
    return rows.values(*columns, sync_status=F("queue_item__sync_status"))


def export_rows(
    *,
    since: datetime | None = None,
    status: str | None = None,
    chunk_size: int = EXPORT_CHUNK_SIZE,
) -> Iterator[dict[str, object]]:
    """Yield each discovery of :func:`export_queryset` as a dict of :data:`EXPORT_FIELDS`:
    ``submission_timestamp`` as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC; ``None`` when unset or
    unreadable), ``metadata`` as stored (a dict; the text of a legacy value that is no JSON),
    ``sync_status`` ``None`` for a discovery without a queue item. Reads ``chunk_size`` rows a
    query, holding no more. Raises ``ValueError`` as :func:`export_queryset`."""
    for row in export_queryset(since=since, status=status).iterator(chunk_size=chunk_size):
        stamp = row["submission_timestamp"]
        if stamp is not None:
            row["submission_timestamp"] = stamp.astimezone(UTC).isoformat().replace("+00:00", "Z")
        yield {name: row[name] for name in EXPORT_FIELDS}


def export_write(rows: Iterator[Mapping[str, object]], out: TextIO, *, fmt: str) -> int:
    """Write ``rows`` (of :data:`EXPORT_FIELDS`) to the text stream ``out`` in ``fmt``
    (:data:`FORMATS`), one row at a time; returns how many. ``json``: one array, an object a
    line; ``ndjson``: an object a line; ``csv``: a header and a record a row, ``metadata`` as
    JSON text, ``None`` as an empty cell (open ``out`` with ``newline=""``). Text is UTF-8 as
    written, not escaped. Raises ``ValueError`` for another ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"{fmt!r} is not a format ({', '.join(FORMATS)})")
    count = 0
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(EXPORT_FIELDS)
        for row in rows:
            writer.writerow([_csv_cell(name, row[name]) for name in EXPORT_FIELDS])
            count += 1
        return count
    if fmt == "json":
        out.write("[")
    for row in rows:
        if fmt == "json":
            out.write(",\n" if count else "\n")
        out.write(json.dumps(row, ensure_ascii=False))
        if fmt == "ndjson":
            out.write("\n")
        count += 1
    if fmt == "json":
        out.write("\n]\n" if count else "]\n")
    return count


def _csv_cell(name: str, value: object) -> object:
    if value is None:
        return ""
    if name == "metadata":
        return json.dumps(value, ensure_ascii=False)
    return value


# --- reading a file --------------------------------------------------------------------------


def file_format(path: Path) -> str:
    """The format of ``path``: by its extension (``.json``, ``.ndjson`` or ``.jsonl``,
    ``.csv``), else by its first character (``[`` json, ``{`` ndjson, else csv). Raises
    :class:`TransferFileError` when it cannot be read."""
    suffix = path.suffix.lower()
    if suffix in (".json", ".ndjson", ".csv"):
        return suffix[1:]
    if suffix == ".jsonl":
        return "ndjson"
    try:
        with path.open(encoding="utf-8-sig") as handle:
            head = handle.read(4096).lstrip()
    except (OSError, UnicodeDecodeError) as exc:
        raise TransferFileError(f"cannot read {path}: {exc}") from exc
    return {"[": "json", "{": "ndjson"}.get(head[:1], "csv")


def file_rows(path: Path) -> Iterator[tuple[int, object]]:
    """Yield ``(line, row)`` for each row of ``path`` (format by :func:`file_format`), where
    ``line`` is the 1-based line the row starts on and ``row`` what it holds: for JSON formats
    the decoded value (a dict when well formed), for CSV a dict of the header's columns, empty
    cells ``None`` and integer columns of digits as ``int``. A JSON-lines line that is no JSON
    yields a :class:`RowUnreadable` as its row. Blank lines are skipped. Raises
    :class:`TransferFileError` when the file as a whole cannot be read (missing, not UTF-8, a
    JSON array that does not parse, a CSV without a header)."""
    fmt = file_format(path)
    try:
        if fmt == "json":
            yield from _json_rows(path)
        elif fmt == "ndjson":
            yield from _ndjson_rows(path)
        else:
            yield from _csv_rows(path)
    except OSError as exc:
        raise TransferFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise TransferFileError(f"{path} is not UTF-8 ({exc.reason} at byte {exc.start})") from exc


@dataclass(frozen=True)
class RowUnreadable:
    """A row whose text cannot be read (``reason``)."""

    reason: str


def _json_rows(path: Path) -> Iterator[tuple[int, object]]:
    text = path.read_text(encoding="utf-8-sig")
    decoder = json.JSONDecoder()
    pos, line = _skip_space(text, 0, 1)
    if text[pos : pos + 1] != "[":
        raise TransferFileError(f"{path} is not a JSON array (line {line})")
    pos, line = _skip_space(text, pos + 1, line)
    if text[pos : pos + 1] == "]":
        return
    while True:
        try:
            value, end = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError, ValueError) as exc:
            raise TransferFileError(f"{path}: line {line}: not valid JSON: {exc}") from exc
        yield line, value
        line += text.count("\n", pos, end)
        pos, line = _skip_space(text, end, line)
        if text[pos : pos + 1] == "]":
            return
        if text[pos : pos + 1] != ",":
            raise TransferFileError(f"{path}: line {line}: expected ',' or ']' in the array")
        pos, line = _skip_space(text, pos + 1, line)


def _skip_space(text: str, pos: int, line: int) -> tuple[int, int]:
    while pos < len(text) and text[pos] in " \t\r\n":
        line += text[pos] == "\n"
        pos += 1
    return pos, line


def _ndjson_rows(path: Path) -> Iterator[tuple[int, object]]:
    with path.open(encoding="utf-8-sig") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                yield line, json.loads(text)
            except (json.JSONDecodeError, RecursionError, ValueError) as exc:
                yield line, RowUnreadable(f"not valid JSON: {exc}")


def _csv_rows(path: Path) -> Iterator[tuple[int, object]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise TransferFileError(f"{path} has no CSV header")
        start = reader.line_num + 1
        for record in reader:
            line, start = start, reader.line_num + 1
            if not any(record):
                continue
            if len(record) != len(header):
                yield line, RowUnreadable(f"has {len(record)} cells; the header has {len(header)}")
                continue
            yield (
                line,
                {name: _csv_value(name, cell) for name, cell in zip(header, record, strict=True)},
            )


def _csv_value(name: str, cell: str) -> object:
    if cell == "":
        return None
    if name in _INTEGER_FIELDS and cell.isascii() and cell.isdigit():
        return int(cell)
    if name == "metadata":
        try:
            return json.loads(cell)
        except (json.JSONDecodeError, RecursionError, ValueError):
            return cell  # refused by the rules as "must be a JSON object"
    return cell


# --- one row ---------------------------------------------------------------------------------


@dataclass
class ImportRow:
    """A row checked and ready to store: the keyword arguments of
    :func:`syncq.services.discovery_submit_once` (``fields``, with ``type_fields``), its
    ``submission_key``, ``submitted_at`` (aware UTC, or ``None``: now), the
    :data:`ANALYSIS_FIELDS` it gives (``analysis``) and ``imported_keeper_id``, the ``id`` it
    had in the exporting keeper.db (``None`` when the row gives none)."""

    line: int
    submission_key: str
    submitted_at: datetime | None
    fields: dict[str, object]
    analysis: dict[str, object]
    imported_keeper_id: int | None = None


def import_key(*, user_id: str, submitted_at: datetime | None, description: str) -> str:
    """The submission key of an imported row without one of its own: ``"import:"`` and the
    first 57 hex digits of the SHA-256 of its submitter, submission time (UTC ISO 8601, or
    empty) and description, 64 characters in all; the same row gives the same key whatever
    file format carries it."""
    stamp = submitted_at.astimezone(UTC).isoformat() if submitted_at else ""
    digest = hashlib.sha256("\x1f".join((user_id, stamp, description)).encode()).hexdigest()
    return (IMPORT_KEY_PREFIX + digest)[:SUBMISSION_KEY_MAX_LENGTH]


def row_prepare(line: int, raw: object) -> ImportRow:
    """Check one row read by :func:`file_rows` by the submit service's rules and return it
    ready to store. The row is an exported row (:data:`EXPORT_FIELDS`) or a submission as
    ``manage.py submit_discovery`` takes it (type fields as top-level keys allowed);
    :data:`NOT_IMPORTED` columns are not stored, but ``id``, when given, must be a whole number
    above 0 (digits as text too) and is kept as ``imported_keeper_id``.
    ``submission_timestamp`` is read as :func:`discoveries.timestamps.timestamp_read` reads it
    (absent: now); ``submission_key``, when given, must be text of 1 to 64 safe characters and
    is kept, else :func:`import_key` names the row. Raises :class:`DiscoveryInvalid` naming
    every bad field."""
    if isinstance(raw, RowUnreadable):
        raise DiscoveryInvalid({"row": [raw.reason]})
    if not isinstance(raw, Mapping):
        raise DiscoveryInvalid({"row": ["must be a JSON object"]})
    payload = {k: v for k, v in raw.items() if k not in NOT_IMPORTED}
    errors: dict[str, list[str]] = {}
    old_id = _exported_id(raw.get("id"))
    if old_id is False:
        errors["id"] = ["must be a whole number above 0 (the id in the exporting keeper.db)"]
    key = payload.pop("submission_key", None)
    if text_blank(key):
        key = None
    elif (
        not isinstance(key, str)
        or len(key) > SUBMISSION_KEY_MAX_LENGTH
        or text_unsafe(key)
        or key != key.strip()
    ):
        errors["submission_key"] = [
            f"must be text of 1 to {SUBMISSION_KEY_MAX_LENGTH} characters without control "
            "characters or surrounding spaces"
        ]
    stamp_raw = payload.pop("submission_timestamp", None)
    submitted_at = None
    if not text_blank(stamp_raw):
        submitted_at = timestamp_read(stamp_raw)
        if submitted_at is None:
            errors["submission_timestamp"] = [
                f"{stamp_raw!r} cannot be read as a time (epoch seconds/ms or ISO 8601)"
            ]
    analysis_given = {name: payload.pop(name) for name in ANALYSIS_FIELDS if name in payload}
    analysis: dict[str, object] = {}
    try:
        values = discovery_payload_validate(payload)
    except DiscoveryInvalid as exc:
        errors.update(exc.errors)
        values = None
    if analysis_given:
        try:
            analysis = discovery_changes_validate(current={"metadata": {}}, changes=analysis_given)
        except DiscoveryInvalid as exc:
            errors.update(exc.errors)
        # The rules read an empty value as "unset"; an export's empty value is a NULL column.
        analysis.update({k: None for k, v in analysis_given.items() if v is None})
    if errors:
        raise DiscoveryInvalid(errors)
    fields = dict(values)
    fields["type_fields"] = fields.pop("metadata")
    if key is None:
        key = import_key(
            user_id=fields["user_id"], submitted_at=submitted_at, description=fields["description"]
        )
    return ImportRow(line, key, submitted_at, fields, analysis, imported_keeper_id=old_id)


def _exported_id(value: object) -> int | None | bool:
    """An exported row's ``id`` as an int, ``None`` when absent or empty, ``False`` when it is
    no whole number above 0."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return False
    return value


# --- a whole file ----------------------------------------------------------------------------


@dataclass
class ImportResult:
    """What an import found and did: ``refused`` as ``(line, reason)`` in file order,
    ``checked`` rows in all, and the rows ``added`` and ``present`` (already in keeper.db, or
    repeated in the file). ``written`` is False when nothing was stored because of refused
    rows."""

    checked: int = 0
    added: int = 0
    present: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    written: bool = False


def import_plan(path: Path) -> ImportResult:
    """Check every row of ``path`` (:func:`row_prepare`) without writing; returns an
    :class:`ImportResult` with ``checked`` and ``refused`` filled in. Reads the file once,
    holding one row at a time. Raises :class:`TransferFileError`."""
    result = ImportResult()
    for line, raw in file_rows(path):
        result.checked += 1
        try:
            row_prepare(line, raw)
        except DiscoveryInvalid as exc:
            result.refused.append((line, str(exc)))
    return result


def import_apply(path: Path, *, skip_invalid: bool = False, progress=None) -> ImportResult:
    """Import ``path``: :func:`import_plan` first; when a row is refused and not
    ``skip_invalid``, write nothing; otherwise read the file again and store each good row
    through :func:`syncq.services.discovery_submit_once` with its key and submission time,
    then set its :data:`ANALYSIS_FIELDS`, :data:`IMPORT_BATCH_SIZE` rows a keeper.db
    transaction. A row is ``present`` rather than added when its key is already stored, or a
    keyless discovery has its submitter, submission time and description (the old bot's rows,
    importing into the database they came from). ``progress`` (optional) is called with no
    argument after each row. Raises :class:`TransferFileError`, and ``DatabaseError`` when
    keeper.db refuses a batch (the batches before it stay stored)."""
    result = import_plan(path)
    if result.refused and not skip_invalid:
        return result
    refused_lines = {line for line, _ in result.refused}
    rows = (row_prepare(line, raw) for line, raw in file_rows(path) if line not in refused_lines)
    result.written = True
    while True:
        batch = [row for _, row in zip(range(IMPORT_BATCH_SIZE), rows, strict=False)]
        if not batch:
            return result
        with transaction.atomic(using=DEFAULT_DB_ALIAS):
            for row in batch:
                if _row_store(row):
                    result.added += 1
                else:
                    result.present += 1
                if progress is not None:
                    progress()


def _row_store(row: ImportRow) -> bool:
    if (
        row.submitted_at is not None
        and Discovery.objects.filter(
            submission_key__isnull=True,
            user_id=row.fields["user_id"],
            submission_timestamp=row.submitted_at.replace(microsecond=0),
            description=row.fields["description"],
        ).exists()
    ):
        return False
    # Another keeper.db may have written it into this VH already: its sync takes that row over
    # by the exported id (syncq.transfer's docstring), or looks for an old bot's row.
    discovery, created = discovery_submit_once(
        submission_key=row.submission_key,
        submitted_at=row.submitted_at,
        first_submitted_here=False,
        imported_keeper_id=row.imported_keeper_id,
        **row.fields,
    )
    if created and row.analysis:
        Discovery.objects.filter(pk=discovery.pk).update(**row.analysis)
    return created


def _staged(path: str) -> str:
    """Where an export to ``path`` is written first: beside it, unless ``path`` is no regular
    file (``/dev/null``, a pipe), which is written directly."""
    if os.path.exists(path) and not os.path.isfile(path):
        return path
    return f"{path}.part"


def output_open(path: str) -> TextIO:
    """Open ``path`` for writing an export (UTF-8, CSV-safe newlines), at ``path + ".part"``
    for a regular file: :func:`output_close` moves it into place, so a failed export leaves
    no half file under the name asked for. Raises ``OSError``."""
    return open(_staged(path), "w", encoding="utf-8", newline="")  # noqa: SIM115


def output_close(handle: TextIO, path: str, *, ok: bool) -> None:
    """Close ``handle`` from :func:`output_open`; move it to ``path`` when ``ok``, else
    delete what was written."""
    handle.close()
    staged = handle.name
    if staged == path:
        return
    if ok:
        os.replace(staged, path)
    else:
        Path(staged).unlink(missing_ok=True)
