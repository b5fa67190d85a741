"""The operator console's queue dashboard: one admin page (and a summary on the admin index)
with the counts per state, the oldest pending age, the synced items per hour over the last 24
hours as an SVG drawn here, the top errors, whether the worker is alive, the last check of
VH-Database.db against keeper.db (``manage.py sync_verify``) and, with ``USE_HAVEN_AGENT``, the
Control Room agent and the catalog it uploaded.

Every figure comes from a fixed set of grouped queries, so the page costs the same number of
queries with ten queue rows or a hundred thousand."""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils import timezone

from syncq.display import age_text
from syncq.models import SyncStatus
from syncq.permissions import VIEW_PERMISSION
from syncq.selectors import (
    HOUR_KEY,
    agent_status,
    queue_counts,
    queue_statistics,
    throughput_by_hour,
    worker_clusters,
)

# The chart's geometry, in SVG user units.
CHART_WIDTH = 720
CHART_HEIGHT = 180
CHART_TOP = 16
CHART_BOTTOM = 24
CHART_LEFT = 36
BAR_GAP = 4


def throughput_chart(series: list[dict]) -> dict:
    """The geometry of the bar chart of :func:`throughput_by_hour`'s ``series``, for the
    template to draw: ``bars`` (``x, y, width, height, count``, ``hour`` as UTC text
    ``YYYY-MM-DD HH``, axis ``label``), the axis ``peak`` and the chart's ``width``,
    ``height`` and ``baseline``, in SVG units."""
    peak = max((slot["count"] for slot in series), default=0)
    plot_height = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM
    baseline = CHART_TOP + plot_height
    step = (CHART_WIDTH - CHART_LEFT) / max(1, len(series))
    bars = []
    for i, slot in enumerate(series):
        height = round(plot_height * slot["count"] / peak, 1) if peak else 0
        bars.append(
            {
                "x": round(CHART_LEFT + i * step + BAR_GAP / 2, 1),
                "y": round(baseline - height, 1),
                "width": round(step - BAR_GAP, 1),
                "height": height,
                "count": slot["count"],
                "hour": slot["hour"].strftime(HOUR_KEY),
                "label": slot["hour"].strftime("%H") if i % 3 == 0 else "",
                "label_x": round(CHART_LEFT + i * step + step / 2, 1),
            }
        )
    return {
        "bars": bars,
        "peak": peak,
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "baseline": baseline,
        "left": CHART_LEFT,
        "top": CHART_TOP,
        "label_y": CHART_HEIGHT - 6,
    }


def worker_summary() -> dict:
    """Whether a django-q2 cluster reported in the last few seconds (``alive``) and, for each
    one, ``host``, ``status``, ``workers`` (process count) and ``uptime`` (text)."""
    clusters = worker_clusters()
    return {
        "alive": bool(clusters),
        "clusters": [
            {
                "host": getattr(c, "host", "?"),
                "status": getattr(c, "status", "?"),
                "workers": len(getattr(c, "workers", []) or []),
                "uptime": age_text(c.uptime()) if getattr(c, "tob", None) else "—",
            }
            for c in clusters
        ],
    }


def _utc_text(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def agent_summary(now: datetime) -> dict | None:
    """The Control Room agent box, from :func:`syncq.selectors.agent_status` at ``now``:
    ``enabled`` (``USE_HAVEN_AGENT``), ``online`` (any agent), ``agents`` (each with
    ``name``, ``online``, ``seen`` — how long ago, as text, or "never" —, ``seen_at`` (UTC
    text), ``version``, ``host``, ``vh_state``, ``vh_detail``, ``started`` (UTC text)) and
    ``catalog`` (its counts, ``checked`` and ``changed`` ages as text and ``uploaded_by``; None
    before the first upload). None, and no box, when ``USE_HAVEN_AGENT`` is off and the server
    knows no agent."""
    status = agent_status(now=now, rows_when_off=True)
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
        "top_errors": stats["top_errors"],
        "verify": stats["verify"],
        "chart": throughput_chart(series),
        "chart_total": sum(slot["count"] for slot in series),
        "worker": worker_summary(),
        "agent": agent_summary(now),
    }
    return TemplateResponse(request, "admin/keeper_dashboard.html", context)


def admin_index(request):
    """The admin index (served through ``admin.site.admin_view``), plus the queue's counts per
    state for users who may view queue items (one grouped query)."""
    extra = {}
    if request.user.has_perm(VIEW_PERMISSION):
        extra["queue_states"] = _state_rows(queue_counts())
    return admin.site.index(request, extra_context=extra)
