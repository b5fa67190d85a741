"""The sync queue on keeper.db: one queue item per discovery, on the legacy table ``sync_queue``.

States (REFERENCE.md): ``pending → syncing → synced``; a failed attempt goes back to ``pending``
with a backoff, and the ``max_attempts``-th failure to ``max_retries_exceeded``. Only
:mod:`syncq.services` changes a state. The operators' SQL of the reference runs on this table
as written.
"""

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
