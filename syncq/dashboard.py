"""The operator console's queue dashboard: one admin page (and a summary on the admin index).
Its first row says at a glance how VH-Database.db is (ok, missing, locked, disabled, or reached
through the Control Room agent) and since when, whether the bot is online and when it was last
heard, the worker's hosts, processes and last sync run, and, with ``USE_HAVEN_AGENT``, the
Control Room agent. Below: the counts per state, the oldest pending age, the median and 95th
percentile of queued→synced over the last hour and day, the synced items per UTC hour over the
last 24 hours as an SVG drawn here, the top errors, the last check of VH-Database.db against
keeper.db (``manage.py sync_verify``) and the agent's catalog.

Every figure comes from a fixed set of grouped queries, so the page costs the same number of
queries with ten queue rows or a hundred thousand."""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.template.response import TemplateResponse
from django.utils import timezone
from django_q.models import Task

from discoveries.haven.connection import haven_probe
from discoveries.haven.files import haven_where
from syncq.display import age_text, when_text
from syncq.models import SyncQueueItem, SyncStatus
from syncq.permissions import VIEW_PERMISSION
from syncq.schedules import SYNC_FUNC
from syncq.selectors import (
    BOT_HEARTBEAT_FRESH,
    HOUR_KEY,
    agent_status,
    bot_heartbeat,
    queue_counts,
    queue_statistics,
    throughput_by_hour,
    worker_clusters,
)
from syncq.services import haven_state_note

# The chart's geometry, in SVG user units.
CHART_WIDTH = 720
CHART_HEIGHT = 180
CHART_TOP = 16
CHART_BOTTOM = 24
CHART_LEFT = 36
BAR_GAP = 4
#: The least height, in SVG units, of an hour's bar that is not zero, so that an hour of one
#: item shows beside an hour of a thousand.
BAR_MIN_HEIGHT = 2
#: Every how many UTC hours the chart's axis is labelled ("00", "03", …).
LABEL_EVERY_HOURS = 3


def throughput_chart(series: list[dict]) -> dict:
    """The geometry of the bar chart of :func:`throughput_by_hour`'s ``series``, for the
    template to draw: ``bars`` (``x, y, width, height, count``, ``hour`` as UTC text
    ``YYYY-MM-DD HH``, axis ``label``: the UTC hour ``"00"``, ``"03"``… on every
    :data:`LABEL_EVERY_HOURS`-th hour, else empty), the axis ``peak``, the ``range`` the
    chart covers (UTC text, first hour's start to last hour's end) and the chart's ``width``,
    ``height`` and ``baseline``, in SVG units. A bar that is not zero is
    :data:`BAR_MIN_HEIGHT` high at least."""
    peak = max((slot["count"] for slot in series), default=0)
    plot_height = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM
    baseline = CHART_TOP + plot_height
    step = (CHART_WIDTH - CHART_LEFT) / max(1, len(series))
    bars = []
    for i, slot in enumerate(series):
        height = 0.0
        if peak and slot["count"]:
            height = max(BAR_MIN_HEIGHT, round(plot_height * slot["count"] / peak, 1))
        hour = slot["hour"].astimezone(UTC)
        bars.append(
            {
                "x": round(CHART_LEFT + i * step + BAR_GAP / 2, 1),
                "y": round(baseline - height, 1),
                "width": round(step - BAR_GAP, 1),
                "height": height,
                "count": slot["count"],
                "hour": hour.strftime(HOUR_KEY),
                "label": hour.strftime("%H") if hour.hour % LABEL_EVERY_HOURS == 0 else "",
                "label_x": round(CHART_LEFT + i * step + step / 2, 1),
            }
        )
    first = series[0]["hour"].astimezone(UTC) if series else None
    last = series[-1]["hour"].astimezone(UTC) if series else None
    return {
        "bars": bars,
        "peak": peak,
        "range": (f"{first:%Y-%m-%d %H}:00 – {last:%Y-%m-%d %H}:59 UTC" if first and last else ""),
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "baseline": baseline,
        "left": CHART_LEFT,
        "top": CHART_TOP,
        "label_y": CHART_HEIGHT - 6,
    }


def _last_sync_run() -> dict | None:
    """The last sync run django-q2 kept (``syncq.tasks.sync_due``; it keeps the last 500
    successes and every failure): ``{"stopped": aware datetime, "success": bool, "synced":
    int | None}``, or None when it kept none. One query."""
    try:
        row = (
            Task.objects.filter(func=SYNC_FUNC)
            .order_by("-stopped")
            .values("stopped", "success", "result")
            .first()
        )
    except DatabaseError:
        return None
    if row is None:
        return None
    result = row["result"]
    synced = result.get("synced") if isinstance(result, dict) else None
    return {
        "stopped": row["stopped"],
        "success": row["success"],
        "synced": synced if isinstance(synced, int) else None,
    }


