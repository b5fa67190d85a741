import django.utils.timezone
from django.db import migrations, models

from discoveries.adoption import adopt_table


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="HavenDiscovery",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
                ("discovery_type", models.TextField()),
                ("discovery_name", models.TextField(blank=True, null=True)),
                ("location_type", models.TextField()),
                ("location_name", models.TextField(blank=True, null=True)),
                ("description", models.TextField()),
                ("coordinates", models.TextField(blank=True, null=True)),
                ("condition", models.TextField(blank=True, null=True)),
                ("time_period", models.TextField(blank=True, null=True)),
                ("significance", models.TextField(blank=True, null=True)),
                ("photo_url", models.TextField(blank=True, null=True)),
                ("evidence_urls", models.TextField(blank=True, null=True)),
                ("discovered_by", models.TextField(blank=True, null=True)),
                ("discord_user_id", models.TextField(blank=True, null=True)),
                ("discord_guild_id", models.TextField(blank=True, null=True)),
                ("submission_timestamp", models.TextField(blank=True, null=True)),
                ("pattern_matches", models.IntegerField(blank=True, null=True)),
                ("mystery_tier", models.IntegerField(blank=True, null=True)),
                ("analysis_status", models.TextField(blank=True, null=True)),
                ("tags", models.TextField(blank=True, null=True)),
                ("metadata", models.TextField(blank=True, null=True)),
                ("species_type", models.TextField(blank=True, null=True)),
                ("size_scale", models.TextField(blank=True, null=True)),
                ("preservation_quality", models.TextField(blank=True, null=True)),
                ("estimated_age", models.TextField(blank=True, null=True)),
                ("key_excerpt", models.TextField(blank=True, null=True)),
                ("language_status", models.TextField(blank=True, null=True)),
                ("completeness", models.TextField(blank=True, null=True)),
                ("author_origin", models.TextField(blank=True, null=True)),
                ("structure_type", models.TextField(blank=True, null=True)),
                ("architectural_style", models.TextField(blank=True, null=True)),
                ("structural_integrity", models.TextField(blank=True, null=True)),
                ("purpose_function", models.TextField(blank=True, null=True)),
                ("tech_category", models.TextField(blank=True, null=True)),
                ("operational_status", models.TextField(blank=True, null=True)),
                ("power_source", models.TextField(blank=True, null=True)),
                ("reverse_engineering", models.TextField(blank=True, null=True)),
                ("species_name", models.TextField(blank=True, null=True)),
                ("behavioral_notes", models.TextField(blank=True, null=True)),
                ("habitat_biome", models.TextField(blank=True, null=True)),
                ("threat_level", models.TextField(blank=True, null=True)),
                ("resource_type", models.TextField(blank=True, null=True)),
                ("deposit_richness", models.TextField(blank=True, null=True)),
                ("extraction_method", models.TextField(blank=True, null=True)),
                ("economic_value", models.TextField(blank=True, null=True)),
                ("ship_class", models.TextField(blank=True, null=True)),
                ("hull_condition", models.TextField(blank=True, null=True)),
                ("salvageable_tech", models.TextField(blank=True, null=True)),
                ("pilot_status", models.TextField(blank=True, null=True)),
                ("hazard_type", models.TextField(blank=True, null=True)),
                ("severity_level", models.TextField(blank=True, null=True)),
                ("duration_frequency", models.TextField(blank=True, null=True)),
                ("protection_required", models.TextField(blank=True, null=True)),
                ("update_name", models.TextField(blank=True, null=True)),
                ("feature_category", models.TextField(blank=True, null=True)),
                ("gameplay_impact", models.TextField(blank=True, null=True)),
                ("first_impressions", models.TextField(blank=True, null=True)),
                ("story_type", models.TextField(blank=True, null=True)),
                ("lore_connections", models.TextField(blank=True, null=True)),
                ("creative_elements", models.TextField(blank=True, null=True)),
                ("collaborative_work", models.TextField(blank=True, null=True)),
            ],
            options={
                "verbose_name": "VH discovery",
                "verbose_name_plural": "VH discoveries",
                "db_table": "discoveries",
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="LedgerEntry",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "keeper_discovery_id",
                        "discord_user_id",
                        "submission_timestamp",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("keeper_discovery_id", models.IntegerField()),
                ("discord_user_id", models.TextField()),
                ("submission_timestamp", models.TextField()),
                ("haven_discovery_id", models.IntegerField()),
                ("how", models.TextField()),
                ("location_resolved", models.IntegerField()),
                ("recorded_at", models.TextField()),
            ],
            options={
                "db_table": "keeper_sync_ledger",
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="Moon",
            fields=[
                ("id", models.IntegerField(primary_key=True, serialize=False)),
                ("name", models.TextField()),
            ],
            options={
                "db_table": "moons",
                "ordering": ["name"],
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="Planet",
            fields=[
                ("id", models.IntegerField(primary_key=True, serialize=False)),
                ("name", models.TextField()),
            ],
            options={
                "db_table": "planets",
                "ordering": ["name"],
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="System",
            fields=[
                ("id", models.TextField(primary_key=True, serialize=False)),
                ("name", models.TextField(unique=True)),
                ("x", models.FloatField()),
                ("y", models.FloatField()),
                ("z", models.FloatField()),
                ("region", models.TextField()),
                ("attributes", models.TextField(blank=True, null=True)),
            ],
            options={
                "db_table": "systems",
                "ordering": ["name"],
                "managed": False,
            },
        ),
        # The old bot's keeper.db already has this table: create it only when missing,
        # otherwise add our columns to it (discoveries.adoption).
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Discovery",
                    fields=[
                        ("id", models.AutoField(primary_key=True, serialize=False)),
                        (
                            "user_id",
                            models.CharField(
                                max_length=32, verbose_name="submitter id"
                            ),
                        ),
                        ("username", models.CharField(max_length=100)),
                        (
                            "guild_id",
                            models.CharField(blank=True, max_length=32, null=True),
                        ),
                        (
                            "discovery_type",
                            models.CharField(
                                help_text="The type's emoji.", max_length=16
                            ),
                        ),
                        (
                            "location",
                            models.CharField(
                                help_text="Planet, moon or place name.", max_length=200
                            ),
                        ),
                        (
                            "system_name",
                            models.CharField(blank=True, max_length=200, null=True),
                        ),
                        ("time_period", models.TextField(blank=True, null=True)),
                        ("condition", models.TextField(blank=True, null=True)),
                        ("description", models.TextField()),
                        ("significance", models.TextField(blank=True, null=True)),
                        ("evidence_url", models.TextField(blank=True, null=True)),
                        (
                            "related_discoveries",
                            models.TextField(blank=True, null=True),
                        ),
                        ("coordinates", models.TextField(blank=True, null=True)),
                        (
                            "planet_name",
                            models.CharField(blank=True, max_length=200, null=True),
                        ),
                        (
                            "galaxy_name",
                            models.CharField(blank=True, max_length=100, null=True),
                        ),
                        (
                            "submission_timestamp",
                            models.DateTimeField(default=django.utils.timezone.now),
                        ),
                        (
                            "analysis_status",
                            models.CharField(
                                blank=True, default="pending", max_length=32, null=True
                            ),
                        ),
                        (
                            "pattern_matches",
                            models.IntegerField(blank=True, default=0, null=True),
                        ),
                        (
                            "mystery_tier",
                            models.IntegerField(blank=True, default=0, null=True),
                        ),
                        ("tags", models.TextField(blank=True, null=True)),
                        (
                            "metadata",
                            models.JSONField(blank=True, default=dict, null=True),
                        ),
                        (
                            "location_type",
                            models.CharField(
                                blank=True,
                                choices=[
                                    ("planet", "Planet"),
                                    ("moon", "Moon"),
                                    ("space", "In space"),
                                ],
                                help_text="Empty on legacy rows: the sync then looks the location up as a planet, then as a moon.",
                                max_length=8,
                                null=True,
                            ),
                        ),
                        (
                            "haven_discovery_id",
                            models.IntegerField(
                                blank=True,
                                help_text="The Control Room row this discovery was written to or linked with.",
                                null=True,
                                verbose_name="VH discovery id",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name_plural": "discoveries",
                        "db_table": "discoveries",
                        "ordering": ["-id"],
                    },
                ),
            ],
        ),
        migrations.RunPython(
            adopt_table("discoveries", "Discovery"), migrations.RunPython.noop
        ),
    ]
