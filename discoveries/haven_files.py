"""Building Control Room files of our own: the demo VH-Database.db of ``make run`` and the
files the tests use. The real VH-Database.db is never created or touched from here."""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_PATH = Path(__file__).with_name("haven_schema.sql")

#: (system id, name, x, y, z, region, {planet: [moons]}) of the demo galaxy; made up here.
DEMO_SYSTEMS: tuple[tuple[str, str, float, float, float, str, dict[str, list[str]]], ...] = (
    (
        "SYS_DEMO_0000A001",
        "Demo Alpha",
        1.0,
        2.0,
        0.0,
        "Demo Reach",
        {"Alpha Prime": ["Alpha Prime I"], "Alpha Secundus": []},
    ),
    (
        "SYS_DEMO_0000B002",
        "Demo Beta",
        6.0,
        3.0,
        1.0,
        "Demo Reach",
        {"Beta Rock": ["Beta Pebble", "Beta Dust"], "Beta Ocean": []},
    ),
    ("SYS_DEMO_0000C003", "Demo Gamma", -4.0, 8.0, 2.0, "Demo Drift", {"Gamma Ice": []}),
)


def haven_file_create(path: Path, *, with_demo_data: bool = False) -> Path:
    """Create a new VH-Database.db at ``path`` with the Control Room's schema (and, if asked,
    the demo systems, planets and moons). Raises ``FileExistsError`` rather than overwrite."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; it is left as it is")
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    try:
        connection.executescript(SCHEMA_PATH.read_text(encoding="utf-8"))
        if with_demo_data:
            _insert_demo(connection)
        connection.commit()
    finally:
        connection.close()
    return path


def _insert_demo(connection: sqlite3.Connection) -> None:
    for system_id, name, x, y, z, region, planets in DEMO_SYSTEMS:
        connection.execute(
            "INSERT INTO systems (id, name, x, y, z, region) VALUES (?, ?, ?, ?, ?, ?)",
            (system_id, name, x, y, z, region),
        )
        for planet, moons in planets.items():
            planet_id = connection.execute(
                "INSERT INTO planets (system_id, name) VALUES (?, ?)", (system_id, planet)
            ).lastrowid
            for moon in moons:
                connection.execute(
                    "INSERT INTO moons (planet_id, name) VALUES (?, ?)", (planet_id, moon)
                )
