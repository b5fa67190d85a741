"""``GET /health`` (REFERENCE.md, "Monitoring API"): no credentials, every key, keeper.db and
VH-Database.db in each state they can be in, and never a file path in the answer."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from django.core.cache import cache
from django.db import connections
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from tests.api_support import API, HEALTH_KEYS, WITH_HAVEN
from tests.conftest import haven_at


def _no_paths(body_text: str, *paths) -> None:
    for path in paths:
        assert str(path) not in body_text
    values = json.loads(body_text)
    for key, value in values.items():
        if isinstance(value, str) and key != "timestamp":
            assert "/" not in value, (key, value)


def _keeper_path() -> str:
    return str(connections["default"].settings_dict["NAME"])


@WITH_HAVEN
def test_health_with_vh_present(haven_db):
    """No credentials needed: 200 healthy with every key; VH ok, worker stopped here, and no
    agent outside agent mode."""
    response = APIClient().get("/health")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == HEALTH_KEYS | {"agent"}
    assert body["agent"] is None
    assert body["status"] == "healthy"
    assert body["database"] == "ok"
    assert body["haven_database"] == "ok"
    assert body["worker"] == "stopped"
    assert body["sync_worker_running"] is False
    assert body["bot_online"] is False
    stamp = parse_datetime(body["timestamp"])
    assert stamp is not None and stamp.tzinfo is not None
    _no_paths(response.content.decode(), haven_db, haven_db.name, _keeper_path())


@API
def test_health_says_bot_online_after_a_heartbeat():
    """A fresh bot heartbeat in the shared cache makes bot_online true."""
    from syncq.selectors import bot_heartbeat_key

    cache.set(bot_heartbeat_key(), timezone.now())
    assert APIClient().get("/health").json()["bot_online"] is True


@API
def test_health_while_vh_is_missing(tmp_path, settings):
    """A missing VH-Database.db is "missing" in a 200 answer; the file is not created and
    its path is not shown."""
    absent = tmp_path / "nowhere" / "VH-Database.db"
    with haven_at(absent, settings):
        response = APIClient().get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["haven_database"] == "missing"
    assert not absent.exists()
    assert not absent.parent.exists()
    _no_paths(response.content.decode(), absent, "nowhere", _keeper_path())


@WITH_HAVEN
def test_health_while_vh_is_locked_by_another_program(haven_db):
    """Another connection holding VH's write lock makes it "locked" (still 200); released,
    it is "ok" again."""
    other = sqlite3.connect(haven_db, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        response = APIClient().get("/health")
        assert response.status_code == 200
        assert response.json()["status"] == "healthy"
        assert response.json()["haven_database"] == "locked"
        _no_paths(response.content.decode(), haven_db, _keeper_path())
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert APIClient().get("/health").json()["haven_database"] == "ok"


@API
def test_health_with_vh_switched_off(settings):
    """USE_HAVEN_DATABASE=False is reported as "disabled", still healthy."""
    settings.USE_HAVEN_DATABASE = False
    response = APIClient().get("/health")
    assert response.status_code == 200
    assert response.json()["haven_database"] == "disabled"
    assert response.json()["status"] == "healthy"


@pytest.mark.django_db(transaction=True)
def test_health_is_503_only_when_keeper_db_is_unreachable(tmp_path):
    """keeper.db that cannot be opened makes /health 503 unhealthy/unreachable, without the
    path in the answer."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where keeper.db's folder should be")
    unreachable = blocker / "keeper.db"
    conn = connections["default"]
    old_name = conn.settings_dict["NAME"]
    conn.close()
    conn.settings_dict["NAME"] = str(unreachable)
    try:
        response = APIClient().get("/health")
    finally:
        conn.close()
        conn.settings_dict["NAME"] = old_name
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["database"] == "unreachable"
    _no_paths(response.content.decode(), unreachable, "not-a-folder", old_name)


@pytest.mark.django_db(transaction=True, databases=["default", "haven"])
def test_health_when_vh_is_not_a_database(tmp_path, settings):
    """A file at HAVEN_DB_PATH that is not SQLite is reported missing, with a 200."""
    garbage = tmp_path / "VH-Database.db"
    garbage.write_bytes(b"not a database at all " * 300)
    settings.HAVEN_DB_PATH = garbage
    response = APIClient().get("/health")
    assert response.status_code == 200
    assert response.json()["haven_database"] == "missing"


@pytest.mark.django_db(transaction=True, databases=["default", "haven"])
@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only file")
def test_health_when_vh_is_read_only(haven_db):
    """A write-protected VH file is reported locked: the sync cannot write it."""
    haven_db.chmod(0o444)
    try:
        assert APIClient().get("/health").json()["haven_database"] == "locked"
    finally:
        haven_db.chmod(0o644)


@API
def test_health_of_an_unmigrated_keeper_db_is_503(monkeypatch):
    """A keeper.db without the queue table (wrong path, never migrated) is down: 503."""
    from django.db import connection

    real_cursor = connection.cursor

    class NoQueueTable:
        def __init__(self):
            self.inner = real_cursor()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.inner.close()

        def execute(self, sql, params=None):
            if "sync_queue" in sql:
                from django.db import OperationalError

                raise OperationalError("no such table: sync_queue")
            return self.inner.execute(sql, params)

    monkeypatch.setattr(connection, "cursor", NoQueueTable)
    response = APIClient().get("/health")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"
