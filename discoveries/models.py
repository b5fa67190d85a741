"""keeper.db's discoveries: the bot's own table.

The Control Room's models belong to this app too (Django registers an app's models through its
``models`` module), but live in :mod:`discoveries.haven.models`, on the ``haven`` alias.
"""

from datetime import UTC

from django.db import DEFAULT_DB_ALIAS, models
from django.db.models.functions import Cast
from django.utils import timezone

import discoveries.haven.models  # noqa: F401 - registers the Control Room's models
from discoveries.rules import FIELDS
from discoveries.timestamps import timestamp_unreadable
from discoveries.types import LocationType, discovery_type_lookup


class Discovery(models.Model):
    """A discovery as submitted to the bot, on keeper.db's legacy ``discoveries`` table.

    Every column of the old bot's table is kept under its name (REFERENCE.md, "keeper.db");
    ``location_type``, ``haven_discovery_id``, ``submission_key`` and ``imported_keeper_id``
    are ours and nullable, so that adopting an old file only adds columns. Type-specific values
    live in ``metadata`` under the keys of :mod:`discoveries.types`. ``submission_timestamp``
    is UTC.
    """

    id = models.AutoField(primary_key=True)
    # The legacy table's widths; a Discord id itself is at most 20 digits (rules.FIELDS).
    user_id = models.CharField("submitter id", max_length=32)
    username = models.CharField(max_length=FIELDS["username"].max_length)
    guild_id = models.CharField(max_length=32, null=True, blank=True)
    discovery_type = models.CharField(max_length=16, help_text="The type's emoji.")
    location = models.CharField(
        max_length=FIELDS["location"].max_length, help_text="Planet, moon or place name."
    )
    system_name = models.CharField(
        max_length=FIELDS["system_name"].max_length, null=True, blank=True
    )
    time_period = models.TextField(null=True, blank=True)
    condition = models.TextField(null=True, blank=True)
    description = models.TextField()
    significance = models.TextField(null=True, blank=True)
    evidence_url = models.TextField(null=True, blank=True)
    related_discoveries = models.TextField(null=True, blank=True)
    coordinates = models.TextField(null=True, blank=True)
    planet_name = models.CharField(
        max_length=FIELDS["planet_name"].max_length, null=True, blank=True
    )
    galaxy_name = models.CharField(
        max_length=FIELDS["galaxy_name"].max_length, null=True, blank=True
    )
    submission_timestamp = models.DateTimeField(default=timezone.now, db_index=False)
    analysis_status = models.CharField(
        max_length=FIELDS["analysis_status"].max_length, null=True, blank=True, default="pending"
    )
    pattern_matches = models.IntegerField(null=True, blank=True, default=0)
    mystery_tier = models.IntegerField(null=True, blank=True, default=0)
    tags = models.TextField(null=True, blank=True)
    metadata = models.JSONField(null=True, blank=True, default=dict)
    location_type = models.CharField(
        max_length=8,
        choices=LocationType.choices,
        null=True,
        blank=True,
        help_text="Empty on legacy rows: the sync then looks the location up as a planet, "
        "then as a moon.",
    )
    haven_discovery_id = models.IntegerField(
        "VH discovery id",
        null=True,
        blank=True,
        help_text="The Control Room row this discovery was written to or linked with.",
    )
    submission_key = models.CharField(
        max_length=64,
        null=True,
        blank=True,
        editable=False,
        help_text="Names the act of submitting (for the bot, the /discovery-report "
        "interaction), so that submitting it again stores nothing new.",
    )
    imported_keeper_id = models.IntegerField(
        "id in the keeper.db it was imported from",
        null=True,
        blank=True,
        editable=False,
        help_text="Set by import_discoveries: the id this discovery had in the keeper.db that "
        "exported it, so that its sync takes over the VH row that keeper.db wrote instead of "
        "writing a second one.",
    )

    class Meta:
        db_table = "discoveries"
        verbose_name_plural = "discoveries"
        ordering = ["-id"]
        constraints = [
            # Partial, so that SQLite adds it as an index instead of rebuilding the legacy table.
            models.UniqueConstraint(
                fields=["submission_key"],
                condition=models.Q(submission_key__isnull=False),
                name="discoveries_submission_key_unique",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.id} {self.discovery_type} {self.location} ({self.system_name or '?'})"

    @property
    def type(self):
        """The :class:`discoveries.types.DiscoveryType` of this row, or ``None`` if unknown."""
        return discovery_type_lookup(self.discovery_type)

    @property
    def type_fields(self) -> dict[str, object]:
        """The type-specific values from ``metadata`` (``{}`` when it holds no JSON object)."""
        return dict(self.metadata) if isinstance(self.metadata, dict) else {}

    def submission_timestamp_raw(self) -> str | None:
        """``submission_timestamp`` as keeper.db stores it now, as text and as is (an epoch
        integer as its digits), read from the database rather than from this instance; ``None``
        when the column is NULL, or for a row not (or no longer) stored. One query. The ORM
        reads a value it cannot parse as ``None``: this is how to see what is there."""
        return self._column_raw("submission_timestamp")

    def metadata_raw(self) -> str | None:
        """``metadata`` as keeper.db stores it now, as text and as is, or ``None`` (as
        :meth:`submission_timestamp_raw`). Django's JSONField gives the decoded value of valid
        JSON but the text itself of anything else, so a ``str`` it gives can be either; this
        text tells them apart (:func:`discoveries.haven.mapping._type_fields` ``stored``)."""
        return self._column_raw("metadata")

    def _column_raw(self, name: str) -> str | None:
        if self.pk is None:
            return None
        # A cast expression has no declared type, so no sqlite3 converter reads it first.
        return (
            type(self)
            ._default_manager.using(self._state.db or DEFAULT_DB_ALIAS)
            .filter(pk=self.pk)
            .values_list(Cast(name, output_field=models.TextField()), flat=True)
            .first()
        )


def _has_utc_date(value) -> bool:
    if value.tzinfo is None:
        return True
    try:
        value.astimezone(UTC)
    except OverflowError:
        return False
    return True


def discovery_timestamp_problem(discovery: Discovery) -> str | None:
    """Why ``discovery``'s submission time cannot be written anywhere, or ``None``.

    When the ORM read ``submission_timestamp`` as ``None`` while the column holds something
    (text no reader makes a time of, left by the old bot or another tool, and left as it was by
    migration ``0003_submission_timestamp_read``), returns e.g. ``"submission_timestamp 'last
    tuesday' cannot be read as a time (epoch seconds/ms or ISO 8601)"``; the sync holds such a
    discovery with that sentence rather than write it with no time, since the Control Room
    orders and dates discoveries by it (REFERENCE.md). The same when the ORM read a time that
    has no UTC date (``9999-12-31T23:59:59-01:00``). ``None`` when the time was read, or the
    column is NULL. Reads keeper.db only in those cases (one query).
    """
    value = discovery.submission_timestamp
    if value is not None and _has_utc_date(value):
        return None
    raw = discovery.submission_timestamp_raw()
    if raw is None:
        return None
    return timestamp_unreadable("submission_timestamp", raw)


class CatalogCopy(models.Model):
    """The last copy of VH-Database.db's map (its systems, planets and moons) uploaded by the
    Control Room agent, kept in keeper.db so that the bot's pickers and place checks work while
    the desktop is away (:mod:`discoveries.catalog` reads it when ``USE_HAVEN_AGENT`` is
    on). One row (``id`` 1). ``systems`` is ``[[id, name], …]``, ``planets``
    ``[[id, system_id, name], …]``, ``moons`` ``[[id, planet_id, name], …]``, each by id, as
    the Control Room stores them; ``content_hash`` is their SHA-256
    (:func:`discoveries.haven.catalog.catalog_content_hash`), ``version`` VH's own
    :func:`~discoveries.haven.catalog.catalog_version` of the same map, which waiting queue
    items compare; ``uploaded_at`` (UTC) is when it last changed, ``checked_at`` when the
    agent last confirmed it."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    systems = models.JSONField(default=list)
    planets = models.JSONField(default=list)
    moons = models.JSONField(default=list)
    content_hash = models.CharField(max_length=64)
    version = models.CharField(max_length=64)
    uploaded_at = models.DateTimeField()
    checked_at = models.DateTimeField()
    uploaded_by = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        db_table = "haven_catalog_copy"
        verbose_name = "catalog copy"

    def __str__(self) -> str:
        return f"VH catalog {self.content_hash[:12]} ({len(self.systems)} systems)"
