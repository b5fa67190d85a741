import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

from discoveries.adoption import adopt_table


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("discoveries", "0001_initial"),
    ]

    operations = [
        # Some old keeper.db files already have sync_queue: adopt it (discoveries.adoption).
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="SyncQueueItem",
                    fields=[
                        (
                            "id",
                            models.AutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "sync_status",
                            models.CharField(
                                choices=[
                                    ("pending", "Pending"),
                                    ("syncing", "Syncing"),
                                    ("synced", "Synced"),
                                    ("max_retries_exceeded", "Max retries exceeded"),
                                ],
                                default="pending",
                                max_length=32,
                            ),
                        ),
                        ("sync_attempts", models.IntegerField(default=0)),
                        ("max_attempts", models.IntegerField(default=10)),
                        (
                            "last_sync_attempt",
                            models.DateTimeField(blank=True, null=True),
                        ),
                        (
                            "next_retry_after",
                            models.DateTimeField(blank=True, null=True),
                        ),
                        ("sync_error", models.TextField(blank=True, null=True)),
                        (
                            "haven_discovery_id",
                            models.IntegerField(
                                blank=True, null=True, verbose_name="VH discovery id"
                            ),
                        ),
                        (
                            "created_at",
                            models.DateTimeField(default=django.utils.timezone.now),
                        ),
                        ("synced_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "metadata",
                            models.JSONField(blank=True, default=dict, null=True),
                        ),
                        ("leased_until", models.DateTimeField(blank=True, null=True)),
                        (
                            "lease_token",
                            models.CharField(blank=True, max_length=32, null=True),
                        ),
                        (
                            "discovery",
                            models.OneToOneField(
                                db_column="discovery_id",
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="queue_item",
                                to="discoveries.discovery",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "queue item",
                        "db_table": "sync_queue",
                        "ordering": ["id"],
                        "indexes": [
                            models.Index(
                                fields=["sync_status", "next_retry_after"],
                                name="idx_sync_queue_due",
                            )
                        ],
                    },
                ),
            ],
        ),
        migrations.RunPython(
            adopt_table("syncq", "SyncQueueItem", normalize_datetimes=True), migrations.RunPython.noop
        ),
    ]
