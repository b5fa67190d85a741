"""The SQL the code runs for the claim and the status figures, its plans and its times.

Imported only inside a ``manage.py shell`` process (Django set up on the benchmark's files), as
:func:`bench.growth.shell_json` does: it calls the services and selectors themselves and records
every statement they send to keeper.db, so the plans and times follow the code as it changes.
"""

from __future__ import annotations

import inspect
import statistics
import time
from contextlib import contextmanager

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from discoveries.haven.catalog import catalog_version
from discoveries.haven.connection import haven_close, haven_connection
from syncq.models import SyncQueueItem
from syncq.selectors import queue_counts, queue_statistics, queue_status
from syncq.services import queue_items_claim

#: What the captured statements are called, by the first rule that matches the SQL text
#: (``(source or None, every fragment the SQL holds, name, description)``); others are named by
#: their source and order.
NAMES = (
    ("claim", ('FROM "sync_queue"', "ORDER BY", "LIMIT"), "due", "due items, oldest first"),
    ("claim", ('FROM "sync_queue"', '"sync_queue"."id" IN ('), "by_id", "claimed items, by id"),
    ("claim", ('FROM "discoveries"',), "discoveries", "their discoveries, by id"),
    (None, ("GROUP BY", "sync_error"), "top_errors", "10 most common errors"),
    (None, ("GROUP BY", "sync_status"), "counts", "count per state"),
    ("status", ("last_sync_attempt",), "last_attempt", "latest attempt (last_sync_time)"),
    (None, ("sync_verify_run",), "last_verify", "last verify run"),
    (None, ("COUNT(", "synced_at"), "synced_window", "items synced in a window"),
    (None, ("synced_at", "LIMIT 1000"), "recent_synced", "last 1,000 synced (sync seconds)"),
    (None, ("created_at", "LIMIT 1"), "oldest_pending", "oldest pending item"),
)


def catalog() -> str:
    """The catalog version of the VH file at ``HAVEN_DB_PATH`` (what a ``waiting`` item
    records in ``waiting_on``)."""
    haven_connection()
    try:
        return catalog_version()
    finally:
        haven_close()


@contextmanager
def _captured(into: list[tuple[str, object]]):
    """Record ``(sql, params)`` of every statement run on keeper.db meanwhile."""

    def wrapper(execute, sql, params, many, context):
        if not many:
            into.append((sql, params))
        return execute(sql, params, many, context)

    with connections[DEFAULT_DB_ALIAS].execute_wrapper(wrapper):
        yield


def _claim(into: list) -> str:
    """Capture the claim's statements, rolled back; returns how the claim was called."""
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        with _captured(into):
            if "limit" in inspect.signature(queue_items_claim).parameters:
                queue_items_claim(limit=settings.SYNC_BATCH_SIZE)
                how = "syncq.services.queue_items_claim(limit=SYNC_BATCH_SIZE)"
            else:
                due = SyncQueueItem.objects.due(timezone.now()).order_by("id")
                list(due.values_list("id", flat=True)[: settings.SYNC_BATCH_SIZE])
                how = "SyncQueueItem.objects.due(now): queue_items_claim takes no limit"
        transaction.set_rollback(True, using=DEFAULT_DB_ALIAS)
    return how


def _whole(line: str) -> bool:
    """Whether a plan step reads a table or an index whole: ``SCAN``, or a ``SEARCH`` that
    names no index or key (SQLite's min/max over a column without an index)."""
    step = line.strip()
    return step.startswith("SCAN ") or (step.startswith("SEARCH ") and " USING " not in step)


def _plan(sql: str, params) -> list[str]:
    """``EXPLAIN QUERY PLAN`` of ``sql`` as indented lines, one per step."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        rows = cursor.fetchall()
    depth = {0: -1}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return lines


def _timed(sql: str, params, *, repeat: int, budget_s: float) -> tuple[list[float], int]:
    """Milliseconds of up to ``repeat`` executions of ``sql`` (rows fetched), after one
    untimed run, stopping once ``budget_s`` seconds are spent; and the rows it gives."""
    times = []
    spent = 0.0
    count = 0
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(sql, params)
        count = len(cursor.fetchall())
        while len(times) < repeat and (not times or spent < budget_s):
            started = time.perf_counter()
            cursor.execute(sql, params)
            cursor.fetchall()
            elapsed = time.perf_counter() - started
            spent += elapsed
            times.append(elapsed * 1000)
    return times, count


def _name(source: str, sql: str, seen: dict[str, int]) -> tuple[str, str]:
    for only, fragments, name, description in NAMES:
        if (only is None or only == source) and all(f in sql for f in fragments):
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                return f"{name}_{seen[name]}", f"{description} ({seen[name]})"
            return name, description
    seen[source] = seen.get(source, 0) + 1
    return f"query_{seen[source]}", f"query {seen[source]}"


def probe(*, repeat: int = 5, budget_s: float = 1.5) -> dict:
    """The claim's statements (``queue_items_claim``, rolled back), ``queue_status`` and
    ``queue_statistics``'s, each distinct SELECT with its ``plan`` (lines), the steps that read
    a table or an index whole (``scans``, see :func:`_whole`) or sort in a temporary B-tree
    (``temp_btree``), and its time: ``ms`` (median) over ``times_ms`` (up to
    ``repeat`` executions, within ``budget_s`` seconds). Also ``counts_exact``: whether
    ``queue_counts()`` equals a ``GROUP BY`` over ``sync_queue``."""
    captured: dict[str, list] = {"claim": [], "status": [], "statistics": []}
    claim_how = _claim(captured["claim"])
    with _captured(captured["status"]):
        queue_status()
    with _captured(captured["statistics"]):
        queue_statistics()
    queries = []
    done: set[tuple[str, str]] = set()
    for source, statements in captured.items():
        seen: dict[str, int] = {}
        for sql, params in statements:
            if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            key = (sql, repr(params))
            if key in done:
                continue
            done.add(key)
            name, description = _name(source, sql, seen)
            plan = _plan(sql, params)
            times, count = _timed(sql, params, repeat=repeat, budget_s=budget_s)
            queries.append(
                {
                    "source": source,
                    "name": name,
                    "description": description,
                    "sql": sql,
                    "params": [str(p) for p in params or ()],
                    "plan": plan,
                    "scans": [line.strip() for line in plan if _whole(line)],
                    "temp_btree": [line.strip() for line in plan if "TEMP B-TREE" in line],
                    "rows": count,
                    "ms": statistics.median(times),
                    "times_ms": times,
                }
            )
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT sync_status, COUNT(*) FROM sync_queue GROUP BY sync_status")
        grouped = dict(cursor.fetchall())
    counts = queue_counts()
    exact = all(counts.get(state, 0) == n for state, n in grouped.items()) and all(
        grouped.get(state, 0) == n for state, n in counts.items()
    )
    return {"claim_called": claim_how, "queries": queries, "counts_exact": exact, "counts": counts}
