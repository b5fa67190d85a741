"""The legacy sample's whole life over both real VH files, with real ``manage.py`` processes:
the 5 discoveries in systems the Control Room lacks wait, then sync once the systems are added;
an edit updates its one row; a VH restored from an older backup is found by ``sync_verify`` and
repaired without a duplicate. The counts are printed for the record (``pytest -s``)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import (
    LEGACY_KEEPER,
    SAMPLE_VH,
    SAMPLE_VH_CONTROL_ROOM_SCHEMA,
    manage_env,
    run_manage,
    writable_copy,
)

LEGACY_USERS = ("343202264256216529", "930484704533555958")

#: The places the legacy sample names that neither VH file has: (system, planet, moon or None).
MISSING_PLACES = (
    ("ORACLE ZETA", "ORACLE ZETA-A", None),
    ("CIPHER SECUNDUS", "CIPHER SECUNDUS-B", None),
    ("KEEPER EPSILON", "KEEPER EPSILON-C", "KEEPER EPSILON-C-M1"),
)


def _query(path: Path, sql: str, params=()) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _manage(*args: str, keeper: Path, haven: Path) -> str:
    result = run_manage(*args, env=manage_env(keeper=keeper, haven=haven))
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def _states(keeper: Path) -> dict[str, int]:
    return dict(_query(keeper, "SELECT sync_status, COUNT(*) FROM sync_queue GROUP BY sync_status"))


def _legacy_rows(haven: Path) -> int:
    return _query(
        haven,
        "SELECT COUNT(*) FROM discoveries WHERE discord_user_id IN (?, ?)",
        LEGACY_USERS,
    )[0][0]


def _duplicates(haven: Path) -> int:
    """VH rows beyond the first of the same submitter, time and text."""
    return _query(
        haven,
        "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM discoveries"
        " GROUP BY discord_user_id, submission_timestamp, description)",
    )[0][0]


def _places_add(haven: Path) -> None:
    conn = sqlite3.connect(haven)
    try:
        for number, (system, planet, moon) in enumerate(MISSING_PLACES, start=1):
            system_id = f"SYS_EUCLID_NEW{number}"
            conn.execute(
                "INSERT INTO systems (id, name, x, y, z, region) VALUES (?, ?, 0, 0, 0, ?)",
                [system_id, system, "Euclid"],
            )
            planet_id = conn.execute(
                "INSERT INTO planets (system_id, name) VALUES (?, ?)", [system_id, planet]
            ).lastrowid
            if moon:
                conn.execute("INSERT INTO moons (planet_id, name) VALUES (?, ?)", [planet_id, moon])
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "vh_source", [SAMPLE_VH, SAMPLE_VH_CONTROL_ROOM_SCHEMA], ids=["sample", "control-room-schema"]
)
def test_legacy_sample_waits_syncs_updates_and_is_repaired_without_duplicates(vh_source, tmp_path):
    """Waiting 5, synced 5 once the places exist, duplicates 0, one edit updated in place, and
    the rows a restored backup lost are found and written back once."""
    keeper = writable_copy(LEGACY_KEEPER, tmp_path / "keeper.db")
    haven = writable_copy(vh_source, tmp_path / "VH-Database.db")
    vh_before = _query(haven, "SELECT COUNT(*) FROM discoveries")[0][0]
    _manage("migrate", "--no-input", keeper=keeper, haven=haven)
    assert "linked 7, queued 5" in _manage("sync_backfill", keeper=keeper, haven=haven)

    out = _manage("sync_now", "--until-idle", keeper=keeper, haven=haven)
    assert "waiting 5" in out, out
    assert _states(keeper) == {"synced": 7, "waiting": 5}
    waiting_errors = _query(
        keeper, "SELECT sync_error FROM sync_queue WHERE sync_status = 'waiting'"
    )
    assert all("is not in the Control Room" in e for (e,) in waiting_errors), waiting_errors
    assert _query(haven, "SELECT COUNT(*) FROM discoveries")[0][0] == vh_before
    idle = _manage("sync_now", "--until-idle", keeper=keeper, haven=haven)
    assert "claimed 0" in idle, "nothing is looked at again while VH's map is unchanged"

    backup = tmp_path / "VH-backup.db"
    shutil.copyfile(haven, backup)
    _places_add(haven)
    out = _manage("sync_now", "--until-idle", keeper=keeper, haven=haven)
    assert "synced 5" in out, out
    assert _states(keeper) == {"synced": 12}
    assert _legacy_rows(haven) == 12
    assert _duplicates(haven) == 0
    placed = _query(
        haven,
        "SELECT COUNT(*) FROM discoveries WHERE discord_user_id IN (?, ?)"
        " AND system_id LIKE 'SYS_EUCLID_NEW%' AND planet_id IS NOT NULL",
        LEGACY_USERS,
    )[0][0]
    assert placed == 5

    _manage(
        "shell",
        "-c",
        "from syncq.services import discovery_update;"
        "discovery_update(discovery_id=1, changes={'description': 'Re-surveyed: a beacon.'})",
        keeper=keeper,
        haven=haven,
    )
    out = _manage("sync_now", "--until-idle", keeper=keeper, haven=haven)
    assert "synced 1" in out, out
    (haven_id,) = _query(keeper, "SELECT haven_discovery_id FROM discoveries WHERE id = 1")[0]
    assert _query(haven, "SELECT description FROM discoveries WHERE id = ?", [haven_id]) == [
        ("Re-surveyed: a beacon.",)
    ]
    assert _legacy_rows(haven) == 12
    assert _query(
        haven, "SELECT how FROM keeper_sync_ledger WHERE haven_discovery_id = ?", [haven_id]
    ) == [("updated",)]

    # The Control Room's file is restored from the backup taken before the 5 were written, and
    # the Control Room adds the places again.
    shutil.copyfile(backup, haven)
    _places_add(haven)
    report = _manage("sync_verify", keeper=keeper, haven=haven)
    assert "missing 5" in report, report
    repair = _manage("sync_verify", "--repair", keeper=keeper, haven=haven)
    assert "re-queued 5" in repair, repair
    out = _manage("sync_now", "--until-idle", keeper=keeper, haven=haven)
    assert "synced 5" in out, out
    assert _states(keeper) == {"synced": 12}
    assert _legacy_rows(haven) == 12
    assert _duplicates(haven) == 0
    assert "missing 0" in _manage("sync_verify", keeper=keeper, haven=haven)
    print(
        f"\n{vh_source.name}: waiting 5; synced after the systems were added 5; duplicated "
        f"{_duplicates(haven)}; updated 1; repaired 5"
    )
