"""Every read of VH-Database.db's map: its systems, planets and moons.

The writer resolves a discovery's place with :func:`catalog_location_resolve` inside its write
transaction, and the admin's preview the same way; the doors that take a submission (the bot,
``manage.py submit_discovery``) ask :func:`catalog_location_check` whether the place is there, to
tell the submitter. Names match as people type them (:mod:`discoveries.names`): the exact
spelling first, then the folded one; two of the Control Room's names that fold alike are never
guessed between. The bot's pickers offer :func:`catalog_systems` and :func:`catalog_places`.
Names are offered only when a submission would take them
(:func:`discoveries.rules.name_problem`), so a member never picks a name that is then refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, replace

from django.db import DatabaseError, connections

from discoveries.haven.connection import haven_close, haven_connection, haven_status
from discoveries.haven.errors import HavenUnavailable
from discoveries.haven.mapping import ResolvedLocation, SystemSnapshot, location_resolve
from discoveries.haven.models import Moon, Planet, System
from discoveries.haven.router import HAVEN_ALIAS
from discoveries.names import names_ambiguity, names_matching, names_nearest
from discoveries.rules import name_problem

logger = logging.getLogger(__name__)


def system_snapshot(system_name: str | None) -> SystemSnapshot | None:
    """One system by exact name, with its planets and their moons, read on the ``haven``
    connection as it stands (inside the caller's transaction, if any); ``None`` when VH has no
    system of exactly that name (:func:`catalog_location_resolve` also finds it as typed).
    Raises the database's own error when VH cannot be read."""
    if not system_name:
        return None
    with connections[HAVEN_ALIAS].cursor() as cursor:
        cursor.execute(_SYSTEM_BY_NAME, [system_name])
        found = cursor.fetchone()
    return _system_read(*found) if found is not None else None


# Plain SQL on the Control Room's tables, by the models' names: the writer resolves a place for
# every discovery it writes, and these three reads are most of that work.
_SYSTEM_BY_NAME = f"SELECT id, name FROM {System._meta.db_table} WHERE name = %s LIMIT 1"  # noqa: S608
_PLANETS_OF = f"SELECT name, id FROM {Planet._meta.db_table} WHERE system_id = %s ORDER BY id"  # noqa: S608
_MOONS_OF = (
    f"SELECT m.name, m.id, m.planet_id FROM {Moon._meta.db_table} m"  # noqa: S608
    f" JOIN {Planet._meta.db_table} p ON p.id = m.planet_id"
    " WHERE p.system_id = %s ORDER BY m.id"
)


def _system_read(system_id: str, name: str) -> SystemSnapshot:
    """System ``system_id`` (named ``name``) with its planets and their moons."""
    with connections[HAVEN_ALIAS].cursor() as cursor:
        cursor.execute(_PLANETS_OF, [system_id])
        planets = dict(cursor.fetchall())
        cursor.execute(_MOONS_OF, [system_id])
        moons = tuple(tuple(row) for row in cursor.fetchall())
    return SystemSnapshot(system_id, planets, moons, name=name)


class CatalogSource:
    """Where :func:`catalog_location_resolve` reads the map: VH-Database.db itself (this
    class, on the ``haven`` connection as it stands) or :class:`CatalogCopySource`."""

    def system_named(self, name: str) -> SystemSnapshot | None:
        """The system named exactly ``name``, with its planets and moons, or ``None``."""
        return system_snapshot(name)

    def systems(self) -> list[tuple[object, object]]:
        """Every system as ``(id, name)``, by id."""
        return list(System.objects.using(HAVEN_ALIAS).order_by("id").values_list("id", "name"))

    def system_read(self, system_id, name: str) -> SystemSnapshot:
        """System ``system_id`` (named ``name``) with its planets and their moons."""
        return _system_read(system_id, name)


_HAVEN_SOURCE = CatalogSource()


class CatalogCopySource(CatalogSource):
    """The map as a copy holds it: ``copy`` has ``systems``, ``planets`` and ``moons`` rows
    (:data:`CATALOG_TABLES`; the catalog the Control Room agent last uploaded,
    :mod:`discoveries.catalog`), read like VH's own tables."""

    def __init__(self, copy) -> None:
        self.copy = copy
        self._planets: dict[object, list[tuple]] = {}
        for pk, system_id, name in copy.planets:
            self._planets.setdefault(system_id, []).append((name, pk))
        planet_system = {pk: system_id for pk, system_id, _ in copy.planets}
        self._moons: dict[object, list[tuple]] = {}
        for pk, planet_id, name in copy.moons:
            system_id = planet_system.get(planet_id)
            self._moons.setdefault(system_id, []).append((name, pk, planet_id))

    def system_named(self, name: str) -> SystemSnapshot | None:
        for pk, found in self.copy.systems:
            if found == name:
                return self.system_read(pk, found)
        return None

    def systems(self) -> list[tuple[object, object]]:
        return [(pk, name) for pk, name in self.copy.systems]

    def system_read(self, system_id, name: str) -> SystemSnapshot:
        # As VH's own read: by id, a later planet of the same name taking the name.
        planets = dict(sorted(self._planets.get(system_id, []), key=lambda row: _id_key(row[1])))
        moons = tuple(sorted(self._moons.get(system_id, []), key=lambda row: _id_key(row[1])))
        return SystemSnapshot(system_id, planets, moons, name=name)


def catalog_location_resolve(
    *,
    system_name: str | None,
    location: str | None,
    location_type: str | None,
    source: CatalogSource | None = None,
) -> ResolvedLocation:
    """Resolve a discovery's place in VH-Database.db, reading the ``haven`` connection as it
    stands (inside the caller's transaction, if any; nothing is written).

    The system is the one named exactly ``system_name`` (one indexed query); else the one
    whose name matches it as typed (:func:`discoveries.names.names_matching`: case, Unicode
    forms, invisible characters and runs of spaces aside), among all systems' ids and names
    (the Control Room's map is small). Two systems matching alike are refused, both named in
    ``unresolved``; a system matching nothing gets the nearest systems' names in
    ``suggestions``. The planet or moon is then found by
    :func:`discoveries.haven.mapping.location_resolve`. ``source`` is where the map is read:
    VH-Database.db on the ``haven`` connection (the default), or a :class:`CatalogCopySource`.
    Raises the database's own error (``OperationalError``, ``DatabaseError``) when VH cannot
    be read.
    """
    source = source or _HAVEN_SOURCE
    system = source.system_named(system_name) if system_name else None
    if system is None and system_name:
        systems = [(pk, name) for pk, name in source.systems() if isinstance(name, str)]
        matches = names_matching(system_name, systems, spelling=lambda found: found[1])
        if len(matches) == 1:
            system = source.system_read(*matches[0])
        elif matches:
            return ResolvedLocation(
                None,
                None,
                None,
                location_type or "planet",
                names_ambiguity("systems", system_name.strip(), [name for _, name in matches]),
                ambiguous=True,
            )
        else:
            missing = location_resolve(
                system_name=system_name,
                location=location,
                location_type=location_type,
                system=None,
            )
            nearest = names_nearest(system_name, [name for _, name in systems])
            return replace(missing, suggestions=tuple(nearest))
    return location_resolve(
        system_name=system_name, location=location, location_type=location_type, system=system
    )


#: How long :func:`catalog_location_check` waits for the Control Room's lock, in seconds: a
#: door telling a submitter about the place answers soon or says nothing (the discovery is
#: stored whatever the answer).
CHECK_BUSY_TIMEOUT_SECONDS = 1.0


def catalog_location_check(
    *, system_name: str | None, location: str | None, location_type: str | None
) -> ResolvedLocation | None:
    """Whether a discovery's place is in VH-Database.db now, for a door to tell the
    submitter: :func:`catalog_location_resolve` on a read-only connection (``PRAGMA
    query_only``) that waits at most :data:`CHECK_BUSY_TIMEOUT_SECONDS` for a lock, closed
    afterwards, as :func:`catalog_systems`. ``None`` when VH is switched off, missing, locked
    or cannot be read (logged): then nothing can be said about the place. Never call it inside
    a transaction on the ``haven`` alias: it closes that connection."""
    if haven_status() != "ok":
        return None
    try:
        connection = haven_connection()
        with connection.cursor() as cursor:
            # SQLite refuses any write on this connection, and waits less for a lock, until it
            # is closed below.
            cursor.execute("PRAGMA query_only = ON")
            cursor.execute(f"PRAGMA busy_timeout = {int(CHECK_BUSY_TIMEOUT_SECONDS * 1000)}")
        return catalog_location_resolve(
            system_name=system_name, location=location, location_type=location_type
        )
    except HavenUnavailable:
        return None
    except DatabaseError as exc:
        logger.warning("cannot read VH-Database.db to check a place: %s", exc)
        return None
    finally:
        haven_close()


@dataclass(frozen=True)
class HavenSystem:
    """A star system of VH-Database.db as the report form offers it: ``id`` and ``name``."""

    id: str
    name: str


@dataclass(frozen=True)
class HavenPlace:
    """Where in a system a discovery can be: ``kind`` is ``planet``, ``moon`` or ``space``;
    ``name`` the planet's or moon's name (``None`` in space); ``planet`` the moon's planet."""

    kind: str
    name: str | None
    planet: str | None = None


def offerable(name: object) -> bool:
    """Whether a name of VH's map can be offered to a submitter: a submission would take it
    (:func:`discoveries.rules.name_problem`)."""
    return isinstance(name, str) and name_problem(name, required=True) is None


def catalog_systems() -> list[HavenSystem] | None:
    """Every system of VH-Database.db that can be reported, by name (stripped); ``None`` when
    VH is switched off, missing or unreadable (the form then asks for the name as text). The
    connection is closed afterwards, so a file moved away and back is read afresh next time."""
    if haven_status() != "ok":
        return None
    try:
        return [
            HavenSystem(id=str(pk), name=name.strip())
            for pk, name in System.objects.using(HAVEN_ALIAS)
            .order_by("name")
            .values_list("id", "name")
            if offerable(name)
        ]
    except DatabaseError as exc:
        logger.warning("cannot read VH-Database.db's systems: %s", exc)
        return None
    finally:
        haven_close()


def catalog_places(system_id: str) -> list[HavenPlace] | None:
    """The planets of system ``system_id`` by name, each followed by its moons, then "in
    space" (names that cannot be reported left out); ``None`` when VH cannot be read (as
    :func:`catalog_systems`)."""
    if haven_status() != "ok":
        return None
    try:
        planets = list(
            Planet.objects.using(HAVEN_ALIAS)
            .filter(system_id=system_id)
            .order_by("name")
            .values_list("id", "name")
        )
        moons: dict[int, list[str]] = {}
        for planet_id, name in (
            Moon.objects.using(HAVEN_ALIAS)
            .filter(planet_id__in=[pk for pk, _ in planets])
            .order_by("name")
            .values_list("planet_id", "name")
        ):
            moons.setdefault(planet_id, []).append(name)
    except DatabaseError as exc:
        logger.warning("cannot read the places of system %s in VH-Database.db: %s", system_id, exc)
        return None
    finally:
        haven_close()
    return places_list(planets, moons)


def places_list(planets: list[tuple], moons: dict[object, list]) -> list[HavenPlace]:
    """The places of one system for the report form: ``planets`` as ``[(id, name)]`` by name,
    each followed by its ``moons`` (``{planet id: [name, …]}`` by name), then "in space"."""
    places: list[HavenPlace] = []
    for planet_id, planet in planets:
        if not offerable(planet):
            continue
        places.append(HavenPlace(kind="planet", name=planet.strip()))
        places.extend(
            HavenPlace(kind="moon", name=moon.strip(), planet=planet.strip())
            for moon in moons.get(planet_id, [])
            if offerable(moon)
        )
    places.append(HavenPlace(kind="space", name=None))
    return places


def catalog_version() -> str:
    """A SHA-256 hex digest of VH's map as places are looked up in it: every system's id and
    name, every planet's id, system and name, every moon's id, planet and name. Read on the
    ``haven`` connection as it stands; the digest changes whenever the Control Room adds,
    renames, moves or removes a place, so discoveries waiting for a place are looked at again
    only then. Raises the database's own error when VH cannot be read."""
    digest = hashlib.sha256()
    for queryset in (
        System.objects.using(HAVEN_ALIAS).order_by("id").values_list("id", "name"),
        Planet.objects.using(HAVEN_ALIAS).order_by("id").values_list("id", "system_id", "name"),
        Moon.objects.using(HAVEN_ALIAS).order_by("id").values_list("id", "planet_id", "name"),
    ):
        for row in queryset.iterator(chunk_size=2000):
            digest.update(repr(row).encode("utf-8", "surrogatepass"))
        digest.update(b"|")
    return digest.hexdigest()


# --- the catalog away from VH: what the Control Room agent uploads and the server keeps ---------

#: The three tables of a catalog snapshot and the columns of each row, as
#: :func:`catalog_snapshot` reads them and :class:`~discoveries.models.CatalogCopy` keeps them.
CATALOG_TABLES = {
    "systems": ("id", "name"),
    "planets": ("id", "system_id", "name"),
    "moons": ("id", "planet_id", "name"),
}


def _id_key(value: object) -> str:
    """A total order over ids of any JSON type (VH's system ids are text, its planet ids
    integers, and an old file may hold either)."""
    return json.dumps(value, sort_keys=True)


def _json_value(value: object) -> object:
    """``value`` as JSON can carry it: bytes (a BLOB where text belongs) as text, replacing
    what is not UTF-8; an infinite or NaN number as text; numbers and text as they are."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no infinity
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def catalog_snapshot() -> dict[str, list[list]]:
    """VH's map as JSON-ready rows: ``{"systems": [[id, name], …], "planets": [[id,
    system_id, name], …], "moons": [[id, planet_id, name], …]}``, each table by id. Read on
    the ``haven`` connection as it stands. Raises the database's own error when VH cannot be
    read."""
    models = {"systems": System, "planets": Planet, "moons": Moon}
    snapshot = {}
    for table, columns in CATALOG_TABLES.items():
        rows = models[table].objects.using(HAVEN_ALIAS).values_list(*columns)
        snapshot[table] = [[_json_value(value) for value in row] for row in rows]
    return catalog_canonical(snapshot)


class CatalogInvalid(ValueError):
    """A catalog or catalog diff that is not of the shape :data:`CATALOG_TABLES` gives."""


def catalog_canonical(snapshot: object) -> dict[str, list[list]]:
    """``snapshot`` checked and in its one canonical form: the three tables of
    :data:`CATALOG_TABLES`, each a list of rows of that many scalar values (ids unique within a
    table), sorted by id. Raises :class:`CatalogInvalid` naming what is wrong."""
    if not isinstance(snapshot, dict) or set(snapshot) != set(CATALOG_TABLES):
        raise CatalogInvalid(f"a catalog is an object of exactly {', '.join(CATALOG_TABLES)}")
    canonical = {}
    for table, columns in CATALOG_TABLES.items():
        rows = snapshot[table]
        if not isinstance(rows, list):
            raise CatalogInvalid(f"{table} must be a list of rows")
        seen = set()
        for row in rows:
            _row_check(table, columns, row)
            key = _id_key(row[0])
            if key in seen:
                raise CatalogInvalid(f"{table}: id {row[0]!r} appears twice")
            seen.add(key)
        canonical[table] = sorted((list(row) for row in rows), key=lambda row: _id_key(row[0]))
    return canonical


def _row_check(table: str, columns: tuple[str, ...], row: object) -> None:
    if not isinstance(row, list) or len(row) != len(columns):
        raise CatalogInvalid(f"{table}: each row is a list of {', '.join(columns)}")
    for value in row:
        if value is not None and not isinstance(value, str | int | float | bool):
            raise CatalogInvalid(f"{table}: row values must be text, numbers or null")
    if row[0] is None:
        raise CatalogInvalid(f"{table}: a row's id cannot be null")


def catalog_content_hash(snapshot: dict[str, list[list]]) -> str:
    """The SHA-256 hex digest of a canonical catalog (:func:`catalog_canonical`): equal maps
    give equal digests on the desktop and on the server, so an upload is skipped when they
    match and a diff is checked against it."""
    text = json.dumps(snapshot, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def catalog_diff(old: dict[str, list[list]], new: dict[str, list[list]]) -> dict[str, dict]:
    """What turns canonical catalog ``old`` into ``new``: per table, ``{"upsert": [rows added
    or changed], "delete": [ids removed]}``."""
    diff = {}
    for table in CATALOG_TABLES:
        before = {_id_key(row[0]): row for row in old[table]}
        after = {_id_key(row[0]): row for row in new[table]}
        diff[table] = {
            "upsert": [row for key, row in after.items() if before.get(key) != row],
            "delete": [row[0] for key, row in before.items() if key not in after],
        }
    return diff


def catalog_patch(old: dict[str, list[list]], diff: object) -> dict[str, list[list]]:
    """Canonical catalog ``old`` with ``diff`` (:func:`catalog_diff`'s shape) applied, checked
    and canonical. Raises :class:`CatalogInvalid` for a diff of another shape."""
    if not isinstance(diff, dict) or not set(diff) <= set(CATALOG_TABLES):
        raise CatalogInvalid(f"a catalog diff is an object of {', '.join(CATALOG_TABLES)}")
    patched = {}
    for table, columns in CATALOG_TABLES.items():
        change = diff.get(table, {"upsert": [], "delete": []})
        if (
            not isinstance(change, dict)
            or set(change) != {"upsert", "delete"}
            or not isinstance(change["upsert"], list)
            or not isinstance(change["delete"], list)
        ):
            raise CatalogInvalid(f"{table}: a diff is an object of exactly upsert and delete")
        rows = {_id_key(row[0]): row for row in old[table]}
        for pk in change["delete"]:
            rows.pop(_id_key(pk), None)
        for row in change["upsert"]:
            _row_check(table, columns, row)
            rows[_id_key(row[0])] = row
        patched[table] = list(rows.values())
    return catalog_canonical(patched)
