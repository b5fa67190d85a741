"""The Control Room's map (systems, planets, moons) as the doors read it: from VH-Database.db
itself (:mod:`discoveries.haven.catalog`), or, with ``USE_HAVEN_AGENT``, from the copy the
Control Room agent last uploaded (:class:`~discoveries.models.CatalogCopy`), so that the bot's
pickers and place checks keep working while the desktop is away. Same answers either way:
``None`` when no map can be read (the form then asks for names as text).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError

from discoveries.haven import catalog as haven
from discoveries.haven.catalog import CatalogCopySource, HavenPlace, HavenSystem
from discoveries.haven.mapping import ResolvedLocation
from discoveries.models import CatalogCopy

logger = logging.getLogger(__name__)


def catalog_copy() -> CatalogCopy | None:
    """The catalog the Control Room agent last uploaded, or ``None`` when none has been.
    Raises the database's own error when keeper.db cannot be read."""
    return CatalogCopy.objects.filter(pk=1).first()


def _copy_or_none() -> CatalogCopy | None:
    try:
        return catalog_copy()
    except DatabaseError as exc:
        logger.warning("cannot read the uploaded catalog from keeper.db: %s", exc)
        return None


def catalog_systems() -> list[HavenSystem] | None:
    """Every system that can be reported, by name: :func:`discoveries.haven.catalog.
    catalog_systems`, or from the uploaded copy with ``USE_HAVEN_AGENT`` (``None`` until the
    agent has uploaded one)."""
    if not settings.USE_HAVEN_AGENT:
        return haven.catalog_systems()
    copy = _copy_or_none()
    if copy is None:
        return None
    return sorted(
        (
            HavenSystem(id=str(pk), name=name.strip())
            for pk, name in copy.systems
            if haven.offerable(name)
        ),
        key=lambda system: system.name,
    )


def _by_name(row_name: object) -> tuple[bool, str]:
    return (not isinstance(row_name, str), str(row_name))


def catalog_places(system_id: str) -> list[HavenPlace] | None:
    """The places of system ``system_id`` for the report form:
    :func:`discoveries.haven.catalog.catalog_places`, or from the uploaded copy with
    ``USE_HAVEN_AGENT`` (``None`` until there is one)."""
    if not settings.USE_HAVEN_AGENT:
        return haven.catalog_places(system_id)
    copy = _copy_or_none()
    if copy is None:
        return None
    planets = sorted(
        ((pk, name) for pk, owner, name in copy.planets if str(owner) == system_id),
        key=lambda row: _by_name(row[1]),
    )
    moons: dict[object, list] = {}
    for _, planet_id, name in sorted(copy.moons, key=lambda row: _by_name(row[2])):
        moons.setdefault(planet_id, []).append(name)
    return haven.places_list(planets, moons)


def catalog_location_check(
    *, system_name: str | None, location: str | None, location_type: str | None
) -> ResolvedLocation | None:
    """Whether a discovery's place is on the map, for a door to tell the submitter:
    :func:`discoveries.haven.catalog.catalog_location_check`, or the same resolution against
    the uploaded copy with ``USE_HAVEN_AGENT`` (``None`` until there is one)."""
    if not settings.USE_HAVEN_AGENT:
        return haven.catalog_location_check(
            system_name=system_name, location=location, location_type=location_type
        )
    copy = _copy_or_none()
    if copy is None:
        return None
    return haven.catalog_location_resolve(
        system_name=system_name,
        location=location,
        location_type=location_type,
        source=CatalogCopySource(copy),
    )
