"""Reads of the queue that several callers share (commands, API, admin, bot)."""

from __future__ import annotations

import logging
from datetime import UTC

from django.conf import settings
from django.db.models import Count, Max

from syncq.models import SyncQueueItem, SyncStatus

logger = logging.getLogger(__name__)


def queue_counts() -> dict[str, int]:
    """``{state: count}`` for every state of :class:`SyncStatus`, zeros included."""
    counts = dict.fromkeys(SyncStatus.values, 0)
    rows = SyncQueueItem.objects.order_by().values_list("sync_status").annotate(n=Count("id"))
    for status, n in rows:
        counts[status] = counts.get(status, 0) + n
    return counts


def worker_clusters() -> list:
    """The django-q2 clusters that reported in the last few seconds (``Stat`` objects), read
    from the cache they share; ``[]`` when none runs or the cache cannot be read."""
    from django_q.status import Stat

    try:
        return Stat.get_all()
    except Exception as exc:  # the cache backend's own errors vary by backend
        logger.warning("cannot read django-q2 cluster stats: %s", exc)
        return []


def queue_status() -> dict[str, object]:
    """The queue in the shape of the Control Room's ``GET /sync/status`` (REFERENCE.md):
    ``status``, ``sync_worker {is_running, sync_interval, uptime_seconds, last_sync_time}``,
    ``queue {pending, syncing, synced, failed}`` and ``totals {total_synced, total_failed}``.
    ``failed`` counts ``max_retries_exceeded``; ``last_sync_time`` is the latest attempt (ISO
    8601, UTC) or ``None``; ``uptime_seconds`` is the oldest live cluster's, or 0."""
    counts = queue_counts()
    clusters = worker_clusters()
    last = SyncQueueItem.objects.aggregate(last=Max("last_sync_attempt"))["last"]
    uptime = max((c.uptime() for c in clusters if getattr(c, "tob", None)), default=0.0)
    return {
        "status": "ok",
        "sync_worker": {
            "is_running": bool(clusters),
            "sync_interval": settings.SYNC_INTERVAL_SECONDS,
            "uptime_seconds": round(uptime, 1),
            "last_sync_time": last.astimezone(UTC).isoformat() if last else None,
        },
        "queue": {
            "pending": counts[SyncStatus.PENDING],
            "syncing": counts[SyncStatus.SYNCING],
            "synced": counts[SyncStatus.SYNCED],
            "failed": counts[SyncStatus.MAX_RETRIES_EXCEEDED],
        },
        "totals": {
            "total_synced": counts[SyncStatus.SYNCED],
            "total_failed": counts[SyncStatus.MAX_RETRIES_EXCEEDED],
        },
    }
