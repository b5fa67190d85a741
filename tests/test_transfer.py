"""export_discoveries and import_discoveries: every field round-trips in each format, a
second import adds nothing, refused rows are reported by line, filters and memory."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from discoveries.models import Discovery
from discoveries.types import DISCOVERY_TYPES
from syncq.models import SyncQueueItem
from syncq.transfer import EXPORT_FIELDS, export_rows, export_write, import_key
from tests.conftest import LEGACY_KEEPER
from tests.factories import discovery_make, queue_item_exceeded, queue_item_synced

pytestmark = pytest.mark.django_db(transaction=True)

#: What an import renumbers or starts afresh (see syncq.transfer's docstring); a row without a
#: submission key gains one (syncq.transfer.import_key), pinned by keys_carried.
NOT_CARRIED = ("id", "haven_discovery_id", "sync_status", "submission_key")
START = datetime(2025, 11, 9, 1, 39, 8, tzinfo=UTC)


def all_types(count: int = 10, *, text: str = "") -> list[Discovery]:
    """``count`` discoveries cycling through the ten types, every type field and optional
    column filled."""
    made = []
    for n in range(count):
        dtype = DISCOVERY_TYPES[n % len(DISCOVERY_TYPES)]
        made.append(
            discovery_make(
                discovery_type=dtype.emoji,
                description=f"Find {n} of {dtype.name}{text}",
                location_type="planet",
                evidence_url=f"https://example.org/{n}.png",
                planet_name="Alpha Prime",
                galaxy_name="Euclid",
                time_period="Ancient",
                condition="Worn",
                significance=f"high{text}",
                coordinates="+1.0, -2.0",
                tags='["a", "b"]',
                related_discoveries="[]",
                type_fields={f.key: f"{f.label} {n}{text}" for f in dtype.fields},
                submitted_at=START + timedelta(minutes=n),
            )
        )
    return made


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("export_discoveries", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def import_file(path, *args: str) -> tuple[int, str, str]:
    """Run import_discoveries; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_discoveries", str(path), *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def parsed(text: str, fmt: str) -> list[dict]:
    """The rows of an export, as dicts with CSV cells read back to values."""
    if fmt == "json":
        return json.loads(text)
    if fmt == "ndjson":
        return [json.loads(line) for line in text.splitlines()]
    rows = []
    for record in csv.DictReader(io.StringIO(text)):
        row = {k: (v if v != "" else None) for k, v in record.items()}
        for name in ("id", "pattern_matches", "mystery_tier", "haven_discovery_id"):
            row[name] = int(row[name]) if row[name] is not None else None
        row["metadata"] = json.loads(row["metadata"]) if row["metadata"] else None
        rows.append(row)
    return rows


def carried(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in NOT_CARRIED} for row in rows]


def keys_carried(before: list[dict], after: list[dict]) -> None:
    """Each row keeps its submission key, or gains the import key derived from it."""
    for old, new in zip(before, after, strict=True):
        if old["submission_key"]:
            assert new["submission_key"] == old["submission_key"]
        else:
            assert new["submission_key"] == import_key(
                user_id=old["user_id"],
                submitted_at=datetime.fromisoformat(old["submission_timestamp"]),
                description=old["description"],
            )


def empty_keeper() -> None:
    SyncQueueItem.objects.all().delete()
    Discovery.objects.all().delete()


def legacy_load() -> int:
    """Copy the old bot's discoveries of examples/legacy_keeper.db into keeper.db, as adopting
    it leaves them (no queue item, no key); returns how many."""
    source = sqlite3.connect(f"file:{LEGACY_KEEPER}?mode=ro", uri=True)
    try:
        cursor = source.execute("SELECT * FROM discoveries ORDER BY id")
        names = [c[0] for c in cursor.description]
        rows = cursor.fetchall()
    finally:
        source.close()
    marks = ", ".join("%s" for _ in names)
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO discoveries ({', '.join(names)}) VALUES ({marks})", rows)
    return len(rows)


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
def test_each_format_round_trips_every_field_of_all_ten_types(fmt, tmp_path):
    """Export, import into an empty keeper.db, export again: the same rows, type fields
    included, but for ids, VH ids and queue states."""
    all_types()
    first = export("--format", fmt)
    rows = parsed(first, fmt)
    assert len(rows) == 10
    assert list(rows[0]) == list(EXPORT_FIELDS)
    assert {row["discovery_type"] for row in rows} == {t.emoji for t in DISCOVERY_TYPES}
    assert all(len(row["metadata"]) == 4 for row in rows)
    assert rows[0]["submission_timestamp"] == "2025-11-09T01:39:08Z"
    path = tmp_path / f"export.{fmt}"
    path.write_text(first, encoding="utf-8")
    empty_keeper()
    code, out, _ = import_file(path)
    assert code == 0
    assert "10 added, 0 already present, 0 refused" in out
    again = parsed(export("--format", fmt), fmt)
    assert carried(again) == carried(rows)
    keys_carried(rows, again)
    assert {row["sync_status"] for row in again} == {"pending"}


def test_second_import_adds_nothing(tmp_path):
    """Importing the same file twice stores its rows once."""
    all_types()
    path = tmp_path / "export.ndjson"
    path.write_text(export("--format", "ndjson"), encoding="utf-8")
    empty_keeper()
    assert "10 added" in import_file(path)[1]
    code, out, _ = import_file(path)
    assert code == 0
    assert "0 added, 10 already present, 0 refused" in out
    assert Discovery.objects.count() == 10


