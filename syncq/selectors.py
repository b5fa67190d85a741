"""Reads that several callers share (commands, API, admin, bot): the queue's figures, and whether
the worker, the bot and the Control Room agent are alive.

The bot records a heartbeat in the cache every process shares (``CACHE_URL``); the API reads it
here, so it never imports the bot. That entry, like the clusters' status, is this keeper
database's own (:mod:`syncq.cache_keys`): a worker or a bot serving another keeper database
through the same cache is not seen here.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import statistics
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import CharField, Count, Func, IntegerField, Value
from django.db.models.functions import Cast, TruncHour
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_q.status import Stat

from discoveries.models import CatalogCopy
from discoveries.timestamps import TIMESTAMP_RANGE
from syncq.cache_keys import BOT_HEARTBEAT, keeper_cache_key
from syncq.display import iso_utc
from syncq.models import HavenAgent, SyncQueueItem, SyncStatus, SyncVerifyRun, utc_text

logger = logging.getLogger(__name__)

#: A heartbeat older than this means the bot is gone; it writes one every 30 s.
BOT_HEARTBEAT_FRESH = timedelta(seconds=90)


def bot_heartbeat_key(*, database=None) -> str:
    """Where the bot of keeper database ``database`` (a ``DATABASES`` entry; default: this
    process's) keeps its heartbeat (see :func:`bot_heartbeat`) in the cache every process
    shares."""
    return keeper_cache_key(BOT_HEARTBEAT, database=database)


def bot_heartbeat() -> dict | None:
    """The bot's last heartbeat: ``{"at": datetime, "ready": bool, "connected": bool,
    "last_event_at": datetime | None, "user": str, "guilds": int, "latency_ms": float | None}``
    (datetimes aware, UTC), or ``None`` when there is none or the cache cannot be read."""
    try:
        beat = cache.get(bot_heartbeat_key())
    except Exception as exc:  # the cache backend's own errors vary by backend
        logger.warning("cannot read the bot's heartbeat: %s", exc)
        return None
    if isinstance(beat, datetime):  # a bare time: online as of then
        return {"at": beat, "ready": True, "connected": True, "last_event_at": beat}
    return beat if isinstance(beat, dict) and isinstance(beat.get("at"), datetime) else None


def bot_online() -> bool:
    """True when the bot, in whatever process, is connected to the gateway and ready, as its
    heartbeat of the last 90 s says."""
    beat = bot_heartbeat()
    return (
        beat is not None
        and bool(beat.get("ready"))
        and bool(beat.get("connected"))
        and timezone.now() - beat["at"] <= BOT_HEARTBEAT_FRESH
    )


class _ArrayLength(Func):
    """The length of a JSON array column, counted by the database (SQLite's
    ``json_array_length``, PostgreSQL's ``jsonb_array_length``: Django keeps a JSONField there
    as ``jsonb``), so that a count neither fetches nor parses the array."""

    function = "json_array_length"
    output_field = IntegerField()

    def as_postgresql(self, compiler, connection, **extra_context):
        return self.as_sql(compiler, connection, function="jsonb_array_length", **extra_context)


def _seconds_since(moment: datetime | None, now: datetime) -> float | None:
    """Seconds from ``moment`` to ``now``, to a tenth, 0 at least; None for None."""
    if moment is None:
        return None
    return round(max(0.0, (now - moment).total_seconds()), 1)


def agent_online(last_seen_at: datetime | None, *, now: datetime) -> bool:
    """Whether a Control Room agent last seen at ``last_seen_at`` (aware UTC; None: never)
    counts as online at ``now``: seen within ``HAVEN_AGENT_ONLINE_SECONDS`` (default 60 s).
    Its heartbeats and its lease requests (long polls of at most ``HAVEN_AGENT_POLL_SECONDS``)
    each mark it seen (:mod:`syncq.agent_services`)."""
    if last_seen_at is None:
        return False
    return now - last_seen_at <= timedelta(seconds=settings.HAVEN_AGENT_ONLINE_SECONDS)


def catalog_copy_state(*, now: datetime | None = None) -> dict[str, object] | None:
    """The VH catalog the Control Room agent last uploaded (:class:`discoveries.models.
    CatalogCopy`), or None before the first upload: ``content_hash``; ``systems``,
    ``planets`` and ``moons``, how many of each it holds; ``uploaded_at`` (when it last
    changed) and ``checked_at`` (when the agent last confirmed it), aware UTC;
    ``age_seconds``, how old the server's knowledge of VH's map is (``now`` −
    ``checked_at``), and ``changed_seconds`` (``now`` − ``uploaded_at``), each to a tenth of a
    second and 0 at least; ``uploaded_by``, the agent's name. One query; the lists are counted
    by the database, not read."""
    now = now or timezone.now()
    row = (
        CatalogCopy.objects.filter(pk=1)
        .annotate(
            n_systems=_ArrayLength("systems"),
            n_planets=_ArrayLength("planets"),
            n_moons=_ArrayLength("moons"),
        )
        .values(
            "content_hash",
            "uploaded_at",
            "checked_at",
            "uploaded_by",
            "n_systems",
            "n_planets",
            "n_moons",
        )
        .first()
    )
    if row is None:
        return None
    return {
        "content_hash": row["content_hash"],
        "systems": row["n_systems"] or 0,
        "planets": row["n_planets"] or 0,
        "moons": row["n_moons"] or 0,
        "uploaded_at": row["uploaded_at"],
        "checked_at": row["checked_at"],
        "age_seconds": _seconds_since(row["checked_at"], now),
        "changed_seconds": _seconds_since(row["uploaded_at"], now),
        "uploaded_by": row["uploaded_by"],
    }


_AGENT_COLUMNS = (
    "name",
    "agent_id",
    "version",
    "host",
    "vh_state",
    "vh_detail",
    "catalog_hash",
    "started_at",
    "last_seen_at",
)


def _agent_rows() -> list[dict]:
    return list(HavenAgent.objects.order_by("name").values(*_AGENT_COLUMNS))


def _presence(rows: list[dict], catalog: dict | None, now: datetime) -> list[dict[str, object]]:
    """:func:`agents_presence`'s dicts of ``rows`` (:data:`_AGENT_COLUMNS`), against the kept
    ``catalog`` (:func:`catalog_copy_state`)."""
    presence = []
    for row in rows:
        current = catalog is not None and row["catalog_hash"] == catalog["content_hash"]
        presence.append(
            {
                "name": row["name"],
                "agent_id": row["agent_id"],
                "online": agent_online(row["last_seen_at"], now=now),
                "last_seen_at": row["last_seen_at"],
                "seconds_since_seen": _seconds_since(row["last_seen_at"], now),
                "version": row["version"],
                "host": row["host"],
                "vh_state": row["vh_state"],
                "vh_detail": row["vh_detail"],
                "started_at": row["started_at"],
                "catalog_age_seconds": catalog["age_seconds"] if current else None,
            }
        )
    return presence


def agents_presence(*, now: datetime | None = None) -> list[dict[str, object]]:
    """Every Control Room agent the server knows (:class:`~syncq.models.HavenAgent`), by
    name, each as ``{name, agent_id, online, last_seen_at, seconds_since_seen, version, host,
    vh_state, vh_detail, started_at, catalog_age_seconds}``: ``online`` as
    :func:`agent_online` says at ``now``; ``last_seen_at`` and ``started_at`` (this run's
    start) aware UTC or None; ``seconds_since_seen`` to a tenth (None: never seen);
    ``vh_state`` what it last found of VH-Database.db (``ok``, ``missing``, ``locked``,
    ``readonly``, ``disabled``, ``error``, or ``""`` before its first heartbeat) and
    ``vh_detail`` why, as the agent wrote it (it may name paths on the desktop: keep it from
    the public); ``catalog_age_seconds`` the kept catalog's ``age_seconds``
    (:func:`catalog_copy_state`) when this agent uploaded that catalog, else None. One query,
    and one more for the catalog when there is an agent."""
    now = now or timezone.now()
    rows = _agent_rows()
    return _presence(rows, catalog_copy_state(now=now) if rows else None, now)


def agent_status(*, now: datetime | None = None, rows_when_off: bool = False) -> dict | None:
    """The Control Room agents and the catalog they keep here, as :func:`agents_presence` and
    :func:`catalog_copy_state` give them, in two queries: ``{"enabled": bool, "online": bool,
    "agents": [...], "catalog": {...} | None}``; ``enabled`` is ``USE_HAVEN_AGENT``,
    ``online`` whether any agent is. None, without a query, when ``USE_HAVEN_AGENT`` is off;
    with ``rows_when_off``, then, still the agents the server knows from before (one query),
    and None only if it knows none."""
    enabled = settings.USE_HAVEN_AGENT
    if not enabled and not rows_when_off:
        return None
    now = now or timezone.now()
    rows = _agent_rows()
    if not enabled and not rows:
        return None
    catalog = catalog_copy_state(now=now)
    agents = _presence(rows, catalog, now)
    return {
        "enabled": enabled,
        "online": any(agent["online"] for agent in agents),
        "agents": agents,
        "catalog": catalog,
    }


def agent_report(*, vh_detail: bool, now: datetime | None = None) -> dict | None:
    """:func:`agent_status` as the API answers it, under ``agent`` in ``/health`` and
    ``/sync/status``: ``{"online", "agents", "catalog"}``, times as ISO 8601 UTC text
    (:func:`~syncq.display.iso_utc`); each agent without ``vh_detail``, ``host`` and
    ``agent_id`` unless ``vh_detail`` (they name the desktop and its paths: ``/health`` is
    public). None, without a query, when ``USE_HAVEN_AGENT`` is off."""
    status = agent_status(now=now)
    if status is None:
        return None
    agents = []
    for agent in status["agents"]:
        row = {
            **agent,
            "last_seen_at": iso_utc(agent["last_seen_at"]),
            "started_at": iso_utc(agent["started_at"]),
        }
        if not vh_detail:
            # /health is public: nothing that names the desktop or its files.
            for private in ("vh_detail", "host", "agent_id"):
                del row[private]
        agents.append(row)
    catalog = status["catalog"]
    if catalog is not None:
        catalog = {
            **catalog,
            "uploaded_at": iso_utc(catalog["uploaded_at"]),
            "checked_at": iso_utc(catalog["checked_at"]),
        }
    return {"online": status["online"], "agents": agents, "catalog": catalog}


def queue_counts() -> dict[str, int]:
    """``{state: count}`` for every state of :class:`SyncStatus`, zeros included, and any other
    state a row holds. Read from ``sync_queue_tally``, which triggers on ``sync_queue`` keep
    in the same transaction as every change of a row, whoever writes it (migration ``syncq
    0007``): exact at every moment, at the cost of a few rows however long the queue."""
    counts = dict.fromkeys(SyncStatus.values, 0)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sync_status, SUM(n) FROM sync_queue_tally"
            " GROUP BY sync_status HAVING SUM(n) <> 0"
        )
        for status, n in cursor.fetchall():
            counts[status] = counts.get(status, 0) + int(n)
    return counts


def worker_clusters() -> list:
    """The django-q2 clusters serving this keeper database that reported in the last few
    seconds (``Stat`` objects, keyed by the database: :func:`syncq.cache_keys.
    cluster_stats_bind`), read from the cache they share; ``[]`` when none runs or the cache
    cannot be read."""
    try:
        return Stat.get_all()
    except Exception as exc:  # the cache backend's own errors vary by backend
        logger.warning("cannot read django-q2 cluster stats: %s", exc)
        return []


def queue_status() -> dict[str, object]:
    """The queue in the shape of the Control Room's ``GET /sync/status`` (REFERENCE.md):
    ``status``, ``sync_worker {is_running, sync_interval, uptime_seconds, last_sync_time}``,
    ``queue {pending, syncing, synced, failed, waiting, conflict}`` and ``totals {total_synced,
    total_failed}``. ``failed`` counts ``max_retries_exceeded``; ``waiting`` and ``conflict``,
    added after the reference's four, count the items waiting for their place in VH and those
    waiting for an operator's choice; ``last_sync_time`` is the latest attempt (ISO 8601, UTC)
    or ``None``; ``uptime_seconds`` is the oldest live cluster's, or 0."""
    counts = queue_counts()
    clusters = worker_clusters()
    last = SyncQueueItem.objects.last_attempt_at()
    uptime = max((c.uptime() for c in clusters if getattr(c, "tob", None)), default=0.0)
    return {
        "status": "ok",
        "sync_worker": {
            "is_running": bool(clusters),
            "sync_interval": settings.SYNC_INTERVAL_SECONDS,
            "uptime_seconds": round(uptime, 1),
            "last_sync_time": iso_utc(last),
        },
        "queue": {
            "pending": counts[SyncStatus.PENDING],
            "syncing": counts[SyncStatus.SYNCING],
            "synced": counts[SyncStatus.SYNCED],
            "failed": counts[SyncStatus.MAX_RETRIES_EXCEEDED],
            "waiting": counts[SyncStatus.WAITING],
            "conflict": counts[SyncStatus.CONFLICT],
        },
        "totals": {
            "total_synced": counts[SyncStatus.SYNCED],
            "total_failed": counts[SyncStatus.MAX_RETRIES_EXCEEDED],
        },
    }


