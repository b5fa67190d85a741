"""The sync queue on keeper.db: one queue item per discovery, on the legacy table ``sync_queue``.

States (REFERENCE.md): ``pending → syncing → synced``; a failed attempt goes back to ``pending``
with a backoff, and the ``max_attempts``-th failure to ``max_retries_exceeded``. Two states are
ours: ``waiting``, a discovery whose system, planet or moon is not in the Control Room yet (no
row written, no attempt spent; it is taken again when VH's catalog changes or the discovery is
corrected), and ``conflict``, an edit or delete of a row the Control Room changed since we wrote
it, which waits for an operator's choice. Only :mod:`syncq.services` changes a state. The
operators' SQL of the reference runs on this table as written.
"""

import functools
import operator
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connections, models
from django.db.models import CharField, F, Func, Q
from django.utils import timezone


class SyncStatus(models.TextChoices):
    """A queue item's state, stored as these exact strings (operators' SQL compares them)."""

    PENDING = "pending", "Pending"
    SYNCING = "syncing", "Syncing"
    SYNCED = "synced", "Synced"
    MAX_RETRIES_EXCEEDED = "max_retries_exceeded", "Max retries exceeded"
    WAITING = "waiting", "Waiting for its place in VH"
    CONFLICT = "conflict", "Conflict with the Control Room"


class Operation(models.TextChoices):
    """What a queue item does to VH when it is next taken: ``write`` makes the discovery's one
    VH row match it (insert it, or update it through the ledger after an edit); ``delete``
    removes that row, after which the keeper discovery is deleted too."""

    WRITE = "write", "Write"
    DELETE = "delete", "Delete"


def _lease_lapsed(now: datetime) -> Q:
    """Items whose lease has run out; an old bot's rows have no lease, only an attempt time."""
    lease = timedelta(seconds=settings.SYNC_LEASE_SECONDS)
    return Q(leased_until__lte=now) | (
        Q(leased_until__isnull=True)
        & (Q(last_sync_attempt__isnull=True) | Q(last_sync_attempt__lte=now - lease))
    )


def _due_kinds(now: datetime) -> dict[str, Q]:
    """Four kinds of item due at ``now``, whose union is the due rule of
    :meth:`SyncQueueItemQuerySet.due` (an item may be of two), each a search of one index
    (``idx_sync_queue_due`` or one of migration ``0007``): ``fresh``, pending and never tried
    since the last reset, by attempts; ``undated``, pending without a due time, and ``dated``,
    pending and past its due time, by due time; ``abandoned``, ``syncing`` under a lapsed
    lease, by state. Each index gives its items in id order (``dated``: due time, then id)."""
    below_max = Q(sync_attempts__lt=F("max_attempts"))
    pending = Q(sync_status=SyncStatus.PENDING) & below_max
    return {
        "fresh": pending & Q(sync_attempts=0),
        "undated": pending & Q(next_retry_after__isnull=True),
        "dated": pending & Q(next_retry_after__lte=now),
        "abandoned": Q(sync_status=SyncStatus.SYNCING) & below_max & _lease_lapsed(now),
    }


class UtcText(Func):
    """SQLite's ``datetime(column)``, UTC text ``YYYY-MM-DD HH:MM:SS`` (NULL for text it cannot
    read), except that the text ``now`` (any case) reads as NULL, as Django reads it, rather
    than as the clock: the indexes of migration ``0007`` are built on this very expression,
    and SQLite refuses to index ``datetime('now')``, which changes by itself. The literal is
    written into the SQL, not passed as a parameter, so that SQLite sees the indexed
    expression in each query."""

    template = (
        "CASE WHEN lower(%(expressions)s) = 'now' THEN NULL ELSE datetime(%(expressions)s) END"
    )
    output_field = CharField()


def utc_text(field: str) -> Func:
    """On SQLite, date-time column ``field`` as SQLite's own UTC text ``YYYY-MM-DD HH:MM:SS``
    (:class:`UtcText`): rows other tools wrote may use ``T`` and ``Z``/``+00:00``, which compare
    wrongly as text. Migration ``0007`` indexes this expression on ``created_at`` (pending
    items), ``synced_at`` (synced items) and ``last_sync_attempt``, so windows and orders on
    it read an index, whoever wrote the row."""
    return UtcText(F(field))


