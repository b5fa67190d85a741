"""Shared fixtures: Control Room files built from its schema, writable copies of the real
sample databases in ``examples/``, the users most tests sign in as (made by
:mod:`tests.factories`) and the API clients of the Control Room API tests, and ``manage.py``
run in a process of its own."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connections

from discoveries.haven.files import haven_file_create

# Before they are imported: their asserts then explain a failure as a test's own do.
pytest.register_assert_rewrite("tests.bot_driver", "tests.factories")

from tests.api_support import token_client  # noqa: E402
from tests.factories import VIEW_ONLY, user_make  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
#: The real sample databases shipped with the project (examples/README.md): never open them in
#: place, copy them with ``writable_copy``.
SAMPLE_VH = EXAMPLES / "vh_database_sample.db"
SAMPLE_VH_CONTROL_ROOM_SCHEMA = EXAMPLES / "vh_control_room_schema.db"
LEGACY_KEEPER = EXAMPLES / "legacy_keeper.db"
SAMPLE_DATABASES = (SAMPLE_VH, SAMPLE_VH_CONTROL_ROOM_SCHEMA, LEGACY_KEEPER)


def writable_copy(source: Path, target: Path) -> Path:
    """Copy a sample database so the test may write to it; the original stays untouched."""
    shutil.copyfile(source, target)
    target.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return target


@contextlib.contextmanager
def haven_at(path: Path, settings):
    """Point the ``haven`` alias and ``HAVEN_DB_PATH`` at ``path`` for the block."""
    conn = connections["haven"]
    old_name = conn.settings_dict["NAME"]
    conn.settings_dict["NAME"] = f"file:{quote(str(path), safe='/')}?mode=rw"
    conn.close()
    settings.HAVEN_DB_PATH = path
    try:
        yield path
    finally:
        conn.close()
        conn.settings_dict["NAME"] = old_name


@pytest.fixture
def haven_db(tmp_path, settings):
    """A VH-Database.db of the Control Room's schema with the demo systems
    (``discoveries.haven.files.DEMO_SYSTEMS``), used by the sync. Tests using it need
    ``@pytest.mark.django_db(transaction=True, databases=["default", "haven"])``."""
    path = haven_file_create(tmp_path / "VH-Database.db", with_demo_data=True)
    with haven_at(path, settings):
        yield path


@pytest.fixture
def sample_haven_db(tmp_path, settings):
    """A writable copy of the real sample VH-Database.db, used by the sync."""
    path = writable_copy(SAMPLE_VH, tmp_path / "VH-Database.db")
    with haven_at(path, settings):
        yield path


@pytest.fixture
def control_room_schema_haven_db(tmp_path, settings):
    """A writable copy of the same sample data with the schema the Control Room creates today
    (its ``discoveries`` CHECK: a row without a system is space or deep space with a location
    name), used by the sync."""
    path = writable_copy(SAMPLE_VH_CONTROL_ROOM_SCHEMA, tmp_path / "VH-Database.db")
    with haven_at(path, settings):
        yield path


@pytest.fixture
def root():
    """A superuser named root."""
    return user_make("root", superuser=True)


@pytest.fixture
def staff_viewer():
    """Staff who may only view the queue and the discoveries, in the admin."""
    return user_make("staff-viewer", staff=True, perms=VIEW_ONLY)


@pytest.fixture
def admin(root):
    """An API client authenticated by token as the superuser root."""
    return token_client(root)


@pytest.fixture
def viewer():
    """An API client authenticated by token as a user holding view_syncqueueitem only."""
    return token_client(user_make("viewer", perms=["syncq.view_syncqueueitem"]))


def manage_env(*, keeper: Path, haven: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``manage.py`` process on these files: this process's, less every
    Keeper Sync setting (and the developer's .env), plus ``extra``."""
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
        SECRET_KEY="tests-only-7f3Kq9ZxW2mB8vLr4TnY6cJd1HsPe5GaU0oRiXwQzMbNkVyEt",
        CACHE_URL="locmemcache://",
        KEEPER_ENV_FILE="",
        KEEPER_DB_PATH=str(keeper),
        HAVEN_DB_PATH=str(haven),
    )
    env.update(extra)
    return env


def run_manage(*args: str, env: dict[str, str], timeout: float = 120):
    """Run ``manage.py args`` in a new process from the project root; returns the
    ``CompletedProcess`` (text output), whatever its exit code."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with an empty cache (the sync's kick requests live there)."""
    from django.core.cache import cache

    cache.clear()


def _example_files() -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in EXAMPLES.iterdir()}


@pytest.fixture(scope="session", autouse=True)
def sample_databases_stay_untouched():
    """The suite never writes into examples/, not even SQLite's -wal/-shm files beside the
    sample databases."""
    missing = [p.name for p in SAMPLE_DATABASES if not p.is_file()]
    assert not missing, f"examples/ lacks {missing}: the project ships them"
    before = _example_files()
    yield
    assert _example_files() == before, "a test wrote into examples/"
