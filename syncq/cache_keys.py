"""Names in the cache every process shares (``CACHE_URL``), each one for one keeper database.

Several deployments may share a cache (one file cache, one Redis) while each serves its own
keeper.db: the worker's status, the sync's kick requests and the bot's heartbeat of one must
never be read as another's. Every writer and reader names its entry through
:func:`keeper_cache_key`, which adds a short tag of the keeper database (its file for SQLite;
server, port and name otherwise); :func:`cluster_stats_bind` does the same for the status
django-q2's clusters keep there (``Stat``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

from django.db import DEFAULT_DB_ALIAS, connections
from django_q.conf import Conf

#: The bot's heartbeat (:func:`syncq.selectors.bot_heartbeat`), written by the bot's cog.
BOT_HEARTBEAT = "keeper-bot:heartbeat"
#: While this entry lives, a sync run has been requested and has not started yet.
SYNC_KICK = "keeper-sync:kick-requested"
#: VH-Database.db's state as the console last found it, and since when (see
#: :func:`syncq.services.haven_state_note`).
HAVEN_STATE = "keeper-sync:haven-state"


def keeper_database_tag(database: Mapping | None = None) -> str:
    """12 hex digits naming the keeper database ``database`` (a ``DATABASES`` entry; default:
    the ``default`` connection's, which in the tests is the test database): a SQLite file by
    its real path, any other by host, port and name. Equal for every process on one database,
    different for two databases."""
    db = connections[DEFAULT_DB_ALIAS].settings_dict if database is None else database
    name = str(db.get("NAME") or "")
    if "sqlite" in str(db.get("ENGINE", "")) and not name.startswith("file:"):
        where = "sqlite:" + os.path.realpath(name)
    else:
        where = f"{db.get('HOST') or ''}:{db.get('PORT') or ''}/{name}"
    return hashlib.sha256(where.encode("utf-8")).hexdigest()[:12]


def keeper_cache_key(name: str, *, database: Mapping | None = None) -> str:
    """The shared cache's key for entry ``name`` of the keeper database ``database`` (see
    :func:`keeper_database_tag`)."""
    return f"{name}@{keeper_database_tag(database)}"


def cluster_stats_bind() -> None:
    """Key django-q2's cluster status (``Stat``, ``django_q:<name>:cluster…``) by the keeper
    database in this process, so ``/health``, ``syncq_status`` and the dashboard see only the
    clusters serving their own keeper database, whatever other deployments share the cache.
    Every process runs it as the app loads (``SyncqConfig.ready``), before any cluster
    writes or anyone reads; running it again changes nothing."""
    Conf.Q_STAT = keeper_cache_key(f"django_q:{Conf.PREFIX}:cluster")
