"""Shapes of the Control Room API (REFERENCE.md, "Monitoring API"), for validation and for the
OpenAPI schema."""

from collections.abc import Iterable

from rest_framework import serializers

from syncq.models import Operation, SyncQueueItem, SyncStatus
from syncq.services import RETRYABLE

FAILED_LIMIT_DEFAULT = 20
FAILED_LIMIT_MAX = 200


class FailedQuerySerializer(serializers.Serializer):
    """``?limit=`` of ``/sync/failed``, ``/sync/waiting`` and ``/sync/conflicts``: 1 to 200
    items (default 20); larger values are capped at 200."""

    limit = serializers.IntegerField(required=False, default=FAILED_LIMIT_DEFAULT, min_value=1)


class ItemFilterSerializer(serializers.Serializer):
    """Filters of ``/sync/items/``: state, discovery, and a window on ``created_at``."""

    status = serializers.ChoiceField(choices=SyncStatus.values, required=False)
    discovery_id = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


class DiscoverySummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    discovery_type = serializers.CharField()
    system_name = serializers.CharField(allow_null=True)
    location = serializers.CharField()
    username = serializers.CharField()
    submission_timestamp = serializers.DateTimeField(allow_null=True)


class QueueItemSerializer(serializers.ModelSerializer):
    """A queue item with its discovery's summary and its last error."""

    discovery = DiscoverySummarySerializer(read_only=True)

    class Meta:
        model = SyncQueueItem
        fields = [
            "id",
            "discovery_id",
            "sync_status",
            "sync_attempts",
            "max_attempts",
            "last_sync_attempt",
            "next_retry_after",
            "sync_error",
            "haven_discovery_id",
            "created_at",
            "synced_at",
            "discovery",
        ]
        read_only_fields = fields


class BulkRetrySerializer(serializers.Serializer):
    """Either ``ids`` (queue item ids) or ``status`` (``max_retries_exceeded`` or
    ``pending``), not both."""

    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        min_length=1,
        max_length=10_000,
    )
    status = serializers.ChoiceField(choices=list(RETRYABLE), required=False)

    def validate(self, attrs):
        if ("ids" in attrs) == ("status" in attrs):
            raise serializers.ValidationError("give either 'ids' or 'status'")
        return attrs


# --- response shapes, for the schema --------------------------------------------------------


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["healthy", "unhealthy"])
    bot_online = serializers.BooleanField()
    sync_worker_running = serializers.BooleanField()
    timestamp = serializers.DateTimeField()
    database = serializers.ChoiceField(choices=["ok", "unreachable"])
    haven_database = serializers.ChoiceField(choices=["ok", "missing", "locked", "disabled"])
    worker = serializers.ChoiceField(choices=["running", "stopped"])


class SyncWorkerSerializer(serializers.Serializer):
    is_running = serializers.BooleanField()
    sync_interval = serializers.IntegerField()
    uptime_seconds = serializers.FloatField()
    last_sync_time = serializers.DateTimeField(allow_null=True)


def counts_serializer(name: str, keys: Iterable[str]) -> type[serializers.Serializer]:
    """A serializer class called ``name`` of one integer count per key of ``keys``, in that
    order; the schema names its component after ``name`` less "Serializer"."""
    return type(name, (serializers.Serializer,), {key: serializers.IntegerField() for key in keys})


#: ``/sync/status``'s ``queue`` and ``totals``, in the old clients' words (``failed`` is
#: ``max_retries_exceeded``; ``waiting`` and ``conflict`` follow the reference's four), and
#: ``/sync/statistics``' ``counts``, one per state.
QueueCountsSerializer = counts_serializer(
    "QueueCountsSerializer", ["pending", "syncing", "synced", "failed", "waiting", "conflict"]
)
TotalsSerializer = counts_serializer("TotalsSerializer", ["total_synced", "total_failed"])
StateCountsSerializer = counts_serializer("StateCountsSerializer", SyncStatus.values)


class StatusSerializer(serializers.Serializer):
    status = serializers.CharField()
    sync_worker = SyncWorkerSerializer()
    queue = QueueCountsSerializer()
    totals = TotalsSerializer()


class SyncSecondsSerializer(serializers.Serializer):
    mean = serializers.FloatField()
    p95 = serializers.FloatField()
    sample = serializers.IntegerField()


class ErrorCountSerializer(serializers.Serializer):
    error = serializers.CharField()
    count = serializers.IntegerField()


class VerifyIdsSerializer(serializers.Serializer):
    discovery_id = serializers.IntegerField()
    haven_discovery_id = serializers.IntegerField(allow_null=True)


