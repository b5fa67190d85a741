"""Reads about the bot that other processes need, and the Control Room reads the bot's forms need.

Every function here is synchronous and touches a database or the cache: the bot calls them
through :func:`botrunner.db.run_db`, never on its event loop.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connections
from django.utils import timezone

from discoveries.haven import Moon, Planet, System
from discoveries.routers import HAVEN_ALIAS

#: The bot's heartbeat (see :func:`bot_heartbeat`) in the cache every process shares.
BOT_HEARTBEAT_CACHE_KEY = "keeper-bot:heartbeat"
#: A heartbeat older than this means the bot is gone; it writes one every 30 s.
BOT_HEARTBEAT_FRESH = timedelta(seconds=90)

logger = logging.getLogger(__name__)


def bot_heartbeat() -> dict | None:
    """The bot's last heartbeat: ``{"at": datetime, "ready": bool, "connected": bool,
    "last_event_at": datetime | None, "user": str, "guilds": int, "latency_ms": float | None}``
    (datetimes aware, UTC), or ``None`` when there is none or the cache cannot be read."""
    try:
        beat = cache.get(BOT_HEARTBEAT_CACHE_KEY)
    except Exception as exc:  # the cache backend's own errors vary by backend
        logger.warning("cannot read the bot's heartbeat: %s", exc)
        return None
    if isinstance(beat, datetime):  # a bare time: online as of then
        return {"at": beat, "ready": True, "connected": True, "last_event_at": beat}
    return beat if isinstance(beat, dict) and isinstance(beat.get("at"), datetime) else None


def bot_online() -> bool:
    """True when the bot, in whatever process, is connected to the gateway and ready, as its
    heartbeat of the last 90 s says."""
    beat = bot_heartbeat()
    return (
        beat is not None
        and bool(beat.get("ready"))
        and bool(beat.get("connected"))
        and timezone.now() - beat["at"] <= BOT_HEARTBEAT_FRESH
    )


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


#: The longest system, planet or moon name the submit service takes (``discoveries.services``).
PLACE_NAME_MAX_LENGTH = 200


def _offerable(name: object) -> bool:
    """Whether a name from VH can be offered: text the submit service would take as a system
    or place (not blank, at most 200 characters, no refused character)."""
    from discoveries.services import text_blank, text_unsafe

    return (
        isinstance(name, str)
        and not text_blank(name)
        and len(name.strip()) <= PLACE_NAME_MAX_LENGTH
        and text_unsafe(name) is None
    )


def _haven_readable() -> bool:
    return settings.USE_HAVEN_DATABASE and os.path.isfile(settings.HAVEN_DB_PATH)


def haven_systems() -> list[HavenSystem] | None:
    """Every system of VH-Database.db that can be reported (see :func:`_offerable`), by name;
    ``None`` when VH is switched off, missing or
    unreadable (the form then asks for the name as text). The connection is closed afterwards,
    so a file moved away and back is read afresh next time."""
    if not _haven_readable():
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
        connections[HAVEN_ALIAS].close()


def haven_system_places(system_id: str) -> list[HavenPlace] | None:
    """The planets of system ``system_id`` by name, each followed by its moons, then "in
    space" (names that cannot be reported left out); ``None`` when VH cannot be read (as
    :func:`haven_systems`)."""
    if not _haven_readable():
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
        connections[HAVEN_ALIAS].close()
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
