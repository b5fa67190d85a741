"""Shapes of the Control Room API (REFERENCE.md, "Monitoring API"), for validation and for the
OpenAPI schema."""

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from drf_spectacular.extensions import (
    OpenApiSerializerExtension,
    OpenApiSerializerFieldExtension,
)
from rest_framework import serializers
from rest_framework.utils import html

from syncq.ids import DIGITS_PATTERN, MAX_DIGITS, MAX_ID, digits_read
from syncq.models import Operation, SyncQueueItem, SyncStatus
from syncq.services import RETRYABLE

FAILED_LIMIT_DEFAULT = 20
FAILED_LIMIT_MAX = 200

#: The date-times the query parameters take (ECMA-262 regex, as the schema states it): ISO 8601
#: in ASCII digits, a date alone (midnight) or with ``T`` or a space and ``hh:mm``, optional
#: seconds and fraction, then ``Z``, an offset ``±hh:mm``, or nothing (UTC). RFC 3339's
#: date-times are among them.
DATE_TIME_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?$"
)
_DATE_TIME = re.compile(DATE_TIME_PATTERN)


# --- query parameters ----------------------------------------------------------------------


class _EmptyRefused:
    """A query parameter given empty (``?limit=``) is an error naming it, not an absent one
    (DRF's own fields take an empty optional parameter for a missing one)."""

    def get_value(self, dictionary):
        if html.is_html_input(dictionary) and dictionary.get(self.field_name) == "":
            return ""
        return super().get_value(dictionary)


class DigitsField(_EmptyRefused, serializers.IntegerField):
    """An integer query parameter written in ASCII digits only (``^[0-9]+$``,
    :func:`syncq.ids.digits_read`): no sign, space, fraction or other script's digits, which
    ``int()`` would read. The schema states the pattern beside the bounds."""

    default_error_messages = {
        "invalid": "Must be ASCII digits 0-9 only: no sign, space, fraction or other digits.",
        "blank": "Must not be empty: give ASCII digits 0-9, or leave the parameter out.",
    }

    def to_internal_value(self, data):
        if data == "":
            self.fail("blank")
        if isinstance(data, str) and len(data) > MAX_DIGITS:
            self.fail("max_string_length")
        value = digits_read(data)
        if value is None:
            self.fail("invalid")
        return value


class QueryChoiceField(_EmptyRefused, serializers.ChoiceField):
    """A choice query parameter; given empty, it is refused like any other unknown value."""


class QueryDateTimeField(_EmptyRefused, serializers.DateTimeField):
    """A date-time query parameter matching :data:`DATE_TIME_PATTERN` (ISO 8601, ASCII digits
    only: Django's parser would read other scripts' digits), a real date and time, read as UTC
    without an offset. One so far in the past or future that UTC cannot hold it (year 1 at
    +01:00) stands for the earliest or latest time there is."""

    default_error_messages = {
        "invalid": "Must be an ISO 8601 date-time in ASCII digits: YYYY-MM-DD, optionally "
        "followed by T or a space and hh:mm[:ss[.fraction]], then Z, an offset +hh:mm or "
        "-hh:mm, or nothing for UTC.",
        "blank": "Must not be empty: give a date-time, or leave the parameter out.",
    }

    def __init__(self, **kwargs):
        super().__init__(default_timezone=UTC, **kwargs)

    def to_internal_value(self, value):
        if value == "":
            self.fail("blank")
        if not isinstance(value, str) or not _DATE_TIME.fullmatch(value):
            self.fail("invalid")
        return super().to_internal_value(value)

    def enforce_timezone(self, value: datetime) -> datetime:
        try:
            return super().enforce_timezone(value)
        except serializers.ValidationError:
            # Only an aware time can fail here: converting it to UTC left datetime's range.
            earliest = value.year == datetime.min.year
            return (datetime.min if earliest else datetime.max).replace(tzinfo=UTC)


class FailedQuerySerializer(serializers.Serializer):
    """``?limit=`` of ``/sync/failed``, ``/sync/waiting`` and ``/sync/conflicts``: ASCII
    digits, 1 to 2**63-1 (default 20); values above 200 are served as 200."""

    limit = DigitsField(
        required=False,
        default=FAILED_LIMIT_DEFAULT,
        min_value=1,
        max_value=MAX_ID,
        help_text=f"How many items, newest first: 1 or more (default {FAILED_LIMIT_DEFAULT}); "
        f"above {FAILED_LIMIT_MAX}, {FAILED_LIMIT_MAX} are served. ASCII digits only.",
    )


class ItemFilterSerializer(serializers.Serializer):
    """Filters of ``/sync/items/``: state, discovery, and a window on ``created_at``; none
    may be given empty."""

    status = QueryChoiceField(choices=SyncStatus.values, required=False)
    discovery_id = DigitsField(
        required=False, min_value=1, max_value=MAX_ID, help_text="ASCII digits only."
    )
    since = QueryDateTimeField(
        required=False,
        help_text="Items created at or after this time (ISO 8601, see the pattern; UTC "
        "without an offset).",
    )
    until = QueryDateTimeField(
        required=False,
        help_text="Items created at or before this time (ISO 8601, see the pattern; UTC "
        "without an offset).",
    )


class DigitsFieldSchema(OpenApiSerializerFieldExtension):
    """:class:`DigitsField` in the schema: an integer with its bounds, written ``^[0-9]+$``."""

    target_class = DigitsField

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return {**schema, "pattern": DIGITS_PATTERN}


class QueryDateTimeFieldSchema(OpenApiSerializerFieldExtension):
    """:class:`QueryDateTimeField` in the schema: a date-time of :data:`DATE_TIME_PATTERN`."""

    target_class = QueryDateTimeField

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return {**schema, "pattern": DATE_TIME_PATTERN}


