"""The Control Room agent's endpoints under ``/agent/`` (README, "The Control Room agent"):
``heartbeat``, ``lease`` (a long poll), ``ack``, ``fail`` and ``catalog``. Each takes a JSON
body, answers JSON, and needs a token whose user holds ``syncq.haven_agent``
(``manage.py agent_token``), which opens nothing else. Views are thin: the work is in
:mod:`syncq.agent_services`. A stale or foreign lease is a 409 that changes nothing; bad bodies
are 400s naming the field.
"""

from __future__ import annotations

import io
import math

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from discoveries.haven.catalog import CatalogInvalid
from syncq import agent_services as services
from syncq.agent_protocol import OUTCOMES, SUGGESTION_MAX_CHARACTERS
from syncq.api import ERRORS, APIAnswers
from syncq.authentication import LockoutTokenAuthentication
from syncq.display import iso_utc
from syncq.ids import MAX_ID
from syncq.models import Operation
from syncq.serializers import ErrorDetailSerializer, JSONIdField
from syncq.services import IN_VH

AGENT_PERMISSION = "syncq.haven_agent"
#: The most columns, and characters in one column, of a VH row an outcome carries.
ROW_COLUMNS_MAX = 200
ROW_VALUE_MAX = 200_000
#: The longest of VH's names an outcome suggests (the agent cuts longer ones to this).
SUGGESTION_MAX = SUGGESTION_MAX_CHARACTERS

HEX_64 = r"^[0-9a-f]{64}$"
HEX_32 = r"^[0-9a-f]{32}$"
INSTANCE = r"^[A-Za-z0-9_-]{1,64}$"
VH_STATES = ("ok", "missing", "locked", "readonly", "disabled", "error", "")


class HavenAgentPermission(BasePermission):
    """Only an agent's token (``manage.py agent_token``): a user named ``agent:…`` that holds
    :data:`AGENT_PERMISSION` and is no superuser (401 without credentials, 403 otherwise)."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(
            user
            and user.is_authenticated
            and not user.is_superuser
            and user.get_username().startswith("agent:")
            and user.has_perm(AGENT_PERMISSION)
        )


# --- fields: JSON's own types, as the schema states them -------------------------------------


class JSONText(serializers.CharField):
    """Text that is a JSON string (DRF's CharField also takes a number, as its digits). A NUL
    character, which keeper.db's text and PostgreSQL refuse, is kept as U+FFFD: these texts
    are what the agent says (its host, an error), shown to operators, never matched."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data.replace("\x00", "\ufffd"))


class JSONPattern(serializers.RegexField):
    """A JSON string matching a pattern (see :class:`JSONText`)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class JSONObject(serializers.DictField):
    """A VH row's columns as an outcome carries them (a conflict's versions, a kept base):
    a flat JSON object of at most :data:`ROW_COLUMNS_MAX` columns, each text (at most
    :data:`ROW_VALUE_MAX` characters), a finite number, a boolean or null. Nothing nested:
    operators read these in the admin."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > ROW_COLUMNS_MAX:
            raise serializers.ValidationError(f"At most {ROW_COLUMNS_MAX} columns.")
        for column, cell in value.items():
            if len(column) > 200:
                raise serializers.ValidationError("A column's name is at most 200 characters.")
            if isinstance(cell, float) and not math.isfinite(cell):
                raise serializers.ValidationError("Numbers must be finite.")
            if isinstance(cell, str):
                if len(cell) > ROW_VALUE_MAX:
                    raise serializers.ValidationError(
                        f"A column's text is at most {ROW_VALUE_MAX} characters."
                    )
            elif cell is not None and not isinstance(cell, int | float | bool):
                raise serializers.ValidationError("Each column is text, a number or null.")
        return value