def queue_items(
    *,
    status: str | None = None,
    discovery_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
):
    """Queue items with their discoveries, filtered by state, discovery and a window on
    ``created_at`` (inclusive, to the second, right for times other tools wrote)."""
    items = SyncQueueItem.objects.select_related("discovery")
    if status is not None:
        items = items.filter(sync_status=status)
    if discovery_id is not None:
        items = items.filter(discovery_id=discovery_id)
    return items.time_window("created_at", since=since, until=until)


#: The most synced items (the newest) a latency window reads; its ``sample`` says how many it
#: had, so a day past this many is measured on its newest items.
LATENCY_SAMPLE_MAX = 10_000


def latency_figures(seconds: list[float]) -> dict[str, float | int] | None:
    """``{median, p95, sample}`` of queued→synced ``seconds`` (each to the millisecond;
    ``p95`` by nearest rank: the smallest value at least 95 % of the sample reach), or None
    for an empty list."""
    if not seconds:
        return None
    ordered = sorted(seconds)
    rank = min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)
    return {
        "median": round(statistics.median(ordered), 3),
        "p95": round(ordered[rank], 3),
        "sample": len(ordered),
    }


def queue_statistics(*, now: datetime | None = None) -> dict[str, object]:
    """Figures of the queue, computed from the database (true in every process):
    ``counts`` per state; ``oldest_pending_age_seconds`` (None when nothing is pending);
    ``synced_last_hour`` and ``synced_last_day``; ``sync_seconds`` ``{mean, p95, sample}``,
    queued→synced over the last 1,000 synced items (None when there are none);
    ``sync_seconds_last_hour`` and ``sync_seconds_last_day`` ``{median, p95, sample}``
    (:func:`latency_figures`) of the items synced in the last hour and day (at most
    :data:`LATENCY_SAMPLE_MAX`, the newest; None when there are none; one query for both); and
    ``top_errors``, the 10 most common error texts of items not synced, as
    ``[{error, count}]``; ``verify``, the last :class:`~syncq.models.SyncVerifyRun`
    (:meth:`~syncq.models.SyncVerifyRun.figures`: the newest started, so a run cut short
    shows with no ``finished_at``), or None before the first. Times stored as other tools
    write them (``T`` or space, ``Z`` or ``+00:00``) count in the right windows."""
    now = now or timezone.now()
    synced = SyncQueueItem.objects.filter(sync_status=SyncStatus.SYNCED)
    oldest = SyncQueueItem.objects.oldest_pending_created()
    durations = sorted(_sync_seconds_last(synced, 1000))
    hour_ago, day_ago = now - timedelta(hours=1), now - timedelta(days=1)
    day = _sync_timings(synced.time_window("synced_at", since=day_ago), LATENCY_SAMPLE_MAX)
    timing = None
    if durations:
        timing = {
            "mean": round(sum(durations) / len(durations), 3),
            "p95": round(
                durations[min(len(durations) - 1, math.ceil(0.95 * len(durations)) - 1)], 3
            ),
            "sample": len(durations),
        }
    errors = (
        SyncQueueItem.objects.unsynced_errors()
        .values("sync_error")
        .annotate(count=Count("id"))
        .order_by("-count", "sync_error")[:10]
    )
    last_verify = SyncVerifyRun.objects.order_by("-started_at", "-id").first()
    return {
        "counts": queue_counts(),
        "oldest_pending_age_seconds": (
            round(max(0.0, (now - oldest).total_seconds()), 1) if oldest else None
        ),
        "synced_last_hour": synced.time_window("synced_at", since=now - timedelta(hours=1)).count(),
        "synced_last_day": synced.time_window("synced_at", since=now - timedelta(days=1)).count(),
        "sync_seconds": timing,
        "sync_seconds_last_hour": latency_figures(
            [seconds for done, seconds in day if done >= hour_ago]
        ),
        "sync_seconds_last_day": latency_figures([seconds for _, seconds in day]),
        "top_errors": [{"error": e["sync_error"], "count": e["count"]} for e in errors],
        "verify": last_verify.figures() if last_verify else None,
    }


