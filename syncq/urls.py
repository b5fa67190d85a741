"""URLs of the Control Room API: ``/health`` and the queue viewset under ``/sync/``, at the
paths old clients call (REFERENCE.md, "Monitoring API")."""

from django.urls import path
from rest_framework.routers import DynamicRoute, Route, SimpleRouter

from syncq import api


class QueueRouter(SimpleRouter):
    """A router whose routes are the Control Room's paths rather than DRF's defaults: the
    items under ``{prefix}/items/`` with a trailing slash (``list``, and ``retrieve`` by the
    viewset's lookup), and each ``@action(detail=False)`` at ``{prefix}/{url_path}`` with none,
    as the old clients call them. Routes use Django's path syntax, so an action's ``url_path``
    may carry a converter (``retry/<int:queue_id>``: ASCII digits only)."""

    routes = [
        Route(
            url="{prefix}/items/",
            mapping={"get": "list"},
            name="{basename}-item-list",
            detail=False,
            initkwargs={"suffix": "List"},
        ),
        Route(
            url="{prefix}/items/{lookup}/",
            mapping={"get": "retrieve"},
            name="{basename}-item-detail",
            detail=True,
            initkwargs={"suffix": "Instance"},
        ),
        DynamicRoute(
            url="{prefix}/{url_path}",
            name="{basename}-{url_name}",
            detail=False,
            initkwargs={},
        ),
    ]

    def __init__(self):
        super().__init__(use_regex_path=False)


router = QueueRouter()
router.register("sync", api.QueueViewSet, basename="sync")

urlpatterns = [
    path("health", api.HealthView.as_view(), name="health"),
    *router.urls,
]
