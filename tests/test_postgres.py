"""keeper.db on PostgreSQL (DATABASE_URL): the same path, migrate → submit → sync, end to end."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid

import pytest

from discoveries.haven_files import haven_file_create
from tests.conftest import manage_env, run_manage

SERVER = os.environ.get("KEEPER_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")


@pytest.fixture
def postgres_url():
    """A new, empty PostgreSQL database for one test, dropped afterwards; skips when no server
    answers at KEEPER_TEST_POSTGRES (default: the local server, database 'test')."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(SERVER, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server at {SERVER}: {exc}")
    name = f"keeper_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield SERVER.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_keeper_on_postgres_syncs_a_discovery_once(postgres_url, tmp_path):
    """With DATABASE_URL, migrate, submit and sync_now store the discovery in PostgreSQL and
    write it into VH once; a second sync finds nothing to do."""
    haven = haven_file_create(tmp_path / "VH-Database.db", with_demo_data=True)
    env = manage_env(keeper=tmp_path / "unused.db", haven=haven, DATABASE_URL=postgres_url)
    entry = tmp_path / "one.json"
    entry.write_text(
        json.dumps(
            [
                {
                    "user_id": "42",
                    "username": "Pg",
                    "discovery_type": "🚀",
                    "system_name": "Demo Alpha",
                    "location": "Alpha Prime I",
                    "description": "A wreck on the moon.",
                    "ship_class": "Hauler",
                }
            ]
        ),
        encoding="utf-8",
    )
    for args in (("migrate", "--no-input", "-v0"), ("submit_discovery", "--file", str(entry))):
        done = run_manage(*args, env=env)
        assert done.returncode == 0, done.stderr

    first = run_manage("sync_now", "--until-idle", env=env)
    again = run_manage("sync_now", "--until-idle", env=env)

    assert "total: claimed 1, synced 1" in first.stdout, first.stderr
    assert "total: claimed 0" in again.stdout
    assert not (tmp_path / "unused.db").exists()
    with sqlite3.connect(haven) as conn:
        rows = conn.execute("SELECT location_type, moon_id, ship_class FROM discoveries").fetchall()
    assert rows == [("moon", 1, "Hauler")]
