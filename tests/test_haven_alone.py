"""``discoveries.haven`` works with only the ``haven`` alias configured, as the Control Room
agent will run it on a desktop without keeper.db: in a process of its own, it reads the map,
writes a discovery once, previews a row, and never loads the queue or the bot."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from discoveries.haven.files import haven_file_create
from tests.conftest import ROOT

SCRIPT = r"""
import json, sys
from datetime import UTC, datetime

import django

django.setup()

from discoveries.haven.catalog import catalog_places, catalog_systems
from discoveries.haven.connection import haven_close, haven_probe
from discoveries.haven.writer import haven_discovery_write, haven_row_preview
from discoveries.models import Discovery

discovery = Discovery(
    id=41,
    user_id="123456789012345678",
    username="Desk",
    discovery_type="🏛️",
    system_name=sys.argv[1],
    location=sys.argv[2],
    description="A ring of stones.",
    metadata={"structure_type": "Ring"},
    submission_timestamp=datetime(2026, 12, 1, 10, 30, tzinfo=UTC),
)
systems = catalog_systems()
chosen = next(s for s in systems if s.name == sys.argv[1])
first = haven_discovery_write(discovery=discovery)
again = haven_discovery_write(discovery=discovery)
haven_close()
preview = haven_row_preview(discovery)
try:
    Discovery.objects.count()
    keeper = "reachable"
except Exception as exc:
    keeper = type(exc).__name__
print(json.dumps({
    "systems": [s.name for s in systems],
    "places": [p.name for p in catalog_places(chosen.id)],
    "first": [first.how, first.haven_discovery_id, first.location.moon_id is not None],
    "again": [again.how, again.haven_discovery_id],
    "preview_problem": preview.problem,
    "preview_moon": preview.row["moon_id"] if preview.row else None,
    "probe": haven_probe(),
    "keeper": keeper,
    "loaded": sorted(
        {m.split(".")[0] for m in sys.modules} & {"syncq", "botrunner", "keeper_site"}
    ),
}))
"""


def _run_alone(vh: Path, system: str, place: str) -> dict:
    """Run :data:`SCRIPT` on ``vh`` for a discovery on ``place`` in ``system``, in a process
    with only the haven alias configured; returns what it printed."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "KEEPER_", "HAVEN_", "SYNC_", "USE_HAVEN"))
    }
    env.update(DJANGO_SETTINGS_MODULE="tests.haven_only_settings", HAVEN_DB_PATH=str(vh))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, system, place],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rows(vh: Path) -> int:
    with sqlite3.connect(vh) as conn:
        return conn.execute(
            "SELECT COUNT(*) FROM discoveries WHERE description = 'A ring of stones.'"
        ).fetchone()[0]


def test_haven_package_runs_with_only_the_haven_alias(tmp_path):
    """With settings naming only the haven alias and the discoveries app, the map is read, a
    discovery is written and found again through the ledger (one row), the preview works, and
    neither syncq, botrunner nor the site's settings are imported; keeper.db is unreachable."""
    vh = haven_file_create(tmp_path / "VH-Database.db", with_demo_data=True)
    result = _run_alone(vh, "Demo Beta", "Beta Pebble")
    assert result["systems"] == ["Demo Alpha", "Demo Beta", "Demo Gamma"]
    assert result["places"] == ["Beta Ocean", "Beta Rock", "Beta Dust", "Beta Pebble", None]
    how, haven_id, on_a_moon = result["first"]
    assert (how, on_a_moon) == ("written", True)
    assert result["again"] == ["ledger", haven_id]
    assert result["preview_problem"] is None and result["preview_moon"] is not None
    assert result["probe"] == "ok"
    assert result["keeper"] == "ImproperlyConfigured"
    assert result["loaded"] == []
    assert _rows(vh) == 1


@pytest.mark.parametrize("sample", ["vh_database_sample.db", "vh_control_room_schema.db"])
def test_haven_package_alone_writes_into_both_kinds_of_control_room_file(tmp_path, sample):
    """On a copy of the older sample and of the Control Room's current schema (with its CHECK
    on discoveries), a discovery on a moon is written once and found again by the ledger."""
    vh = tmp_path / "VH-Database.db"
    shutil.copyfile(ROOT / "examples" / sample, vh)
    result = _run_alone(vh, "Tenex[VH]", "Mikeen")
    how, haven_id, on_a_moon = result["first"]
    assert (how, on_a_moon) == ("written", True)
    assert result["again"] == ["ledger", haven_id]
    assert result["loaded"] == []
    assert _rows(vh) == 1
