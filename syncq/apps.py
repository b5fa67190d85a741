from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SyncqConfig(AppConfig):
    name = "syncq"
    verbose_name = "Sync queue"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from syncq.schedules import register_on_migrate

        post_migrate.connect(register_on_migrate, sender=self)
