from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS
from django.db.backends.signals import connection_created
from django.db.models.signals import pre_migrate

from discoveries.haven.router import haven_migrate_refuse


def _text_lenient(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def keeper_text_lenient(sender, connection, **kwargs) -> None:
    """Read keeper.db's text as UTF-8 with U+FFFD for any byte that is not: an old bot's row
    holding other bytes would otherwise stop every query that reads it (a backfill, a claim),
    not just its own discovery. Valid text reads as before."""
    if connection.vendor == "sqlite" and connection.alias == DEFAULT_DB_ALIAS:
        connection.connection.text_factory = _text_lenient


class DiscoveriesConfig(AppConfig):
    name = "discoveries"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        pre_migrate.connect(haven_migrate_refuse, sender=self)
        connection_created.connect(keeper_text_lenient)
