"""keeper.db on PostgreSQL (DATABASE_URL): the same path, migrate → submit → sync, end to end."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid

import pytest

from discoveries.haven.files import haven_file_create
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


def _keeper_with_submissions(postgres_url: str, tmp_path, entries: list[dict]):
    """A demo VH file and the environment of a keeper on ``postgres_url``, migrated, with
    ``entries`` submitted through ``submit_discovery``; returns ``(haven path, env)``."""
    haven = haven_file_create(tmp_path / "VH-Database.db", with_demo_data=True)
    env = manage_env(keeper=tmp_path / "unused.db", haven=haven, DATABASE_URL=postgres_url)
    path = tmp_path / "entries.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    for args in (("migrate", "--no-input", "-v0"), ("submit_discovery", "--file", str(path))):
        done = run_manage(*args, env=env)
        assert done.returncode == 0, done.stderr
    return haven, env


def test_keeper_on_postgres_syncs_a_discovery_once(postgres_url, tmp_path):
    """With DATABASE_URL, migrate, submit and sync_now store the discovery in PostgreSQL and
    write it into VH once; a second sync finds nothing to do."""
    haven, env = _keeper_with_submissions(
        postgres_url,
        tmp_path,
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
        ],
    )

    first = run_manage("sync_now", "--until-idle", env=env)
    again = run_manage("sync_now", "--until-idle", env=env)

    assert "total: claimed 1, synced 1" in first.stdout, first.stderr
    assert "total: claimed 0" in again.stdout
    assert not (tmp_path / "unused.db").exists()
    with sqlite3.connect(haven) as conn:
        rows = conn.execute("SELECT location_type, moon_id, ship_class FROM discoveries").fetchall()
    assert rows == [("moon", 1, "Hauler")]


def test_claims_on_postgres_skip_rows_another_worker_holds(postgres_url, tmp_path):
    """On PostgreSQL a claim uses ``FOR UPDATE SKIP LOCKED``: while another transaction holds
    the first three due items, a claim returns the other three at once instead of waiting."""
    _, env = _keeper_with_submissions(
        postgres_url,
        tmp_path,
        [
            {
                "user_id": "42",
                "username": "Pg",
                "discovery_type": "🏛️",
                "system_name": "Demo Alpha",
                "location": "Alpha Prime",
                "description": f"Ruin {n}.",
            }
            for n in range(6)
        ],
    )
    script = (
        "import time, psycopg\n"
        "from django.db import connection\n"
        "from django.test.utils import CaptureQueriesContext\n"
        "from syncq.services import queue_items_claim\n"
        f"other = psycopg.connect({postgres_url!r})\n"
        "held = [r[0] for r in other.execute("
        "'SELECT id FROM sync_queue ORDER BY id LIMIT 3 FOR UPDATE').fetchall()]\n"
        "with connection.cursor() as cursor:\n"
        "    cursor.execute(\"SET lock_timeout = '2s'\")\n"
        "began = time.monotonic()\n"
        "with CaptureQueriesContext(connection) as queries:\n"
        "    _, items = queue_items_claim(limit=10)\n"
        "print('held', held)\n"
        "print('claimed', [item.id for item in items])\n"
        "print('seconds', round(time.monotonic() - began, 2))\n"
        "print('skip', any('FOR UPDATE SKIP LOCKED' in q['sql'] for q in queries))\n"
        "other.rollback()\n"
    )
    done = run_manage("shell", "-v0", "-c", script, env=env)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    held, claimed = json.loads(lines["held"]), json.loads(lines["claimed"])
    assert len(held) == 3 and len(claimed) == 3
    assert set(held).isdisjoint(claimed)
    assert float(lines["seconds"]) < 1.5
    assert lines["skip"] == "True"
