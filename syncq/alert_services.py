"""Alerts to a Discord webhook (``ALERT_WEBHOOK_URL``; README, "Alerts"): the scan that finds
what to tell, and the delivery that posts it.

The sync never calls any of this: :func:`alerts_scan` runs on its own one-minute schedule
(:mod:`syncq.schedules`) and reads what the sync left in keeper.db (its attempts, the queue's
states), and the post itself is a task of its own (:func:`alert_deliver`), so a webhook that
is slow, down or refusing costs the sync nothing.

How nothing is lost and nothing told twice:

- **Events, exactly once.** The scan runs in one keeper.db transaction that locks the single
  :class:`~syncq.models.AlertState` row (``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite the
  IMMEDIATE transaction holds the write lock from its start): it reads the attempts after its
  cursor, the outage and the daily summary, writes one :class:`~syncq.models.AlertEvent` per
  thing to tell, and advances its cursors, all in that transaction. Two scans at once take
  turns, and the second finds nothing new; a scan that dies before its commit leaves the
  cursors where they were, and the next finds the same events.
- **One message a minute.** In the same transaction, when no message is still being delivered
  and none was composed or sent in the last 60 s, every event not yet told goes into one new
  :class:`~syncq.models.AlertMessage`, its body prepared then (:func:`syncq.alerts.message_body`,
  which counts what does not fit as "… and N more" rather than posting more messages).
  Events found meanwhile wait in keeper.db for the next message.
- **Delivery, at least once.** After the commit the scan queues :func:`alert_deliver` (a
  django-q2 task) for the new message and for every message due for another try. The task
  takes the message under a lease, posts it, and records the answer; a retry waits 30 s ·
  2^(try−1) (Discord's ``Retry-After`` instead on a 429), at most 15 min, and after
  :data:`DELIVERY_TRIES` tries, or at once on an answer no retry can change (a 4xx other than
  429: a deleted webhook, say), the message is given up: logged as an error and raised, so
  django-q2 lists it among its failed tasks. A worker that dies between the scan and the
  post loses nothing: the message is in keeper.db, due, and the next scan queues it again. A
  worker that dies after Discord took the message but before its answer was recorded makes
  the message be posted a second time when its lease runs out: Discord's webhooks have no
  idempotency key, and an alert lost is worse than one told twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from email.utils import parsedate_to_datetime
from time import monotonic as time_monotonic

import httpx
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone
from django_q.tasks import async_task

from discoveries.haven.connection import haven_probe
from syncq.alerts import check_body, message_body
from syncq.display import iso_utc
from syncq.errors import AlertDeliveryFailed
from syncq.models import (
    AlertEvent,
    AlertKind,
    AlertMessage,
    AlertState,
    AlertStatus,
    AttemptOutcome,
    SyncAttempt,
    SyncQueueItem,
    SyncStatus,
)
from syncq.selectors import agent_status, queue_counts

logger = logging.getLogger(__name__)

#: The task that posts one message, by the name django-q2 imports.
DELIVER_FUNC = "syncq.tasks.alert_deliver"
#: At most one message in this long (the issue's "at most one message a minute").
MESSAGE_GAP = timedelta(seconds=60)
#: Attempts one scan reads at most; the rest are read by the next scan.
SCAN_ROWS_MAX = 5000
#: Tries of one message before it is given up, and the waits between them.
DELIVERY_TRIES = 8
DELIVERY_BASE_DELAY_SECONDS = 30
DELIVERY_DELAY_CAP_SECONDS = 900
#: How long one post may take (connect, send, answer), in seconds: a hung webhook holds one
#: django-q2 worker this long at most, once a minute.
DELIVERY_TIMEOUT_SECONDS = 10.0
#: A delivery task holds its message this long; a task that died leaves it to the next scan.
DELIVERY_LEASE = timedelta(seconds=120)
#: Messages sent or given up, and their events, are deleted after this many days.
KEEP_DAYS = 30
#: Answers worth another try: Discord's rate limit, and its own failures.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Attempt outcomes that count as a failed attempt in the daily summary.
FAILED_OUTCOMES = (AttemptOutcome.RETRYING, AttemptOutcome.EXCEEDED)


def alerts_enabled() -> bool:
    """Whether alerts are on: ``ALERT_WEBHOOK_URL`` is set."""
    return bool(settings.ALERT_WEBHOOK_URL)


def outage_probe() -> str | None:
    """What of the Control Room is unreachable now, in words (``VH-Database.db (missing)``,
    ``the Control Room agent (none online)``), or None when it is reachable or not used: with
    ``USE_HAVEN_AGENT``, whether any agent is online (:func:`syncq.selectors.agent_status`);
    otherwise VH-Database.db's state as ``/health`` reports it (:func:`discoveries.haven.
    connection.haven_probe`: anything but ``ok``); with both off, None."""
    if settings.USE_HAVEN_AGENT:
        status = agent_status()
        return None if status and status["online"] else "the Control Room agent (none online)"
    if not settings.USE_HAVEN_DATABASE:
        return None
    state = haven_probe()
    return None if state in ("ok", "disabled") else f"VH-Database.db ({state})"


def daily_time() -> time:
    """``ALERT_DAILY_AT`` as a time of day, UTC."""
    hours, minutes = settings.ALERT_DAILY_AT.split(":")
    return time(int(hours), int(minutes), tzinfo=UTC)


@dataclass
class ScanReport:
    """What one scan did: ``events`` found, the ``message`` composed (its id, or None) and the
    messages queued for delivery (``queued``, ids)."""

    events: int = 0
    message: int | None = None
    queued: list[int] = field(default_factory=list)


def _item_data(row: dict) -> dict:
    """An attempt row (:func:`_attempt_rows`) as the ``data`` of an item event."""
    return {
        "queue_id": row["queue_item_id"],
        "discovery_id": row["queue_item__discovery_id"],
        "number": row["number"],
        "error": row["error"] or "",
        "type": row["queue_item__discovery__discovery_type"],
        "system": row["queue_item__discovery__system_name"],
        "location": row["queue_item__discovery__location"],
        "username": row["queue_item__discovery__username"],
        "haven_discovery_id": row["haven_discovery_id"],
        "at": iso_utc(row["started_at"]),
    }


def _attempt_rows(after: int) -> list[dict]:
    return list(
        SyncAttempt.objects.filter(id__gt=after)
        .order_by("id")
        .values(
            "id",
            "queue_item_id",
            "number",
            "outcome",
            "error",
            "started_at",
            "haven_discovery_id",
            "queue_item__discovery_id",
            "queue_item__discovery__discovery_type",
            "queue_item__discovery__system_name",
            "queue_item__discovery__location",
            "queue_item__discovery__username",
        )[:SCAN_ROWS_MAX]
    )


def _started_waiting(row: dict) -> bool:
    """Whether the waiting attempt ``row`` starts a wait: its item's attempt before it did not
    end waiting (an item woken by a change of VH's map that still finds no place is not told
    again)."""
    before = (
        SyncAttempt.objects.filter(queue_item_id=row["queue_item_id"], id__lt=row["id"])
        .order_by("-id")
        .values_list("outcome", flat=True)
        .first()
    )
    return before != AttemptOutcome.WAITING


def _attempt_events(state: AlertState, now: datetime) -> list[AlertEvent]:
    """Events of the attempts after ``state.attempt_cursor``, which moves past them: an item
    out of attempts; an item whose ``ALERT_FAILED_ATTEMPTS``-th attempt failed (once a round:
    an operator's retry starts the count again); an item that started waiting for its place;
    with ``ALERT_ON_SYNC``, a discovery written into the Control Room."""
    events = []
    rows = _attempt_rows(state.attempt_cursor or 0)
    for row in rows:
        outcome = row["outcome"]
        if outcome == AttemptOutcome.EXCEEDED:
            kind = AlertKind.EXCEEDED
        elif outcome == AttemptOutcome.RETRYING and row["number"] == settings.ALERT_FAILED_ATTEMPTS:
            kind = AlertKind.FAILING
        elif outcome == AttemptOutcome.WAITING and _started_waiting(row):
            kind = AlertKind.WAITING
        elif outcome == AttemptOutcome.SYNCED and settings.ALERT_ON_SYNC:
            kind = AlertKind.SYNCED
        else:
            continue
        events.append(AlertEvent(kind=kind, at=row["started_at"] or now, data=_item_data(row)))
    if rows:
        state.attempt_cursor = rows[-1]["id"]
    return events


def _outage_events(state: AlertState, down: str | None, now: datetime) -> list[AlertEvent]:
    """The outage's events: ``outage`` once the Control Room was seen unreachable at every
    scan for ``ALERT_OUTAGE_MINUTES``, and ``recovered`` at the first scan that reaches it
    again after an outage was told (an outage shorter than that is told neither way)."""
    events = []
    if down is not None:
        if state.outage_since is None:
            state.outage_since, state.outage_what = now, down[:200]
        elif not state.outage_notified and now - state.outage_since >= timedelta(
            minutes=settings.ALERT_OUTAGE_MINUTES
        ):
            state.outage_notified = True
            data = {"what": state.outage_what, "since": iso_utc(state.outage_since)}
            events.append(AlertEvent(kind=AlertKind.OUTAGE, at=now, data=data))
        return events
    if state.outage_notified:
        data = {
            "what": state.outage_what,
            "since": iso_utc(state.outage_since),
            "until": iso_utc(now),
        }
        events.append(AlertEvent(kind=AlertKind.RECOVERED, at=now, data=data))
    state.outage_since, state.outage_what, state.outage_notified = None, "", False
    return events


def daily_figures(*, now: datetime) -> dict:
    """The daily summary's ``data`` at ``now``: over the 24 hours before it, discoveries
    ``synced`` (queue items by ``synced_at``), ``failed`` attempts (retrying or out of
    attempts), items ``exceeded`` (out of attempts) and ``waiting_started`` (attempts that
    ended waiting); the queue's ``counts`` per state now and ``oldest_pending_seconds``
    (None when nothing is pending); ``day``, the UTC date."""
    since = now - timedelta(days=1)
    outcomes = dict(
        SyncAttempt.objects.filter(started_at__gt=since, started_at__lte=now)
        .order_by()
        .values_list("outcome")
        .annotate(n=Count("id"))
    )
    synced = SyncQueueItem.objects.filter(sync_status=SyncStatus.SYNCED).time_window(
        "synced_at", since=since, until=now
    )
    oldest = SyncQueueItem.objects.oldest_pending_created()
    return {
        "day": now.astimezone(UTC).date().isoformat(),
        "synced": synced.count(),
        "failed": sum(outcomes.get(o, 0) for o in FAILED_OUTCOMES),
        "exceeded": outcomes.get(AttemptOutcome.EXCEEDED, 0),
        "waiting_started": outcomes.get(AttemptOutcome.WAITING, 0),
        "counts": queue_counts(),
        "oldest_pending_seconds": (
            round(max(0.0, (now - oldest).total_seconds())) if oldest else None
        ),
    }


def _daily_due(state: AlertState, now: datetime) -> bool:
    today = now.astimezone(UTC).date()
    return state.daily_last != today and now >= datetime.combine(today, daily_time())


def _daily_events(state: AlertState, now: datetime) -> list[AlertEvent]:
    """The daily summary, at the first scan at or after ``ALERT_DAILY_AT`` (UTC) each day."""
    if not _daily_due(state, now):
        return []
    state.daily_last = now.astimezone(UTC).date()
    return [AlertEvent(kind=AlertKind.DAILY, at=now, data=daily_figures(now=now))]


def _state_start(state: AlertState, now: datetime) -> None:
    """A first scan: start after the newest attempt (history from before alerts were on is
    not told), and with today's summary counted as told if its time has passed."""
    newest = SyncAttempt.objects.aggregate(newest=Max("id"))["newest"]
    state.attempt_cursor = newest or 0
    state.started_at = now
    if _daily_due(state, now):
        state.daily_last = now.astimezone(UTC).date()


def _message_compose(now: datetime) -> AlertMessage | None:
    """One message telling every event not yet told, unless one is still being delivered or
    one was composed or sent within :data:`MESSAGE_GAP` of ``now``; None then, or when there
    is nothing to tell. Run inside the scan's transaction."""
    in_flight = AlertStatus.PENDING, AlertStatus.SENDING
    if AlertMessage.objects.filter(status__in=in_flight).exists():
        return None
    last = AlertMessage.objects.aggregate(created=Max("created_at"), sent=Max("sent_at"))
    latest = max((t for t in last.values() if t is not None), default=None)
    if latest is not None and now - latest < MESSAGE_GAP:
        return None
    untold = list(
        AlertEvent.objects.filter(message=None).order_by("id").values("id", "kind", "data")
    )
    if not untold:
        return None
    body = message_body(
        [(event["kind"], event["data"]) for event in untold],
        failed_attempts=settings.ALERT_FAILED_ATTEMPTS,
        footer=f"Keeper Sync · {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
    )
    message = AlertMessage.objects.create(
        created_at=now, body=body, events=len(untold), next_try_at=now
    )
    AlertEvent.objects.filter(message=None, id__lte=untold[-1]["id"]).update(message=message)
    return message


def _messages_due(now: datetime) -> list[int]:
    """Ids of the messages a delivery task may take at ``now``: pending and due, or held by a
    task whose lease ran out."""
    due = Q(status=AlertStatus.PENDING, next_try_at__lte=now) | Q(
        status=AlertStatus.SENDING, lease_until__lte=now
    )
    return list(AlertMessage.objects.filter(due).order_by("id").values_list("id", flat=True))


def alerts_prune(*, now: datetime) -> int:
    """Delete messages sent or given up more than :data:`KEEP_DAYS` ago, and their events;
    returns how many messages."""
    old = now - timedelta(days=KEEP_DAYS)
    done = AlertMessage.objects.filter(
        status__in=(AlertStatus.SENT, AlertStatus.FAILED), created_at__lt=old
    )
    deleted, by_model = done.delete()
    return by_model.get(AlertMessage._meta.label, 0)


def alerts_scan(
    *, now: datetime | None = None, probe: bool = True, down: str | None = None
) -> ScanReport:
    """Find what to tell since the last scan, compose at most one message, and queue the
    delivery of every message due (the module's docstring says how). ``now`` (aware; default
    the clock) is the scan's time. With ``probe`` (the default) :func:`outage_probe` says
    what of the Control Room is unreachable; without, ``down`` says it (None: nothing). Does
    nothing when alerts are off. Returns a :class:`ScanReport`."""
    report = ScanReport()
    if not alerts_enabled():
        return report
    now = now or timezone.now()
    if probe:
        # Before the transaction: it may wait on VH-Database.db's lock.
        down = outage_probe()
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        state, _ = AlertState.objects.select_for_update().get_or_create(pk=1)
        if state.attempt_cursor is None:
            _state_start(state, now)
            found = _outage_events(state, down, now)
        else:
            found = [
                *_attempt_events(state, now),
                *_outage_events(state, down, now),
                *_daily_events(state, now),
            ]
        state.save()
        AlertEvent.objects.bulk_create(found)
        message = _message_compose(now)
        alerts_prune(now=now)
    report.events = len(found)
    report.message = message.id if message else None
    for message_id in _messages_due(now):
        async_task(
            DELIVER_FUNC,
            message_id,
            group="keeper-alerts",
            task_name=f"keeper-alert-{message_id}",
        )
        report.queued.append(message_id)
    return report


def _retry_after(response: httpx.Response) -> float | None:
    """The seconds Discord asks to wait: its ``Retry-After`` header (seconds, or an HTTP
    date), else the ``retry_after`` of its JSON body; None when neither says."""
    header = response.headers.get("Retry-After")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            try:
                moment = parsedate_to_datetime(header)
            except (TypeError, ValueError):
                moment = None
            if moment is not None:
                return max(0.0, (moment - timezone.now()).total_seconds())
    try:
        body = response.json()
    except ValueError:
        return None
    value = body.get("retry_after") if isinstance(body, dict) else None
    return float(value) if isinstance(value, int | float) else None


def delivery_delay(tries: int, retry_after: float | None) -> float:
    """Seconds before the next try of a message tried ``tries`` times: what Discord asked
    (``retry_after``), else 30 s · 2^(tries−1); at most :data:`DELIVERY_DELAY_CAP_SECONDS`."""
    wait = (
        retry_after
        if retry_after is not None
        else DELIVERY_BASE_DELAY_SECONDS * 2 ** max(0, tries - 1)
    )
    return min(float(wait), float(DELIVERY_DELAY_CAP_SECONDS))


def _message_claim(message_id: int, now: datetime) -> AlertMessage | None:
    """Take message ``message_id`` for one try, when it is due (see :func:`_messages_due`)
    and no other task holds it; None otherwise."""
    due = Q(status=AlertStatus.PENDING, next_try_at__lte=now) | Q(
        status=AlertStatus.SENDING, lease_until__lte=now
    )
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        taken = AlertMessage.objects.filter(due, id=message_id).select_for_update().first()
        if taken is None:
            return None
        taken.status = AlertStatus.SENDING
        taken.lease_until = now + DELIVERY_LEASE
        taken.tries += 1
        taken.save(update_fields=["status", "lease_until", "tries"])
    return taken


def webhook_post(body: dict, *, url: str | None = None) -> httpx.Response:
    """POST ``body`` (JSON) to ``url`` (default ``ALERT_WEBHOOK_URL``) within
    :data:`DELIVERY_TIMEOUT_SECONDS`; returns the answer. Raises ``httpx.HTTPError`` when no
    answer came (refused, timed out, cut off)."""
    with httpx.Client(timeout=DELIVERY_TIMEOUT_SECONDS, follow_redirects=False) as client:
        return client.post(url or settings.ALERT_WEBHOOK_URL, json=body)


def alert_deliver(*, message_id: int, now: datetime | None = None) -> str:
    """Post message ``message_id`` to ``ALERT_WEBHOOK_URL`` once, when it is due and no other
    task holds it, and record the answer. Returns the message's state: ``sent``; ``pending``
    (due again after :func:`delivery_delay`, on no answer, a 429 or a 5xx); or ``skipped``
    (not due, or held). Raises :class:`~syncq.errors.AlertDeliveryFailed` when the message is
    given up: after :data:`DELIVERY_TRIES` tries, or on another answer (4xx)."""
    now = now or timezone.now()
    message = _message_claim(message_id, now)
    if message is None:
        return "skipped"
    retry_after: float | None = None
    started = time_monotonic()
    try:
        response = webhook_post(message.body)
    except httpx.HTTPError as exc:
        error, retryable = f"{type(exc).__name__}: {exc}", True
    else:
        if response.is_success:
            sent_at = now + timedelta(seconds=time_monotonic() - started)
            AlertMessage.objects.filter(id=message.id).update(
                status=AlertStatus.SENT, sent_at=sent_at, lease_until=None, last_error=""
            )
            return AlertStatus.SENT
        error = f"HTTP {response.status_code}: {response.text[:500]}"
        retryable = response.status_code in RETRY_STATUSES
        if response.status_code == 429:
            retry_after = _retry_after(response)
    if retryable and message.tries < DELIVERY_TRIES:
        delay = delivery_delay(message.tries, retry_after)
        AlertMessage.objects.filter(id=message.id).update(
            status=AlertStatus.PENDING,
            next_try_at=now + timedelta(seconds=delay),
            lease_until=None,
            last_error=error,
        )
        logger.warning(
            "alert message %s: try %s of %s failed (%s); next in %.0f s",
            message.id,
            message.tries,
            DELIVERY_TRIES,
            error,
            delay,
        )
        return AlertStatus.PENDING
    AlertMessage.objects.filter(id=message.id).update(
        status=AlertStatus.FAILED, lease_until=None, last_error=error
    )
    logger.error("alert message %s given up after %s tries: %s", message.id, message.tries, error)
    raise AlertDeliveryFailed(
        f"alert message {message.id} given up after {message.tries} tries: {error}"
    )


def alert_check_send(*, now: datetime | None = None) -> tuple[httpx.Response, dict]:
    """Post a test message (:func:`syncq.alerts.check_body`) to ``ALERT_WEBHOOK_URL`` at once,
    outside the queue and its one-a-minute rule: for ``manage.py alerts_test``. Returns the
    answer and the body posted; raises ``httpx.HTTPError`` when no answer came."""
    body = check_body(now_text=iso_utc(now or timezone.now()))
    return webhook_post(body), body
