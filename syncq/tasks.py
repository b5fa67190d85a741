"""django-q2 tasks. They take no model instances, only call services, and are safe to run
twice at once (claims are atomic) or again after a redelivery."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache

from syncq import alert_services
from syncq.cache_keys import SYNC_KICK, keeper_cache_key
from syncq.services import queue_prune, sync_kick, sync_until_idle
from syncq.verify import sync_verify

logger = logging.getLogger(__name__)


def sync_due() -> dict[str, int]:
    """Sync due items in batches for up to ``SYNC_BATCH_WORST_SECONDS``; if items may still be
    due then, queue another run rather than hold a worker (unless the cluster is stopping: the
    next start asks for one). Returns the totals as a dict (kept by django-q2 as the task's
    result)."""
    # From here on, a new submission must ask for a run of its own.
    cache.delete(keeper_cache_key(SYNC_KICK))
    # One more batch may start at the budget's end: see SYNC_TASK_TIMEOUT_SECONDS.
    report = sync_until_idle(max_seconds=settings.SYNC_BATCH_WORST_SECONDS)
    totals = {
        "claimed": report.claimed,
        "synced": report.synced,
        "retrying": report.retrying,
        "exceeded": report.exceeded,
        "released": report.released,
        "given_back": report.given_back,
    }
    if report.claimed:
        logger.info("sync: %s", report)
    if report.stopped_early and not report.stopping:
        sync_kick()
    return totals


def sync_kick_on_spawn(sender, proc_name: str, **kwargs) -> None:
    """django-q2's ``post_spawn`` receiver, run in each worker process as it starts: ask for a
    sync run at once, so a cluster that starts (after a restart, a crash) syncs within
    seconds rather than at its first schedule, which django-q2's scheduler looks at only
    about 30 s after the start. The items a dead worker held are taken back by that run
    (:func:`syncq.services.queue_leases_release`). The workers of one start ask once (the
    kick's own window); keeper.db refusing the request is logged, and the schedule syncs."""
    try:
        sync_kick()
    except Exception as exc:  # keeper.db's errors, or the cache backend's own, which vary
        # Raised here, it would stop the worker at its start, again at every restart.
        logger.warning("cannot ask for a sync run at the worker's start: %s", exc)


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
    run's figures (kept by django-q2 as the task's result); the dashboard shows the last run.
    With ``USE_HAVEN_AGENT``, VH is on a desktop this process cannot read: nothing is run, and
    the result says so."""
    if settings.USE_HAVEN_AGENT:
        return {"skipped": "VH-Database.db is on the Control Room agent's desktop"}
    run = sync_verify(repair=False, source="schedule", actor_name="daily verify")
    return run.figures(ids_shown=0)


def alerts_scan() -> dict[str, object]:
    """The alert scan (:func:`syncq.alert_services.alerts_scan`), every minute while
    ``ALERT_WEBHOOK_URL`` is set (:mod:`syncq.schedules`). Returns what it did (kept by
    django-q2 as the task's result)."""
    report = alert_services.alerts_scan()
    return {"events": report.events, "message": report.message, "queued": report.queued}


def alert_deliver(message_id: int) -> str:
    """Post alert message ``message_id`` (:func:`syncq.alert_services.alert_deliver`);
    returns its state. A message given up raises, so django-q2 keeps it among its failed
    tasks."""
    return alert_services.alert_deliver(message_id=message_id)