class JSONNumber(serializers.FloatField):
    """A JSON number, not ``true`` or ``false`` or a string (DRF's FloatField takes all)."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


# --- bodies ---------------------------------------------------------------------------------


class AgentHeartbeatRequest(serializers.Serializer):
    instance = JSONPattern(INSTANCE, help_text="This run of the agent.")
    agent_id = JSONPattern(r"^[A-Za-z0-9_-]{0,64}$", allow_blank=True, default="")
    version = JSONText(max_length=64, allow_blank=True, default="")
    host = JSONText(max_length=255, allow_blank=True, default="")
    vh_state = serializers.ChoiceField(choices=VH_STATES, default="")
    vh_detail = JSONText(max_length=2000, allow_blank=True, default="")
    catalog_hash = JSONPattern(
        r"^([0-9a-f]{64})?$",
        allow_blank=True,
        default="",
        help_text="The content hash of VH's catalog as the agent last read it: when it is the "
        "server's, the server's copy is marked confirmed now.",
    )
    protocol = JSONIdField(min_value=1, max_value=1000, default=1)


class AgentHeartbeatResponse(serializers.Serializer):
    catalog_hash = serializers.CharField(allow_null=True)
    poll_seconds = serializers.FloatField()
    lease_seconds = serializers.IntegerField()
    released = serializers.IntegerField()
    server_time = serializers.DateTimeField()


class AgentLeaseRequest(serializers.Serializer):
    instance = JSONPattern(INSTANCE)
    agent_id = JSONPattern(r"^[A-Za-z0-9_-]{0,64}$", allow_blank=True, default="")
    limit = JSONIdField(min_value=1, max_value=services.LEASE_MAX_ITEMS, default=100)
    wait_seconds = JSONNumber(
        min_value=0, max_value=60, default=0, help_text="How long to wait for a due item."
    )


class AgentLeaseResponse(serializers.Serializer):
    lease = serializers.CharField(allow_null=True)
    items = serializers.ListField(child=serializers.DictField())
    failed = serializers.IntegerField()


class AgentConflictSerializer(serializers.Serializer):
    haven_discovery_id = JSONIdField(min_value=1, max_value=MAX_ID)
    ours = JSONObject(allow_null=True)
    theirs = JSONObject(allow_null=True)
    theirs_hash = JSONText(max_length=64)
    base = JSONObject(allow_null=True, required=False, default=None)


class AgentOutcomeSerializer(serializers.Serializer):
    """A writer's outcome (:func:`syncq.agent_protocol.outcome_to_wire`)."""

    how = serializers.ChoiceField(choices=OUTCOMES)
    haven_discovery_id = JSONIdField(min_value=1, max_value=MAX_ID, allow_null=True)
    unresolved = JSONText(max_length=2000, allow_null=True, default=None)
    neutralised = serializers.ListField(
        child=JSONText(max_length=64, allow_blank=True), max_length=64, default=list
    )
    waiting = JSONText(max_length=2000, allow_null=True, default=None)
    catalog_version = JSONText(max_length=64, allow_null=True, default=None)
    suggestions = serializers.ListField(
        child=JSONText(max_length=SUGGESTION_MAX, allow_blank=True), max_length=10, default=list
    )
    row_hash = JSONText(max_length=64, allow_null=True, default=None)
    kept_base = JSONObject(allow_null=True, default=None)
    conflict = AgentConflictSerializer(allow_null=True, default=None)

    def validate(self, attrs):
        how = attrs["how"]
        if how in IN_VH and attrs["haven_discovery_id"] is None:
            raise serializers.ValidationError(f"a {how} outcome names its VH row")
        if how == "conflict" and attrs["conflict"] is None:
            raise serializers.ValidationError("a conflict outcome carries the conflict")
        if how == "waiting" and not attrs["waiting"]:
            raise serializers.ValidationError("a waiting outcome says why")
        return attrs


class AgentOutcomeSchema(OpenApiSerializerExtension):
    """:class:`AgentOutcomeSerializer` in the schema, with what each ``how`` needs: a VH row's
    id for those that leave the discovery in VH, the conflict for ``conflict``, the reason for
    ``waiting``."""

    target_class = AgentOutcomeSerializer

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target_class, direction, bypass_extensions=True)
        row_id = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        return {
            **schema,
            "oneOf": [
                {
                    "properties": {"how": {"enum": list(IN_VH)}, "haven_discovery_id": row_id},
                    "required": ["how", "haven_discovery_id"],
                },
                {
                    "properties": {"how": {"enum": ["conflict"]}, "conflict": {"type": "object"}},
                    "required": ["how", "conflict"],
                },
                {
                    "properties": {
                        "how": {"enum": ["waiting"]},
                        "waiting": {"type": "string", "minLength": 1},
                    },
                    "required": ["how", "waiting"],
                },
                {"properties": {"how": {"enum": ["deleted", "absent"]}}, "required": ["how"]},
            ],
        }