class SyncQueueItemQuerySet(models.QuerySet):
    """The queue's reads, each rule stated once: what is due, which leases have lapsed, the
    errors of items not synced, and times compared right whoever wrote them. Times are aware
    UTC datetimes."""

    def due(self, now: datetime):
        """Items a worker may take at ``now``: ``pending``, below ``max_attempts``, and either
        never tried since their last reset (``sync_attempts`` 0), without a due time, or past
        it; or ``syncing`` below ``max_attempts`` with a lapsed lease (their worker died).
        :meth:`SyncQueueItem.is_due` says the same of one item; :meth:`due_ids` takes the
        first of them through an index each."""
        return self.filter(functools.reduce(operator.or_, _due_kinds(now).values()))

    def due_ids(self, now: datetime, *, limit: int, skip_locked: bool = False) -> list[int]:
        """Ids of up to ``limit`` items :meth:`due` at ``now``, ascending: what a claim takes.

        Each kind of due item is read apart, ``limit`` at most, through its own index
        (migration ``0007``): pending and never tried since the last reset, by id; pending
        without a due time, by id; pending and past its due time, the longest due first
        (``next_retry_after``, then id); ``syncing`` under a lapsed lease, by id. The answer
        is the lowest ``limit`` ids among them: the lowest ids of all due items whenever no
        more than ``limit`` items that have a due time are past it at once; beyond that, of
        those, the ones whose backoff ended first, the order in which an index gives them
        without reading every item that waits out a backoff. So each read costs a search of
        an index and ``limit`` rows, however many items are synced, wait out a backoff, or are
        queued behind.

        ``skip_locked``: lock the rows read (``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL,
        nothing on SQLite, whose write transaction excludes other writers), passing over rows
        another transaction holds; call it inside that transaction."""
        rows = self.select_for_update(skip_locked=True) if skip_locked else self
        found: set[int] = set()
        for name, condition in _due_kinds(now).items():
            order = ("next_retry_after", "id") if name == "dated" else ("id",)
            found.update(
                rows.filter(condition).order_by(*order).values_list("id", flat=True)[:limit]
            )
        return sorted(found)[:limit]

    def abandoned_on_last_attempt(self, now: datetime):
        """Items still ``syncing`` past their lease on their last attempt: their worker died,
        and no attempt is left to take them again."""
        return self.filter(
            Q(sync_status=SyncStatus.SYNCING)
            & Q(sync_attempts__gte=F("max_attempts"))
            & _lease_lapsed(now)
        )

    def unsynced_errors(self):
        """Items not synced whose last attempt left an error text."""
        return (
            self.exclude(sync_status=SyncStatus.SYNCED)
            .exclude(sync_error=None)
            .exclude(sync_error="")
        )

    def _as_utc_text(self, field: str):
        key = f"{field}_utc"
        if key in self.query.annotations:
            return self, key
        return self.annotate(**{key: utc_text(field)}), key

    def _on_sqlite(self) -> bool:
        return connections[self.db].vendor == "sqlite"

    def time_window(self, field: str, *, since: datetime | None = None, until=None):
        """Items whose ``field`` (a date-time column) lies in ``[since, until]``, to the second
        and inclusive, right for times other tools wrote (``T`` or space, ``Z`` or ``+00:00``)."""
        queryset = self
        for bound, lookup in ((since, "gte"), (until, "lte")):
            if bound is None:
                continue
            if queryset._on_sqlite():
                queryset, key = queryset._as_utc_text(field)
                # isoformat, not strftime: strftime writes year 999 as "999", which sorts
                # after every four-digit year.
                text = bound.astimezone(UTC).isoformat(sep=" ", timespec="seconds")[:19]
                queryset = queryset.filter(**{f"{key}__{lookup}": text})
            else:
                queryset = queryset.filter(**{f"{field}__{lookup}": bound})
        return queryset

    def ordered_by_time(self, field: str, *, descending: bool):
        """Items ordered by ``field`` (a date-time column), then by id in the same direction
        (times of a second apart or less tie on SQLite), right for times other tools wrote."""
        sign = "-" if descending else ""
        if not self._on_sqlite():
            return self.order_by(f"{sign}{field}", f"{sign}id")
        queryset, key = self._as_utc_text(field)
        return queryset.order_by(f"{sign}{key}", f"{sign}id")

    def oldest_pending_created(self) -> datetime | None:
        """When the oldest ``pending`` item was queued (aware UTC), or None."""
        return (
            self.filter(sync_status=SyncStatus.PENDING)
            .ordered_by_time("created_at", descending=False)
            .values_list("created_at", flat=True)
            .first()
        )

    def last_attempt_at(self) -> datetime | None:
        """The latest ``last_sync_attempt`` (aware), or None when no item was ever tried.
        On SQLite, the latest second as SQLite reads the text, whoever wrote it (an index of
        migration ``0007``), then the latest of the few values within that second, as Django
        reads them; text naming no time counts as none."""
        if not self._on_sqlite():
            return self.aggregate(last=models.Max("last_sync_attempt"))["last"]
        second = self.aggregate(second=models.Max(utc_text("last_sync_attempt")))["second"]
        if second is None:
            return None
        queryset, key = self._as_utc_text("last_sync_attempt")
        # A claim gives all its items one attempt time: the distinct values are few.
        values = (
            queryset.filter(**{key: second})
            .order_by()
            .values_list("last_sync_attempt", flat=True)
            .distinct()
        )
        return max((value for value in values if value is not None), default=None)


