"""``manage.py export_discoveries``: every discovery, with its type's fields and its queue
state, as JSON, JSON lines or CSV (:mod:`syncq.transfer`)."""

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from tqdm import tqdm

from syncq.models import SyncStatus
from syncq.transfer import (
    FORMATS,
    export_queryset,
    export_rows,
    export_write,
    output_close,
    output_open,
    since_parse,
)


class Command(BaseCommand):
    help = (
        "Write every discovery, oldest first, with every column, its type's fields (metadata), "
        "its submission time (UTC ISO 8601) and its queue state, to standard output or -o FILE. "
        "Rows are streamed: memory stays flat however many there are. A progress bar goes to "
        "standard error when it is a terminal."
    )

    def add_arguments(self, parser):
        parser.add_argument("--format", default="json", help=f"one of {', '.join(FORMATS)}")
        parser.add_argument(
            "--since",
            help="only discoveries submitted at or after this date or ISO date-time (UTC)",
        )
        parser.add_argument(
            "--status",
            help=f"only those whose queue item is in this state ({', '.join(SyncStatus.values)})",
        )
        parser.add_argument("-o", "--output", help="file to write (default: standard output)")

    def handle(self, *args, **options):
        fmt = options["format"]
        if fmt not in FORMATS:
            raise CommandError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
        since = None
        if options["since"] is not None:
            try:
                since = since_parse(options["since"])
            except ValueError as exc:
                raise CommandError(f"--since: {exc}") from exc
        status = options["status"]
        if status is not None and status not in SyncStatus.values:
            raise CommandError(f"--status {status!r}: choose one of {', '.join(SyncStatus.values)}")
        path = options["output"]
        try:
            out = output_open(path) if path else self.stdout._out
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror}") from exc
        ok = False
        try:
            rows = export_rows(since=since, status=status)
            if self.stderr.isatty():
                total = export_queryset(since=since, status=status).count()
                rows = tqdm(rows, total=total, unit=" rows", file=self.stderr._out)
            count = export_write(rows, out, fmt=fmt)
            ok = True
        except DatabaseError as exc:
            raise CommandError(f"keeper.db could not be read: {exc}") from exc
        except OSError as exc:
            raise CommandError(f"cannot write {path or 'standard output'}: {exc}") from exc
        finally:
            if path:
                output_close(out, path, ok=ok)
        if path:
            self.stderr.write(f"{count} discoveries written to {path}")
