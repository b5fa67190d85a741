"""URLs of the Control Room API: ``/health``, the queue viewset under ``/sync/``, at the
paths old clients call (REFERENCE.md, "Monitoring API"), and the Control Room agent's
endpoints under ``/agent/`` (:mod:`syncq.agent_api`), and ``/metrics`` for Prometheus
(:mod:`syncq.metrics`)."""

from django.urls import path
from rest_framework.routers import DynamicRoute, Route, SimpleRouter

from syncq import agent_api, api, metrics


def _items_route(url: str, action: str, *, detail: bool) -> Route:
    """The route of ``/sync/items/`` (``list``) or of one item (``retrieve``)."""
    return Route(
        url=url,
        mapping={"get": action},
        name="{basename}-item-detail" if detail else "{basename}-item-list",
        detail=detail,
        initkwargs={
            "suffix": "Instance" if detail else "List",
            "description": api.ITEMS_DESCRIPTION,
        },
    )


class QueueRouter(SimpleRouter):
    """A router whose routes are the Control Room's paths rather than DRF's defaults: the
    items under ``{prefix}/items/`` with a trailing slash (``list``, and ``retrieve`` by the
    viewset's lookup), and each ``@action(detail=False)`` at ``{prefix}/{url_path}`` with none,
    as the old clients call them. Routes use Django's path syntax, so an action's ``url_path``
    may carry a converter (``retry/<int:queue_id>``: ASCII digits only)."""

    routes = [
        _items_route("{prefix}/items/", "list", detail=False),
        _items_route("{prefix}/items/{lookup}/", "retrieve", detail=True),
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
router.register("sync", api.QueueItemViewSet, basename="sync")

urlpatterns = [
    path("health", api.HealthView.as_view(), name="health"),
    path("metrics", metrics.MetricsView.as_view(), name="metrics"),
    path("agent/heartbeat", agent_api.AgentHeartbeatView.as_view(), name="agent-heartbeat"),
    path("agent/lease", agent_api.AgentLeaseView.as_view(), name="agent-lease"),
    path("agent/ack", agent_api.AgentAckView.as_view(), name="agent-ack"),
    path("agent/fail", agent_api.AgentFailView.as_view(), name="agent-fail"),
    path("agent/catalog", agent_api.AgentCatalogView.as_view(), name="agent-catalog"),
    *router.urls,
]
