"""What travels between the server and the Control Room agent (``manage.py haven_agent``): a
leased queue item with its discovery, and the outcome of writing it into the desktop's VH.

Both sides use these functions, so an item written by the agent goes through the same writer,
ledger and rules (:func:`syncq.services.haven_write_some`) as one written by the server's own
worker, and its outcome is recorded by the same recorders (:func:`syncq.services.outcomes_record`).
Everything here is plain JSON: objects, lists, text, numbers, ``null``. Times are ISO 8601 in
UTC.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from django.core.serializers.json import DjangoJSONEncoder
from django.utils.dateparse import parse_datetime

from discoveries.haven.mapping import ResolvedLocation
from discoveries.haven.writer import Conflict, WriteOutcome
from discoveries.models import Discovery, discovery_timestamp_problem
from discoveries.services import discovery_values
from syncq.models import Operation, SyncQueueItem

#: The version of this protocol; the agent sends it with each heartbeat.
PROTOCOL_VERSION = 1

#: Keys of a queue item's ``metadata`` that its writer reads (:func:`syncq.services.haven_apply`):
#: the operator's choices for this round and where the item came from.
ITEM_METADATA_KEYS = ("force_hash", "accept_hash", "kept_base", "write_unplaced", "origin")

#: Outcomes (:class:`~discoveries.haven.writer.WriteOutcome` ``how``) an agent may report.
OUTCOMES = (
    "written",
    "linked",
    "ledger",
    "updated",
    "kept",
    "waiting",
    "conflict",
    "deleted",
    "absent",
)


def _discovery_fields() -> list[str]:
    return [f.attname for f in Discovery._meta.concrete_fields]


#: Columns a server of an earlier version does not send; missing, they are ``None``.
OPTIONAL_DISCOVERY_FIELDS = ("imported_keeper_id",)


def values_digest(values: dict[str, object]) -> str:
    """A SHA-256 hex digest of a discovery's editable values
    (:func:`discoveries.services.discovery_values`): the server gives it with each leased item
    and the agent returns it, so the server tells whether the discovery was edited while the
    agent held it without keeping what it sent."""
    text = json.dumps(values, sort_keys=True, cls=DjangoJSONEncoder, ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def discovery_to_wire(discovery: Discovery) -> dict[str, object]:
    """``discovery`` as a JSON object: every column by its attribute name (times as ISO 8601
    UTC), plus ``metadata_stored``, keeper.db's own text of ``metadata`` when Django read it as
    text (the writer tells a JSON string from text that is not JSON by it). Reads keeper.db
    only for that text."""
    data = {}
    for name in _discovery_fields():
        value = getattr(discovery, name)
        if isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat()
        data[name] = value
    if isinstance(discovery.metadata, str):
        data["metadata_stored"] = getattr(discovery, "metadata_stored", None) or (
            discovery.metadata_raw()
        )
    return data


class WireInvalid(ValueError):
    """Something received that is not of this protocol's shape."""


def discovery_from_wire(data: object) -> Discovery:
    """The unsaved :class:`Discovery` that ``data`` (:func:`discovery_to_wire`) describes, for
    the writer only: it is never saved, and its stored-text reads
    (``submission_timestamp_raw``, ``metadata_raw``) answer from ``data`` instead of keeper.db,
    which the agent does not have. ``imported_keeper_id`` (the id the discovery had in the
    keeper.db it was imported from, by which the writer takes over that keeper.db's VH row)
    travels with the rest; :data:`OPTIONAL_DISCOVERY_FIELDS` may be missing. Raises
    :class:`WireInvalid`."""
    if not isinstance(data, dict):
        raise WireInvalid("a discovery is a JSON object")
    fields = {}
    for name in _discovery_fields():
        if name not in data and name not in OPTIONAL_DISCOVERY_FIELDS:
            raise WireInvalid(f"discovery: {name} is missing")
        fields[name] = data.get(name)
    if fields["submission_timestamp"] is not None:
        when = parse_datetime(str(fields["submission_timestamp"]))
        if when is None or when.tzinfo is None:
            raise WireInvalid("discovery: submission_timestamp is not an aware ISO 8601 time")
        fields["submission_timestamp"] = when
    if not isinstance(fields["id"], int):
        raise WireInvalid("discovery: id must be an integer")
    imported = fields["imported_keeper_id"]
    if imported is not None and (not isinstance(imported, int) or isinstance(imported, bool)):
        raise WireInvalid("discovery: imported_keeper_id must be an integer or null")
    discovery = Discovery(**fields)
    stored = {"metadata": data.get("metadata_stored"), "submission_timestamp": None}
    # The server sends only discoveries whose time can be written (see item_to_wire).
    discovery._column_raw = stored.get
    if isinstance(discovery.metadata, str):
        discovery.metadata_stored = data.get("metadata_stored")
    return discovery


def item_problem(item: SyncQueueItem) -> str | None:
    """Why ``item`` (claimed, its discovery loaded by the claim) cannot be written by any
    worker, read on the server where keeper.db is: its discovery is gone or unreadable, or its
    time cannot be written. ``None`` when it can be sent to the agent."""
    unreadable = getattr(item, "discovery_unreadable", None)
    if unreadable:
        return f"discovery {item.discovery_id} cannot be read from keeper.db: {unreadable}"
    try:
        discovery = item.discovery
    except Discovery.DoesNotExist:
        return f"discovery {item.discovery_id} is not in keeper.db"
    return discovery_timestamp_problem(discovery)


