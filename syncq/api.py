"""The Control Room API: ``/health`` and, in one viewset, ``/sync/*`` (REFERENCE.md,
"Monitoring API"; routed by :mod:`syncq.urls`).

Views are thin: reads come from :mod:`syncq.selectors`, retries go through
:mod:`syncq.services`, whose errors become 404 and 409 here. Old clients' keys are kept.

Hostile or broken requests get a 4xx in JSON, never a 500: bodies go through
:class:`syncq.parsers.JSONBodyParser`; ids, limits and dates in paths and queries are ASCII only
(:mod:`syncq.ids`, :mod:`syncq.serializers`); and Django's own error answers on the API's paths
(a forged ``Host``, a body past ``DATA_UPLOAD_MAX_MEMORY_SIZE``, an unknown path, a crash) are
JSON too (:func:`bad_request`, :func:`permission_denied`, :func:`not_found`,
:func:`server_error`). Every answer of ``/health`` and ``/sync/*`` says ``Cache-Control:
no-store``: they carry the queue's data to whoever holds a token.
"""

from __future__ import annotations

import logging
from base64 import b64decode
from urllib import parse

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.views.defaults import bad_request as django_bad_request
from django.views.defaults import page_not_found
from django.views.defaults import permission_denied as django_permission_denied
from django.views.defaults import server_error as django_server_error
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import (
    NotAcceptable,
    NotFound,
    UnsupportedMediaType,
    ValidationError,
)
from rest_framework.metadata import SimpleMetadata
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from discoveries.haven.connection import haven_probe
from syncq import serializers as s
from syncq.display import iso_utc
from syncq.errors import QueueItemNotFound, QueueItemNotRetryable
from syncq.ids import DIGITS_PATTERN, MAX_ID, digits_read
from syncq.parsers import JSONBodyParser
from syncq.permissions import VIEW_PERMISSION
from syncq.selectors import (
    agent_report,
    bot_online,
    conflict_items,
    failed_items,
    queue_items,
    queue_statistics,
    queue_status,
    waiting_items,
    worker_clusters,
)
from syncq.services import queue_item_retry, queue_items_retry

logger = logging.getLogger(__name__)

ERRORS = {
    401: OpenApiResponse(s.ErrorDetailSerializer, description="No or bad credentials."),
    403: OpenApiResponse(s.ErrorDetailSerializer, description="Lacks the permission."),
    429: OpenApiResponse(
        s.ErrorDetailSerializer,
        description="Too many refused tokens from this address (API_AUTH_FAILURE_LIMIT); "
        "wait as Retry-After says.",
    ),
}
RETRY_ERRORS = {
    **ERRORS,
    429: OpenApiResponse(
        s.ErrorDetailSerializer,
        description="Too many retries, or too many refused tokens from this address; wait as "
        "Retry-After says.",
    ),
}


class APISchema(AutoSchema):
    """drf-spectacular's schema of a view, stating that a body, where an operation takes one,
    is required: drf-spectacular infers that from required keys, and the bulk retry's body has
    none, only "exactly one of the two" (:class:`~syncq.serializers.BulkRetrySchema`)."""

    def _get_request_body(self, direction="request"):
        body = super()._get_request_body(direction)
        if body is not None:
            body["required"] = True
        return body


class APIAnswers:
    """What every view of the API shares: :class:`~syncq.parsers.JSONBodyParser` for bodies,
    a body past ``DATA_UPLOAD_MAX_MEMORY_SIZE`` refused (413, by :func:`bad_request`) whether
    or not the operation reads it, ``Cache-Control: no-store`` on every answer, errors included
    (no proxy or browser cache keeps the queue's data), and :class:`APISchema`. A view may set
    ``body_limit`` (bytes) above that setting for bodies of its own (the agent's catalog)."""

    parser_classes = [JSONBodyParser]
    schema = APISchema()

    def initial(self, request, *args, **kwargs):
        # Django checks the size only when something reads the body; operations that take
        # none would otherwise answer as if it were not there.
        limit = getattr(self, "body_limit", None) or settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")
        super().initial(request, *args, **kwargs)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        patch_cache_control(response, no_store=True)
        return response


