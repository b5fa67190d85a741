"""``manage.py syncq_status [--json]``: the queue's counts, as ``GET /sync/status`` gives them,
and why the first waiting item waits."""

import json

from django.core.management.base import BaseCommand

from syncq.selectors import queue_status, waiting_first


class Command(BaseCommand):
    help = (
        "Print the sync queue's counts, the worker's state and why the first waiting item "
        "waits (--json: the /sync/status shape)."
    )

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
            "{failed} failed (max retries exceeded), {waiting} waiting for their place in VH, "
            "{conflict} in conflict with the Control Room".format(**queue)
        )
        running = "running" if worker["is_running"] else "not running"
        self.stdout.write(
            f"worker: {running}; last attempt {worker['last_sync_time'] or 'never'}; "
            f"interval {worker['sync_interval']} s"
        )
        first = waiting_first() if queue["waiting"] else None
        if first is not None:
            line = (
                f"first waiting: queue item {first['queue_id']} (discovery "
                f"{first['discovery_id']}): {first['reason']}"
            )
            if first["suggestions"]:
                line += "; nearest in the Control Room: " + ", ".join(
                    repr(name) for name in first["suggestions"]
                )
            self.stdout.write(line)
        if queue["conflict"]:
            self.stdout.write(
                "conflicts: choose a version on each item in the admin (Queue items, state "
                "Conflict) or list them with GET /sync/conflicts"
            )
