"""keeper.db's discoveries: the bot's own table.

The Control Room's models belong to this app too (Django registers an app's models through its
``models`` module), but live in :mod:`discoveries.haven.models`, on the ``haven`` alias.
"""

from django.db import models
from django.utils import timezone

import discoveries.haven.models  # noqa: F401 - registers the Control Room's models
from discoveries.rules import FIELDS
from discoveries.types import LocationType, discovery_type_lookup


class Discovery(models.Model):
    """A discovery as submitted to the bot, on keeper.db's legacy ``discoveries`` table.

    Every column of the old bot's table is kept under its name (REFERENCE.md, "keeper.db");
    ``location_type``, ``haven_discovery_id`` and ``submission_key`` are ours and nullable, so
    that adopting an old file only adds columns. Type-specific values live in ``metadata``
    under the keys of :mod:`discoveries.types`. ``submission_timestamp`` is UTC.
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