class _ResultBase(serializers.Serializer):
    id = JSONIdField(min_value=1, max_value=MAX_ID)
    operation = serializers.ChoiceField(choices=Operation.values)
    digest = JSONPattern(HEX_64)
    started_at = serializers.DateTimeField(allow_null=True, default=None)


class AgentAckResult(_ResultBase):
    outcome = AgentOutcomeSerializer()


class AgentFailResult(_ResultBase):
    error = JSONText(max_length=10_000)


class _ResultsRequest(serializers.Serializer):
    instance = JSONPattern(INSTANCE)
    lease = JSONPattern(HEX_32)

    def validate_results(self, results):
        ids = [r["id"] for r in results]
        if len(ids) != len(set(ids)):
            raise serializers.ValidationError("each item at most once")
        return results


class AgentAckRequest(_ResultsRequest):
    results = AgentAckResult(many=True, max_length=services.LEASE_MAX_ITEMS)


class AgentFailRequest(_ResultsRequest):
    results = AgentFailResult(many=True, max_length=services.LEASE_MAX_ITEMS)


class AgentResultsResponse(serializers.Serializer):
    recorded = serializers.IntegerField()
    states = serializers.DictField(child=serializers.CharField())
    errors = serializers.ListField(child=serializers.ListField())


class AgentLeaseConflictResponse(serializers.Serializer):
    detail = serializers.CharField()
    held = serializers.ListField(child=serializers.IntegerField())


class AgentCatalogRequest(serializers.Serializer):
    content_hash = JSONPattern(HEX_64)
    version = JSONText(max_length=64)
    full = serializers.JSONField(required=False, allow_null=True, default=None)
    diff = serializers.JSONField(required=False, allow_null=True, default=None)
    base_hash = JSONPattern(HEX_64, required=False, allow_null=True, default=None)


class AgentCatalogSchema(OpenApiSerializerExtension):
    """:class:`AgentCatalogRequest` in the schema: the whole catalog (``full``), or a ``diff``
    with the ``base_hash`` it applies to."""

    target_class = AgentCatalogRequest

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target_class, direction, bypass_extensions=True)
        return {
            **schema,
            "oneOf": [
                {"properties": {"full": {"type": "object"}}, "required": ["full"]},
                {
                    "properties": {
                        "diff": {"type": "object"},
                        "base_hash": {"type": "string", "pattern": HEX_64},
                    },
                    "required": ["diff", "base_hash"],
                },
            ],
        }


class AgentCatalogResponse(serializers.Serializer):
    content_hash = serializers.CharField()
    uploaded_at = serializers.DateTimeField()
    changed = serializers.BooleanField()
    woken = serializers.IntegerField()


# --- views ----------------------------------------------------------------------------------


AGENT_ERRORS = {
    400: OpenApiResponse(
        OpenApiTypes.OBJECT,
        description="The body is not of this shape: each field named with what is wrong; "
        "nothing was changed.",
    ),
    **ERRORS,
}


class AgentView(APIAnswers, APIView):
    """What the agent's endpoints share: token only (no session, so no CSRF), the agent
    permission, and the :class:`~syncq.models.HavenAgent` of the token's user."""

    authentication_classes = [LockoutTokenAuthentication]
    permission_classes = [HavenAgentPermission]
    request_serializer: type[serializers.Serializer]

    def body(self, request) -> dict:
        serializer = self.request_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def agent(self, request):
        return services.agent_for(request.user)


class AgentHeartbeatView(AgentView):
    """The agent is alive: what it found of VH, its version and host. Answers the catalog
    hash the server keeps, so the agent uploads only when its own differs."""

    request_serializer = AgentHeartbeatRequest

    @extend_schema(
        operation_id="agent_heartbeat",
        request=AgentHeartbeatRequest,
        responses={200: AgentHeartbeatResponse, **AGENT_ERRORS},
    )
    def post(self, request):
        data = self.body(request)
        data.pop("protocol")
        answer = services.agent_heartbeat(
            agent=self.agent(request), beat=services.Heartbeat(**data)
        )
        answer["server_time"] = iso_utc(answer["server_time"])
        return Response(answer)


