"""The export and import benchmark: ``manage.py export_discoveries``'s peak memory as the table
grows, and a round trip of the old bot's sample plus generated discoveries.

**Memory.** For each of :data:`SIZES` (:data:`SMOKE_SIZES` with ``--smoke``), a copy of the
keeper.db :func:`bench.growth.keeper_filled` made for that many discoveries, exported as NDJSON
to a file by its own ``manage.py`` process; the peak resident memory is that process's own
(``wait4``'s ``ru_maxrss``), and the file must hold one line per discovery. Figures: the peak at
each size (MB), and the peak at the largest size over the peak at the smallest (target
``<= 1.25``: memory does not grow with the rows).

**Round trip.** A keeper.db adopted from the old bot's ``examples/legacy_keeper.db`` (copied,
then ``migrate``), plus :data:`ROUND_TRIP` discoveries queued through ``manage.py
submit_discovery``. For each format: export; import into a freshly migrated keeper.db; import
the same file again; export the new database as CSV and compare it with the first database's
CSV export, row by row, on every column an import carries (all but ``id``,
``haven_discovery_id``, ``sync_status`` and ``submission_key``, which a keyless old row gets
anew; CSV, so that the old bot's blank text and NULL compare alike, as the submit rules store
both as NULL). Figures per format: rows exported, added, added again (target ``<= 0``), and
rows that differ (target ``<= 0``).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.growth import keeper_copy, keeper_filled, keeper_migrated, size_label
from bench.harness import FIXTURE, ROOT, entries, manage, manage_env, places, vh_copy

#: Discoveries in keeper.db when the export's memory is measured; and for ``--smoke``.
SIZES = (10_000, 1_000_000)
SMOKE_SIZES = (1_000, 10_000)
#: Generated discoveries added to the old bot's sample for the round trip; and for ``--smoke``.
ROUND_TRIP = 10_000
SMOKE_ROUND_TRIP = 500
FORMATS = ("json", "ndjson", "csv")
#: Columns an import does not carry over (see :mod:`syncq.transfer`).
NOT_CARRIED = {"id", "haven_discovery_id", "sync_status", "submission_key"}
_COUNTS = re.compile(r"(\d+) added, (\d+) already present, (\d+) refused")


def export_measured(env: dict[str, str], target: Path) -> tuple[float, float]:
    """Run ``export_discoveries --format ndjson -o target`` in its own process; returns
    ``(peak resident MB of that process, seconds)``. Raises ``RuntimeError`` when it fails."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "export_discoveries",
            "--format",
            "ndjson",
            "-o",
            str(target),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode(errors="replace") if process.stderr else ""
    process.stderr.close()
    if process.returncode != 0:
        raise RuntimeError(f"export_discoveries failed ({process.returncode}):\n{error}")
    return usage.ru_maxrss / 1024, seconds  # Linux gives kilobytes


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _memory(folder: Path, rows: int) -> dict:
    filled, _, _ = keeper_filled(rows)
    keeper = keeper_copy(filled, folder / "keeper.db")
    env = manage_env(keeper, vh_copy(folder, "VH-Database.db"))
    target = folder / "export.ndjson"
    peak_mb, seconds = export_measured(env, target)
    written = _lines(target)
    if written != rows:
        raise RuntimeError(f"the export of {rows:,} discoveries wrote {written:,} lines")
    print(
        f"transfer: export of {rows:,} rows: peak {peak_mb:.0f} MB, {seconds:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    return {"rows": rows, "peak_mb": peak_mb, "seconds": seconds}


def _counts(output: str) -> tuple[int, int, int]:
    found = _COUNTS.search(output)
    if found is None:
        raise RuntimeError(f"import_discoveries printed no counts:\n{output}")
    added, present, refused = (int(n) for n in found.groups())
    return added, present, refused


def _csv_rows(env: dict[str, str], folder: Path, name: str) -> list[tuple]:
    """Every discovery of ``env``'s keeper.db as exported to CSV, on the carried columns,
    sorted."""
    target = folder / name
    manage(env, "export_discoveries", "--format", "csv", "-o", str(target))
    with target.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c for c in reader.fieldnames or () if c not in NOT_CARRIED]
        return sorted(tuple(row[c] for c in columns) for row in reader)


