"""The keeper → VH mapping: pure functions, no database.

Rules from REFERENCE.md ("Mapping keeper → VH"): ``username → discovered_by``,
``user_id → discord_user_id``, ``guild_id → discord_guild_id``,
``evidence_url → photo_url and evidence_urls``, ``location → location_name``; type-specific
values come out of ``metadata``. Location resolution: the system by name; a planet by
``(system_id, name)``; a moon by name among the system's planets' moons, which also gives its
``planet_id``. Names match as people type them (:func:`discoveries.names.name_key`: case,
Unicode forms and invisible characters aside), an exact spelling first; two VH names that fold
alike are refused, naming both. A location that does not resolve is reported with the nearest
names, and the writer holds the discovery until it does (the Control Room's map lists
discoveries by planet and moon only). ``haven_row_hash`` is what the ledger remembers of a row.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from discoveries.haven.errors import MappingError
from discoveries.names import names_ambiguity, names_listed, names_matching, names_nearest
from discoveries.rules import (
    evidence_url_problem,
    evidence_url_serialise,
    text_markup,
    text_markup_neutralise,
)
from discoveries.types import discovery_type_lookup

#: The VH timestamp format: UTC, no zone suffix (REFERENCE.md, submission_timestamp).
HAVEN_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class SystemSnapshot:
    """What VH knows about one system: its ``id``, ``planets`` as ``{name: planet_id}``,
    ``moons`` as ``[(name, moon_id, planet_id), ...]`` over all its planets, and its ``name``
    as the Control Room spells it (``None`` when not read: messages then use the name typed)."""

    id: str
    planets: Mapping[str, int] = field(default_factory=dict)
    moons: tuple[tuple[str, int, int], ...] = ()
    name: str | None = None


@dataclass(frozen=True)
class ResolvedLocation:
    """The result of resolution: VH ids (``None`` where not found), the ``location_type`` to
    write, and ``unresolved``, one sentence saying what was not found (``None`` when all was),
    such as "system 'ORACLE ZETA' is not in the Control Room". ``suggestions`` holds the
    Control Room's names nearest to the one that matched nothing (up to three, closest first);
    ``ambiguous`` is true when the name matched two or more names that fold alike
    (:func:`discoveries.names.name_key`), so none was taken and ``unresolved`` names them."""

    system_id: str | None
    planet_id: int | None
    moon_id: int | None
    location_type: str
    unresolved: str | None
    suggestions: tuple[str, ...] = ()
    ambiguous: bool = False

    @property
    def resolved(self) -> bool:
        return self.unresolved is None

    @property
    def hint(self) -> str | None:
        """What to tell the submitter when the place did not resolve (``None`` when it did), in
        plain text: ``unresolved`` as a sentence, the nearest names, and that the discovery is
        kept and waits for its place. For example: "System 'Okuli' is not in the Control Room;
        the nearest name there is 'Oculi'. The discovery is kept and waits until the place is
        added to the Control Room." """
        if self.unresolved is None:
            return None
        text = self.unresolved[:1].upper() + self.unresolved[1:]
        if self.suggestions:
            nearest = "name there is" if len(self.suggestions) == 1 else "names there are"
            text += f"; the nearest {nearest} {names_listed(self.suggestions)}"
        until = "until then" if self.ambiguous else "until the place is added to the Control Room"
        return f"{text}. The discovery is kept and waits {until}."


