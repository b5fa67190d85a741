"""Reading a Control Room file behind the project's back, as the Control Room would, for tests
of what VH-Database.db holds: queries, row counts, one row, and the marks and places the tests
of waiting, edits, deletes and verify share."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

#: Tests that sync into a VH file: both databases, in transactions of their own.
WITH_HAVEN = pytest.mark.django_db(transaction=True, databases=["default", "haven"])
#: Run a test on the older sample and on the Control Room's current schema (its CHECK).
BOTH_FILES = pytest.mark.parametrize(
    "vh_fixture", ["sample_haven_db", "control_room_schema_haven_db"]
)
#: A place both samples have: planet Erren of system Oculi.
PLACED = {"system_name": "Oculi", "location": "Erren", "location_type": "planet"}


def vh_query(path: Path, sql: str, params=()) -> list[tuple]:
    """The rows ``sql`` returns from the VH file at ``path``, on a connection of its own that
    commits what the statement changes and is closed afterwards."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def vh_count(path: Path) -> int:
    """How many rows VH's ``discoveries`` holds."""
    return vh_query(path, "SELECT COUNT(*) FROM discoveries")[0][0]


def vh_row(path: Path, haven_id: int) -> dict | None:
    """VH discovery ``haven_id`` as ``{column: value}``, or ``None``."""
    conn = sqlite3.connect(path)
    try:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM discoveries WHERE id = ?", [haven_id]).fetchone()
    finally:
        conn.close()
    return dict(row) if row else None