class SyncQueueItem(models.Model):
    """A discovery waiting for, or done with, its copy into VH-Database.db.

    An item is *due* when it is ``pending``, below its ``max_attempts``, and either never tried
    since its last reset (``sync_attempts`` 0, which the operators' retry UPDATE sets) or past
    ``next_retry_after``. A worker holds a claimed item under a lease: ``leased_until`` and
    ``lease_token``; an item still ``syncing`` after its lease is taken again. Times are UTC.

    Besides ``idx_sync_queue_due``, migration ``0007`` gives the table indexes of its own for
    each database vendor (partial, and on SQLite on :class:`UtcText` of a column), outside
    ``Meta``, and the triggers that keep ``sync_queue_tally``, the count of items per state.
    """

    discovery = models.OneToOneField(
        "discoveries.Discovery",
        on_delete=models.CASCADE,
        db_column="discovery_id",
        related_name="queue_item",
    )
    sync_status = models.CharField(
        max_length=32, choices=SyncStatus.choices, default=SyncStatus.PENDING
    )
    sync_attempts = models.IntegerField(default=0)
    max_attempts = models.IntegerField(default=10)
    last_sync_attempt = models.DateTimeField(null=True, blank=True)
    next_retry_after = models.DateTimeField(null=True, blank=True)
    sync_error = models.TextField(null=True, blank=True)
    haven_discovery_id = models.IntegerField("VH discovery id", null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    synced_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(null=True, blank=True, default=dict)
    leased_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, null=True, blank=True)
    operation = models.CharField(max_length=8, choices=Operation.choices, default=Operation.WRITE)
    waiting_on = models.CharField(
        max_length=64,
        null=True,
        blank=True,
        help_text="The version of VH's catalog a waiting item last failed to find its place in.",
    )

    objects = SyncQueueItemQuerySet.as_manager()

    class Meta:
        db_table = "sync_queue"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["sync_status", "next_retry_after"], name="idx_sync_queue_due"),
        ]
        verbose_name = "queue item"

    def __str__(self) -> str:
        state = self.get_sync_status_display()
        return f"queue item {self.id} (discovery {self.discovery_id}, {state})"

    def lease_lapsed(self, now: datetime) -> bool:
        """Whether this item's lease has run out at ``now`` (an old bot's row has no lease:
        its last attempt counts, and no attempt at all is a lapsed lease)."""
        if self.leased_until is not None:
            return self.leased_until <= now
        lease = timedelta(seconds=settings.SYNC_LEASE_SECONDS)
        return self.last_sync_attempt is None or self.last_sync_attempt <= now - lease

    def is_due(self, now: datetime) -> bool:
        """Whether a worker may take this item at ``now``: the rule of
        :meth:`SyncQueueItemQuerySet.due`, for one item in memory."""
        if self.sync_attempts >= self.max_attempts:
            return False
        if self.sync_status == SyncStatus.PENDING:
            return (
                self.sync_attempts == 0
                or self.next_retry_after is None
                or self.next_retry_after <= now
            )
        return self.sync_status == SyncStatus.SYNCING and self.lease_lapsed(now)


