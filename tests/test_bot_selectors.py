"""What the bot records and reads outside Discord: its heartbeat for /health, the queue summary
of /sync-status, the Control Room's systems and places for the report form, and the operator
record of a retry from Discord."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from botrunner import limits
from botrunner.cogs.sync_admin import summary_text
from discoveries.haven.catalog import HavenPlace, catalog_places, catalog_systems
from syncq.models import OperatorAction, SyncQueueItem
from syncq.selectors import bot_heartbeat, bot_heartbeat_key, bot_online, queue_summary
from syncq.services import queue_item_retry
from tests.factories import (
    queue_item_backing_off,
    queue_item_exceeded,
    queue_item_in_conflict,
    queue_item_pending,
    queue_item_synced,
    queue_item_waiting,
)


def beat(**overrides) -> dict:
    state = {
        "at": timezone.now(),
        "ready": True,
        "connected": True,
        "last_event_at": timezone.now(),
        "user": "The Keeper#0",
        "guilds": 1,
        "latency_ms": 40.0,
    }
    state.update(overrides)
    cache.set(bot_heartbeat_key(), state)
    return state


def test_bot_online_needs_a_fresh_connected_ready_heartbeat():
    """Online only with a heartbeat of the last 90 s that says connected and ready."""
    assert bot_online() is False
    beat()
    assert bot_online() is True
    beat(connected=False)
    assert bot_online() is False
    beat(ready=False)
    assert bot_online() is False
    beat(at=timezone.now() - timedelta(seconds=91))
    assert bot_online() is False
    cache.set(bot_heartbeat_key(), "garbage")
    assert bot_online() is False and bot_heartbeat() is None


@pytest.mark.django_db
def test_queue_summary_gives_counts_oldest_pending_and_the_newest_error():
    """Counts per state, the oldest pending item's age, and the error of the item that failed
    last (synced items' old errors do not count)."""
    exceeded = queue_item_exceeded(error="old error")
    failing = queue_item_backing_off(error="VH-Database.db is locked")
    synced = queue_item_synced()
    # An old bot's synced row may keep the error of an earlier attempt; the services clear it.
    SyncQueueItem.objects.filter(id=synced.id).update(sync_error="stale")
    oldest = queue_item_pending()
    now = timezone.now()
    SyncQueueItem.objects.filter(id=oldest.id).update(created_at=now - timedelta(hours=2))
    SyncQueueItem.objects.filter(id=exceeded.id).update(last_sync_attempt=now - timedelta(hours=1))
    items = [oldest, exceeded, failing, synced]
    summary = queue_summary(now=now)
    assert summary["counts"] == {
        "pending": 2,
        "syncing": 0,
        "synced": 1,
        "max_retries_exceeded": 1,
        "waiting": 0,
        "conflict": 0,
    }
    assert 7190 <= summary["oldest_pending_age_seconds"] <= 7210
    last = summary["last_error"]
    assert last["queue_id"] == items[2].id and last["error"] == "VH-Database.db is locked"
    assert last["at"].tzinfo is not None


@pytest.mark.django_db
def test_queue_summary_of_an_empty_queue():
    """No items: zero counts, no oldest pending, no last error, nothing waiting."""
    summary = queue_summary()
    assert set(summary["counts"].values()) == {0}
    assert summary["oldest_pending_age_seconds"] is None and summary["last_error"] is None
    assert summary["first_waiting"] is None


@pytest.mark.django_db(transaction=True, databases=["default", "haven"])
def test_sync_status_names_the_first_waiting_item_and_the_conflicts(sample_haven_db):
    """/sync-status's text, from the real summary: waiting and conflict counts, the first
    waiting item's reason with the nearest names, and where conflicts are settled."""
    queue_item_in_conflict(sample_haven_db)
    first = queue_item_waiting(system_name="Ocul", location="Erren")
    queue_item_waiting()
    summary = queue_summary()
    assert summary["first_waiting"]["queue_id"] == first.id
    text = summary_text(summary)
    assert "failed 0 · waiting 2 · conflict 1" in text
    assert (
        f"First waiting (queue item {first.id}, discovery {first.discovery_id}): system 'Ocul' "
        "is not in the Control Room; nearest in the Control Room: 'Oculi'" in text
    )
    assert "Conflicts wait for a choice in the admin" in text
    assert limits.text_length(text) <= limits.MESSAGE_CONTENT_MAX


@pytest.mark.django_db
def test_a_retry_from_discord_is_recorded_under_the_members_name():
    """The operator action of a bot retry names the Discord member and the source ``bot``."""
    item = queue_item_exceeded()
    queue_item_retry(item_id=item.id, source="bot", actor_name="discord:ana (1234567890123456)")
    action = OperatorAction.objects.get()
    assert action.source == "bot" and action.actor is None
    assert action.actor_name == "discord:ana (1234567890123456)"


@pytest.mark.django_db(transaction=True, databases=["default", "haven"])
def test_the_form_reads_systems_and_places_from_the_control_room(sample_haven_db):
    """The sample VH's 5 systems by name; a system's planets each followed by its moons, then
    "in space"."""
    systems = catalog_systems()
    assert len(systems) == 5
    assert [s.name for s in systems] == sorted(s.name for s in systems)
    counts = {}
    for system in systems:
        places = catalog_places(system.id)
        assert places[-1] == HavenPlace(kind="space", name=None)
        counts[system.name] = places
    planets = sum(p.kind == "planet" for ps in counts.values() for p in ps)
    moons = [p for ps in counts.values() for p in ps if p.kind == "moon"]
    assert planets == 20 and len(moons) == 5
    assert all(m.planet for m in moons)


def test_the_form_falls_back_when_the_control_room_is_missing_or_off(tmp_path, settings):
    """VH missing, or switched off: both readers answer None (the form asks for text)."""
    settings.HAVEN_DB_PATH = tmp_path / "absent.db"
    assert catalog_systems() is None and catalog_places("SYS_X") is None
    assert not os.path.exists(tmp_path / "absent.db")
    settings.USE_HAVEN_DATABASE = False
    assert catalog_systems() is None


@pytest.mark.django_db(transaction=True, databases=["default", "haven"])
def test_the_form_falls_back_when_the_control_room_file_is_not_a_database(tmp_path, settings):
    """A file at HAVEN_DB_PATH that is not SQLite reads as no map, not a crash."""
    from tests.conftest import haven_at

    junk = tmp_path / "VH-Database.db"
    junk.write_bytes(b"not a database" * 100)
    with haven_at(junk, settings):
        assert catalog_systems() is None


def test_heartbeat_datetimes_are_utc_aware():
    """A recorded heartbeat reads back with aware times."""
    beat(at=datetime.now(UTC))
    assert bot_heartbeat()["at"].tzinfo is not None


def test_the_heartbeat_follows_the_gateway_and_leaves_with_the_bot():
    """The heartbeat cog writes connected on ready, disconnected on a drop, connected again on
    resume, and nothing at all once the bot has stopped (even if a late event comes)."""
    import asyncio
    from types import SimpleNamespace

    from botrunner.cogs.heartbeat import Heartbeat

    state = {"ready": True}
    bot = SimpleNamespace(
        latency=0.05,
        is_ready=lambda: state["ready"],
        is_closed=lambda: False,
        user="The Keeper#0",
        guilds=[1],
    )

    async def scenario():
        cog = Heartbeat(bot)
        await cog.on_ready()
        first = bot_heartbeat()
        await cog.on_disconnect()
        dropped = bot_heartbeat()
        await cog.on_resumed()
        resumed = bot_heartbeat()
        await cog.forget()
        gone = bot_heartbeat()
        await cog.on_resumed()
        return first, dropped, resumed, gone, bot_heartbeat()

    first, dropped, resumed, gone, late = asyncio.run(scenario())
    assert first["connected"] and first["ready"] and first["latency_ms"] == 50.0
    assert dropped["connected"] is False
    assert resumed["connected"] is True and resumed["at"] >= dropped["at"]
    assert gone is None and late is None


@pytest.mark.django_db(transaction=True, databases=["default", "haven"])
def test_the_form_offers_only_names_that_can_be_submitted(haven_db):
    """Systems and planets whose names the submit service would refuse (blank, over 200
    characters, a control character, a bidirectional override) are not offered; the others
    are, trimmed."""
    import sqlite3

    with sqlite3.connect(haven_db) as vh:
        vh.executemany(
            "INSERT INTO systems (id, name, x, y, z, region) VALUES (?, ?, 0, 0, 0, 'odd')",
            [
                ("SYS_BLANK", "   "),
                ("SYS_LONG", "L" * 201),
                ("SYS_ESC", "Bad\x1bname"),
                ("SYS_BIDI", "Evil\u202ename"),
                ("SYS_ZWSP", "\u200b"),
                ("SYS_OK", "  Padded Name  "),
            ],
        )
        vh.execute("INSERT INTO planets (system_id, name) VALUES ('SYS_OK', ?)", ("P" * 300,))
        vh.execute("INSERT INTO planets (system_id, name) VALUES ('SYS_OK', 'Fine')")
    names = [s.name for s in catalog_systems()]
    assert "Padded Name" in names
    assert not [n for n in names if n.strip() == "" or len(n) > 200 or "\x1b" in n]
    assert not [n for n in names if "\u202e" in n or n == "\u200b"]
    places = catalog_places("SYS_OK")
    assert [p.name for p in places if p.kind == "planet"] == ["Fine"]
