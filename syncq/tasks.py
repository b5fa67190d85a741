"""django-q2 tasks. They take no model instances, only call services, and are safe to run
twice at once (claims are atomic) or again after a redelivery."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache

from syncq.services import KICK_CACHE_KEY, queue_prune, sync_kick, sync_until_idle
from syncq.verify import sync_verify

logger = logging.getLogger(__name__)


def sync_due() -> dict[str, int]:
    """Sync due items in batches for up to ``SYNC_BATCH_WORST_SECONDS``; if items may still be
    due then, queue another run rather than hold a worker. Returns the totals as a dict (kept by
    django-q2 as the task's result)."""
    # From here on, a new submission must ask for a run of its own.
    cache.delete(KICK_CACHE_KEY)
    # One more batch may start at the budget's end: see SYNC_TASK_TIMEOUT_SECONDS.
    report = sync_until_idle(max_seconds=settings.SYNC_BATCH_WORST_SECONDS)
    totals = {
        "claimed": report.claimed,
        "synced": report.synced,
        "retrying": report.retrying,
        "exceeded": report.exceeded,
    }
    if report.claimed:
        logger.info("sync: %s", report)
    if report.stopped_early:
        sync_kick()
    return totals


def prune_synced() -> int:
    """Delete synced queue items older than ``SYNC_PRUNE_AFTER_DAYS``; returns the count."""
    deleted = queue_prune()
    if deleted:
        logger.info("pruned %s synced queue items", deleted)
    return deleted


def verify_daily() -> dict[str, object]:
    """Check VH-Database.db against keeper.db (:func:`syncq.verify.sync_verify`) without
    repairing: a row missing from VH may be one the Control Room deleted on purpose, so
    putting it back is an operator's call (``manage.py sync_verify --repair``). Returns the
    run's figures (kept by django-q2 as the task's result); the dashboard shows the last run."""
    run = sync_verify(repair=False, source="schedule", actor_name="daily verify")
    return run.figures(ids_shown=0)
