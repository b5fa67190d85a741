"""The sync queue on keeper.db: one queue item per discovery, on the legacy table ``sync_queue``.

States (REFERENCE.md): ``pending → syncing → synced``; a failed attempt goes back to ``pending``
with a backoff, and the ``max_attempts``-th failure to ``max_retries_exceeded``. Only
:mod:`syncq.services` changes a state. The operators' SQL of the reference runs on this table
as written.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class SyncStatus(models.TextChoices):
    """A queue item's state, stored as these exact strings (operators' SQL compares them)."""

    PENDING = "pending", "Pending"
    SYNCING = "syncing", "Syncing"
    SYNCED = "synced", "Synced"
    MAX_RETRIES_EXCEEDED = "max_retries_exceeded", "Max retries exceeded"


class SyncQueueItem(models.Model):
    """A discovery waiting for, or done with, its copy into VH-Database.db.

    An item is *due* when it is ``pending``, below its ``max_attempts``, and either never tried
    since its last reset (``sync_attempts`` 0, which the operators' retry UPDATE sets) or past
    ``next_retry_after``. A worker holds a claimed item under a lease: ``leased_until`` and
    ``lease_token``; an item still ``syncing`` after its lease is taken again. Times are UTC.
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

    class Meta:
        db_table = "sync_queue"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["sync_status", "next_retry_after"], name="idx_sync_queue_due"),
        ]
        verbose_name = "queue item"

    def __str__(self) -> str:
        return f"queue item {self.id} (discovery {self.discovery_id}, {self.sync_status})"


class AttemptOutcome(models.TextChoices):
    """How one attempt ended."""

    SYNCED = "synced", "Synced"
    RETRYING = "retrying", "Failed, will retry"
    EXCEEDED = "exceeded", "Failed, no attempt left"


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
        return f"attempt {self.number} of queue item {self.queue_item_id}: {self.outcome}"


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