class LeaseHolder(models.Model):
    """Who holds the lease ``token`` of a batch of claimed queue items: the worker process, as
    :class:`syncq.processes.ProcessIdentity` describes it (``host``, ``host_key``, ``pid``,
    ``pid_started``), and its last ``heartbeat_at`` (UTC), refreshed every few seconds while
    the batch runs. Written with the claim, in its transaction, and deleted when the batch
    ends. At each batch's start the items of a holder known to be dead (a process of this
    host that is gone, or another host's holder whose heartbeat is stale) are taken back at
    once rather than when their lease runs out (:func:`syncq.services.queue_leases_release`).
    """

    token = models.CharField(max_length=32, primary_key=True)
    host = models.CharField(max_length=255)
    host_key = models.CharField(
        max_length=200, help_text="Host name, boot id and pid namespace: one running system."
    )
    pid = models.IntegerField()
    pid_started = models.BigIntegerField(
        null=True, blank=True, help_text="The process's start, in clock ticks after boot."
    )
    claimed_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "sync_lease_holder"
        verbose_name = "lease holder"

    def __str__(self) -> str:
        return f"lease {self.token} held by process {self.pid} on {self.host}"


class AttemptOutcome(models.TextChoices):
    """How one attempt ended."""

    SYNCED = "synced", "Synced"
    RETRYING = "retrying", "Failed, will retry"
    EXCEEDED = "exceeded", "Failed, no attempt left"
    WAITING = "waiting", "Waiting for its place"
    CONFLICT = "conflict", "Conflict with the Control Room"
    DELETED = "deleted", "Deleted from VH"


class SyncAttempt(models.Model):
    """One attempt to copy a queue item into VH-Database.db: when it started, how long it took
    (milliseconds), how it ended and the whole error text. Deleted with its queue item, so
    pruning synced items prunes their history too."""

    queue_item = models.ForeignKey(SyncQueueItem, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField(help_text="The item's attempt count at this attempt.")
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    error = models.TextField(null=True, blank=True)
    haven_discovery_id = models.IntegerField("VH discovery id", null=True, blank=True)

    class Meta:
        db_table = "sync_attempt"
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["queue_item", "started_at"], name="idx_sync_attempt_item")]

    def __str__(self) -> str:
        outcome = self.get_outcome_display()
        return f"attempt {self.number} of queue item {self.queue_item_id}: {outcome}"


class OperatorAction(models.Model):
    """An operator's change to the queue (a retry, one item or many), from the API, the admin
    or the bot: who, when, what and how many items it changed."""

    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    actor_name = models.CharField(max_length=150, help_text="Kept if the account is deleted.")
    source = models.CharField(max_length=16, help_text="api, admin or bot")
    action = models.CharField(max_length=32)
    items_changed = models.PositiveIntegerField()
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "sync_operator_action"
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action} ({self.items_changed}) via {self.source}"


#: At most this many ids of each kind are kept on a :class:`SyncVerifyRun`; the counts are exact.
VERIFY_IDS_KEPT = 1000