def location_resolve(
    *,
    system_name: str | None,
    location: str | None,
    location_type: str | None,
    system: SystemSnapshot | None,
) -> ResolvedLocation:
    """Resolve a discovery's place against one VH system.

    ``system`` is the snapshot of the system ``system_name`` names (found by the catalog,
    :func:`discoveries.haven.catalog.catalog_location_resolve`), or ``None`` if VH has no such
    system. ``location_type`` is ``planet``, ``moon``, ``space`` or ``None`` (legacy rows and
    typed names): ``None`` looks the name up among the planets, then the moons, and is written
    as ``planet`` when neither matches.

    Names match as people type them (:func:`discoveries.names.names_matching`): a place spelled
    exactly as one of the system's is that one; otherwise case, Unicode forms, invisible
    characters and runs of spaces are ignored. Exact spellings are tried among planets and
    moons before folded ones, and a planet wins over a moon of the same name. Two planets (or
    two moons) matching alike are refused, both named in ``unresolved``. A name that matches
    nothing gets the system's nearest names in ``suggestions``.
    """
    name = (location or "").strip()
    written = location_type or "planet"
    if system is None:
        return ResolvedLocation(
            None, None, None, written, f"system {system_name!r} is not in the Control Room"
        )
    if location_type == "space":
        return ResolvedLocation(system.id, None, None, "space", None)
    in_system = system.name or system_name
    # (kind, name, planet_id, moon_id), planets first: a planet wins over a moon of its name.
    # SQLite lets another program store a name that is no text: such a place has no name.
    places: list[tuple[str, str, int, int | None]] = []
    if location_type in (None, "planet"):
        places += [
            ("planet", planet, pk, None)
            for planet, pk in system.planets.items()
            if isinstance(planet, str)
        ]
    if location_type in (None, "moon"):
        places += [
            ("moon", moon, planet, pk) for moon, pk, planet in system.moons if isinstance(moon, str)
        ]
    matches = names_matching(name, places, spelling=lambda place: place[1])
    if matches:
        kind = matches[0][0]
        alike = [place for place in matches if place[0] == kind]
        if len(alike) == 1:
            _, _, planet_id, moon_id = alike[0]
            return ResolvedLocation(system.id, planet_id, moon_id, kind, None)
        planet_of = {pk: planet for planet, pk in system.planets.items()}
        notes = (
            [f"moon of {planet_of.get(place[2], f'planet #{place[2]}')!r}" for place in alike]
            if kind == "moon"
            else None
        )
        return ResolvedLocation(
            system.id,
            None,
            None,
            written,
            names_ambiguity(
                f"{kind}s of system {in_system!r}",
                name,
                [place[1] for place in alike],
                notes=notes,
            ),
            ambiguous=True,
        )
    kind = location_type or "planet or moon"
    return ResolvedLocation(
        system.id,
        None,
        None,
        written,
        f"{kind} {name!r} is not in system {in_system!r} in the Control Room",
        suggestions=tuple(names_nearest(name, [place[1] for place in places])),
    )