class HealthView(APIAnswers, APIView):
    """Whether the service can work: keeper.db, VH-Database.db, the worker and the bot, and
    with ``USE_HAVEN_AGENT`` the Control Room agent (``haven_database`` then reads ``agent``:
    this server never opens VH-Database.db, and ``agent`` says whether the agent is online and
    how old the catalog it uploaded is, without ``vh_detail``, which may name paths on the
    desktop)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        auth=[],
        responses={
            200: s.HealthSerializer,
            503: OpenApiResponse(s.HealthSerializer, description="keeper.db is unreachable."),
        },
    )
    def get(self, request):
        try:
            connection.ensure_connection()
            with connection.cursor() as cursor:
                # The queue table, not just the file: a wrong or unmigrated keeper.db is down.
                cursor.execute("SELECT 1 FROM sync_queue LIMIT 1")
            database = "ok"
        except DatabaseError:
            database = "unreachable"
        running = bool(worker_clusters())
        agent = None
        if database == "ok":
            try:
                agent = agent_report(vh_detail=False)
            except DatabaseError as exc:
                logger.warning("/health cannot read the Control Room agents: %s", exc)
        body = {
            "status": "healthy" if database == "ok" else "unhealthy",
            "bot_online": bot_online(),
            "sync_worker_running": running,
            "timestamp": iso_utc(timezone.now()),
            "database": database,
            "haven_database": "agent" if settings.USE_HAVEN_AGENT else haven_probe(),
            "worker": "running" if running else "stopped",
            "agent": agent,
        }
        code = status.HTTP_200_OK if database == "ok" else status.HTTP_503_SERVICE_UNAVAILABLE
        return Response(body, status=code)


class ItemPagination(CursorPagination):
    """Newest first by id, 50 a page. ``?page_size=`` is ASCII digits, 1 to 2**63-1, served
    as at most 200; anything else, empty included, is a 400 naming it (DRF's own pagination
    would quietly ignore it, or read other scripts' digits). A cursor whose numbers are not
    ASCII digits, or whose position is not an id, is invalid (404), like any other cursor
    that does not decode."""

    ordering = "-id"
    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"

    def get_page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        value = digits_read(raw)
        if value is None or not 1 <= value <= MAX_ID:
            raise ValidationError(
                {self.page_size_query_param: [f"Must be ASCII digits 0-9, 1 to {MAX_ID}."]}
            )
        return min(value, self.max_page_size)

    def decode_cursor(self, request):
        cursor = super().decode_cursor(request)
        if cursor is not None and not _cursor_numbers_are_digits(
            request.query_params[self.cursor_query_param]
        ):
            raise NotFound(self.invalid_cursor_message)
        return cursor

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = (
                    f"Items per page (default {self.page_size}); above {self.max_page_size}, "
                    f"{self.max_page_size} are served. ASCII digits only."
                )
                parameter["schema"] = {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_ID,
                    "pattern": DIGITS_PATTERN,
                }
        return parameters


def _cursor_numbers_are_digits(encoded: str) -> bool:
    """Whether a cursor (which DRF has decoded already) writes its offset, direction and
    position in ASCII digits, the position naming at most :data:`~syncq.ids.MAX_ID`: DRF reads
    them with ``int()``, which takes other scripts' digits too."""
    querystring = b64decode(encoded.encode("ascii")).decode("ascii")
    tokens = parse.parse_qs(querystring, keep_blank_values=True)
    offset = tokens.get("o", ["0"])[0]
    reverse = tokens.get("r", ["0"])[0]
    position = tokens.get("p", [None])[0]
    position_ok = position is None or (
        (value := digits_read(position)) is not None and value <= MAX_ID
    )
    return digits_read(offset) is not None and reverse in ("0", "1") and position_ok


class RetryThrottle(ScopedRateThrottle):
    """DRF's scoped throttle (scope ``sync_retry``), reading its rate when a request comes
    rather than once at import, so a changed ``SYNC_API_RETRY_RATE`` takes effect."""

    scope_attr = "throttle_scope"

    @property
    def THROTTLE_RATES(self):  # noqa: N802 - DRF's attribute name
        return api_settings.DEFAULT_THROTTLE_RATES

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # the cache backend's own errors vary by backend
            # Without a working cache there is no count to throttle by: let the retry
            # through (it is authenticated and permission-checked) and say so.
            logger.warning("retry throttle skipped: the cache failed: %s", exc)
            return True


UNSUPPORTED = OpenApiResponse(
    s.ErrorDetailSerializer, description="The body is not JSON (Content-Type application/json)."
)
TOO_LARGE = OpenApiResponse(
    s.ErrorDetailSerializer,
    description="The body is larger than the server takes (DATA_UPLOAD_MAX_MEMORY_SIZE).",
)


def _id_parameter(name: str, description: str) -> OpenApiParameter:
    """A queue item id in a path, as the schema states it: ASCII digits naming 1 to 2**63-1
    (anything else in that place names no item: 404)."""
    return OpenApiParameter(
        name,
        {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        OpenApiParameter.PATH,
        description=description,
        pattern=DIGITS_PATTERN,
    )


class RetryMetadata(SimpleMetadata):
    """``OPTIONS`` of a retry: its name, description and formats, without the queue item's
    fields, which a retry does not take."""

    def determine_actions(self, request, view) -> dict:
        return {}


def _retry_action(*, url_path: str, url_name: str, name: str):
    """``@action`` for a retry: ``POST`` only, a JSON body only (else 415), throttled in scope
    ``sync_retry`` (``SYNC_API_RETRY_RATE``, README "The Control Room API"); ``name`` is what
    ``OPTIONS`` and the browsable API call it."""
    return action(
        detail=False,
        methods=["post"],
        url_path=url_path,
        url_name=url_name,
        name=name,
        throttle_classes=[RetryThrottle],
        throttle_scope="sync_retry",
        metadata_class=RetryMetadata,
    )


def _limit(request) -> int:
    """The request's ``?limit=`` (:class:`~syncq.serializers.FailedQuerySerializer`), capped
    at its maximum; a bad one answers 400 naming ``limit``."""
    query = s.FailedQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    return min(query.validated_data["limit"], s.FAILED_LIMIT_MAX)


def _body_refuse_unless_json(request) -> None:
    """Refuse (415, as the schema says) a request that carries a body which is not JSON, for
    an operation that reads none: DRF would only refuse it when something reads
    ``request.data`` (as session authentication's CSRF check does), so a token's request was
    let through. A body is there when ``Content-Length`` is above 0 or ``Transfer-Encoding``
    is set; its JSON, if it is JSON, is not read."""
    meta = request.META
    try:
        length = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length <= 0 and not meta.get("HTTP_TRANSFER_ENCODING"):
        return
    if request.negotiator.select_parser(request, request.parsers) is None:
        raise UnsupportedMediaType(request.content_type)


def _retry_error(message: str, status_code: int) -> Response:
    # The old clients' error body, which the retries have always answered.
    return Response({"status": "error", "message": message}, status=status_code)


#: What ``/sync/items/`` and ``/sync/items/{id}/`` say in the schema (kept word for word).
ITEMS_DESCRIPTION = """The queue, newest first, filterable by ``status``, ``discovery_id`` and a
``since``/``until`` window (ISO 8601) on ``created_at``."""


def _listing_schema(serializer) -> dict:
    """The OpenAPI description of a newest-first listing of items, ``?limit=`` (1 or more) and
    the answer ``serializer``: ``/sync/failed``, ``/sync/waiting``, ``/sync/conflicts``."""
    return {
        "parameters": [s.FailedQuerySerializer],
        "responses": {
            200: serializer,
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="`limit` is not 1 or more."),
            **ERRORS,
        },
    }


@extend_schema_view(
    list=extend_schema(
        description=ITEMS_DESCRIPTION,
        parameters=[s.ItemFilterSerializer],
        responses={
            200: s.QueueItemSerializer(many=True),
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="A filter does not parse."),
            404: OpenApiResponse(s.ErrorDetailSerializer, description="The cursor is invalid."),
            **ERRORS,
        },
    ),
    retrieve=extend_schema(
        description=ITEMS_DESCRIPTION,
        # The int converter names no model field, so the schema would lose the id's
        # description; it is the one drf-spectacular gave the untyped path before.
        parameters=[_id_parameter("id", "A unique integer value identifying this queue item.")],
        responses={
            200: s.QueueItemSerializer,
            404: OpenApiResponse(s.ErrorDetailSerializer, description="No such queue item."),
            **ERRORS,
        },
    ),
)
class QueueItemViewSet(APIAnswers, viewsets.ReadOnlyModelViewSet):
    """The sync queue under ``/sync/`` (REFERENCE.md, "Monitoring API"; routed by
    :class:`syncq.urls.QueueRouter`, which keeps the old paths):

    - ``list`` and ``retrieve``: ``GET /sync/items/`` (cursor pages of
      :class:`~syncq.serializers.QueueItemSerializer`, filters of
      :class:`~syncq.serializers.ItemFilterSerializer`) and ``GET /sync/items/{id}/``;
    - ``status``, ``statistics``, ``failed``, ``waiting``, ``conflicts``: ``GET
      /sync/status``, ``/sync/statistics``, ``/sync/failed?limit=``, ``/sync/waiting?limit=``
      and ``/sync/conflicts?limit=``, read from :mod:`syncq.selectors`;
    - ``retry_one``, ``retry_many``: ``POST /sync/retry/{queue_id}`` and ``POST /sync/retry``
      through :mod:`syncq.services`, whose :class:`~syncq.errors.QueueItemNotFound` and
      :class:`~syncq.errors.QueueItemNotRetryable` answer 404 and 409 in the old clients'
      ``{"status": "error", "message": ...}``.

    Reads need ``syncq.view_syncqueueitem`` and retries ``syncq.change_syncqueueitem``
    (:class:`syncq.permissions.SyncQueuePermission`); the actions marked ``public_read``
    answer anonymous GETs when ``SYNC_API_PUBLIC_READ`` is on. Ids in paths are ASCII digits;
    one past 2**63-1 names no item (404)."""

    serializer_class = s.QueueItemSerializer
    pagination_class = ItemPagination
    #: ASCII digits only, as on the retry path: int() would read other scripts' digits too
    #: ("١٢" as 12); an id past MAX_ID finds no row (Django's lookups): both answer 404.
    lookup_value_converter = "int"
    #: Set per action by ``@action(public_read=True)``; read by SyncQueuePermission.
    public_read = False
    #: Set by :func:`_retry_action`; read by :class:`RetryThrottle`.
    throttle_scope: str | None = None

    def get_queryset(self):
        if self.action != "list":
            return queue_items()
        query = s.ItemFilterSerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return queue_items(**query.validated_data)

    @extend_schema(responses={200: s.StatusSerializer, **ERRORS})
    @action(detail=False, methods=["get"], public_read=True)
    def status(self, request):
        """Queue counts and the worker's state, as old Control Room clients read them, and
        ``agent``: the Control Room agents and their catalog with ``USE_HAVEN_AGENT``, else
        null (:func:`~syncq.selectors.agent_report`)."""
        agent = agent_report(vh_detail=True)
        if agent is not None and not request.user.has_perm(VIEW_PERMISSION):
            # Readers let in by SYNC_API_PUBLIC_READ alone: the detail may name paths.
            for row in agent["agents"]:
                row["vh_detail"] = None
        return Response({**queue_status(), "agent": agent})

    @extend_schema(responses={200: s.StatisticsSerializer, **ERRORS})
    @action(detail=False, methods=["get"], public_read=True)
    def statistics(self, request):
        """Figures of the queue: counts, age of the oldest pending item, throughput, sync time
        and the most common errors."""
        figures = queue_statistics()
        if not request.user.has_perm(VIEW_PERMISSION):
            # Readers let in by SYNC_API_PUBLIC_READ alone get counts only: error texts can
            # quote what users typed.
            figures["top_errors"] = []
        return Response({"status": "ok", "statistics": figures})

    @extend_schema(**_listing_schema(s.FailedSerializer))
    @action(detail=False, methods=["get"])
    def failed(self, request):
        """Items that used up their attempts (``max_retries_exceeded``), newest first."""
        items = failed_items(limit=_limit(request))
        return Response({"status": "ok", "failed_items": items, "count": len(items)})

    @extend_schema(**_listing_schema(s.WaitingSerializer))
    @action(detail=False, methods=["get"])
    def waiting(self, request):
        """Items waiting for their system, planet or moon to appear in the Control Room
        (``waiting``), newest first, each with the reason, the nearest names VH has and when
        it last looked. They are taken again by themselves when VH's map changes."""
        items = waiting_items(limit=_limit(request))
        return Response({"status": "ok", "waiting_items": items, "count": len(items)})

    @extend_schema(**_listing_schema(s.ConflictsSerializer))
    @action(detail=False, methods=["get"])
    def conflicts(self, request):
        """Edits and deletes held because the Control Room changed the VH row since we wrote
        it (``conflict``), newest first, with both versions of the row; an operator chooses
        one in the admin."""
        items = conflict_items(limit=_limit(request))
        return Response({"status": "ok", "conflict_items": items, "count": len(items)})

    @extend_schema(
        operation_id="sync_retry_one",
        request=None,
        parameters=[_id_parameter("queue_id", "The queue item to retry.")],
        responses={
            200: s.MessageSerializer,
            404: OpenApiResponse(s.MessageSerializer, description="No such queue item."),
            409: OpenApiResponse(
                s.MessageSerializer,
                description="Synced, syncing, or in conflict (which needs a choice).",
            ),
            415: UNSUPPORTED,
            **RETRY_ERRORS,
        },
    )
    @_retry_action(url_path="retry/<int:queue_id>", url_name="retry-one", name="Retry One")
    def retry_one(self, request, queue_id: int):
        """Reset one ``max_retries_exceeded``, ``pending`` or ``waiting`` item: attempts 0, error
        cleared, due now, and the worker asked to run."""
        _body_refuse_unless_json(request)
        if queue_id > MAX_ID:
            return _retry_error(f"no queue item {queue_id}", 404)
        try:
            queue_item_retry(item_id=queue_id, actor=request.user, source="api")
        except QueueItemNotFound as exc:
            return _retry_error(str(exc), 404)
        except QueueItemNotRetryable as exc:
            return _retry_error(str(exc), 409)
        return Response(
            {
                "status": "ok",
                "message": f"queue item {queue_id} reset: due now",
                "queue_id": queue_id,
            }
        )

    @extend_schema(
        operation_id="sync_retry_many",
        request=s.BulkRetrySerializer,
        responses={
            200: s.BulkRetryResultSerializer,
            400: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="The body is not JSON, nests too deeply, holds a lone surrogate, "
                "or gives neither or both of the keys.",
            ),
            413: TOO_LARGE,
            415: UNSUPPORTED,
            **RETRY_ERRORS,
        },
    )
    @_retry_action(url_path="retry", url_name="retry", name="Retry Many")
    def retry_many(self, request):
        """Reset many items, by ``ids`` or by ``status``, with the same rule per item."""
        body = s.BulkRetrySerializer(data=request.data)
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["the body must be a JSON object"]})
        body.is_valid(raise_exception=True)
        report = queue_items_retry(
            ids=body.validated_data.get("ids"),
            status=body.validated_data.get("status"),
            actor=request.user,
            source="api",
        )
        return Response(
            {
                "status": "ok",
                "reset": len(report.reset),
                "reset_ids": report.reset,
                "refused": {str(k): v for k, v in report.refused.items()},
                "missing": report.missing,
            }
        )


