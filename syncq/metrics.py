"""``GET /metrics``: the queue, its attempts and what it depends on, in Prometheus' text format
(README, "The Control Room API", "Metrics").

Every figure is read from keeper.db (and the cache the processes share) when Prometheus scrapes,
by :class:`KeeperCollector`: the web server, the worker and the bot are separate processes, so
counters kept in one process's memory would see a third of the work. The collector sits on a
registry of its own, :data:`REGISTRY`, so nothing else (the process's own figures, another
library's) is served with it.

Who may read it: a user of the API's token (or session) holding ``syncq.view_syncqueueitem``,
as ``/sync/status`` (:mod:`syncq.permissions`), or any client whose address
(:func:`syncq.authentication.client_ip`, ``TRUSTED_PROXY_COUNT``) lies in
``METRICS_ALLOWED_IPS``. Errors answer in JSON as the rest of the API does; keeper.db failing
answers 503 (:func:`syncq.api.exception_handler`).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Case, Count, F, TextField, Value, When
from django.db.models.functions import StrIndex, Substr
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from discoveries.haven.connection import haven_probe
from syncq.api import APIAnswers, PageNegotiation
from syncq.authentication import client_ip
from syncq.models import AttemptOutcome, SyncAttempt, SyncQueueItem
from syncq.permissions import SyncQueuePermission
from syncq.selectors import (
    agents_presence,
    bot_heartbeat,
    queue_counts,
    synced_seconds_since,
    worker_clusters,
)

PREFIX = "keeper_sync"
#: Upper bounds (seconds) of the queued→synced histogram's buckets, ``+Inf`` added.
LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600)
#: The window of that histogram, and the most items it reads (newest first).
LATENCY_WINDOW = timedelta(hours=24)
LATENCY_MAX_ITEMS = 10_000
#: Attempt outcomes counted as failures.
FAILED_OUTCOMES = (AttemptOutcome.RETRYING, AttemptOutcome.EXCEEDED)
#: Failure kinds served by name; the rest are summed under :data:`OTHER_KIND`.
TOP_KINDS = 20
OTHER_KIND = "other"
#: Kinds longer than this are cut: a label value, not a message.
KIND_MAX_LENGTH = 60
#: Distinct error heads read from keeper.db at most (by count); the rest count as ``other``.
KIND_ROWS_READ = 1000
#: The Control Room file's states as ``keeper_sync_haven_state`` labels them.
HAVEN_STATES = ("ok", "missing", "locked", "disabled", "agent")


def failure_kind(error: str | None) -> str:
    """The kind of a failed attempt's ``error``: its text before the first ``:`` (the exception's
    class name, as the sync writes ``OperationalError: database is locked``), or the whole text
    when it has none, spaces folded, at most :data:`KIND_MAX_LENGTH` characters; ``unknown``
    for no text."""
    head = (error or "").split(":", 1)[0]
    return " ".join(head.split())[:KIND_MAX_LENGTH] or "unknown"


def failures_by_kind() -> dict[str, int]:
    """Failed attempts (:data:`FAILED_OUTCOMES`) kept in keeper.db, ``{kind: count}`` by
    :func:`failure_kind`: the :data:`TOP_KINDS` most frequent kinds and :data:`OTHER_KIND` for
    the rest (0 when there is none). The database groups the texts before their first ``:``."""
    failed = SyncAttempt.objects.filter(outcome__in=FAILED_OUTCOMES)
    heads = failed.annotate(colon=StrIndex("error", Value(":"))).annotate(
        head=Case(
            When(colon__gt=0, then=Substr("error", 1, F("colon") - 1)),
            default=F("error"),
            output_field=TextField(),
        )
    )
    rows = heads.values("head").annotate(n=Count("id")).order_by("-n", "head")[:KIND_ROWS_READ]
    kinds: Counter[str] = Counter()
    for row in rows:
        kinds[failure_kind(row["head"])] += row["n"]
    top = dict(kinds.most_common(TOP_KINDS))
    top[OTHER_KIND] = top.get(OTHER_KIND, 0) + failed.count() - sum(top.values())
    return top


def _age(moment: datetime | None, now: datetime) -> float | None:
    """Seconds from ``moment`` to ``now``, 0 at least; None for None."""
    return None if moment is None else max(0.0, (now - moment).total_seconds())


def worker_last_seen() -> datetime | None:
    """When the worker was last seen: the newest status report of a django-q2 cluster serving
    this keeper database (:func:`~syncq.selectors.worker_clusters`; reports expire within
    seconds), or, with none reporting, the queue's last attempt; None when neither exists."""
    reports = [c.timestamp for c in worker_clusters() if getattr(c, "timestamp", None)]
    if reports:
        return max(reports)
    return SyncQueueItem.objects.last_attempt_at()


