"""The keeper → VH mapping: pure functions, no database.

Rules from REFERENCE.md ("Mapping keeper → VH"): ``username → discovered_by``,
``user_id → discord_user_id``, ``guild_id → discord_guild_id``,
``evidence_url → photo_url and evidence_urls``, ``location → location_name``; type-specific
values come out of ``metadata``. Location resolution: the system by exact name; a planet by
``(system_id, name)``; a moon by name among the system's planets' moons, which also gives its
``planet_id``. A location that does not resolve is still written, with NULL ids, and reported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from discoveries.haven.errors import MappingError
from discoveries.types import discovery_type_lookup

#: The VH timestamp format: UTC, no zone suffix (REFERENCE.md, submission_timestamp).
HAVEN_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class SystemSnapshot:
    """What VH knows about one system: its ``id``, ``planets`` as ``{name: planet_id}`` and
    ``moons`` as ``[(name, moon_id, planet_id), ...]`` over all its planets."""

    id: str
    planets: Mapping[str, int] = field(default_factory=dict)
    moons: tuple[tuple[str, int, int], ...] = ()


@dataclass(frozen=True)
class ResolvedLocation:
    """The result of resolution: VH ids (``None`` where not found), the ``location_type`` to
    write, and ``unresolved``, a sentence saying what was not found (``None`` when all was)."""

    system_id: str | None
    planet_id: int | None
    moon_id: int | None
    location_type: str
    unresolved: str | None

    @property
    def resolved(self) -> bool:
        return self.unresolved is None


def location_resolve(
    *,
    system_name: str | None,
    location: str | None,
    location_type: str | None,
    system: SystemSnapshot | None,
) -> ResolvedLocation:
    """Resolve a discovery's place against one VH system.

    ``system`` is the snapshot of the system whose name equals ``system_name`` exactly, or
    ``None`` if VH has no such system. ``location_type`` is ``planet``, ``moon``, ``space`` or
    ``None`` (legacy rows): ``None`` looks the name up among the planets, then the moons, and is
    written as ``planet`` when neither matches.
    """
    name = (location or "").strip()
    if system is None:
        return ResolvedLocation(
            None, None, None, location_type or "planet", f"system {system_name!r} not found in VH"
        )
    if location_type == "space":
        return ResolvedLocation(system.id, None, None, "space", None)
    if location_type in (None, "planet") and name in system.planets:
        return ResolvedLocation(system.id, system.planets[name], None, "planet", None)
    if location_type in (None, "moon"):
        for moon_name, moon_id, planet_id in system.moons:
            if moon_name == name:
                return ResolvedLocation(system.id, planet_id, moon_id, "moon", None)
    kind = location_type or "planet or moon"
    return ResolvedLocation(
        system.id,
        None,
        None,
        location_type or "planet",
        f"{kind} {name!r} not found in system {system_name!r}",
    )


def haven_timestamp(value: datetime | str | None) -> str | None:
    """Format a keeper timestamp as VH's UTC text; naive values are taken as UTC already."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime(HAVEN_TIMESTAMP_FORMAT)


def _as_int(value: object, default: int = 0) -> int:
    # Legacy rows hold '' in integer columns; VH wants a number.
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _type_fields(metadata: object) -> tuple[dict[str, object], str | None]:
    """The type-specific values held in ``metadata``, and why none could be read (or None)."""
    if metadata in (None, "", {}):
        return {}, None
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except json.JSONDecodeError as exc:
            return {}, f"metadata is not valid JSON ({exc})"
    if not isinstance(metadata, dict):
        return {}, f"metadata is not a JSON object but {type(metadata).__name__}"
    return metadata, None


def _column_text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def discovery_to_haven_row(
    discovery, *, location: ResolvedLocation, keeper_discovery_id: int
) -> dict[str, object]:
    """Build the VH ``discoveries`` row for a keeper discovery.

    ``discovery`` is anything with the keeper column attributes (a ``Discovery``). Returns
    ``{vh_column: value}`` holding the common columns plus the four columns of the discovery's
    type (other types' columns are left out, so a VH file lacking them still takes this type).
    Legacy metadata that holds no JSON object cannot give type fields: the row is written
    without them and its ``metadata`` marker says why, rather than the discovery being held
    back. Non-text values are written as JSON. Raises :class:`MappingError` for an unknown type.
    """
    dtype = discovery_type_lookup(discovery.discovery_type)
    if dtype is None:
        raise MappingError(f"unknown discovery type {discovery.discovery_type!r}")
    values, unreadable = _type_fields(discovery.metadata)
    evidence = (discovery.evidence_url or "").strip() or None
    marker: dict[str, object] = {"source": "keeper", "keeper_discovery_id": keeper_discovery_id}
    if location.unresolved:
        marker["location_unresolved"] = location.unresolved
    if unreadable:
        marker["type_fields_unreadable"] = unreadable
    row: dict[str, object] = {
        "discovery_type": dtype.emoji,
        "system_id": location.system_id,
        "planet_id": location.planet_id,
        "moon_id": location.moon_id,
        "location_type": location.location_type,
        "location_name": discovery.location,
        "description": discovery.description if discovery.description is not None else "",
        "coordinates": discovery.coordinates,
        "condition": discovery.condition,
        "time_period": discovery.time_period,
        "significance": discovery.significance,
        "photo_url": evidence,
        "evidence_urls": evidence,
        "discovered_by": discovery.username,
        "discord_user_id": discovery.user_id,
        "discord_guild_id": discovery.guild_id,
        "submission_timestamp": haven_timestamp(discovery.submission_timestamp),
        "pattern_matches": _as_int(discovery.pattern_matches),
        "mystery_tier": _as_int(discovery.mystery_tier),
        "analysis_status": discovery.analysis_status or "pending",
        "tags": discovery.tags,
        "metadata": json.dumps(marker, ensure_ascii=False),
    }
    for key in dtype.field_keys:
        row[key] = _column_text(values.get(key))
    return row