class AnyAcceptNegotiation(DefaultContentNegotiation):
    """Content negotiation serving the view's first renderer when ``Accept`` names none of the
    view's formats (HTTP lets a server ignore ``Accept``), rather than a 406. An unknown
    ``?format=`` is still a 404."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type


class PageNegotiation(DefaultContentNegotiation):
    """Content negotiation of a view with one format (the docs page, HTML): that format,
    whatever ``Accept`` or ``?format=`` says."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class DocAnswers:
    """What the schema and the docs share: errors (405 for another method, 404 for an unknown
    ``?format=``, 400) in JSON like the rest of the API, never in YAML or HTML, and kept by no
    cache."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response) and response.status_code >= 400:
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = JSONRenderer.media_type
            response.content_type = None
            patch_cache_control(response, no_store=True)
        return response


#: The schema's download name, whatever the request says (drf-spectacular would put the title
#: and the request's ``?version=`` in it); the format's suffix is added.
SCHEMA_FILENAME = "keeper-sync-api"


class SchemaView(DocAnswers, SpectacularAPIView):
    """The OpenAPI schema at ``/api/schema/``, YAML or JSON by ``Accept`` (YAML when it names
    neither) or ``?format=yaml|json``. The API has one version: ``?version=`` other than it is
    a 400 (drf-spectacular copied it into the ``Content-Disposition`` filename and the
    schema's ``info.version``, where a crafted value renamed the download or, with a NUL, CR
    or LF, made an invalid header, a 500); the filename is fixed."""

    content_negotiation_class = AnyAcceptNegotiation

    @extend_schema(exclude=True)  # as SERVE_INCLUDE_SCHEMA = False asks of drf-spectacular's
    def get(self, request, *args, **kwargs):
        version = request.query_params.get("version")
        if version is not None and version != spectacular_settings.VERSION:
            return Response(
                {
                    "status": "error",
                    "message": "unknown version",
                    "detail": f"This API has one version, {spectacular_settings.VERSION}; "
                    "leave out ?version= or give that one.",
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        return super().get(request, *args, **kwargs)

    def _get_version_parameter(self, request):
        return None

    def _get_filename(self, request, version):
        renderer, _ = self.perform_content_negotiation(request, force=True)
        return f"{SCHEMA_FILENAME}.{renderer.format}"


class DocsView(DocAnswers, SpectacularSwaggerSplitView):
    """Swagger UI at ``/api/docs/``, its start script served apart (``?script``, so the content
    security policy needs no inline script). The page is HTML whatever ``Accept`` says (a
    client asking for JSON got a 406 page); errors are JSON (:class:`DocAnswers`). The
    schema's URL carries no ``?version=`` (:class:`SchemaView`). ``OPTIONS`` answers 200 with
    ``Allow`` and no body: DRF's metadata answer cannot be drawn by the page's renderer
    (``TemplateHTMLRenderer``, which then raised a 500)."""

    content_negotiation_class = PageNegotiation

    def options(self, request, *args, **kwargs):
        return HttpResponse(headers={"Allow": ", ".join(self.allowed_methods)})

    def _get_schema_url(self, request):
        url = super()._get_schema_url(request)
        scheme, netloc, path, params, query, fragment = parse.urlparse(url)
        kept = [(k, v) for k, v in parse.parse_qsl(query, keep_blank_values=True) if k != "version"]
        return parse.urlunparse((scheme, netloc, path, params, parse.urlencode(kept), fragment))


#: Where the API lives: ``/health``, ``/sync``, ``/agent``, ``/api`` (schema and docs) and
#: ``/metrics`` (:mod:`syncq.metrics`), and below them.
API_PREFIXES = ("/health", "/sync", "/agent", "/api", "/metrics")


def _is_api_path(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in API_PREFIXES)


def _json_error(status_code: int, message: str, detail: str) -> JsonResponse:
    # Both error shapes of the API: the old clients' and DRF's. No cache keeps an error either.
    response = JsonResponse(
        {"status": "error", "message": message, "detail": detail},
        status=status_code,
        json_dumps_params={"separators": (",", ":")},
    )
    patch_cache_control(response, no_store=True)
    return response


def bad_request(request, exception=None):
    """Django's 400 handler, for what Django refuses before or around a view (a ``Host`` not in
    ``ALLOWED_HOSTS``, a body past ``DATA_UPLOAD_MAX_MEMORY_SIZE``, too many fields): JSON on
    the API's paths (a body too large: 413), Django's own page elsewhere. Django has logged
    the cause (logger ``django.security``); the answer names none of the request's values."""
    if not _is_api_path(request.path_info):
        return django_bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return _json_error(
            413, "request body too large", "The request body is larger than this server takes."
        )
    return _json_error(400, "bad request", "The request is malformed or not for this server.")


