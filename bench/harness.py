"""What every benchmark shares: a workspace of fresh files, ``manage.py`` processes on them, the
discoveries queued, and the figures' bookkeeping."""

from __future__ import annotations

import os
import platform
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The Control Room's schema with its sample map, as shipped in ``examples/`` (never written).
FIXTURE = ROOT / "examples" / "vh_control_room_schema.db"


# --- the workspace ------------------------------------------------------------------------------


def manage_env(keeper: Path, haven: Path) -> dict[str, str]:
    """The environment of a ``manage.py`` process on these files (as tests/conftest.py's):
    this process's, less every Keeper Sync setting, plus the files and a fresh SECRET_KEY."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("DJANGO_", "KEEPER_", "HAVEN_", "SYNC_", "USE_HAVEN", "Q_", "BOT_", "DISCORD_")
        )
        and k
        not in (
            "DATABASE_URL",
            "CACHE_URL",
            "SECRET_KEY",
            "GUILD_ID",
            "ARCHIVE_CHANNEL_ID",
            "DISCOVERY_CHANNEL_ID",
        )
    }
    env.update(
        DJANGO_SETTINGS_MODULE="keeper_site.settings",
        SECRET_KEY=secrets.token_urlsafe(50),
        CACHE_URL="locmemcache://",
        KEEPER_ENV_FILE="",
        KEEPER_DB_PATH=str(keeper),
        HAVEN_DB_PATH=str(haven),
        LOG_LEVEL="WARNING",
    )
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run ``manage.py args`` to completion; raise with its output when it fails."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done


def vh_copy(folder: Path, name: str) -> Path:
    """A fresh copy of the Control Room's schema fixture in ``folder``."""
    path = folder / name
    shutil.copyfile(FIXTURE, path)
    return path


def places(vh: Path) -> list[tuple[str, str, str]]:
    """Every (system name, place name, location type) of the planets and moons in ``vh``."""
    conn = sqlite3.connect(vh)
    try:
        planets = conn.execute(
            "SELECT s.name, p.name FROM planets p JOIN systems s ON s.id = p.system_id"
            " ORDER BY p.id"
        ).fetchall()
        moons = conn.execute(
            "SELECT s.name, m.name FROM moons m JOIN planets p ON p.id = m.planet_id"
            " JOIN systems s ON s.id = p.system_id ORDER BY m.id"
        ).fetchall()
    finally:
        conn.close()
    return [(s, n, "planet") for s, n in planets] + [(s, n, "moon") for s, n in moons]


def entries(count: int, where: list[tuple[str, str, str]], tag: str) -> list[dict]:
    """``count`` valid ruins discoveries, spread over ``where``, each description unique."""
    return [
        {
            "user_id": str(100_000_000_000_000_000 + n % 32),
            "username": f"Bench {n % 32}",
            "guild_id": "200000000000000002",
            "discovery_type": "🏛️",
            "system_name": where[n % len(where)][0],
            "location": where[n % len(where)][1],
            "location_type": where[n % len(where)][2],
            "description": f"bench {tag} {n:07d}",
            "structure_type": "Tower",
        }
        for n in range(count)
    ]


def median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def versions() -> dict[str, str]:
    import django

    return {
        "python": platform.python_version(),
        "django": django.get_version(),
        "sqlite": sqlite3.sqlite_version,
    }
