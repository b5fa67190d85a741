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
        from django_q.signals import post_spawn

        from syncq.cache_keys import cluster_stats_bind
        from syncq.processes import cluster_tree_bind
        from syncq.schedules import register_on_migrate
        from syncq.tasks import sync_kick_on_spawn

        post_migrate.connect(register_on_migrate, sender=self)
        # The cluster's status is this keeper database's, its processes die with it, and a
        # cluster that starts syncs at once rather than at its first schedule.
        cluster_stats_bind()
        cluster_tree_bind()
        post_spawn.connect(sync_kick_on_spawn, dispatch_uid="keeper-sync-kick-on-spawn")
        if settings.SYNC_API_PUBLIC_READ:
            logger.warning(
                "SYNC_API_PUBLIC_READ is on: anyone who can reach the API may read "
                "/sync/status and /sync/statistics without credentials"
            )
