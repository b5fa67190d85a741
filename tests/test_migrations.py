"""Models and migrations agree, and migrating never touches VH-Database.db."""

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_models_and_migrations_agree():
    """makemigrations --check finds nothing to write."""
    call_command("makemigrations", check=True, dry_run=True, verbosity=0)


def test_router_keeps_every_migration_off_haven():
    """No app's model may be migrated on the haven alias, and the Control Room models nowhere."""
    from django.apps import apps
    from django.db import router

    for model in apps.get_models(include_auto_created=True):
        assert router.allow_migrate_model("haven", model) is False
    for name in ("System", "Planet", "Moon", "HavenDiscovery", "LedgerEntry"):
        model = apps.get_model("discoveries", name)
        assert router.allow_migrate_model("default", model) is False
        assert router.db_for_write(model) == "haven"
    assert router.db_for_write(apps.get_model("discoveries", "Discovery")) == "default"


def test_router_accepts_a_lazy_user_in_relations():
    """A relation to request.user (a lazy wrapper) is allowed: it is a keeper model."""
    from django.contrib.auth import get_user_model
    from django.db import router
    from django.utils.functional import SimpleLazyObject

    from syncq.models import OperatorAction

    lazy_user = SimpleLazyObject(lambda: get_user_model()(username="someone"))
    assert router.allow_relation(OperatorAction(), lazy_user) is True
