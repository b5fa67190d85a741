"""``manage.py import_discoveries FILE``: store the discoveries of an export (or of a
submission file) through the submit service, once (:mod:`syncq.transfer`)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from tqdm import tqdm

from syncq.transfer import TransferFileError, import_apply


class Command(BaseCommand):
    help = (
        "Import the discoveries of FILE (.json array, .ndjson, .csv; else told by its content), "
        "as written by export_discoveries. Every row is checked by the submit rules first; a "
        "file with a refused row writes nothing unless --skip-invalid, which stores the good "
        "rows. Rows already stored (same submission key, or the same submitter, time and "
        "description) are not stored again. Exits 1 if any row was refused."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="the file to import")
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="store the good rows of a file that has refused ones",
        )

    def handle(self, *args, **options):
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        bar = tqdm(unit=" rows", file=self.stderr._out) if self.stderr.isatty() else None
        try:
            result = import_apply(
                path, skip_invalid=options["skip_invalid"], progress=bar and bar.update
            )
        except TransferFileError as exc:
            raise CommandError(str(exc)) from exc
        except DatabaseError as exc:
            raise CommandError(
                f"keeper.db refused a batch (earlier ones are stored): {exc}"
            ) from exc
        finally:
            if bar is not None:
                bar.close()
        for line, reason in result.refused:
            self.stderr.write(f"line {line}: refused: {reason}")
        if result.refused and not result.written:
            self.stderr.write(
                f"nothing imported: {len(result.refused)} of {result.checked} rows refused "
                "(fix them, or pass --skip-invalid to import the others)"
            )
        self.stdout.write(
            f"{result.added} added, {result.present} already present, {len(result.refused)} refused"
        )
        if result.refused:
            raise SystemExit(1)
