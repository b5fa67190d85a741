"""The chaos suite's own check: it must see a lost, a doubled and a stuck discovery, or its
zeros would mean nothing."""

from __future__ import annotations

import sqlite3

from chaos.harness import Workspace, outcome_table


def test_the_invariant_check_sees_lost_doubled_and_stuck_items(tmp_path):
    """Four synced discoveries check clean; then one VH row doubled, one VH row deleted and
    one queue item set back to syncing are each counted, and only once."""
    ws = Workspace(tmp_path / "ws")
    ws.manage("migrate", "--no-input", "-v0")
    descriptions = ws.submit("check", 4)
    ws.manage("sync_now", "--until-idle")
    clean = ws.check("clean", descriptions, 0.0)
    assert (clean.items, clean.lost, clean.duplicated, clean.stuck) == (4, 0, 0, 0)

    with sqlite3.connect(ws.haven) as vh:
        vh.execute(
            "INSERT INTO discoveries (discovery_type, location_type, description) "
            "SELECT discovery_type, location_type, description FROM discoveries "
            "WHERE description = ?",
            (descriptions[0],),
        )
        vh.execute("DELETE FROM discoveries WHERE description = ?", (descriptions[1],))
    with sqlite3.connect(ws.keeper) as keeper:
        keeper.execute(
            "UPDATE sync_queue SET sync_status = 'syncing' WHERE discovery_id = "
            "(SELECT id FROM discoveries WHERE description = ?)",
            (descriptions[2],),
        )
    broken = ws.check("broken", descriptions + ["never submitted"], None)
    assert (broken.items, broken.lost, broken.duplicated, broken.stuck) == (5, 2, 1, 1)
    assert not broken.clean and clean.clean
    table = outcome_table([clean, broken])
    assert "| broken   | 5     | 2    | 1          | 1     | never   |" in table
