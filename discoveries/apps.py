from django.apps import AppConfig
from django.db.models.signals import pre_migrate

from discoveries.haven.router import haven_migrate_refuse


class DiscoveriesConfig(AppConfig):
    name = "discoveries"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        pre_migrate.connect(haven_migrate_refuse, sender=self)
