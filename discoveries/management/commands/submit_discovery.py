"""``manage.py submit_discovery --file F.json``: submit discoveries through the submit service."""

import json

from django.core.management.base import BaseCommand, CommandError

from discoveries.services import DiscoveryInvalid, discovery_submit_payload


class Command(BaseCommand):
    help = (
        "Submit the discoveries of a JSON file (a list of objects, or one object) through the "
        "bot's submit path, and print each new id. Each entry is checked on its own: a bad "
        "entry is reported and skipped, the good ones around it are stored. Exits 1 if any "
        "entry was refused."
    )

    def add_arguments(self, parser):
        parser.add_argument("--file", required=True, help="JSON file; '-' reads standard input")

    def handle(self, *args, **options):
        payloads = self._load(options["file"])
        refused = 0
        for number, payload in enumerate(payloads, start=1):
            try:
                discovery = discovery_submit_payload(payload)
            except DiscoveryInvalid as exc:
                refused += 1
                self.stderr.write(f"entry {number}: refused: {exc}")
                continue
            self.stdout.write(
                f"entry {number}: discovery {discovery.id} queued "
                f"({discovery.discovery_type} {discovery.location}, {discovery.system_name})"
            )
        self.stdout.write(f"{len(payloads) - refused} submitted, {refused} refused")
        if refused:
            raise SystemExit(1)

    def _load(self, name: str) -> list:
        try:
            if name == "-":
                import sys

                data = json.load(sys.stdin)
            else:
                # utf-8-sig: files saved by Windows editors start with a byte-order mark.
                with open(name, encoding="utf-8-sig") as handle:
                    data = json.load(handle)
        except OSError as exc:
            raise CommandError(f"cannot read {name}: {exc.strerror}") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CommandError(f"{name} is not valid JSON: {exc}") from exc
        return data if isinstance(data, list) else [data]