def synced_seconds_since(*, since: datetime, limit: int) -> list[float]:
    """Queued→synced seconds (0 at least) of the items synced at or after ``since`` (aware),
    at most ``limit`` of them, newest first; times stored as other tools write them count in
    the right window (:meth:`~syncq.models.SyncQueueItemQuerySet.time_window`)."""
    synced = SyncQueueItem.objects.filter(sync_status=SyncStatus.SYNCED)
    return _sync_seconds_last(synced.time_window("synced_at", since=since), limit)


def _sync_seconds_last(synced, count: int) -> list[float]:
    """Queued→synced seconds (0 at least) of the ``count`` items of ``synced`` synced last
    (:func:`_sync_timings`)."""
    return [seconds for _, seconds in _sync_timings(synced, count)]


def _sync_timings(synced, count: int) -> list[tuple[datetime, float]]:
    """``(synced_at, queued→synced seconds)`` of the ``count`` items of ``synced`` synced
    last, newest first: ``synced_at`` aware UTC, the seconds 0 at least, each pair of times
    read as Django reads them; pairs with a time that reads as none are left out. On SQLite
    the stored text is fetched as text and read here as Django's reading begins, with
    ``datetime.fromisoformat``, naive meaning UTC: a thousand rows through Django's two
    converters a value were most of ``/sync/statistics``' time. Text that does not read so,
    or names a time outside what Django shows, goes through Django's reading."""
    recent = synced.exclude(synced_at=None).ordered_by_time("synced_at", descending=True)
    if connection.vendor != "sqlite":
        pairs = recent.values_list("created_at", "synced_at")[:count]
    else:
        as_text = {
            "queued": Cast("created_at", CharField()),
            "done": Cast("synced_at", CharField()),
        }
        rows = recent.annotate(**as_text).values_list("queued", "done")[:count]
        pairs = [(_sqlite_time(queued), _sqlite_time(done)) for queued, done in rows]
    seconds = []
    for queued, done in pairs:
        if queued is None or done is None:
            continue
        queued, done = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (queued, done))
        seconds.append((done, max(0.0, (done - queued).total_seconds())))
    return seconds