def test_reimport_into_the_source_database_matches_the_original_rows(tmp_path):
    """Rows keep their own submission key (the bot's), and keyless old rows are matched by
    submitter, time and description: importing an export into its own database adds 0."""
    discovery_make(description="Bot row")
    Discovery.objects.filter(description="Bot row").update(submission_key="discord:42")
    legacy = legacy_load()
    path = tmp_path / "export.json"
    path.write_text(export(), encoding="utf-8")
    code, out, _ = import_file(path)
    assert code == 0, out
    assert f"0 added, {legacy + 1} already present" in out


def test_legacy_sample_round_trips(tmp_path):
    """The old bot's rows export and import; what differs is said: blank optional text ('')
    becomes NULL, as the submit rules store it."""
    count = legacy_load()
    first = parsed(export("--format", "csv"), "csv")  # CSV has no '' vs NULL: compare as read
    path = tmp_path / "legacy.json"
    path.write_text(export(), encoding="utf-8")
    empty_keeper()
    code, out, err = import_file(path)
    assert code == 0, err
    assert f"{count} added" in out
    again = parsed(export("--format", "csv"), "csv")
    assert carried(again) == carried(first)
    keys_carried(first, again)
    stamps = [row["submission_timestamp"] for row in again]
    assert stamps[0] == "2025-11-09T01:39:08Z"
    assert again[8]["metadata"]["structure_type"] == "Ancient Ruin"


def test_bad_rows_write_nothing_and_are_reported_by_line(tmp_path):
    """A file with a refused row stores nothing, names the line and reason, exits 1."""
    path = tmp_path / "rows.ndjson"
    good = {
        "user_id": "1",
        "username": "A",
        "discovery_type": "🦴",
        "description": "ok",
        "system_name": "S",
        "location": "P",
    }
    lines = [good, {**good, "description": ""}, "not json", {**good, "description": "two"}]
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n",
        encoding="utf-8",
    )
    code, out, err = import_file(path)
    assert code == 1
    assert "line 2: refused: description: is required" in err
    assert "line 3: refused: row: not valid JSON" in err
    assert "0 added, 0 already present, 2 refused" in out
    assert Discovery.objects.count() == 0
    code, out, err = import_file(path, "--skip-invalid")
    assert code == 1
    assert "2 added, 0 already present, 2 refused" in out
    assert sorted(Discovery.objects.values_list("description", flat=True)) == ["ok", "two"]


def test_json_array_rows_are_reported_by_their_line(tmp_path):
    """A refused row of a JSON array export is named by the line it starts on."""
    all_types(3)
    rows = json.loads(export())
    rows[1]["evidence_url"] = "http://localhost/x.png"
    path = tmp_path / "bad.json"
    with path.open("w", encoding="utf-8") as handle:
        export_write(iter(rows), handle, fmt="json")
    empty_keeper()
    code, _, err = import_file(path)
    assert code == 1
    assert err.startswith("line 3: refused: evidence_url: must be a public address")


def test_filters_since_and_status():
    """--since keeps rows submitted from that instant, --status those in that queue state."""
    queue_item_synced(description="synced", submitted_at=START)
    queue_item_exceeded(description="gave up", submitted_at=START + timedelta(days=2))
    discovery_make(description="new", submitted_at=START + timedelta(days=3))

    def descriptions(*args):
        return [row["description"] for row in json.loads(export(*args))]

    assert descriptions("--since", "2025-11-10") == ["gave up", "new"]
    assert descriptions("--since", "2025-11-12T01:39:08Z") == ["new"]
    assert descriptions("--status", "synced") == ["synced"]
    assert descriptions("--status", "max_retries_exceeded") == ["gave up"]
    assert descriptions("--status", "pending", "--since", "2025-11-01") == ["new"]
    for bad in (("--since", "yesterday"), ("--status", "done"), ("--format", "xml")):
        with pytest.raises(CommandError, match=bad[0]):
            export(*bad)


def test_csv_keeps_commas_newlines_and_unicode(tmp_path):
    """Text with commas, quotes, newlines and non-ASCII survives CSV both ways."""
    all_types(2, text=', "quoted"\nsecond line — ünïcødé 🚀')
    first = export("--format", "csv")
    path = tmp_path / "tricky.csv"
    path.write_text(first, encoding="utf-8")
    empty_keeper()
    assert import_file(path)[0] == 0
    again = export("--format", "csv")
    assert carried(parsed(again, "csv")) == carried(parsed(first, "csv"))
    assert "second line — ünïcødé 🚀" in Discovery.objects.first().description


def test_output_file_matches_stdout(tmp_path):
    """-o FILE writes what standard output would show, and leaves no .part file."""
    all_types(3)
    target = tmp_path / "out.ndjson"
    err = io.StringIO()
    call_command("export_discoveries", "--format", "ndjson", "-o", str(target), stderr=err)
    assert target.read_text(encoding="utf-8") == export("--format", "ndjson")
    assert "3 discoveries written" in err.getvalue()
    assert [p.name for p in tmp_path.iterdir()] == ["out.ndjson"]


def test_export_memory_stays_flat_at_20000_rows():
    """Exporting 20,000 rows holds a bounded amount of memory: rows are streamed."""
    Discovery.objects.bulk_create(
        Discovery(
            user_id="1",
            username="Bulk",
            discovery_type="🦴",
            location="P",
            system_name="S",
            description="x" * 500,
            metadata={"species_type": "y" * 150},
            submission_timestamp=START,
        )
        for _ in range(20_000)
    )

    class Counting(io.TextIOBase):
        written = 0

        def write(self, text):
            Counting.written += len(text)
            return len(text)

    tracemalloc.start()
    try:
        count = export_write(export_rows(), Counting(), fmt="json")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20_000
    assert Counting.written > 20_000 * 600  # ~14 MB of output went through
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
