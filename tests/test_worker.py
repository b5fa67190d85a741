"""The whole path with real processes: migrate, a real django-q2 cluster, submit, VH."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from discoveries.haven.files import haven_file_create, haven_for_service
from tests.conftest import manage_env, run_manage

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path) -> dict[str, str]:
    return manage_env(
        keeper=tmp_path / "keeper.db",
        haven=tmp_path / "VH-Database.db",
        CACHE_URL=f"filecache://{tmp_path / 'cache'}",
        Q_WORKERS="1",
    )


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return run_manage(*args, env=env)


@contextlib.contextmanager
def _cluster(env: dict[str, str]):
    """A real qcluster for the block, stopped through its main process afterwards (and any
    worker left behind killed)."""
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield cluster
    finally:
        cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(cluster.pid, signal.SIGKILL)


def _vh_count(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT COUNT(*) FROM discoveries").fetchone()[0]


def test_cluster_syncs_a_submitted_discovery_and_schedules_stay_single(tmp_path):
    """A discovery submitted while a real qcluster runs reaches VH without sync_now, and
    migrating twice leaves one set of sync schedules."""
    env = _env(tmp_path)
    haven_file_create(tmp_path / "VH-Database.db", with_demo_data=True)
    for _ in range(2):
        done = _manage(env, "migrate", "--no-input", "-v0")
        assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "keeper.db") as conn:
        names = sorted(r[0] for r in conn.execute("SELECT name FROM django_q_schedule"))
    assert names == ["keeper-prune-synced", "keeper-sync-1", "keeper-sync-2", "keeper-verify"]

    with _cluster(env):
        entry = {
            "user_id": "1",
            "username": "Worker Test",
            "discovery_type": "💎",
            "system_name": "Demo Beta",
            "location": "Beta Pebble",
            "description": "Copper under the moon's crust.",
            "resource_type": "Copper",
        }
        payload = tmp_path / "one.json"
        payload.write_text(json.dumps([entry]), encoding="utf-8")
        done = _manage(env, "submit_discovery", "--file", str(payload))
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 60
        while _vh_count(tmp_path / "VH-Database.db") == 0 and time.monotonic() < deadline:
            time.sleep(0.25)

    with sqlite3.connect(f"file:{tmp_path / 'VH-Database.db'}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT location_type, moon_id, resource_type FROM discoveries"
        ).fetchall()
    assert rows == [("moon", 2, "Copper")]
    status = json.loads(_manage(env, "syncq_status", "--json").stdout)
    assert status["queue"] == {
        "pending": 0,
        "syncing": 0,
        "synced": 1,
        "failed": 0,
        "waiting": 0,
        "conflict": 0,
    }


def test_services_use_a_demo_haven_only_when_none_is_configured(tmp_path, settings, monkeypatch):
    """With HAVEN_DB_PATH unset and no file at the default path, runservice and runbot use a
    demo file they make under data/demo/; the default path stays absent."""
    monkeypatch.delenv("HAVEN_DB_PATH", raising=False)
    settings.BASE_DIR = tmp_path
    settings.HAVEN_DB_PATH = tmp_path / "data" / "VH-Database.db"
    settings.USE_HAVEN_DATABASE = True
    choice = haven_for_service()
    demo = tmp_path / "data" / "demo" / "VH-Database.db"
    assert choice.demo and choice.path == demo
    assert demo.is_file() and "demo" in choice.described
    assert not settings.HAVEN_DB_PATH.exists()


def test_services_never_swap_a_configured_haven_for_the_demo(tmp_path, settings, monkeypatch):
    """When HAVEN_DB_PATH is set but its file is missing, the services keep that path (items
    wait) and create nothing."""
    missing = tmp_path / "moved-away" / "VH-Database.db"
    monkeypatch.setenv("HAVEN_DB_PATH", str(missing))
    settings.BASE_DIR = tmp_path
    settings.HAVEN_DB_PATH = missing
    settings.USE_HAVEN_DATABASE = True
    choice = haven_for_service()
    assert not choice.demo and choice.path == missing
    assert "MISSING" in choice.described
    assert not missing.exists() and not (tmp_path / "data").exists()


def test_settings_refuse_to_start_without_a_secret_key(tmp_path):
    """Without SECRET_KEY any command stops (exit 2) with one line naming the variable."""
    env = _env(tmp_path)
    env.pop("SECRET_KEY")
    done = _manage(env, "check")
    assert done.returncode == 2
    assert "SECRET_KEY is not set" in done.stderr
    assert "Traceback" not in done.stderr


def test_sync_now_reports_a_locked_keeper_db_without_a_traceback(tmp_path):
    """When keeper.db stays locked past its busy timeout, sync_now says so in one line."""
    env = _env(tmp_path)
    haven_file_create(tmp_path / "VH-Database.db", with_demo_data=True)
    assert _manage(env, "migrate", "--no-input", "-v0").returncode == 0
    holder = sqlite3.connect(tmp_path / "keeper.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        done = _manage({**env, "KEEPER_BUSY_TIMEOUT_SECONDS": "0.2"}, "sync_now")
    finally:
        holder.close()
    assert done.returncode == 1
    assert "keeper.db: OperationalError: database is locked" in done.stderr
    assert "Traceback" not in done.stderr


def _redis_url_or_skip() -> str:
    """A Redis database for this test (flushed), or a skip naming why; in CI a missing server
    fails instead, since .ci/run starts one."""
    import redis

    url = "redis://127.0.0.1:6379/13"
    try:
        redis.from_url(url, socket_connect_timeout=1).flushdb()
    except redis.exceptions.ConnectionError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis server at 127.0.0.1:6379 ({exc}); .ci/run starts one")
    return url


def test_cluster_with_the_redis_broker_syncs_a_submitted_discovery(tmp_path):
    """With Q_REDIS_URL set, the submit's sync request goes through Redis and a real qcluster
    takes it from there: the discovery reaches VH without sync_now."""
    import redis

    url = _redis_url_or_skip()
    env = {**_env(tmp_path), "Q_REDIS_URL": url}
    haven_file_create(tmp_path / "VH-Database.db", with_demo_data=True)
    done = _manage(env, "migrate", "--no-input", "-v0")
    assert done.returncode == 0, done.stderr
    with _cluster(env):
        payload = tmp_path / "one.json"
        payload.write_text(
            json.dumps(
                [
                    {
                        "user_id": "1",
                        "username": "Redis Test",
                        "discovery_type": "🦴",
                        "system_name": "Demo Alpha",
                        "location": "Alpha Prime",
                        "description": "Bones delivered through Redis.",
                    }
                ]
            ),
            encoding="utf-8",
        )
        done = _manage(env, "submit_discovery", "--file", str(payload))
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 60
        while _vh_count(tmp_path / "VH-Database.db") == 0 and time.monotonic() < deadline:
            time.sleep(0.25)
    redis.from_url(url).flushdb()
    assert _vh_count(tmp_path / "VH-Database.db") == 1
    with sqlite3.connect(tmp_path / "keeper.db") as conn:
        # The ORM broker's table stayed empty: the request went through Redis.
        assert conn.execute("SELECT COUNT(*) FROM django_q_ormq").fetchone()[0] == 0
