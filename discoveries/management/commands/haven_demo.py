"""``manage.py haven_demo PATH``: create a demo VH-Database.db for trying Keeper Sync."""

from pathlib import Path

from django.core.management.base import BaseCommand

from discoveries.haven.files import DEMO_SYSTEMS, haven_file_create


class Command(BaseCommand):
    help = (
        "Create a demo Control Room database (the Control Room's schema and a few made-up "
        "systems, planets and moons) at PATH. An existing file is left as it is (exit 0), so "
        "running it again, or after make run made one, changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="where to create it, e.g. data/demo/VH-Database.db")

    def handle(self, *args, path, **options):
        try:
            created = haven_file_create(Path(path), with_demo_data=True)
        except FileExistsError as exc:
            self.stdout.write(self.style.WARNING(str(exc)))
            return
        names = ", ".join(system[1] for system in DEMO_SYSTEMS)
        self.stdout.write(f"created demo VH-Database.db at {created} (systems: {names})")
