"""How the queue reads to people: ages, due times and timestamps as the console, the API and the
bot show them."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from django.utils.html import format_html

from syncq.models import SyncQueueItem, SyncStatus


def iso_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, as DRF writes times, or None."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def age_text(seconds: float | None) -> str:
    """``seconds`` as an operator reads an age: ``"45 s"``, ``"12 min"``, ``"3 h 5 min"``,
    ``"2 d 4 h"``; ``"—"`` for None."""
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 1:
        return f"{minutes} min"
    if days < 1:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


def retry_due_text(item: SyncQueueItem, now: datetime) -> str:
    """When the worker will try ``item`` again, as an operator reads it: ``"due now"``,
    ``"in 3 min"``, ``"in 2 h"``, ``"in 4 d"``, or ``"—"`` when it will not be tried on its own
    (synced, syncing, exceeded, or out of attempts). The due rule is
    :meth:`syncq.models.SyncQueueItem.is_due`."""
    if item.sync_status != SyncStatus.PENDING or item.sync_attempts >= item.max_attempts:
        return "—"
    if item.is_due(now):
        return "due now"
    seconds = (item.next_retry_after - now).total_seconds()
    if seconds < 60:
        return f"in {math.ceil(seconds)} s"
    if seconds < 3600:
        return f"in {math.ceil(seconds / 60)} min"
    if seconds < 2 * 86400:
        return f"in {round(seconds / 3600)} h"
    return f"in {round(seconds / 86400)} d"


def relative_text(moment: datetime, now: datetime) -> str:
    """How far ``moment`` is from ``now`` (both aware), as an operator reads it: ``"just
    now"`` (under a second), ``"3 min ago"``, ``"in 2 h 5 min"`` (:func:`age_text`'s units)."""
    seconds = (now - moment).total_seconds()
    if abs(seconds) < 1:
        return "just now"
    return f"{age_text(seconds)} ago" if seconds > 0 else f"in {age_text(-seconds)}"


def when_text(moment: datetime | None, now: datetime) -> str:
    """``moment`` as the console shows a time: UTC to the second, then how long ago (or how
    soon) it is from ``now``, e.g. ``"2026-12-08 01:22:05 UTC (3 min ago)"``; ``"—"`` for
    None. Naive times are read as UTC (rows other tools wrote)."""
    if moment is None:
        return "—"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%d %H:%M:%S} UTC ({relative_text(utc, now)})"


def when_html(moment: datetime | None, now: datetime) -> str:
    """:func:`when_text` as HTML: a ``<time>`` element whose ``datetime`` is ``moment`` in ISO
    8601 UTC (:func:`iso_utc`) and whose text reads as :func:`when_text`'s, in three pieces
    (date, time, age) a narrow column may put on lines of their own; ``"—"`` for None."""
    if moment is None:
        return "—"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    utc = moment.astimezone(UTC)
    # Three pieces that each stay on one line, so a narrow column wraps only between them.
    return format_html(
        '<time datetime="{}" class="keeper-time"><span>{}</span> <span>{} UTC</span> '
        "<span>({})</span></time>",
        iso_utc(utc),
        f"{utc:%Y-%m-%d}",
        f"{utc:%H:%M:%S}",
        relative_text(utc, now),
    )
