"""The django-q2 schedules that drive the queue, registered idempotently.

django-q2's scheduler looks for due schedules about every 30 s and ``Schedule.minutes`` is whole
minutes, so an interval under a minute is made of several one-minute schedules started
``SYNC_INTERVAL_SECONDS`` apart (30 s → two). Registering again, on every ``migrate``, updates
these rows in place and never adds a duplicate. The alert scan's schedule exists only while
``ALERT_WEBHOOK_URL`` is set: registering without it removes the schedule.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import router, transaction
from django.utils import timezone
from django_q.models import Schedule

SYNC_FUNC = "syncq.tasks.sync_due"
PRUNE_FUNC = "syncq.tasks.prune_synced"
VERIFY_FUNC = "syncq.tasks.verify_daily"
ALERT_FUNC = "syncq.tasks.alerts_scan"
SYNC_NAME_PREFIX = "keeper-sync-"
PRUNE_NAME = "keeper-prune-synced"
VERIFY_NAME = "keeper-verify"
ALERT_NAME = "keeper-alerts"


def _sync_plan(interval: int) -> tuple[int, int]:
    """``(count, minutes)``: how many schedules of how many minutes give ``interval`` seconds."""
    if interval < 60:
        return max(1, 60 // interval), 1
    return 1, max(1, round(interval / 60))


def schedules_register() -> list[str]:
    """Create or update the sync, prune and daily verify schedules, and the alert scan's (every
    minute) when ``ALERT_WEBHOOK_URL`` is set; remove stale ones. Returns their names."""
    count, minutes = _sync_plan(settings.SYNC_INTERVAL_SECONDS)
    now = timezone.now()
    wanted = {
        f"{SYNC_NAME_PREFIX}{n + 1}": {
            "func": SYNC_FUNC,
            "schedule_type": Schedule.MINUTES,
            "minutes": minutes,
            "first_run": now + timedelta(seconds=n * settings.SYNC_INTERVAL_SECONDS),
        }
        for n in range(count)
    }
    wanted[PRUNE_NAME] = {
        "func": PRUNE_FUNC,
        "schedule_type": Schedule.DAILY,
        "minutes": None,
        "first_run": now + timedelta(minutes=5),
    }
    wanted[VERIFY_NAME] = {
        "func": VERIFY_FUNC,
        "schedule_type": Schedule.DAILY,
        "minutes": None,
        "first_run": now + timedelta(minutes=15),
    }
    if settings.ALERT_WEBHOOK_URL:
        wanted[ALERT_NAME] = {
            "func": ALERT_FUNC,
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "first_run": now + timedelta(seconds=20),
        }
    with transaction.atomic(using=router.db_for_write(Schedule)):
        ours = Schedule.objects.select_for_update().filter(
            func__in=[SYNC_FUNC, PRUNE_FUNC, VERIFY_FUNC, ALERT_FUNC]
        )
        ours = list(ours.order_by("id"))
        kept: dict[str, Schedule] = {}
        for schedule in ours:
            if schedule.name in wanted and schedule.name not in kept:
                kept[schedule.name] = schedule
            else:
                schedule.delete()
        for name, spec in wanted.items():
            schedule = kept.get(name)
            if schedule is None:
                Schedule.objects.create(
                    name=name,
                    func=spec["func"],
                    schedule_type=spec["schedule_type"],
                    minutes=spec["minutes"],
                    repeats=-1,
                    next_run=spec["first_run"],
                )
            elif (schedule.schedule_type, schedule.minutes, schedule.repeats) != (
                spec["schedule_type"],
                spec["minutes"],
                -1,
            ):
                schedule.schedule_type = spec["schedule_type"]
                schedule.minutes = spec["minutes"]
                schedule.repeats = -1
                schedule.next_run = spec["first_run"]
                schedule.save()
    return list(wanted)


def register_on_migrate(sender, using="default", **kwargs) -> None:
    """``post_migrate`` receiver: register the schedules after ``migrate`` on keeper.db."""
    if using == "default":
        schedules_register()
