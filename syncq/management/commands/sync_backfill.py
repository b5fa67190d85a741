"""``manage.py sync_backfill``: queue the discoveries of an adopted keeper.db."""

from django.core.management.base import BaseCommand

from syncq.services import queue_backfill


class Command(BaseCommand):
    help = (
        "Give every discovery without a queue item one. Discoveries the old bot already wrote "
        "into VH-Database.db are linked to their row and marked synced, not written again; the "
        "rest are queued for the next sync. Prints how many it linked and queued."
    )

    def handle(self, *args, **options):
        report = queue_backfill()
        if report.haven_error:
            self.stderr.write(
                f"VH-Database.db could not be searched ({report.haven_error}); the discoveries "
                "were queued, and the sync links old rows before writing anything."
            )
        self.stdout.write(f"linked {report.linked}, queued {report.queued}")
