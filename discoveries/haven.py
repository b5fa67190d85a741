"""The Control Room's tables in VH-Database.db (Django alias ``haven``).

The schema belongs to the Control Room, another program: these models are unmanaged, name every
table and column explicitly, and never cascade. The router in :mod:`discoveries.routers` keeps
them on ``haven`` and out of every migration. The one table Keeper Sync adds to that file is
``keeper_sync_ledger`` (created by :mod:`syncq.haven_writer`), also described here for reading.
"""

from django.db import models


class System(models.Model):
    """A star system: ``id`` is text like ``SYS_EUCLID_9AD20802``, ``name`` is unique."""

    id = models.TextField(primary_key=True)
    name = models.TextField(unique=True)
    x = models.FloatField()
    y = models.FloatField()
    z = models.FloatField()
    region = models.TextField()
    attributes = models.TextField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "systems"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Planet(models.Model):
    """A planet of a system; ``(system_id, name)`` is unique."""

    id = models.IntegerField(primary_key=True)
    system = models.ForeignKey(
        System, on_delete=models.DO_NOTHING, db_column="system_id", related_name="planets"
    )
    name = models.TextField()

    class Meta:
        managed = False
        db_table = "planets"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Moon(models.Model):
    """A moon of a planet."""

    id = models.IntegerField(primary_key=True)
    planet = models.ForeignKey(
        Planet, on_delete=models.DO_NOTHING, db_column="planet_id", related_name="moons"
    )
    name = models.TextField()

    class Meta:
        managed = False
        db_table = "moons"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class HavenDiscovery(models.Model):
    """A discovery as the Control Room stores it: 24 common columns, then the 40 type-specific
    columns of the type table (REFERENCE.md). ``submission_timestamp`` is UTC text
    ``YYYY-MM-DD HH:MM:SS``, kept as text so that values other programs wrote read back as they
    are."""

    id = models.AutoField(primary_key=True)
    discovery_type = models.TextField()
    discovery_name = models.TextField(null=True, blank=True)
    system = models.ForeignKey(
        System,
        on_delete=models.DO_NOTHING,
        db_column="system_id",
        null=True,
        blank=True,
        related_name="+",
    )
    planet = models.ForeignKey(
        Planet,
        on_delete=models.DO_NOTHING,
        db_column="planet_id",
        null=True,
        blank=True,
        related_name="+",
    )
    moon = models.ForeignKey(
        Moon,
        on_delete=models.DO_NOTHING,
        db_column="moon_id",
        null=True,
        blank=True,
        related_name="+",
    )
    location_type = models.TextField()
    location_name = models.TextField(null=True, blank=True)
    description = models.TextField()
    coordinates = models.TextField(null=True, blank=True)
    condition = models.TextField(null=True, blank=True)
    time_period = models.TextField(null=True, blank=True)
    significance = models.TextField(null=True, blank=True)
    photo_url = models.TextField(null=True, blank=True)
    evidence_urls = models.TextField(null=True, blank=True)
    discovered_by = models.TextField(null=True, blank=True)
    discord_user_id = models.TextField(null=True, blank=True)
    discord_guild_id = models.TextField(null=True, blank=True)
    submission_timestamp = models.TextField(null=True, blank=True)
    pattern_matches = models.IntegerField(null=True, blank=True)
    mystery_tier = models.IntegerField(null=True, blank=True)
    analysis_status = models.TextField(null=True, blank=True)
    tags = models.TextField(null=True, blank=True)
    metadata = models.TextField(null=True, blank=True)
    species_type = models.TextField(null=True, blank=True)
    size_scale = models.TextField(null=True, blank=True)
    preservation_quality = models.TextField(null=True, blank=True)
    estimated_age = models.TextField(null=True, blank=True)
    key_excerpt = models.TextField(null=True, blank=True)
    language_status = models.TextField(null=True, blank=True)
    completeness = models.TextField(null=True, blank=True)
    author_origin = models.TextField(null=True, blank=True)
    structure_type = models.TextField(null=True, blank=True)
    architectural_style = models.TextField(null=True, blank=True)
    structural_integrity = models.TextField(null=True, blank=True)
    purpose_function = models.TextField(null=True, blank=True)
    tech_category = models.TextField(null=True, blank=True)
    operational_status = models.TextField(null=True, blank=True)
    power_source = models.TextField(null=True, blank=True)
    reverse_engineering = models.TextField(null=True, blank=True)
    species_name = models.TextField(null=True, blank=True)
    behavioral_notes = models.TextField(null=True, blank=True)
    habitat_biome = models.TextField(null=True, blank=True)
    threat_level = models.TextField(null=True, blank=True)
    resource_type = models.TextField(null=True, blank=True)
    deposit_richness = models.TextField(null=True, blank=True)
    extraction_method = models.TextField(null=True, blank=True)
    economic_value = models.TextField(null=True, blank=True)
    ship_class = models.TextField(null=True, blank=True)
    hull_condition = models.TextField(null=True, blank=True)
    salvageable_tech = models.TextField(null=True, blank=True)
    pilot_status = models.TextField(null=True, blank=True)
    hazard_type = models.TextField(null=True, blank=True)
    severity_level = models.TextField(null=True, blank=True)
    duration_frequency = models.TextField(null=True, blank=True)
    protection_required = models.TextField(null=True, blank=True)
    update_name = models.TextField(null=True, blank=True)
    feature_category = models.TextField(null=True, blank=True)
    gameplay_impact = models.TextField(null=True, blank=True)
    first_impressions = models.TextField(null=True, blank=True)
    story_type = models.TextField(null=True, blank=True)
    lore_connections = models.TextField(null=True, blank=True)
    creative_elements = models.TextField(null=True, blank=True)
    collaborative_work = models.TextField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "discoveries"
        verbose_name = "VH discovery"
        verbose_name_plural = "VH discoveries"

    def __str__(self) -> str:
        return f"VH #{self.id} {self.discovery_type} {self.location_name}"


class LedgerEntry(models.Model):
    """A row of ``keeper_sync_ledger``: which VH discovery a keeper discovery became.

    A keeper discovery is named by its id, submitter and submission second (UTC text), so a
    keeper.db whose ids were used again for other discoveries is never confused with the one
    that wrote the row. ``how`` is ``written`` (we inserted the VH row) or ``linked`` (the old
    bot had written it). ``location_resolved`` is 0 when the system, planet or moon was not
    found and the row was written with NULL ids. ``recorded_at`` is UTC text.
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

    class Meta:
        managed = False
        db_table = "keeper_sync_ledger"

    def __str__(self) -> str:
        return f"keeper #{self.keeper_discovery_id} -> VH #{self.haven_discovery_id}"
