"""Database routing: the Control Room's models live on ``haven``, everything else on ``default``.

Nothing is ever migrated into VH-Database.db: it belongs to the Control Room (REFERENCE.md).
:class:`HavenRouter` keeps Django's migrations off it, and :func:`haven_migrate_refuse` stops
``migrate --database haven`` before Django would create its own table there.
"""

from django.core.management.base import CommandError
from django.db import connections

HAVEN_ALIAS = "haven"
_HAVEN_MODELS = frozenset({"system", "planet", "moon", "havendiscovery", "ledgerentry"})


def _is_haven(model_or_instance) -> bool:
    meta = model_or_instance._meta
    return meta.app_label == "discoveries" and meta.model_name in _HAVEN_MODELS


class HavenRouter:
    """Reads and writes of the Control Room models go to ``haven``; keeper models never do;
    no relation crosses the two files; no migration ever runs on ``haven``."""

    def db_for_read(self, model, **hints):
        return HAVEN_ALIAS if _is_haven(model) else "default"

    db_for_write = db_for_read

    def allow_relation(self, obj1, obj2, **hints):
        # ``_meta`` rather than ``type()``: request.user is a lazy wrapper around the user.
        return _is_haven(obj1) == _is_haven(obj2)

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if db == HAVEN_ALIAS:
            return False
        if app_label == "discoveries" and model_name in _HAVEN_MODELS:
            return False
        return None


def haven_migrate_refuse(sender, using: str = "default", **kwargs) -> None:
    """``pre_migrate`` receiver: stop ``migrate --database haven`` before Django creates its
    ``django_migrations`` table in the Control Room's file. The test runner's in-memory stand-in
    (the alias's ``TEST`` name) is let through. Raises ``CommandError``."""
    if using != HAVEN_ALIAS:
        return
    settings_dict = connections[using].settings_dict
    if settings_dict["NAME"] == settings_dict.get("TEST", {}).get("NAME"):
        return
    raise CommandError(
        "migrate never runs on the 'haven' database: VH-Database.db belongs to the Control Room"
    )
