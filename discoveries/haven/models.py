"""The Control Room's tables in VH-Database.db (Django alias ``haven``).

The schema belongs to the Control Room, another program: these models are unmanaged, name every
table and column explicitly, and never cascade. :mod:`discoveries.haven.router` keeps them on
``haven`` and out of every migration. The one table Keeper Sync adds to that file is
``keeper_sync_ledger`` (created by :mod:`discoveries.haven.ledger`), also described here for
reading.
"""

from django.db import models

from discoveries.types import ALL_TYPE_FIELD_KEYS


def _optional_text():
    return models.TextField(null=True, blank=True)


def _key(model, column: str, *, related_name: str = "+", optional: bool = False):
    """A key to ``model`` in ``column``; the Control Room's file keeps its own integrity."""
    return models.ForeignKey(
        model,
        on_delete=models.DO_NOTHING,
        db_column=column,
        related_name=related_name,
        null=optional,
        blank=optional,
    )


class CatalogEntry(models.Model):
    """A named place of the Control Room's map: a system, a planet or a moon, numbered by the
    Control Room (a system's id is text)."""

    id = models.IntegerField(primary_key=True)
    name = models.TextField()

    class Meta:
        abstract = True
        managed = False
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class System(CatalogEntry):
    """A star system: ``id`` is text like ``SYS_EUCLID_9AD20802``, ``name`` is unique."""

    id = models.TextField(primary_key=True)
    name = models.TextField(unique=True)
    x = models.FloatField()
    y = models.FloatField()
    z = models.FloatField()
    region = models.TextField()
    attributes = _optional_text()

    class Meta(CatalogEntry.Meta):
        db_table = "systems"


class Planet(CatalogEntry):
    """A planet of a system; ``(system_id, name)`` is unique."""

    system = _key(System, "system_id", related_name="planets")

    class Meta(CatalogEntry.Meta):
        db_table = "planets"


class Moon(CatalogEntry):
    """A moon of a planet."""

    planet = _key(Planet, "planet_id", related_name="moons")

    class Meta(CatalogEntry.Meta):
        db_table = "moons"


class HavenDiscovery(models.Model):
    """A discovery as the Control Room stores it: 24 common columns, then the 40 type-specific
    columns of the type table (REFERENCE.md). ``submission_timestamp`` is UTC text
    ``YYYY-MM-DD HH:MM:SS``, kept as text so that values other programs wrote read back as they
    are."""

    id = models.AutoField(primary_key=True)
    discovery_type = models.TextField()
    discovery_name = _optional_text()
    system = _key(System, "system_id", optional=True)
    planet = _key(Planet, "planet_id", optional=True)
    moon = _key(Moon, "moon_id", optional=True)
    location_type = models.TextField()
    location_name = _optional_text()
    description = models.TextField()
    coordinates = _optional_text()
    condition = _optional_text()
    time_period = _optional_text()
    significance = _optional_text()
    photo_url = _optional_text()
    evidence_urls = _optional_text()
    discovered_by = _optional_text()
    discord_user_id = _optional_text()
    discord_guild_id = _optional_text()
    submission_timestamp = _optional_text()
    pattern_matches = models.IntegerField(null=True, blank=True)
    mystery_tier = models.IntegerField(null=True, blank=True)
    analysis_status = _optional_text()
    tags = _optional_text()
    metadata = _optional_text()

    class Meta:
        managed = False
        db_table = "discoveries"
        verbose_name = "VH discovery"
        verbose_name_plural = "VH discoveries"

    def __str__(self) -> str:
        return f"VH #{self.id} {self.discovery_type} {self.location_name}"


# The 40 type-specific columns of the type table, named as their metadata keys.
for _key in ALL_TYPE_FIELD_KEYS:
    HavenDiscovery.add_to_class(_key, _optional_text())


class LedgerEntry(models.Model):
    """A row of ``keeper_sync_ledger``: which VH discovery a keeper discovery became.

    A keeper discovery is named by its id, submitter and submission second (UTC text), so a
    keeper.db whose ids were used again for other discoveries is never confused with the one
    that wrote the row. ``how`` is ``written`` (we inserted the VH row) or ``linked`` (the old
    bot had written it, or an import took it over from another keeper.db), ``updated`` (we
    changed it after an edit), ``deleted`` (we removed it) or ``moved`` (an import into another
    keeper.db took it over; this ledger row owns nothing now: see
    :func:`discoveries.haven.ledger.ledger_take_over`).
    ``location_resolved`` is 0 when the system, planet or moon was not found and the row
    was written with NULL ids. ``recorded_at`` is UTC text. ``row_hash`` is the hash of the row
    as we last left it (:func:`discoveries.haven.mapping.haven_row_hash`), NULL when unknown.
    """

    pk = models.CompositePrimaryKey(
        "keeper_discovery_id", "discord_user_id", "submission_timestamp"
    )
    keeper_discovery_id = models.IntegerField()
    discord_user_id = models.TextField()
    submission_timestamp = models.TextField()
    haven_discovery_id = models.IntegerField()
    how = models.TextField()
    location_resolved = models.IntegerField()
    recorded_at = models.TextField()
    row_hash = models.TextField(null=True)

    class Meta:
        managed = False
        db_table = "keeper_sync_ledger"

    def __str__(self) -> str:
        return f"keeper #{self.keeper_discovery_id} -> VH #{self.haven_discovery_id}"