def _round_trip(folder: Path, generated: int) -> dict:
    source = folder / "source"
    source.mkdir()
    keeper = source / "keeper.db"
    shutil.copyfile(ROOT / "examples" / "legacy_keeper.db", keeper)
    haven = vh_copy(source, "VH-Database.db")
    env = manage_env(keeper, haven)
    manage(env, "migrate", "--no-input")
    legacy = len(_csv_rows(env, source, "legacy.csv"))
    submit = source / "generated.json"
    submit.write_text(json.dumps(entries(generated, places(FIXTURE), "rt")), encoding="utf-8")
    manage(env, "submit_discovery", "--file", str(submit))
    original = _csv_rows(env, source, "original.csv")
    results = {"legacy": legacy, "generated": generated, "formats": {}}
    for fmt in FORMATS:
        exported = source / f"export.{fmt}"
        manage(env, "export_discoveries", "--format", fmt, "-o", str(exported))
        target = folder / fmt
        target.mkdir()
        copy = keeper_copy(keeper_migrated(), target / "keeper.db")
        target_env = manage_env(copy, vh_copy(target, "VH-Database.db"))
        started = time.perf_counter()
        first = _counts(manage(target_env, "import_discoveries", str(exported)).stdout)
        seconds = time.perf_counter() - started
        second = _counts(manage(target_env, "import_discoveries", str(exported)).stdout)
        again = _csv_rows(target_env, target, "again.csv")
        differing = len(set(original) ^ set(again)) + abs(len(original) - len(again))
        results["formats"][fmt] = {
            "exported": len(original),
            "added": first[0],
            "refused": first[2],
            "added_again": second[0],
            "present_again": second[1],
            "rows_after": len(again),
            "differing": differing,
            "import_s": seconds,
        }
        print(
            f"transfer: {fmt}: {len(original):,} exported, {first[0]:,} added, "
            f"{first[2]} refused, again {second[0]} added / {second[1]:,} present, "
            f"{differing} differing, import {seconds:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return results


def run(*, smoke: bool, runs: int) -> dict:
    """The transfer section (one run of each measurement: the memory peak is not a timing);
    returns ``{"figures": …, "memory": …, "round_trip": …}`` for :mod:`bench.__main__`."""
    sizes = SMOKE_SIZES if smoke else SIZES
    generated = SMOKE_ROUND_TRIP if smoke else ROUND_TRIP
    with tempfile.TemporaryDirectory(prefix="keeper-bench-transfer-") as name:
        memory = []
        for rows in sizes:
            folder = Path(name) / f"export-{size_label(rows)}"
            folder.mkdir()
            memory.append(_memory(folder, rows))
            shutil.rmtree(folder)
        trip_folder = Path(name) / "round-trip"
        trip_folder.mkdir()
        trip = _round_trip(trip_folder, generated)
    figures: dict[str, dict] = {}
    for got in memory:
        label = size_label(got["rows"])
        figures[f"export_peak_{label}"] = {
            "description": f"export_discoveries peak memory, {label} rows (NDJSON)",
            "unit": "MB",
            "median": got["peak_mb"],
            "runs": [got["peak_mb"]],
        }
        figures[f"export_seconds_{label}"] = {
            "description": f"export_discoveries, {label} rows (NDJSON)",
            "unit": "s",
            "median": got["seconds"],
            "runs": [got["seconds"]],
        }
    growth = memory[-1]["peak_mb"] / memory[0]["peak_mb"]
    figures["export_peak_ratio"] = {
        "description": f"export peak at {size_label(memory[-1]['rows'])} / at "
        f"{size_label(memory[0]['rows'])}",
        "unit": "ratio",
        "median": growth,
        "runs": [growth],
        "target": "<= 1.25",
    }
    rows = trip["legacy"] + trip["generated"]
    for fmt, got in trip["formats"].items():
        base = f"legacy sample + {trip['generated']:,}, {fmt}"
        figures[f"round_trip_{fmt}_added"] = {
            "description": f"{base}: of {rows:,} rows, added",
            "unit": "rows",
            "median": got["added"],
            "runs": [got["added"]],
            "target": f">= {rows}",
        }
        figures[f"round_trip_{fmt}_again"] = {
            "description": f"{base}: added by a second import",
            "unit": "rows",
            "median": got["added_again"],
            "runs": [got["added_again"]],
            "target": "<= 0",
        }
        figures[f"round_trip_{fmt}_differing"] = {
            "description": f"{base}: rows differing after the trip",
            "unit": "rows",
            "median": got["differing"],
            "runs": [got["differing"]],
            "target": "<= 0",
        }
    return {"figures": figures, "memory": memory, "round_trip": trip}