# --- bodies ----------------------------------------------------------------------------------


class JSONIdField(serializers.IntegerField):
    """A queue item id in a JSON body: a JSON integer, not a string or a float that reads as
    one (DRF's IntegerField takes ``"12"`` and ``12.0``), as the schema's ``integer`` says."""

    def to_internal_value(self, data):
        if type(data) is not int:
            self.fail("invalid")
        return data


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
        child=JSONIdField(min_value=1, max_value=MAX_ID),
        required=False,
        min_length=1,
        max_length=10_000,
    )
    status = serializers.ChoiceField(choices=list(RETRYABLE), required=False)

    def validate(self, attrs):
        if ("ids" in attrs) == ("status" in attrs):
            raise serializers.ValidationError("give either 'ids' or 'status'")
        return attrs


class BulkRetrySchema(OpenApiSerializerExtension):
    """:class:`BulkRetrySerializer` in the schema: its two keys, exactly one of them given."""

    target_class = BulkRetrySerializer

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target_class, direction, bypass_extensions=True)
        return {**schema, "oneOf": [{"required": ["ids"]}, {"required": ["status"]}]}


# --- response shapes, for the schema --------------------------------------------------------


class AgentPresenceSerializer(serializers.Serializer):
    """A Control Room agent as ``/health`` shows it (:func:`syncq.selectors.agents_presence`,
    without ``vh_detail``)."""

    name = serializers.CharField(help_text="The name its token was made for (agent_token).")
    online = serializers.BooleanField(help_text="Seen within HAVEN_AGENT_ONLINE_SECONDS.")
    last_seen_at = serializers.DateTimeField(allow_null=True)
    seconds_since_seen = serializers.FloatField(allow_null=True)
    version = serializers.CharField(
        allow_blank=True, help_text="Keeper Sync's version on the desktop."
    )
    vh_state = serializers.CharField(
        allow_blank=True,
        help_text="What the agent last found of VH-Database.db: ok, missing, locked, "
        "readonly, disabled or error; empty before its first heartbeat.",
    )
    started_at = serializers.DateTimeField(
        allow_null=True, help_text="When the agent's current run began."
    )
    catalog_age_seconds = serializers.FloatField(
        allow_null=True,
        help_text="The kept catalog's age_seconds when this agent uploaded it, else null.",
    )


class AgentPresenceDetailSerializer(AgentPresenceSerializer):
    """A Control Room agent as ``/sync/status`` shows it, with its desktop and why VH is in
    its state."""

    agent_id = serializers.CharField(allow_blank=True, help_text="Its state file's id.")
    host = serializers.CharField(allow_blank=True, help_text="The desktop's name.")

    vh_detail = serializers.CharField(
        allow_null=True,
        allow_blank=True,
        help_text="Why VH-Database.db is in that state, as the agent wrote it; null for "
        "readers let in by SYNC_API_PUBLIC_READ alone.",
    )


class CatalogCopyStateSerializer(serializers.Serializer):
    """The VH catalog the agent last uploaded (:func:`syncq.selectors.catalog_copy_state`)."""

    content_hash = serializers.CharField()
    systems = serializers.IntegerField()
    planets = serializers.IntegerField()
    moons = serializers.IntegerField()
    uploaded_at = serializers.DateTimeField(help_text="When it last changed.")
    checked_at = serializers.DateTimeField(help_text="When the agent last confirmed it.")
    age_seconds = serializers.FloatField(help_text="Seconds since checked_at.")
    changed_seconds = serializers.FloatField(help_text="Seconds since uploaded_at.")
    uploaded_by = serializers.CharField(allow_blank=True, help_text="The agent that uploaded it.")


class HealthAgentSerializer(serializers.Serializer):
    """``/health``'s ``agent`` (:func:`syncq.selectors.agent_report`)."""

    online = serializers.BooleanField(help_text="Whether any agent is online.")
    agents = AgentPresenceSerializer(many=True)
    catalog = CatalogCopyStateSerializer(allow_null=True)


class StatusAgentSerializer(HealthAgentSerializer):
    """``/sync/status``'s ``agent``: ``/health``'s, each agent with its ``vh_detail``."""

    agents = AgentPresenceDetailSerializer(many=True)


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["healthy", "unhealthy"])
    bot_online = serializers.BooleanField()
    sync_worker_running = serializers.BooleanField()
    timestamp = serializers.DateTimeField()
    database = serializers.ChoiceField(choices=["ok", "unreachable"])
    haven_database = serializers.ChoiceField(
        choices=["ok", "missing", "locked", "disabled", "agent"],
        help_text="agent: USE_HAVEN_AGENT is on, and the Control Room agent writes "
        "VH-Database.db on its desktop (see agent).",
    )
    worker = serializers.ChoiceField(choices=["running", "stopped"])
    agent = HealthAgentSerializer(
        allow_null=True,
        help_text="The Control Room agents and their catalog; null unless USE_HAVEN_AGENT is "
        "on (or when keeper.db cannot be read).",
    )


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
    agent = StatusAgentSerializer(
        allow_null=True, help_text="The Control Room agents; null unless USE_HAVEN_AGENT is on."
    )


class SyncSecondsSerializer(serializers.Serializer):
    mean = serializers.FloatField()
    p95 = serializers.FloatField()
    sample = serializers.IntegerField()


class LatencySerializer(serializers.Serializer):
    median = serializers.FloatField(help_text="Median queued→synced seconds.")
    p95 = serializers.FloatField(help_text="95th percentile (nearest rank), seconds.")
    sample = serializers.IntegerField(help_text="Items measured (at most the newest 10,000).")


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
    sync_seconds_last_hour = LatencySerializer(allow_null=True)
    sync_seconds_last_day = LatencySerializer(allow_null=True)
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