class SyncVerifyRun(models.Model):
    """One check of VH-Database.db against keeper.db (``manage.py sync_verify``, or the daily
    schedule): how many discoveries keeper.db says are in VH were ``checked``, and how many are
    ``missing`` from VH (a restored backup, a row deleted there), ``changed`` by the Control
    Room since we left them, ``outdated`` (VH holds an older version of ours: a restored
    backup), or ``orphaned`` (ledger rows of keeper discoveries that are gone). Each ``*_ids``
    holds up to :data:`VERIFY_IDS_KEPT` of them as ``{"discovery_id", "haven_discovery_id"}``,
    by keeper id. ``baseline_recorded`` counts ledger rows that had no hash and got their row's
    current one; ``linked`` the old bot's rows keeper.db said were synced that got their
    ledger row; ``repaired`` the missing and outdated discoveries queued again (``repair``).
    ``error`` says why VH could not be checked; ``finished_at`` is empty while the run goes on,
    or if it was cut short. Times are UTC."""

    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    repair = models.BooleanField(
        default=False, help_text="Missing and outdated discoveries were to be queued."
    )
    checked = models.PositiveIntegerField(default=0)
    missing = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    outdated = models.PositiveIntegerField(default=0)
    orphaned = models.PositiveIntegerField(default=0)
    missing_ids = models.JSONField(default=list, blank=True)
    changed_ids = models.JSONField(default=list, blank=True)
    outdated_ids = models.JSONField(default=list, blank=True)
    orphaned_ids = models.JSONField(default=list, blank=True)
    baseline_recorded = models.PositiveIntegerField(default=0)
    linked = models.PositiveIntegerField(default=0)
    repaired = models.PositiveIntegerField(default=0)
    error = models.TextField(null=True, blank=True)

    class Meta:
        db_table = "sync_verify_run"
        ordering = ["-started_at", "-id"]
        verbose_name = "verify run"

    def __str__(self) -> str:
        if self.error:
            return f"verify run {self.id}: failed ({self.error})"
        return (
            f"verify run {self.id}: checked {self.checked}, missing {self.missing}, "
            f"changed {self.changed}, outdated {self.outdated}, orphaned {self.orphaned}"
        )

    def figures(self, *, ids_shown: int = 20) -> dict[str, object]:
        """This run as ``/sync/statistics`` shows it: its columns, times as ISO 8601 UTC text
        with ``Z`` (``finished_at`` None while running or if cut short), and the first
        ``ids_shown`` ids of each kind."""

        def iso(value: datetime | None) -> str | None:
            return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None

        return {
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "repair": self.repair,
            "checked": self.checked,
            "missing": self.missing,
            "changed": self.changed,
            "outdated": self.outdated,
            "orphaned": self.orphaned,
            "missing_ids": list(self.missing_ids or [])[:ids_shown],
            "changed_ids": list(self.changed_ids or [])[:ids_shown],
            "outdated_ids": list(self.outdated_ids or [])[:ids_shown],
            "orphaned_ids": list(self.orphaned_ids or [])[:ids_shown],
            "baseline_recorded": self.baseline_recorded,
            "linked": self.linked,
            "repaired": self.repaired,
            "error": self.error,
        }


