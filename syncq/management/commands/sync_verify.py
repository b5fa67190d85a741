"""``manage.py sync_verify [--repair]``: check that VH-Database.db holds what keeper.db synced."""

import textwrap

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from syncq.verify import sync_verify

#: Ids printed per kind; the run keeps up to 1,000 and the counts are exact.
IDS_PRINTED = 20


class Command(BaseCommand):
    help = (
        "Check VH-Database.db against keeper.db: discoveries synced but missing from VH (a "
        "restored backup), rows the Control Room changed, rows VH holds at an older version "
        "of ours (a restored backup), and ledger rows of keeper discoveries that are gone; "
        "rows an old bot wrote that keeper.db says were synced are linked in the ledger. "
        "--repair queues the missing and outdated ones again; the sync then writes each "
        "exactly once. Exits 1 when VH cannot be read."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--repair",
            action="store_true",
            help="queue the missing and outdated discoveries again",
        )

    def handle(self, *args, repair, **options):
        try:
            run = sync_verify(repair=repair, source="command")
        except DatabaseError as exc:
            raise CommandError(f"keeper.db: {type(exc).__name__}: {exc}") from exc
        if run.error:
            raise CommandError(f"verify run {run.id}: {run.error}")
        seconds = (run.finished_at - run.started_at).total_seconds()
        summary = (
            f"verify run {run.id} ({seconds:.1f} s): checked {run.checked}, "
            f"missing {run.missing}, changed {run.changed}, outdated {run.outdated}, "
            f"orphaned {run.orphaned}"
        )
        if run.linked:
            summary += f", linked {run.linked}"
        if run.baseline_recorded:
            summary += f", baseline recorded {run.baseline_recorded}"
        self.stdout.write(summary)
        self._kind("missing from VH", run.missing, run.missing_ids)
        self._kind("changed by the Control Room", run.changed, run.changed_ids)
        self._kind("outdated (VH holds an older version of ours)", run.outdated, run.outdated_ids)
        self._kind("orphaned (keeper discovery gone)", run.orphaned, run.orphaned_ids)
        if run.linked:
            self.stdout.write(
                f"linked: {run.linked} rows the old bot wrote, which keeper.db says were "
                "synced, are recorded in the ledger (same submitter, description and time)"
            )
        if run.baseline_recorded:
            self.stdout.write(
                f"baseline: {run.baseline_recorded} ledger rows had no hash; their rows' "
                "current hashes are recorded (taken as ours, as the sync does)"
            )
        if repair:
            self.stdout.write(
                f"repair: re-queued {run.repaired} discoveries; the sync writes each once"
            )
        elif run.missing or run.outdated:
            self.stdout.write(
                "run with --repair to queue the missing and outdated discoveries again"
            )

    def _kind(self, label: str, count: int, ids: list[dict]) -> None:
        if not ids:
            return
        shown = [
            f"{e['discovery_id']}→"
            + (f"#{e['haven_discovery_id']}" if e.get("haven_discovery_id") is not None else "?")
            for e in ids[:IDS_PRINTED]
        ]
        more = f", … and {count - len(shown)} more" if count > len(shown) else ""
        text = f"{label} (keeper discovery→VH row): " + ", ".join(shown) + more
        self.stdout.write(textwrap.fill(text, width=100, subsequent_indent="    "))