def permission_denied(request, exception=None):
    """Django's 403 handler: JSON on the API's paths, Django's own page elsewhere."""
    if _is_api_path(request.path_info):
        return _json_error(403, "permission denied", "Permission denied.")
    return django_permission_denied(request, exception)


def not_found(request, exception=None):
    """Django's 404 handler: JSON on the API's paths, Django's own page elsewhere. (DRF's
    browsable API still answers HTML to a browser that asks for it.)"""
    if _is_api_path(request.path_info):
        return _json_error(404, "not found", "Not found.")
    return page_not_found(request, exception)


def server_error(request):
    """Django's 500 handler: JSON on the API's paths, Django's own page elsewhere."""
    if _is_api_path(request.path_info):
        return _json_error(500, "internal error", "A server error occurred.")
    return django_server_error(request)


def exception_handler(exc, context):
    """DRF's exception handler, plus: keeper.db failing (locked past its busy timeout,
    unreachable, not migrated) answers 503 in JSON instead of a 500 page."""
    response = drf_exception_handler(exc, context)
    if response is None and isinstance(exc, DatabaseError):
        logger.warning("API request failed on keeper.db: %s", exc)
        return Response(
            {"status": "error", "message": "keeper.db is unavailable; try again shortly"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    return response


__all__ = [
    "bad_request",
    "exception_handler",
    "not_found",
    "permission_denied",
    "server_error",
    "DocsView",
    "HealthView",
    "QueueItemViewSet",
    "SchemaView",
]