class HavenAgent(models.Model):
    """A Control Room agent (``manage.py haven_agent`` on the Control Room's desktop) as the
    server last heard from it: one row per agent ``name`` (the name its token was made for,
    ``manage.py agent_token``). ``agent_id`` names the agent's state file, ``instance`` its
    current run (a restart changes it, and the leases of the run before are taken back at once);
    ``version`` is Keeper Sync's version on the desktop, ``host`` the desktop's name,
    ``vh_state`` what the agent last found of VH-Database.db (``ok``, ``missing``, ``locked``,
    ``readonly``, ``error``), ``catalog_hash`` the content hash of the catalog it last
    uploaded. Times are UTC. The holders of its leases are :class:`LeaseHolder` rows whose
    ``host_key`` is :meth:`holder_key`.

    Its permission ``haven_agent`` is the only one an agent's token user holds: it opens the
    ``/agent/`` endpoints and nothing else (:mod:`syncq.agent_api`)."""

    name = models.CharField(max_length=100, unique=True)
    agent_id = models.CharField(max_length=64, blank=True, default="")
    instance = models.CharField(max_length=64, blank=True, default="")
    version = models.CharField(max_length=64, blank=True, default="")
    host = models.CharField(max_length=255, blank=True, default="")
    vh_state = models.CharField(max_length=32, blank=True, default="")
    vh_detail = models.TextField(blank=True, default="")
    catalog_hash = models.CharField(max_length=64, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    runs = models.JSONField(
        default=dict,
        blank=True,
        help_text="When the server first heard from each recent run: {instance: ISO time}.",
    )

    class Meta:
        db_table = "sync_haven_agent"
        verbose_name = "Control Room agent"
        permissions = [("haven_agent", "Can act as the Control Room agent")]

    def __str__(self) -> str:
        return f"Control Room agent {self.name}"

    def holder_key(self) -> str:
        """The start of the ``host_key`` of this agent's :class:`LeaseHolder` rows (followed by
        ``:<agent_id>:<instance>``): no worker process's (those are host, boot id and pid
        namespace), so only the agent's heartbeat tells whether it lives."""
        return f"agent:{self.name}"


class AlertState(models.Model):
    """Where the alert scan (:func:`syncq.alert_services.alerts_scan`) stands: one row, ``pk``
    1, read and written under a lock in the scan's transaction, so that two scans at once
    find each event once. ``attempt_cursor`` is the highest :class:`SyncAttempt` id already
    looked at (None until the first scan, which starts at the newest attempt: history from
    before alerts were switched on is not posted). ``outage_since`` is when VH-Database.db
    (or, with ``USE_HAVEN_AGENT``, every agent) was first seen unreachable in a row of scans,
    ``outage_what`` what was seen, ``outage_notified`` whether that outage was posted.
    ``daily_last`` is the UTC date of the last daily summary. Times are UTC."""

    attempt_cursor = models.BigIntegerField(null=True, blank=True)
    outage_since = models.DateTimeField(null=True, blank=True)
    outage_what = models.CharField(max_length=200, blank=True, default="")
    outage_notified = models.BooleanField(default=False)
    daily_last = models.DateField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "sync_alert_state"
        verbose_name = "alert state"

    def __str__(self) -> str:
        return f"alert state (attempts up to {self.attempt_cursor})"


class AlertStatus(models.TextChoices):
    """Where an alert message is in its delivery."""

    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class AlertMessage(models.Model):
    """One message to ``ALERT_WEBHOOK_URL``: ``body``, the Discord webhook JSON prepared when
    it was composed (:func:`syncq.alerts.message_body`), and its delivery: ``status``,
    ``tries`` made, ``next_try_at`` (due for its next try), ``lease_until`` (a delivery task
    holds it until then; a task that died leaves it to be taken again), ``sent_at`` and
    ``last_error``. ``events`` counts the :class:`AlertEvent` rows it tells of. Times UTC."""

    created_at = models.DateTimeField(default=timezone.now)
    body = models.JSONField(default=dict)
    events = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=AlertStatus.choices, default=AlertStatus.PENDING
    )
    tries = models.PositiveIntegerField(default=0)
    next_try_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "sync_alert_message"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_try_at"], name="idx_alert_message_due")]
        verbose_name = "alert message"

    def __str__(self) -> str:
        return f"alert message {self.id} ({self.status}, {self.events} events)"


class AlertKind(models.TextChoices):
    """What an alert event tells, in the order a message lists them."""

    OUTAGE = "outage", "Unreachable"
    RECOVERED = "recovered", "Reachable again"
    EXCEEDED = "exceeded", "Out of attempts"
    FAILING = "failing", "Failing"
    WAITING = "waiting", "Waiting for a place"
    DAILY = "daily", "Daily summary"
    SYNCED = "synced", "Reached the Control Room"


class AlertEvent(models.Model):
    """One thing to tell in an alert: its ``kind``, when it happened (``at``, UTC) and its
    ``data`` (:mod:`syncq.alerts` says the keys of each kind). Found by the scan and written
    in the same transaction as the scan's cursors; ``message`` is the message that tells it
    (None until one is composed)."""

    kind = models.CharField(max_length=16, choices=AlertKind.choices)
    at = models.DateTimeField(default=timezone.now)
    data = models.JSONField(default=dict)
    message = models.ForeignKey(
        AlertMessage, on_delete=models.CASCADE, null=True, blank=True, related_name="told"
    )

    class Meta:
        db_table = "sync_alert_event"
        ordering = ["id"]
        verbose_name = "alert event"

    def __str__(self) -> str:
        return f"alert event {self.id}: {self.kind}"