def item_to_wire(item: SyncQueueItem, *, write_unplaced: bool) -> dict[str, object]:
    """A claimed ``item`` (its discovery loaded, :func:`item_problem` None) as the agent gets
    it: ``id``, ``discovery_id``, ``operation``, ``attempt`` (this attempt's number),
    ``haven_discovery_id``, ``metadata`` (only :data:`ITEM_METADATA_KEYS`; ``write_unplaced``
    set when the server's ``SYNC_WRITE_UNPLACED`` is), ``digest`` (:func:`values_digest` of the
    discovery as sent) and ``discovery`` (:func:`discovery_to_wire`)."""
    metadata = item.metadata if isinstance(item.metadata, dict) else {}
    sent = {key: metadata[key] for key in ITEM_METADATA_KEYS if key in metadata}
    if write_unplaced:
        sent["write_unplaced"] = True
    return {
        "id": item.id,
        "discovery_id": item.discovery_id,
        "operation": item.operation,
        "attempt": item.sync_attempts,
        "haven_discovery_id": item.haven_discovery_id,
        "metadata": sent,
        "digest": values_digest(discovery_values(item.discovery)),
        "discovery": discovery_to_wire(item.discovery),
    }


def item_from_wire(data: object) -> SyncQueueItem:
    """The unsaved :class:`SyncQueueItem` (with its ``discovery``, and ``digest`` kept on it)
    that ``data`` (:func:`item_to_wire`) describes, for the agent's writer. Raises
    :class:`WireInvalid`."""
    if not isinstance(data, dict):
        raise WireInvalid("a leased item is a JSON object")
    try:
        item_id, attempt = int(data["id"]), int(data["attempt"])
        operation = data["operation"]
        metadata = data["metadata"]
        digest = data["digest"]
        haven_id = data["haven_discovery_id"]
    except (KeyError, TypeError, ValueError) as exc:
        raise WireInvalid(f"a leased item lacks or garbles {exc}") from None
    if operation not in Operation.values or not isinstance(metadata, dict):
        raise WireInvalid(f"item {item_id}: unknown operation or metadata")
    if haven_id is not None and not isinstance(haven_id, int):
        raise WireInvalid(f"item {item_id}: haven_discovery_id must be an integer or null")
    discovery = discovery_from_wire(data.get("discovery"))
    item = SyncQueueItem(
        id=item_id,
        discovery_id=discovery.id,
        operation=operation,
        sync_attempts=attempt,
        haven_discovery_id=haven_id,
        metadata=metadata,
    )
    item.discovery = discovery
    item.digest = str(digest)
    return item


#: The longest suggested name an outcome carries, in characters (VH's names have no limit).
SUGGESTION_MAX_CHARACTERS = 500


def outcome_to_wire(outcome: WriteOutcome) -> dict[str, object]:
    """A writer's ``outcome`` as JSON: ``how``, ``haven_discovery_id``, ``unresolved`` (what of
    the place was not found), ``neutralised``, ``waiting``, ``catalog_version``,
    ``suggestions``, ``row_hash``, ``kept_base`` and ``conflict`` (``null`` or its
    ``haven_discovery_id``, ``ours``, ``theirs``, ``theirs_hash``, ``base``)."""
    conflict = outcome.conflict
    return {
        "how": outcome.how,
        "haven_discovery_id": outcome.haven_discovery_id,
        "unresolved": outcome.location.unresolved if outcome.location else None,
        "neutralised": list(outcome.neutralised),
        "waiting": outcome.waiting,
        "catalog_version": outcome.catalog_version,
        "suggestions": [name[:SUGGESTION_MAX_CHARACTERS] for name in outcome.suggestions],
        "row_hash": outcome.row_hash,
        "kept_base": outcome.kept_base,
        "conflict": None
        if conflict is None
        else {
            "haven_discovery_id": conflict.haven_discovery_id,
            "ours": conflict.ours,
            "theirs": conflict.theirs,
            "theirs_hash": conflict.theirs_hash,
            "base": conflict.base,
        },
    }


def outcome_from_wire(data: dict) -> WriteOutcome:
    """The :class:`WriteOutcome` of ``data``, already checked by
    :class:`syncq.agent_api.AgentOutcomeSerializer` (the server's side of
    :func:`outcome_to_wire`). ``location`` carries only ``unresolved``."""
    conflict = data.get("conflict")
    location = None
    if data.get("unresolved"):
        location = ResolvedLocation(None, None, None, "planet", data["unresolved"])
    return WriteOutcome(
        data.get("haven_discovery_id"),
        data["how"],
        location=location,
        neutralised=tuple(data.get("neutralised") or ()),
        conflict=None
        if conflict is None
        else Conflict(
            conflict["haven_discovery_id"],
            conflict.get("ours"),
            conflict.get("theirs"),
            conflict["theirs_hash"],
            base=conflict.get("base"),
        ),
        waiting=data.get("waiting"),
        catalog_version=data.get("catalog_version"),
        suggestions=tuple(data.get("suggestions") or ()),
        row_hash=data.get("row_hash"),
        kept_base=data.get("kept_base"),
    )