def worker_summary(now: datetime | None = None) -> dict:
    """The sync worker at ``now``: whether a django-q2 cluster reported in the last few
    seconds (``alive``); ``hosts`` (their host names, in order), ``workers`` (processes, all
    clusters together); for each cluster ``host``, ``status``, ``workers`` (process count)
    and ``uptime`` (text); ``last_run`` (:func:`_last_sync_run`, with ``when`` as text) and
    ``last_attempt`` (the latest attempt of any item, as text; ``"—"`` when none). Two
    queries or three (the last attempt's second on SQLite)."""
    now = now or timezone.now()
    clusters = worker_clusters()
    rows = [
        {
            "host": getattr(c, "host", "?"),
            "status": getattr(c, "status", "?"),
            "workers": len(getattr(c, "workers", []) or []),
            "uptime": age_text(c.uptime()) if getattr(c, "tob", None) else "—",
        }
        for c in clusters
    ]
    last_run = _last_sync_run()
    if last_run is not None:
        last_run["when"] = when_text(last_run["stopped"], now)
    return {
        "alive": bool(clusters),
        "clusters": rows,
        "hosts": list(dict.fromkeys(row["host"] for row in rows)),
        "workers": sum(row["workers"] for row in rows),
        "last_run": last_run,
        "last_attempt": when_text(SyncQueueItem.objects.last_attempt_at(), now),
    }


#: How each state of VH-Database.db reads on the dashboard.
HAVEN_STATE_LABELS = {
    "ok": "OK",
    "missing": "Missing",
    "locked": "Locked",
    "disabled": "Disabled",
    "readonly": "Read only",
    "error": "Error",
}


def haven_summary(now: datetime, agents: dict | None) -> dict:
    """VH-Database.db at ``now``, for the first row: ``state`` (``ok``, ``missing``,
    ``locked``, ``disabled``; with ``USE_HAVEN_AGENT`` ``agent:<what the online agent found>``
    or ``agent:offline``), ``label`` (text), ``good`` (bool), ``through_agent`` (bool),
    ``where`` (where it is looked for), and since when it is so (:func:`syncq.services.
    haven_state_note`): ``since`` as text (None when the cache cannot tell) and
    ``since_known`` (the change was seen; else it was so at the first look, and maybe
    before). ``agents`` is :func:`syncq.selectors.agent_status`'s answer. The file is probed
    as ``/health`` does (opened, its write lock taken and given back) unless the agent owns
    it."""
    if settings.USE_HAVEN_AGENT:
        online = [a for a in (agents or {}).get("agents", []) if a["online"]]
        found = (online[0]["vh_state"] or "unknown") if online else None
        state = f"agent:{found}" if found else "agent:offline"
        label = (
            f"Through the agent: {HAVEN_STATE_LABELS.get(found, found)}"
            if found
            else "Through the agent, which is offline"
        )
        good = found == "ok"
    else:
        state = haven_probe()
        label = HAVEN_STATE_LABELS.get(state, state)
        good = state == "ok"
    noted = haven_state_note(state=state, now=now)
    return {
        "state": state,
        "label": label,
        "good": good,
        "through_agent": settings.USE_HAVEN_AGENT,
        "where": haven_where() if not settings.USE_HAVEN_AGENT else "on the Control Room's desktop",
        "since": when_text(noted["since"], now) if noted["since"] else None,
        "since_known": noted["known"],
    }


def bot_summary(now: datetime) -> dict:
    """The Discord bot at ``now``, from its heartbeat (:func:`syncq.selectors.bot_heartbeat`,
    no query): ``online`` (ready, connected and heard within 90 s), ``seen`` (its last
    heartbeat as text, None when there is none), ``user`` and ``guilds`` (as it reported,
    or None) and ``latency_ms``."""
    beat = bot_heartbeat()
    if beat is None:
        return {"online": False, "seen": None, "user": None, "guilds": None, "latency_ms": None}
    fresh = now - beat["at"] <= BOT_HEARTBEAT_FRESH
    latency = beat.get("latency_ms")
    return {
        "online": bool(beat.get("ready")) and bool(beat.get("connected")) and fresh,
        "seen": when_text(beat["at"], now),
        "user": beat.get("user") or None,
        "guilds": beat.get("guilds") if isinstance(beat.get("guilds"), int) else None,
        "latency_ms": round(latency) if isinstance(latency, int | float) else None,
    }


def latency_text(figures: dict | None) -> str:
    """:func:`syncq.selectors.latency_figures`' ``figures`` as the dashboard reads them:
    ``"median 4.2 s, p95 1 min (37 items)"``; ``"—"`` for None."""
    if figures is None:
        return "—"
    n = figures["sample"]
    return (
        f"median {_seconds_text(figures['median'])}, p95 {_seconds_text(figures['p95'])} "
        f"({n} item{'s' if n != 1 else ''})"
    )


