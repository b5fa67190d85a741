"""``manage.py haven_demo``: the demo Control Room database."""

from __future__ import annotations

import sqlite3
from io import StringIO

from django.core.management import call_command


def test_haven_demo_creates_the_file_once_and_leaves_it_after(tmp_path):
    """The first run creates the demo file with its systems; a second run (or one after
    make run made it) says the file is left as it is, changes nothing and exits 0."""
    path = tmp_path / "demo" / "VH-Database.db"
    out = StringIO()
    call_command("haven_demo", str(path), stdout=out)
    assert "created demo VH-Database.db" in out.getvalue()
    with sqlite3.connect(path) as vh:
        vh.execute("UPDATE systems SET region = 'mine'")
    again = StringIO()
    call_command("haven_demo", str(path), stdout=again)
    assert "already exists; it is left as it is" in again.getvalue()
    with sqlite3.connect(path) as vh:
        assert vh.execute("SELECT DISTINCT region FROM systems").fetchall() == [("mine",)]
