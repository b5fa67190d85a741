"""``manage.py syncq_status [--json]``: the queue's counts, as ``GET /sync/status`` gives them."""

import json

from django.core.management.base import BaseCommand

from syncq.selectors import queue_status


class Command(BaseCommand):
    help = "Print the sync queue's counts and worker state (--json: the /sync/status shape)."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, **options):
        status = queue_status()
        if options["json"]:
            self.stdout.write(json.dumps(status, indent=2))
            return
        queue, worker = status["queue"], status["sync_worker"]
        self.stdout.write(
            "queue: {pending} pending, {syncing} syncing, {synced} synced, "
            "{failed} failed (max retries exceeded)".format(**queue)
        )
        running = "running" if worker["is_running"] else "not running"
        self.stdout.write(
            f"worker: {running}; last attempt {worker['last_sync_time'] or 'never'}; "
            f"interval {worker['sync_interval']} s"
        )
