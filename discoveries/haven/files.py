"""Control Room files: building our own (the demo VH-Database.db of ``make run`` and ``make bot``,
and the files the tests use), and choosing which one a service uses. The real VH-Database.db is
never created or touched from here."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connections

from discoveries.haven.router import HAVEN_ALIAS

SCHEMA_PATH = Path(__file__).with_name("schema.sql")
#: Where the services keep the demo file, under the project folder.
DEMO_HAVEN = Path("data/demo/VH-Database.db")

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


@dataclass(frozen=True)
class HavenChoice:
    """The Control Room file a service (``runservice``, ``runbot``) uses: ``path`` (None when
    ``USE_HAVEN_DATABASE`` is false), whether it is the ``demo`` file, and ``described``, one
    line for the service's start notice."""

    path: Path | None
    demo: bool
    described: str


def haven_for_service() -> HavenChoice:
    """The configured VH-Database.db; or, only when ``HAVEN_DB_PATH`` is not set and nothing is
    at the default path, the demo file under ``data/demo/`` (created with the demo systems the
    first time). A configured file that is missing stays chosen (items wait for it): the demo
    never stands in for a real file an operator may be about to put back."""
    if settings.USE_HAVEN_AGENT:
        return HavenChoice(None, False, "on a desktop, through the Control Room agent")
    if not settings.USE_HAVEN_DATABASE:
        return HavenChoice(None, False, "not used (USE_HAVEN_DATABASE=false: items stay queued)")
    configured = Path(settings.HAVEN_DB_PATH)
    if os.environ.get("HAVEN_DB_PATH", "").strip() or configured.exists():
        state = "" if configured.exists() else " (MISSING: items wait)"
        return HavenChoice(configured, False, f"{configured}{state}")
    demo = Path(settings.BASE_DIR) / DEMO_HAVEN
    if not demo.exists():
        haven_file_create(demo, with_demo_data=True)
    return HavenChoice(demo, True, f"{demo} (demo)")


def haven_demo_warning(choice: HavenChoice) -> str:
    """The warning a service prints when ``choice`` is the demo file."""
    return (
        f"No VH-Database.db at {settings.HAVEN_DB_PATH} and HAVEN_DB_PATH is not set: using a "
        f"DEMO Control Room database at {choice.path}, not the real one. To sync into the real "
        "one, set HAVEN_DB_PATH in .env or put the file at the default path."
    )


def haven_is_demo(path: Path | str | None = None) -> bool:
    """Whether ``path`` (default ``HAVEN_DB_PATH``) is the demo file under the project folder
    that the services use when no VH-Database.db is configured (:func:`haven_for_service`)."""
    path = Path(settings.HAVEN_DB_PATH if path is None else path)
    return path.resolve() == (Path(settings.BASE_DIR) / DEMO_HAVEN).resolve()


def haven_where() -> str:
    """How a message names where VH-Database.db is looked for: ``HAVEN_DB_PATH`` and the path
    it holds (from the project folder, when inside it); or, when
    that is the demo file (which the services chose because ``HAVEN_DB_PATH`` was not set),
    the demo Control Room database and its path in the project folder, so that nobody goes
    looking for a setting they never made."""
    if haven_is_demo():
        return f"the demo Control Room database's path, {DEMO_HAVEN.as_posix()}"
    path = Path(settings.HAVEN_DB_PATH)
    with contextlib.suppress(ValueError):
        path = path.relative_to(settings.BASE_DIR)
    return f"HAVEN_DB_PATH, {path.as_posix()}"


def haven_use(path: Path) -> None:
    """Point this process at ``path`` as its VH-Database.db: ``settings.HAVEN_DB_PATH`` and
    the ``haven`` connection (closed, so that it opens ``path`` next), and ``HAVEN_DB_PATH`` in
    the environment for the processes it starts."""
    settings.HAVEN_DB_PATH = path
    connection = connections[HAVEN_ALIAS]
    connection.close()
    connection.settings_dict["NAME"] = f"file:{quote(str(path), safe='/')}?mode=rw"
    os.environ["HAVEN_DB_PATH"] = str(path)
