"""``manage.py sync_now [--until-idle]``: run sync batches in the foreground."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from syncq.services import sync_batch, sync_until_idle


class Command(BaseCommand):
    help = (
        "Run one sync batch now (or, with --until-idle, batches until none is due) and print "
        "what each did. For cron and tests; the django-q2 cluster does the same on schedule."
    )

    def add_arguments(self, parser):
        parser.add_argument("--until-idle", action="store_true", help="repeat until idle")
        parser.add_argument("--batch-size", type=int, default=None, help="items per batch")

    def handle(self, *args, until_idle, batch_size, **options):
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if not settings.USE_HAVEN_DATABASE:
            self.stdout.write("USE_HAVEN_DATABASE is false: nothing is synced, items stay queued")
            return
        try:
            if until_idle:
                report = sync_until_idle(
                    batch_size=batch_size,
                    on_batch=lambda n, r: self.stdout.write(f"batch {n}: {r}"),
                )
            else:
                report = sync_batch(batch_size=batch_size)
        except DatabaseError as exc:
            # keeper.db itself failed (locked past its busy timeout, say); items already
            # claimed are taken back by the next batch once this process has ended.
            raise CommandError(f"keeper.db: {type(exc).__name__}: {exc}") from exc
        for queue_id, error in report.errors:
            self.stdout.write(f"  queue item {queue_id}: {error}")
        self.stdout.write(f"total: {report}")