def haven_timestamp(value: datetime | str | None) -> str | None:
    """Format a keeper timestamp as VH's UTC text; naive values are taken as UTC already.
    ``None`` for an instant that has no UTC date (year 9999 at a negative offset): the sync holds
    such a discovery first (:func:`discoveries.models.discovery_timestamp_problem`)."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is not None:
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            return None
    return value.strftime(HAVEN_TIMESTAMP_FORMAT)


def _as_int(value: object, default: int = 0) -> int:
    # Legacy rows hold '' in integer columns; VH wants a number.
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _type_fields(
    metadata: object, *, stored: str | None = None
) -> tuple[dict[str, object], str | None]:
    """The type-specific values held in ``metadata``, and why none could be read (or None).

    ``metadata`` is the value as Django's JSONField reads it: the decoded JSON when the stored
    text is valid JSON, the stored text itself when it is not; or the stored text, from a
    caller holding that. A ``str`` is therefore ambiguous: ``'abc'`` comes from the text
    ``abc`` (not JSON) and from ``"abc"`` (a JSON string) alike, and ``'{"a": 1}'`` from an
    object and from that object encoded twice. ``stored``, the column's text as it is
    (:meth:`discoveries.models.Discovery.metadata_raw`), settles it when given: only a JSON
    object gives values, and the message names what the text is (``"metadata is valid JSON
    but not a JSON object (a JSON string)"``, ``… (a JSON array)``, ``"metadata is not valid
    JSON (…)"``). Without it, text holding a JSON object gives its values, and text that is
    not JSON is reported as either of the two things it can be. Empty text, ``{}``, JSON
    ``null`` and NULL give no values and no message.
    """
    if stored is not None:
        if stored == "":
            return {}, None
        try:
            return _json_object(json.loads(stored))
        except (ValueError, RecursionError) as exc:
            return {}, f"metadata is not valid JSON ({exc})"
    if isinstance(metadata, str):
        if metadata == "":
            return {}, None
        try:
            decoded = json.loads(metadata)
        except (ValueError, RecursionError) as exc:
            shown = metadata if len(metadata) <= 60 else f"{metadata[:59]}…"
            return {}, (
                f"metadata is not a JSON object: its text {shown!r} is either not valid JSON "
                f"({exc}) or the content of a JSON string"
            )
        return _json_object(decoded)
    return _json_object(metadata)


def _json_object(value: object) -> tuple[dict[str, object], str | None]:
    """``value`` (decoded JSON) as type fields, or the message saying which JSON it is."""
    if value is None or value == {}:
        return {}, None
    if isinstance(value, dict):
        return value, None
    if isinstance(value, bool):
        kind = f"JSON {'true' if value else 'false'}"
    elif isinstance(value, int | float):
        kind = "a JSON number"
    elif isinstance(value, list):
        kind = "a JSON array"
    elif isinstance(value, str):
        kind = "a JSON string, itself holding JSON: encoded twice"
        if not _json_text(value):
            kind = "a JSON string"
    else:
        return {}, f"metadata is not a JSON object but {type(value).__name__}"
    return {}, f"metadata is valid JSON but not a JSON object ({kind})"


def _json_text(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _column_text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


#: The keeper field each VH column we write comes from, where the names differ.
_KEEPER_FIELD_OF = {
    "location_name": "location",
    "photo_url": "evidence_url",
    "evidence_urls": "evidence_url",
    "discovered_by": "username",
    "discord_user_id": "user_id",
    "discord_guild_id": "guild_id",
}
#: Columns left as they are: VH's own ids, which the resolution read from VH itself (changing
#: one would break its foreign key), and the marker, which is neutralised whole.
_NOT_NEUTRALISED = frozenset({"system_id", "planet_id", "moon_id", "metadata"})


def haven_row_neutralised(row: Mapping[str, object]) -> tuple[str, ...]:
    """The keeper fields whose values were neutralised in VH discovery row ``row`` (a row of
    :func:`discovery_to_haven_row`, or one read back from VH), in the order the row lists
    them: the ``"neutralised"`` list of its ``metadata`` marker (JSON text or a mapping). An
    empty tuple when there is none, or when the marker cannot be read (another program's row).
    Pure: reads nothing but ``row``."""
    marker = row.get("metadata")
    if isinstance(marker, str):
        try:
            marker = json.loads(marker)
        except (ValueError, RecursionError):
            return ()
    if not isinstance(marker, Mapping):
        return ()
    names = marker.get("neutralised")
    if not isinstance(names, list):
        return ()
    return tuple(name for name in names if isinstance(name, str))


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

    Nothing written can start markup in the Control Room's map, which shows these columns as
    HTML, embeds them all in a ``<script>`` block and puts the link in ``<img src="…">``
    (REFERENCE.md). Rows stored before :mod:`discoveries.rules` refused markup are neutralised
    here, the keeper row itself left as it is:

    - in every text column but VH's own ids (``system_id``, ``planet_id``, ``moon_id``), each
      "<" that starts markup becomes "‹" (U+2039,
      :func:`discoveries.rules.text_markup_neutralise`): the text still reads alike and
      ``"<3"`` is kept;
    - an evidence link that fails :func:`discoveries.rules.evidence_url_problem` is not written
      (``photo_url`` and ``evidence_urls`` NULL); one that passes is written re-serialised.
      Percent-encoding would only keep a bad link inside its attribute: a ``javascript:`` link,
      one to a private address or one hiding a host behind a user name would still be one, so
      leaving it out is the one choice safe for every way a link can fail;
    - the marker (its sentences quote names) is neutralised whole.

    The keeper fields changed or left out are listed, in the order of the columns they feed
    (``system_name``, quoted by the marker only, last), under the marker's ``"neutralised"``
    key (absent when none was); :func:`haven_row_neutralised` reads it back.
    """
    dtype = discovery_type_lookup(discovery.discovery_type)
    if dtype is None:
        raise MappingError(f"unknown discovery type {discovery.discovery_type!r}")
    values, unreadable = _type_fields(
        discovery.metadata, stored=getattr(discovery, "metadata_stored", None)
    )
    neutralised: list[str] = []
    evidence = (discovery.evidence_url or "").strip() or None
    if evidence is not None:
        if evidence_url_problem(evidence):
            evidence = None
            neutralised.append("evidence_url")
        else:
            evidence = evidence_url_serialise(evidence)
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
        "metadata": None,  # the marker, once the columns are neutralised
    }
    for key in dtype.field_keys:
        row[key] = _column_text(values.get(key))
    for column, value in list(row.items()):
        if column in _NOT_NEUTRALISED or not isinstance(value, str) or not text_markup(value):
            continue
        row[column] = text_markup_neutralise(value)
        neutralised.append(_KEEPER_FIELD_OF.get(column, column))
    if location.unresolved and text_markup(location.unresolved):
        # The sentence quotes the system's name and the place's: say which held markup.
        neutralised += [
            name
            for name in ("system_name", "location")
            if isinstance(text := getattr(discovery, name, None), str) and text_markup(text)
        ]
    if neutralised:
        # In the order of the columns they feed; system_name, which feeds none, last.
        order = list(dict.fromkeys(_KEEPER_FIELD_OF.get(column, column) for column in row))
        marker["neutralised"] = sorted(
            set(neutralised), key=lambda name: order.index(name) if name in order else len(order)
        )
    row["metadata"] = text_markup_neutralise(json.dumps(marker, ensure_ascii=False))
    return row


#: The VH columns every discovery row we write holds; the type's four columns come after them.
HAVEN_COMMON_COLUMNS = (
    "discovery_type",
    "system_id",
    "planet_id",
    "moon_id",
    "location_type",
    "location_name",
    "description",
    "coordinates",
    "condition",
    "time_period",
    "significance",
    "photo_url",
    "evidence_urls",
    "discovered_by",
    "discord_user_id",
    "discord_guild_id",
    "submission_timestamp",
    "pattern_matches",
    "mystery_tier",
    "analysis_status",
    "tags",
    "metadata",
)


def haven_row_columns(discovery_type: object) -> tuple[str, ...]:
    """The VH columns a row of type ``discovery_type`` (an emoji, as VH stores it) is made of:
    :data:`HAVEN_COMMON_COLUMNS` and the type's four columns (none for a type we do not know)."""
    return _row_columns(discovery_type) if isinstance(discovery_type, str) else HAVEN_COMMON_COLUMNS


@functools.lru_cache(maxsize=256)
def _row_columns(discovery_type: str) -> tuple[str, ...]:
    dtype = discovery_type_lookup(discovery_type)
    return HAVEN_COMMON_COLUMNS + (tuple(dtype.field_keys) if dtype else ())


def haven_row_hash(row: Mapping[str, object]) -> str:
    """A SHA-256 hex digest of a VH discovery row's mapped columns (:func:`haven_row_columns`
    of its own ``discovery_type``), the same for the row we built and for that row read back
    from SQLite: each value is compared as text, ``None`` apart from ``''``. A column the row
    lacks counts as ``None``. The ledger keeps it to tell a row the Control Room changed."""
    values = []
    for column in haven_row_columns(row.get("discovery_type")):
        value = row.get(column)
        values.append(None if value is None else str(value))
    encoded = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8", "surrogatepass")).hexdigest()


def haven_row_mapped(row: Mapping[str, object]) -> dict[str, object]:
    """Only the mapped columns of a VH row (:func:`haven_row_columns` of its type), in order:
    what an operator compares when the Control Room changed a row we wrote."""
    return {column: row.get(column) for column in haven_row_columns(row.get("discovery_type"))}
