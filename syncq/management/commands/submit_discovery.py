"""``manage.py submit_discovery --file F.json``: submit discoveries through the submit service,
telling the submitter when a discovery's place is not in the Control Room."""

import json
import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from discoveries.catalog import catalog_location_check
from discoveries.rules import DiscoveryInvalid
from syncq.services import discovery_submit_payload


class Command(BaseCommand):
    help = (
        "Submit the discoveries of a UTF-8 JSON file (a list of objects, or one object) through "
        "the bot's submit path, and print each new id. Each entry is checked and stored on its "
        "own: a bad entry, or one the database could not take, is reported and skipped, the "
        "others are stored. A stored entry whose system, planet or moon is not in the Control "
        "Room is noted, with the nearest names there: it is kept and waits until the place is "
        "added. Exits 1 if any entry was refused or not stored."
    )
    # call_command(..., stdin=...) stands in for standard input, as for createsuperuser.
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument("--file", required=True, help="JSON file; '-' reads standard input")

    def handle(self, *args, **options):
        payloads = self._load(options["file"], options.get("stdin") or sys.stdin)
        refused = failed = 0
        self._places: dict[tuple, str | None] | None = {}
        for number, payload in enumerate(payloads, start=1):
            try:
                discovery = discovery_submit_payload(payload)
            except DiscoveryInvalid as exc:
                refused += 1
                self.stderr.write(f"entry {number}: refused: {exc}")
                continue
            except DatabaseError as exc:
                # keeper.db locked past its busy timeout, say: this entry's transaction was
                # rolled back as a whole, and the next one may well go through.
                failed += 1
                self.stderr.write(f"entry {number}: not stored: {exc}")
                continue
            self.stdout.write(
                f"entry {number}: discovery {discovery.id} queued "
                f"({discovery.discovery_type} {discovery.location}, {discovery.system_name})"
            )
            if hint := self._place_hint(discovery):
                self.stdout.write(self.style.WARNING(f"  note: {hint}"))
        stored = len(payloads) - refused - failed
        self.stdout.write(f"{stored} submitted, {refused} refused, {failed} not stored")
        if refused or failed:
            raise SystemExit(1)

    def _place_hint(self, discovery) -> str | None:
        """What to tell the submitter about ``discovery``'s place: the hint of
        :func:`~discoveries.catalog.catalog_location_check`, or ``None`` when the place
        is in the Control Room or VH cannot be read. Each place is looked up once per run; once
        VH cannot be read, it is not tried again in this run (an entry would wait for its lock
        each time) and nothing more is said about places."""
        if self._places is None:
            return None
        place = (discovery.system_name, discovery.location, discovery.location_type)
        if place not in self._places:
            checked = catalog_location_check(
                system_name=place[0], location=place[1], location_type=place[2]
            )
            if checked is None:
                self._places = None
                return None
            self._places[place] = checked.hint
        return self._places[place]

    def _load(self, name: str, stdin) -> list:
        """The entries of file ``name`` ('-': ``stdin``), UTF-8 JSON; raises ``CommandError``
        when it cannot be read, is not UTF-8 or is not JSON Python can take."""
        source = "standard input" if name == "-" else name
        try:
            if name == "-":
                raw = stdin.buffer.read()
            else:
                with open(name, "rb") as handle:
                    raw = handle.read()
        except OSError as exc:
            raise CommandError(f"cannot read {source}: {exc.strerror}") from exc
        try:
            # utf-8-sig: files saved by Windows editors, and PowerShell pipes, start with a
            # byte-order mark.
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CommandError(
                f"{source} is not UTF-8 ({exc.reason} at byte {exc.start}); save it as UTF-8"
            ) from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{source} is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise CommandError(f"{source} cannot be read: its JSON is nested too deeply") from exc
        except ValueError as exc:
            # Python refuses to read an integer of more than 4300 digits.
            raise CommandError(
                f"{source} cannot be read: a number in it has more than "
                f"{sys.get_int_max_str_digits()} digits"
            ) from exc
        return data if isinstance(data, list) else [data]
