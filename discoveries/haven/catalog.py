"""Every read of VH-Database.db's map: its systems, planets and moons.

The writer resolves a discovery's place with :func:`system_snapshot` inside its write
transaction; the admin's preview reads the same snapshot; the bot's pickers offer
:func:`catalog_systems` and :func:`catalog_places`. Names are offered only when a submission
would take them (:func:`discoveries.rules.name_problem`), so a member never picks a name that is
then refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import DatabaseError

from discoveries.haven.connection import haven_close, haven_status
from discoveries.haven.mapping import SystemSnapshot
from discoveries.haven.models import Moon, Planet, System
from discoveries.haven.router import HAVEN_ALIAS
from discoveries.rules import name_problem

logger = logging.getLogger(__name__)


def system_snapshot(system_name: str | None) -> SystemSnapshot | None:
    """One system by exact name, with its planets and their moons, read on the ``haven``
    connection as it stands (inside the caller's transaction, if any); ``None`` when VH has no
    such system. Raises the database's own error when VH cannot be read."""
    if not system_name:
        return None
    system_id = (
        System.objects.using(HAVEN_ALIAS)
        .filter(name=system_name)
        .values_list("id", flat=True)
        .first()
    )
    if system_id is None:
        return None
    planets = dict(
        Planet.objects.using(HAVEN_ALIAS)
        .filter(system_id=system_id)
        .order_by()
        .values_list("name", "id")
    )
    moons = tuple(
        Moon.objects.using(HAVEN_ALIAS)
        .filter(planet__system_id=system_id)
        .order_by("id")
        .values_list("name", "id", "planet_id")
    )
    return SystemSnapshot(system_id, planets, moons)


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


def _offerable(name: object) -> bool:
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
            if _offerable(name)
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
    places: list[HavenPlace] = []
    for planet_id, planet in planets:
        if not _offerable(planet):
            continue
        places.append(HavenPlace(kind="planet", name=planet.strip()))
        places.extend(
            HavenPlace(kind="moon", name=moon.strip(), planet=planet.strip())
            for moon in moons.get(planet_id, [])
            if _offerable(moon)
        )
    places.append(HavenPlace(kind="space", name=None))
    return places
