import logging

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate

logger = logging.getLogger(__name__)


class SyncqConfig(AppConfig):
    name = "syncq"
    verbose_name = "Sync queue"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from syncq.schedules import register_on_migrate

        post_migrate.connect(register_on_migrate, sender=self)
        if settings.SYNC_API_PUBLIC_READ:
            logger.warning(
                "SYNC_API_PUBLIC_READ is on: anyone who can reach the API may read "
                "/sync/status and /sync/statistics without credentials"
            )
