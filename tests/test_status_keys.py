"""What is kept in the cache every process shares belongs to one keeper database, and the demo
Control Room file is named as the demo when it goes missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.cache import cache
from django.utils import timezone
from django_q.conf import Conf

from discoveries.haven.files import DEMO_HAVEN
from syncq import services
from syncq.cache_keys import SYNC_KICK, cluster_stats_bind, keeper_cache_key, keeper_database_tag
from syncq.models import SyncQueueItem
from syncq.selectors import bot_heartbeat_key, bot_online
from syncq.services import sync_batch, sync_kick
from tests.conftest import haven_at
from tests.factories import discovery_make

ELSEWHERE = {"ENGINE": "django.db.backends.sqlite3", "NAME": "/elsewhere/keeper.db"}


def test_each_keeper_database_has_its_own_keys(tmp_path):
    """Two keeper databases get two keys for one entry; one file reached by two paths, or
    through another engine, one; PostgreSQL databases differ by server and name."""
    (tmp_path / "data").mkdir()
    a = {"ENGINE": "discoveries.keeper_sqlite", "NAME": str(tmp_path / "data" / "keeper.db")}
    same = {"ENGINE": "django.db.backends.sqlite3", "NAME": f"{tmp_path}/data/../data/keeper.db"}
    b = {**a, "NAME": str(tmp_path / "other.db")}
    pg = {"ENGINE": "django.db.backends.postgresql", "NAME": "keeper", "HOST": "db", "PORT": 5432}
    assert keeper_cache_key("x", database=a) == keeper_cache_key("x", database=same)
    assert keeper_cache_key("x", database=a) != keeper_cache_key("x", database=b)
    assert keeper_database_tag(pg) != keeper_database_tag({**pg, "NAME": "keeper2"})
    assert keeper_database_tag(pg) != keeper_database_tag({**pg, "HOST": "db2"})


def test_another_keeper_databases_bot_is_not_online_here():
    """A fresh heartbeat of the bot of another keeper database, in the shared cache, does not
    make this one's bot online; its own does."""
    beat = {"at": timezone.now(), "ready": True, "connected": True}
    cache.set(bot_heartbeat_key(database=ELSEWHERE), beat)
    assert bot_online() is False
    cache.set(bot_heartbeat_key(), beat)
    assert bot_online() is True


def test_another_keeper_databases_sync_request_does_not_hold_back_ours(monkeypatch):
    """A sync request standing for another keeper database does not stop this one's."""
    asked = []
    monkeypatch.setattr(services, "async_task", lambda *args, **kwargs: asked.append(args))
    cache.set(keeper_cache_key(SYNC_KICK, database=ELSEWHERE), True)
    sync_kick()
    assert len(asked) == 1
    sync_kick()
    assert len(asked) == 1, "a second request in the window is still one"


def test_the_clusters_status_is_kept_under_the_keeper_database(monkeypatch):
    """django-q2's cluster status key carries this keeper database's tag."""
    monkeypatch.setattr(Conf, "Q_STAT", Conf.Q_STAT)
    cluster_stats_bind()
    tagged = Conf.Q_STAT
    assert tagged == f"django_q:{Conf.PREFIX}:cluster@{keeper_database_tag()}"


@pytest.mark.django_db(transaction=True, databases=["default", "haven"])
@pytest.mark.parametrize("demo", [True, False])
def test_a_missing_demo_file_is_named_as_the_demo(tmp_path, settings, demo):
    """When the demo Control Room file the services chose is missing, the item's error names
    the demo database and its path, not HAVEN_DB_PATH (which nobody set); a configured file
    that is missing is still named by HAVEN_DB_PATH."""
    settings.BASE_DIR = tmp_path
    path = tmp_path / DEMO_HAVEN if demo else tmp_path / "elsewhere" / "VH-Database.db"
    with haven_at(Path(path), settings):
        discovery = discovery_make()
        assert sync_batch().retrying == 1
    error = SyncQueueItem.objects.get(discovery_id=discovery.id).sync_error
    if demo:
        assert "demo Control Room database" in error and "data/demo/VH-Database.db" in error
        assert "HAVEN_DB_PATH" not in error
    else:
        assert "missing at HAVEN_DB_PATH, elsewhere/VH-Database.db" in error
        assert "demo" not in error