class KeeperCollector(Collector):
    """Keeper Sync's figures, read at every scrape (README, "Metrics", lists them). Raises
    ``DatabaseError`` when keeper.db cannot be read."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        yield from self._queue(now)
        yield from self._attempts()
        yield self._latency(now)
        yield from self._heartbeats(now)

    def _queue(self, now: datetime) -> Iterator[Metric]:
        items = GaugeMetricFamily(
            f"{PREFIX}_queue_items", "Queue items in each state.", labels=["state"]
        )
        for state, count in sorted(queue_counts().items()):
            items.add_metric([state], count)
        yield items
        oldest = SyncQueueItem.objects.oldest_pending_created()
        yield GaugeMetricFamily(
            f"{PREFIX}_oldest_pending_seconds",
            "Seconds since the oldest pending queue item was queued; 0 when none is pending.",
            value=_age(oldest, now) or 0.0,
        )

    def _attempts(self) -> Iterator[Metric]:
        attempts = CounterMetricFamily(
            f"{PREFIX}_attempts",
            "Sync attempts kept in keeper.db (pruned with their synced items), by outcome.",
            labels=["outcome"],
        )
        counts = dict.fromkeys(AttemptOutcome.values, 0)
        for row in SyncAttempt.objects.values("outcome").annotate(n=Count("id")):
            counts[row["outcome"]] = row["n"]
        for outcome, count in sorted(counts.items()):
            attempts.add_metric([outcome], count)
        yield attempts
        failures = CounterMetricFamily(
            f"{PREFIX}_failures",
            "Failed sync attempts (retrying or exceeded) kept in keeper.db, by error kind: the "
            f"error's text before its first colon; the {TOP_KINDS} most frequent kinds, the "
            f"rest as {OTHER_KIND}.",
            labels=["kind"],
        )
        for kind, count in sorted(failures_by_kind().items()):
            failures.add_metric([kind], count)
        yield failures

    def _latency(self, now: datetime) -> Metric:
        seconds = synced_seconds_since(since=now - LATENCY_WINDOW, limit=LATENCY_MAX_ITEMS)
        buckets = [
            (floatToGoString(bound), sum(1 for s in seconds if s <= bound))
            for bound in LATENCY_BUCKETS
        ]
        buckets.append(("+Inf", len(seconds)))
        return HistogramMetricFamily(
            f"{PREFIX}_submit_to_synced_seconds",
            "Seconds from queueing to synced, of the items synced in the last 24 h (at most "
            f"the {LATENCY_MAX_ITEMS} newest).",
            buckets=buckets,
            sum_value=sum(seconds),
        )

    def _heartbeats(self, now: datetime) -> Iterator[Metric]:
        worker = GaugeMetricFamily(
            f"{PREFIX}_worker_heartbeat_age_seconds",
            "Seconds since the sync worker was last seen: its cluster's status report, or with "
            "none reporting the last attempt. No sample when it was never seen.",
        )
        if (age := _age(worker_last_seen(), now)) is not None:
            worker.add_metric([], age)
        yield worker
        bot = GaugeMetricFamily(
            f"{PREFIX}_bot_heartbeat_age_seconds",
            "Seconds since the Discord bot's last heartbeat. No sample when there is none.",
        )
        beat = bot_heartbeat()
        if beat is not None:
            bot.add_metric([], _age(beat["at"], now))
        yield bot
        agent = GaugeMetricFamily(
            f"{PREFIX}_agent_heartbeat_age_seconds",
            "Seconds since each Control Room agent was last heard from (USE_HAVEN_AGENT only).",
            labels=["agent"],
        )
        agents = agents_presence(now=now) if settings.USE_HAVEN_AGENT else []
        for row in agents:
            if row["seconds_since_seen"] is not None:
                agent.add_metric([row["name"]], _age(row["last_seen_at"], now))
        yield agent
        if settings.USE_HAVEN_AGENT:
            state, up = "agent", any(row["online"] for row in agents)
        else:
            state = haven_probe()
            up = state == "ok"
        yield GaugeMetricFamily(
            f"{PREFIX}_haven_up",
            "1 when VH-Database.db can be written now (with USE_HAVEN_AGENT: an agent is "
            "online), else 0.",
            value=1 if up else 0,
        )
        states = GaugeMetricFamily(
            f"{PREFIX}_haven_state",
            "VH-Database.db's state as /health says it: 1 for the current one.",
            labels=["state"],
        )
        for name in (*HAVEN_STATES, *([state] if state not in HAVEN_STATES else [])):
            states.add_metric([name], 1 if name == state else 0)
        yield states


#: The registry ``/metrics`` serves: :class:`KeeperCollector` alone.
REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(KeeperCollector())


def _address_allowed(address: str | None) -> bool:
    """Whether ``address`` (:func:`~syncq.authentication.client_ip`'s, an IPv6 client folded
    to its /64) lies in ``METRICS_ALLOWED_IPS``; an IPv6 client counts as its /64 network, so
    an entry narrower than that allows the whole /64."""
    try:
        client = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    for entry in settings.METRICS_ALLOWED_IPS:
        network = ipaddress.ip_network(entry, strict=False)
        if network.version != client.version:
            continue
        if client.version == 6:
            if ipaddress.ip_network((client, 64), strict=False).overlaps(network):
                return True
        elif client in network:
            return True
    return False


class MetricsPermission(SyncQueuePermission):
    """An address in ``METRICS_ALLOWED_IPS`` may read without credentials; anyone else as
    :class:`~syncq.permissions.SyncQueuePermission` says (401 without credentials, 403 without
    ``syncq.view_syncqueueitem``)."""

    def has_permission(self, request, view) -> bool:
        if _address_allowed(client_ip(request._request)):
            return True
        return super().has_permission(request, view)


class MetricsView(APIAnswers, APIView):
    """``GET /metrics``: :data:`REGISTRY` in Prometheus' text format (``CONTENT_TYPE_LATEST``),
    ``Cache-Control: no-store``; errors in JSON whatever ``Accept`` asks, keeper.db failing 503.
    Kept out of the OpenAPI schema: it is not JSON and no Control Room script calls it."""

    permission_classes = [MetricsPermission]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = PageNegotiation

    @extend_schema(exclude=True)
    def get(self, request):
        return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