class AgentLeaseView(AgentView):
    """Lease up to ``limit`` due items, waiting up to ``wait_seconds`` for one (a long poll).
    ``lease`` is ``null`` and ``items`` empty when none came due."""

    request_serializer = AgentLeaseRequest

    @extend_schema(
        operation_id="agent_lease",
        request=AgentLeaseRequest,
        responses={200: AgentLeaseResponse, **AGENT_ERRORS},
    )
    def post(self, request):
        data = self.body(request)
        lease = services.agent_lease(
            agent=self.agent(request),
            instance=data["instance"],
            limit=data["limit"],
            wait_seconds=data["wait_seconds"],
            agent_id=data["agent_id"],
        )
        return Response({"lease": lease.token, "items": lease.items, "failed": lease.failed})


class _ResultsView(AgentView):
    def post(self, request):
        data = self.body(request)
        results = [
            services.Reported(
                id=r["id"],
                operation=r["operation"],
                digest=r["digest"],
                started_at=r["started_at"],
                outcome=r.get("outcome"),
                error=r.get("error"),
            )
            for r in data["results"]
        ]
        try:
            answer = services.agent_results_record(
                agent=self.agent(request),
                instance=data["instance"],
                token=data["lease"],
                results=results,
            )
        except services.LeaseConflict as exc:
            return Response({"detail": str(exc), "held": exc.held}, status=status.HTTP_409_CONFLICT)
        except services.ReportInvalid as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        if answer["errors"]:
            raise DatabaseError("keeper.db could not record the attempts")
        return Response(answer)


LEASE_CONFLICT = OpenApiResponse(
    AgentLeaseConflictResponse,
    description="The lease is stale (taken back, or its items reset) or another agent's; "
    "nothing was recorded. ``held`` lists the ids still held under it.",
)


class AgentAckView(_ResultsView):
    """Report the outcome of each leased item written (or found, or held back) in VH."""

    request_serializer = AgentAckRequest

    @extend_schema(
        operation_id="agent_ack",
        request=AgentAckRequest,
        responses={200: AgentResultsResponse, 409: LEASE_CONFLICT, **AGENT_ERRORS},
    )
    def post(self, request):
        return super().post(request)


class AgentFailView(_ResultsView):
    """Report leased items that could not be written (VH locked, missing, read-only, a
    constraint): each follows the usual backoff."""

    request_serializer = AgentFailRequest

    @extend_schema(
        operation_id="agent_fail",
        request=AgentFailRequest,
        responses={200: AgentResultsResponse, 409: LEASE_CONFLICT, **AGENT_ERRORS},
    )
    def post(self, request):
        return super().post(request)


class AgentCatalogView(AgentView):
    """Upload VH's map: the whole catalog (``full``) or a ``diff`` against ``base_hash``, the
    catalog the server keeps (409 when it keeps another: send ``full``)."""

    request_serializer = AgentCatalogRequest
    #: A map of some 1.5 million rows: the whole catalog goes in one request.
    body_limit = 64 * 1024 * 1024

    def initial(self, request, *args, **kwargs):
        # Django's own reading of a body stops at DATA_UPLOAD_MAX_MEMORY_SIZE; this body is
        # read here, up to body_limit, before anything else reads it.
        django_request = request._request
        try:
            length = int(django_request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > self.body_limit:
            raise RequestDataTooBig("The catalog is larger than this server takes.")
        if not django_request._read_started and not hasattr(django_request, "_body"):
            django_request._body = django_request.read(length)
            django_request._stream = io.BytesIO(django_request._body)
        super().initial(request, *args, **kwargs)

    @extend_schema(
        operation_id="agent_catalog_upload",
        request=AgentCatalogRequest,
        responses={
            200: AgentCatalogResponse,
            409: OpenApiResponse(ErrorDetailSerializer, description="Send the whole catalog."),
            **AGENT_ERRORS,
        },
    )
    def put(self, request):
        data = self.body(request)
        try:
            answer = services.agent_catalog_upload(agent=self.agent(request), **data)
        except CatalogInvalid as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        except services.CatalogBaseStale as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        answer["uploaded_at"] = iso_utc(answer["uploaded_at"])
        return Response(answer)