class VerifyRunSerializer(serializers.Serializer):
    """The last ``sync_verify`` run (:meth:`syncq.models.SyncVerifyRun.figures`): counts, the
    first 20 ids of each kind (keeper discovery and VH row), and why VH could not be read."""

    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    repair = serializers.BooleanField()
    checked = serializers.IntegerField()
    missing = serializers.IntegerField()
    changed = serializers.IntegerField()
    outdated = serializers.IntegerField(
        help_text="VH holds an older version of ours (a restored backup)."
    )
    orphaned = serializers.IntegerField()
    missing_ids = VerifyIdsSerializer(many=True)
    changed_ids = VerifyIdsSerializer(many=True)
    outdated_ids = VerifyIdsSerializer(many=True)
    orphaned_ids = VerifyIdsSerializer(many=True)
    baseline_recorded = serializers.IntegerField()
    linked = serializers.IntegerField(
        help_text="Rows the old bot wrote, recorded as synced in keeper.db, now in the ledger."
    )
    repaired = serializers.IntegerField(help_text="Missing and outdated discoveries re-queued.")
    error = serializers.CharField(allow_null=True)


class FiguresSerializer(serializers.Serializer):
    counts = StateCountsSerializer()
    oldest_pending_age_seconds = serializers.FloatField(allow_null=True)
    synced_last_hour = serializers.IntegerField()
    synced_last_day = serializers.IntegerField()
    sync_seconds = SyncSecondsSerializer(allow_null=True)
    top_errors = ErrorCountSerializer(many=True)
    verify = VerifyRunSerializer(allow_null=True)


class StatisticsSerializer(serializers.Serializer):
    status = serializers.CharField()
    statistics = FiguresSerializer()


class FailedItemSerializer(serializers.Serializer):
    queue_id = serializers.IntegerField()
    discovery_id = serializers.IntegerField()
    sync_attempts = serializers.IntegerField()
    sync_error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField(allow_null=True)
    last_sync_attempt = serializers.DateTimeField(allow_null=True)
    system_name = serializers.CharField(allow_null=True)
    location = serializers.CharField()
    discovery_type = serializers.CharField()
    username = serializers.CharField()


class FailedSerializer(serializers.Serializer):
    status = serializers.CharField()
    failed_items = FailedItemSerializer(many=True)
    count = serializers.IntegerField()


class WaitingItemSerializer(FailedItemSerializer):
    """A ``waiting`` item: the ``/sync/failed`` keys, why it waits, the nearest names VH has,
    and when it last looked (:func:`syncq.selectors.waiting_row`)."""

    reason = serializers.CharField()
    suggestions = serializers.ListField(child=serializers.CharField())
    since = serializers.DateTimeField(allow_null=True)


class WaitingSerializer(serializers.Serializer):
    status = serializers.CharField()
    waiting_items = WaitingItemSerializer(many=True)
    count = serializers.IntegerField()


class ConflictItemSerializer(FailedItemSerializer):
    """An item in ``conflict``: the ``/sync/failed`` keys and both versions of its VH row,
    ``{column: value}`` (:func:`syncq.selectors.conflict_row`); ``ours`` is null for a
    delete."""

    haven_discovery_id = serializers.IntegerField(allow_null=True)
    operation = serializers.ChoiceField(choices=Operation.values)
    ours = serializers.DictField(child=serializers.JSONField(), allow_null=True)
    theirs = serializers.DictField(child=serializers.JSONField())
    theirs_deleted = serializers.BooleanField(help_text="The Control Room deleted the row.")
    at = serializers.DateTimeField(allow_null=True)


class ConflictsSerializer(serializers.Serializer):
    status = serializers.CharField()
    conflict_items = ConflictItemSerializer(many=True)
    count = serializers.IntegerField()


class MessageSerializer(serializers.Serializer):
    """The old API's answer to a retry, also used for its errors."""

    status = serializers.ChoiceField(choices=["ok", "error"])
    message = serializers.CharField()
    queue_id = serializers.IntegerField(required=False)


class BulkRetryResultSerializer(serializers.Serializer):
    status = serializers.CharField()
    reset = serializers.IntegerField()
    reset_ids = serializers.ListField(child=serializers.IntegerField())
    refused = serializers.DictField(child=serializers.CharField())
    missing = serializers.ListField(child=serializers.IntegerField())


class ErrorDetailSerializer(serializers.Serializer):
    """DRF's error body for authentication, permission and throttling errors."""

    detail = serializers.CharField()