#: :data:`discoveries.timestamps.TIMESTAMP_RANGE` for times read without a zone (UTC).
_NAIVE_RANGE = tuple(bound.replace(tzinfo=None) for bound in TIMESTAMP_RANGE)


def _sqlite_time(text: str | None) -> datetime | None:
    """``text`` as Django reads a keeper.db time, except that a time without a zone stays
    naive (UTC): cheaper, and the same differences."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        low, high = _NAIVE_RANGE if value.utcoffset() is None else TIMESTAMP_RANGE
        if low <= value < high:
            return value
    # Django's reading: the converter it registers with sqlite3 for datetime columns, then
    # its backend's own conversion.
    value = sqlite3.converters["DATETIME"](text.encode())
    return connection.ops.convert_datetimefield_value(value, None, connection)


def _item_row(item: SyncQueueItem) -> dict[str, object]:
    """``item`` in the Control Room's ``/sync/failed`` item shape (REFERENCE.md)."""
    return {
        "queue_id": item.id,
        "discovery_id": item.discovery_id,
        "sync_attempts": item.sync_attempts,
        "sync_error": item.sync_error,
        "created_at": iso_utc(item.created_at),
        "last_sync_attempt": iso_utc(item.last_sync_attempt),
        "system_name": item.discovery.system_name,
        "location": item.discovery.location,
        "discovery_type": item.discovery.discovery_type,
        "username": item.discovery.username,
    }