def _seconds_text(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else age_text(seconds)


def _utc_text(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def agent_summary(now: datetime, status: dict | None) -> dict | None:
    """The Control Room agent box, from :func:`syncq.selectors.agent_status` at ``now``:
    ``enabled`` (``USE_HAVEN_AGENT``), ``online`` (any agent), ``agents`` (each with
    ``name``, ``online``, ``seen`` — how long ago, as text, or "never" —, ``seen_at`` (UTC
    text), ``version``, ``host``, ``vh_state``, ``vh_detail``, ``started`` (UTC text)) and
    ``catalog`` (its counts, ``checked`` and ``changed`` ages as text and ``uploaded_by``; None
    before the first upload). None, and no box, when ``USE_HAVEN_AGENT`` is off and the server
    knows no agent. ``status`` is :func:`syncq.selectors.agent_status`'s answer with
    ``rows_when_off``."""
    if status is None:
        return None
    agents = [
        {
            "name": agent["name"],
            "online": agent["online"],
            "seen": (
                f"{age_text(agent['seconds_since_seen'])} ago"
                if agent["seconds_since_seen"] is not None
                else "never"
            ),
            "seen_at": _utc_text(agent["last_seen_at"]),
            "version": agent["version"] or "—",
            "host": agent["host"] or "—",
            "vh_state": agent["vh_state"] or "—",
            "vh_detail": agent["vh_detail"],
            "started": _utc_text(agent["started_at"]),
        }
        for agent in status["agents"]
    ]
    catalog = status["catalog"]
    if catalog is not None:
        catalog = {
            "systems": catalog["systems"],
            "planets": catalog["planets"],
            "moons": catalog["moons"],
            "checked": f"{age_text(catalog['age_seconds'])} ago",
            "checked_at": _utc_text(catalog["checked_at"]),
            "changed": f"{age_text(catalog['changed_seconds'])} ago",
            "changed_at": _utc_text(catalog["uploaded_at"]),
            "uploaded_by": catalog["uploaded_by"] or "—",
        }
    return {
        "enabled": status["enabled"],
        "online": status["online"],
        "agents": agents,
        "catalog": catalog,
    }


def _state_rows(counts: dict[str, int]) -> list[dict]:
    return [
        {"value": state.value, "label": state.label, "count": counts.get(state.value, 0)}
        for state in SyncStatus
    ]


def queue_dashboard(request):
    """The dashboard page, served at ``/admin/dashboard/`` through ``admin.site.admin_view``
    (staff only, the admin's login otherwise); needs "Can view queue item" (403 without it)."""
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    now = timezone.now()
    stats = queue_statistics(now=now)
    series = throughput_by_hour(now=now)
    agents = agent_status(now=now, rows_when_off=True)
    context = {
        **admin.site.each_context(request),
        "title": "Sync queue dashboard",
        "now": now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "states": _state_rows(stats["counts"]),
        "total": sum(stats["counts"].values()),
        "oldest_pending_age": age_text(stats["oldest_pending_age_seconds"]),
        "oldest_pending_seconds": stats["oldest_pending_age_seconds"],
        "synced_last_hour": stats["synced_last_hour"],
        "synced_last_day": stats["synced_last_day"],
        "sync_seconds": stats["sync_seconds"],
        "latency_hour": latency_text(stats["sync_seconds_last_hour"]),
        "latency_day": latency_text(stats["sync_seconds_last_day"]),
        "top_errors": stats["top_errors"],
        "verify": stats["verify"],
        "chart": throughput_chart(series),
        "chart_total": sum(slot["count"] for slot in series),
        "worker": worker_summary(now),
        "agent": agent_summary(now, agents),
        "haven": haven_summary(now, agents),
        "bot": bot_summary(now),
    }
    return TemplateResponse(request, "admin/keeper_dashboard.html", context)


def admin_index(request):
    """The admin index (served through ``admin.site.admin_view``). For users who may view
    queue items, one "Sync queue" section: the queue's counts per state (one grouped query),
    the sync queue app's own lists (``queue_app``, taken out of ``app_list`` so the index does
    not show a second section of that name) and the links to the dashboard and django-q2."""
    extra = {}
    if request.user.has_perm(VIEW_PERMISSION):
        app_list = admin.site.get_app_list(request)
        extra["queue_states"] = _state_rows(queue_counts())
        extra["queue_app"] = next((a for a in app_list if a["app_label"] == "syncq"), None)
        extra["app_list"] = [a for a in app_list if a["app_label"] != "syncq"]
    return admin.site.index(request, extra_context=extra)
