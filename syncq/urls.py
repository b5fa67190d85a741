"""URLs of the Control Room API; the old paths have no trailing slash, as clients call them."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from syncq import api

router = SimpleRouter()
router.register("sync/items", api.QueueItemViewSet, basename="sync-item")

urlpatterns = [
    path("health", api.HealthView.as_view(), name="health"),
    path("sync/status", api.StatusView.as_view(), name="sync-status"),
    path("sync/statistics", api.StatisticsView.as_view(), name="sync-statistics"),
    path("sync/failed", api.FailedView.as_view(), name="sync-failed"),
    path("sync/retry/<int:queue_id>", api.RetryOneView.as_view(), name="sync-retry-one"),
    path("sync/retry", api.RetryManyView.as_view(), name="sync-retry"),
    *router.urls,
]