def _newest_in(status: str, limit: int):
    return (
        SyncQueueItem.objects.filter(sync_status=status)
        .select_related("discovery")
        .order_by("-id")[:limit]
    )


def _metadata_part(item: SyncQueueItem, key: str) -> dict:
    """``item.metadata[key]`` when it is a JSON object, else ``{}`` (rows other tools wrote)."""
    metadata = item.metadata if isinstance(item.metadata, dict) else {}
    part = metadata.get(key)
    return part if isinstance(part, dict) else {}


def _iso_text(value: object) -> str | None:
    """A time the services stored as ISO text in ``metadata``, as the API writes times (UTC,
    ``Z``); None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    if parsed is None:
        return None
    return iso_utc(parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC))


def failed_items(*, limit: int) -> list[dict[str, object]]:
    """The newest ``limit`` items in ``max_retries_exceeded``, in the Control Room's
    ``/sync/failed`` item shape (REFERENCE.md): ``queue_id, discovery_id, sync_attempts,
    sync_error, created_at, last_sync_attempt, system_name, location, discovery_type,
    username`` (times ISO 8601 UTC or None)."""
    return [_item_row(item) for item in _newest_in(SyncStatus.MAX_RETRIES_EXCEEDED, limit)]


def waiting_row(item: SyncQueueItem) -> dict[str, object]:
    """A ``waiting`` item in the ``/sync/failed`` shape plus why it waits: ``reason`` (the
    place VH lacks, or why the file refuses the row without it), ``suggestions`` (the nearest
    names VH has) and ``since`` (ISO 8601 UTC, when it last looked, or None). An item whose
    ``metadata`` lost the details gives its error text as the reason."""
    waiting = _metadata_part(item, "waiting")
    reason = waiting.get("reason")
    suggestions = waiting.get("suggestions")
    return {
        **_item_row(item),
        "reason": reason if isinstance(reason, str) and reason else (item.sync_error or ""),
        "suggestions": [str(s) for s in suggestions] if isinstance(suggestions, list) else [],
        "since": _iso_text(waiting.get("since")),
    }


def waiting_items(*, limit: int) -> list[dict[str, object]]:
    """The newest ``limit`` items ``waiting`` for their place in VH, as :func:`waiting_row`
    gives each (``GET /sync/waiting``)."""
    return [waiting_row(item) for item in _newest_in(SyncStatus.WAITING, limit)]


def waiting_first() -> dict[str, object] | None:
    """The waiting item longest in the queue (lowest id), as :func:`waiting_row` gives it, or
    None when nothing waits: what ``/sync-status`` and ``syncq_status`` name first."""
    item = (
        SyncQueueItem.objects.filter(sync_status=SyncStatus.WAITING)
        .select_related("discovery")
        .order_by("id")
        .first()
    )
    return waiting_row(item) if item is not None else None


def conflict_row(item: SyncQueueItem) -> dict[str, object]:
    """An item in ``conflict`` in the ``/sync/failed`` shape plus both versions:
    ``haven_discovery_id`` (the VH row), ``operation`` (``write`` or ``delete``), ``ours``
    (``{column: value}`` we meant to write; None for a delete), ``theirs`` (the row's mapped
    columns as the Control Room left them; empty when it deleted the row, which
    ``theirs_deleted`` says) and ``at`` (ISO 8601 UTC, when it was found)."""
    conflict = _metadata_part(item, "conflict")
    ours, theirs = conflict.get("ours"), conflict.get("theirs")
    return {
        **_item_row(item),
        "haven_discovery_id": conflict.get("haven_discovery_id", item.haven_discovery_id),
        "operation": conflict.get("operation") or item.operation,
        "ours": ours if isinstance(ours, dict) else None,
        "theirs": theirs if isinstance(theirs, dict) else {},
        "theirs_deleted": bool(conflict.get("theirs_deleted")),
        "at": _iso_text(conflict.get("at")),
    }


def conflict_items(*, limit: int) -> list[dict[str, object]]:
    """The newest ``limit`` items in ``conflict``, as :func:`conflict_row` gives each
    (``GET /sync/conflicts``)."""
    return [conflict_row(item) for item in _newest_in(SyncStatus.CONFLICT, limit)]


def queue_summary(*, now: datetime | None = None) -> dict[str, object]:
    """What an operator asks first, for the bot's ``/sync-status``: ``counts`` per state,
    ``oldest_pending_age_seconds`` (None when nothing is pending) and ``last_error``, the
    newest failed attempt's ``{queue_id, discovery_id, error, at}`` among items not synced
    (None when there is none; ``at`` aware UTC), ``first_waiting``, the
    :func:`waiting_first` item (None when nothing waits), and ``agent``, the Control Room
    agents and their catalog (:func:`agent_status`, times aware UTC) when ``USE_HAVEN_AGENT``
    is on or the server knows an agent, else None."""
    now = now or timezone.now()
    oldest = SyncQueueItem.objects.oldest_pending_created()
    last = (
        SyncQueueItem.objects.unsynced_errors()
        .exclude(last_sync_attempt=None)
        .ordered_by_time("last_sync_attempt", descending=True)
        .values("id", "discovery_id", "sync_error", "last_sync_attempt")
        .first()
    )
    return {
        "counts": queue_counts(),
        "oldest_pending_age_seconds": (
            round(max(0.0, (now - oldest).total_seconds()), 1) if oldest else None
        ),
        "last_error": (
            {
                "queue_id": last["id"],
                "discovery_id": last["discovery_id"],
                "error": last["sync_error"],
                "at": last["last_sync_attempt"],
            }
            if last
            else None
        ),
        "first_waiting": waiting_first(),
        "agent": agent_status(now=now, rows_when_off=True),
    }


#: How an hour of the throughput series is keyed: its UTC hour as text.
HOUR_KEY = "%Y-%m-%d %H"


def _hour_key_sqlite():
    """``strftime('%Y-%m-%d %H', datetime(synced_at))``: SQLite reads every form other tools
    write (``T`` or space, ``Z``, ``+00:00``) and gives the UTC hour as text."""
    return Func(
        Value(HOUR_KEY), utc_text("synced_at"), function="strftime", output_field=CharField()
    )


def throughput_by_hour(*, now: datetime | None = None, hours: int = 24) -> list[dict]:
    """Queue items synced in each of the last ``hours`` whole UTC hours, the current one last,
    counted in one grouped query over ``synced_at``: ``[{"hour": datetime (UTC, on the hour),
    "count": int}]``, every hour present, zeros included. Items synced in the future (a clock
    ahead) are left out."""
    now = (now or timezone.now()).astimezone(UTC)
    last = now.replace(minute=0, second=0, microsecond=0)
    first = last - timedelta(hours=hours - 1)
    synced = SyncQueueItem.objects.filter(sync_status=SyncStatus.SYNCED).order_by()
    if connection.vendor == "sqlite":
        # The window on the indexed UTC text (to the second), then the hour of each row in it.
        rows = (
            synced.time_window("synced_at", since=first, until=last + timedelta(seconds=3599))
            .annotate(hour=_hour_key_sqlite())
            .values("hour")
            .annotate(n=Count("id"))
            .values_list("hour", "n")
        )
        counts = dict(rows)
    else:
        rows = (
            synced.filter(synced_at__gte=first, synced_at__lt=last + timedelta(hours=1))
            .annotate(hour=TruncHour("synced_at", tzinfo=UTC))
            .values("hour")
            .annotate(n=Count("id"))
            .values_list("hour", "n")
        )
        counts = {hour.astimezone(UTC).strftime(HOUR_KEY): n for hour, n in rows}
    slots = [first + timedelta(hours=i) for i in range(hours)]
    return [{"hour": hour, "count": counts.get(hour.strftime(HOUR_KEY), 0)} for hour in slots]
