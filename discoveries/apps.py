from django.apps import AppConfig
from django.core.management.base import CommandError
from django.db import connections
from django.db.models.signals import pre_migrate

from discoveries.routers import HAVEN_ALIAS


def haven_migrate_refuse(sender, using: str = "default", **kwargs) -> None:
    """``pre_migrate`` receiver: stop ``migrate --database haven`` before Django creates its
    ``django_migrations`` table in the Control Room's file. The test runner's in-memory stand-in
    (the alias's ``TEST`` name) is let through."""
    if using != HAVEN_ALIAS:
        return
    settings_dict = connections[using].settings_dict
    if settings_dict["NAME"] == settings_dict.get("TEST", {}).get("NAME"):
        return
    raise CommandError(
        "migrate never runs on the 'haven' database: VH-Database.db belongs to the Control Room"
    )


class DiscoveriesConfig(AppConfig):
    name = "discoveries"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        pre_migrate.connect(haven_migrate_refuse, sender=self)
