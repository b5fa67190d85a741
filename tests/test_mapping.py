"""The keeper → VH mapping and location resolution, as pure functions (no Django database)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from discoveries.haven.errors import MappingError
from discoveries.haven.mapping import (
    ResolvedLocation,
    SystemSnapshot,
    discovery_to_haven_row,
    location_resolve,
)
from tests.conftest import SAMPLE_VH, writable_copy
from tests.test_types import REFERENCE_TYPES, TYPE_IDS

ALL_REFERENCE_KEYS = frozenset(key for _, _, keys in REFERENCE_TYPES for key in keys)
RUINS = "\U0001f3db\ufe0f"
RESOLVED = ResolvedLocation("SYS_EUCLID_F04784DD", 20, None, "planet", None)


def keeper(**overrides) -> SimpleNamespace:
    """A keeper discovery as the mapping sees it: an object with the keeper column attributes."""
    values = {
        "discovery_type": RUINS,
        "metadata": {},
        "evidence_url": "https://example.org/tower.png",
        "location": "Krospen L49",
        "system_name": "Oculi",
        "description": "A broken tower.",
        "coordinates": "0A2B:0081:0D4F:0042",
        "condition": "Crumbling",
        "time_period": "Before the Atlas",
        "significance": "First of its kind",
        "username": "Tester",
        "user_id": "123456789012345678",
        "guild_id": "987654321098765432",
        "submission_timestamp": datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        "pattern_matches": 0,
        "mystery_tier": 0,
        "analysis_status": "pending",
        "tags": "[]",
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def to_row(discovery, location: ResolvedLocation = RESOLVED) -> dict[str, object]:
    return discovery_to_haven_row(discovery, location=location, keeper_discovery_id=41)


# --- type-specific columns ----------------------------------------------------------------------


@pytest.mark.parametrize(("emoji", "name", "keys"), REFERENCE_TYPES, ids=TYPE_IDS)
def test_each_type_maps_only_its_own_four_fields(emoji, name, keys):
    """A discovery's four type values land in their VH columns; other types' values are dropped."""
    every_key = {key: f"value of {key}" for key in ALL_REFERENCE_KEYS}
    row = to_row(keeper(discovery_type=emoji, metadata=every_key))
    assert row["discovery_type"] == emoji
    assert set(row) & ALL_REFERENCE_KEYS == set(keys)
    assert {key: row[key] for key in keys} == {key: f"value of {key}" for key in keys}


@pytest.mark.parametrize(("emoji", "name", "keys"), REFERENCE_TYPES, ids=TYPE_IDS)
def test_type_given_by_bare_emoji_or_name_is_written_as_the_canonical_emoji(emoji, name, keys):
    """A legacy row whose emoji lacks U+FE0F, or names its type in words, maps to the VH emoji."""
    assert to_row(keeper(discovery_type=emoji.replace("\ufe0f", "")))["discovery_type"] == emoji
    assert to_row(keeper(discovery_type=name))["discovery_type"] == emoji


def test_missing_and_empty_type_values_become_null():
    """Type fields absent from metadata or given as '' are written as NULL, not as ''."""
    row = to_row(keeper(metadata={"structure_type": "Tower", "architectural_style": ""}))
    assert row["structure_type"] == "Tower"
    assert row["architectural_style"] is None
    assert row["structural_integrity"] is None
    assert row["purpose_function"] is None


# --- common columns -----------------------------------------------------------------------------


def test_common_mapping_rules():
    """Submitter, guild, evidence, place and text go to the VH columns that REFERENCE.md names."""
    row = to_row(keeper())
    assert row["discovered_by"] == "Tester"
    assert row["discord_user_id"] == "123456789012345678"
    assert row["discord_guild_id"] == "987654321098765432"
    assert row["photo_url"] == "https://example.org/tower.png"
    assert row["evidence_urls"] == "https://example.org/tower.png"
    assert row["location_name"] == "Krospen L49"
    assert row["description"] == "A broken tower."
    assert row["condition"] == "Crumbling"
    assert row["time_period"] == "Before the Atlas"
    assert row["significance"] == "First of its kind"
    assert row["coordinates"] == "0A2B:0081:0D4F:0042"
    assert row["submission_timestamp"] == "2024-05-06 07:08:09"


def test_resolved_location_ids_are_written():
    """The resolved system, planet and moon ids and the location type go into the VH row."""
    location = ResolvedLocation("SYS_EUCLID_D148E5FD", 31, 6, "moon", None)
    row = to_row(keeper(location="Getre Beta"), location)
    assert (row["system_id"], row["planet_id"], row["moon_id"]) == ("SYS_EUCLID_D148E5FD", 31, 6)
    assert row["location_type"] == "moon"
    assert "location_unresolved" not in json.loads(row["metadata"])


@pytest.mark.parametrize("evidence", ["", "   ", None])
def test_no_evidence_means_no_photo(evidence):
    """A discovery without an evidence link gets NULL photo_url and evidence_urls, not ''."""
    row = to_row(keeper(evidence_url=evidence))
    assert row["photo_url"] is None
    assert row["evidence_urls"] is None


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        (
            datetime(2024, 3, 1, 0, 30, 15, tzinfo=timezone(timedelta(hours=1))),
            "2024-02-29 23:30:15",
        ),
        (
            datetime(2024, 12, 31, 20, 0, 0, tzinfo=timezone(timedelta(hours=-5))),
            "2025-01-01 01:00:00",
        ),
        (datetime(2024, 5, 6, 7, 8, 9, 999999, tzinfo=UTC), "2024-05-06 07:08:09"),
        (datetime(2024, 5, 6, 7, 8, 9), "2024-05-06 07:08:09"),
    ],
    ids=["plus-one-hour", "minus-five-hours", "utc-microseconds", "naive-taken-as-utc"],
)
def test_timestamp_written_as_utc_text(stamp, expected):
    """The submission time is written as 'YYYY-MM-DD HH:MM:SS' in UTC, whatever its zone."""
    assert to_row(keeper(submission_timestamp=stamp))["submission_timestamp"] == expected


def test_metadata_marks_the_row_as_from_keeper():
    """The VH row's metadata names keeper as its source and the keeper discovery id."""
    marker = json.loads(to_row(keeper())["metadata"])
    assert marker == {"source": "keeper", "keeper_discovery_id": 41}


# --- legacy oddities ----------------------------------------------------------------------------


def test_legacy_empty_integer_columns_become_zero():
    """Legacy '' in pattern_matches and mystery_tier is written as 0, since VH wants a number."""
    row = to_row(keeper(pattern_matches="", mystery_tier=""))
    assert row["pattern_matches"] == 0
    assert row["mystery_tier"] == 0


def test_legacy_integer_text_is_kept():
    """Legacy integer columns stored as text ('3') keep their value."""
    row = to_row(keeper(pattern_matches="3", mystery_tier=2))
    assert (row["pattern_matches"], row["mystery_tier"]) == (3, 2)


def test_legacy_metadata_as_json_text():
    """Metadata stored as a JSON string (as the old bot did) still yields the type values."""
    text = json.dumps({"structure_type": "Obelisk", "purpose_function": "Unknown"})
    row = to_row(keeper(metadata=text))
    assert row["structure_type"] == "Obelisk"
    assert row["purpose_function"] == "Unknown"


@pytest.mark.parametrize("metadata", ["{}", {}, "", None], ids=repr)
def test_legacy_empty_metadata_gives_null_type_values(metadata):
    """Empty metadata ('{}', {}, '' or NULL) maps, with all four type columns NULL."""
    row = to_row(keeper(metadata=metadata))
    keys = ("structure_type", "architectural_style", "structural_integrity", "purpose_function")
    assert {key: row[key] for key in keys} == dict.fromkeys(keys)


@pytest.mark.parametrize("discovery_type", ["\U0001f409", "dragons", "", None], ids=repr)
def test_unknown_type_is_a_mapping_error(discovery_type):
    """A discovery whose type is not one of the ten cannot be mapped, and the error names it."""
    with pytest.raises(MappingError, match="unknown discovery type"):
        to_row(keeper(discovery_type=discovery_type))


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ('["structure_type", "Tower"]', "not a JSON object"),
        (["structure_type"], "not a JSON object"),
        ('"Tower"', "not a JSON object"),
        ("{structure_type: Tower", "not valid JSON"),
        ("f", "not valid JSON"),
    ],
    ids=["json-list", "python-list", "json-string", "broken-json", "legacy-f"],
)
def test_unreadable_metadata_still_writes_the_discovery_and_says_why(metadata, message):
    """Legacy metadata that is a JSON list, another non-object, or not JSON at all gives no
    type fields: the row is written without them and its marker says why."""
    row = to_row(keeper(metadata=metadata))
    assert row["structure_type"] is None
    assert row["description"]
    assert message in json.loads(row["metadata"])["type_fields_unreadable"]


def test_non_text_type_values_are_written_as_json():
    """A type field holding a number or an object in legacy metadata is written as JSON text."""
    row = to_row(keeper(metadata={"structure_type": {"a": 1}, "architectural_style": 3}))
    assert row["structure_type"] == '{"a": 1}'
    assert row["architectural_style"] == "3"


# --- location resolution ------------------------------------------------------------------------

DEMO = SystemSnapshot(
    "SYS_DEMO",
    planets={"Alpha Prime": 11, "Beta": 12, "Twin": 13},
    moons=(("Luna", 21, 11), ("Twin", 22, 12)),
)


def resolve(location, location_type, system=DEMO, system_name="Demo Alpha") -> ResolvedLocation:
    return location_resolve(
        system_name=system_name, location=location, location_type=location_type, system=system
    )


def test_planet_resolved_by_name():
    """A planet is found by its name within the system."""
    assert resolve("Beta", "planet") == ResolvedLocation("SYS_DEMO", 12, None, "planet", None)


def test_moon_resolved_with_its_planet():
    """A moon is found by name among the system's moons, which also gives its planet id."""
    assert resolve("Luna", "moon") == ResolvedLocation("SYS_DEMO", 11, 21, "moon", None)


def test_space_needs_no_planet():
    """A discovery in space is resolved to the system alone."""
    assert resolve("Space", "space") == ResolvedLocation("SYS_DEMO", None, None, "space", None)


def test_legacy_untyped_location_tries_planet_then_moon():
    """A legacy row without a location type resolves as a planet, else as a moon."""
    assert resolve("Alpha Prime", None) == ResolvedLocation("SYS_DEMO", 11, None, "planet", None)
    assert resolve("Luna", None) == ResolvedLocation("SYS_DEMO", 11, 21, "moon", None)
    assert resolve("Twin", None) == ResolvedLocation("SYS_DEMO", 13, None, "planet", None)


def test_explicit_moon_is_not_taken_for_a_planet_of_the_same_name():
    """A location typed as a moon resolves to the moon even when a planet shares its name."""
    assert resolve("Twin", "moon") == ResolvedLocation("SYS_DEMO", 12, 22, "moon", None)


def test_surrounding_spaces_in_location_are_ignored():
    """A location typed with stray spaces still resolves."""
    assert resolve("  Beta ", "planet").planet_id == 12


def test_unknown_system_is_written_unresolved():
    """A system VH does not know gives NULL ids and a sentence naming the system."""
    result = resolve("Beta", "planet", system=None, system_name="Nowhere")
    assert (result.system_id, result.planet_id, result.moon_id) == (None, None, None)
    assert result.location_type == "planet"
    assert not result.resolved
    assert "Nowhere" in result.unresolved


@pytest.mark.parametrize("location_type", ["planet", "moon", None])
def test_unknown_planet_or_moon_is_written_unresolved(location_type):
    """A place the system does not have keeps the system id, NULL planet and moon, and says so."""
    result = resolve("Atlantis", location_type)
    assert result.system_id == "SYS_DEMO"
    assert (result.planet_id, result.moon_id) == (None, None)
    assert result.location_type == (location_type or "planet")
    assert not result.resolved
    assert "Atlantis" in result.unresolved
    assert "Demo Alpha" in result.unresolved


def test_unresolved_location_is_recorded_on_the_vh_row():
    """A row with an unresolved location carries the reason in its metadata for operators."""
    location = resolve("Atlantis", "planet")
    marker = json.loads(to_row(keeper(location="Atlantis"), location)["metadata"])
    assert marker["location_unresolved"] == location.unresolved
    assert "Atlantis" in marker["location_unresolved"]


# --- location resolution on the real sample VH-Database.db --------------------------------------


@pytest.fixture(scope="module")
def sample_systems(tmp_path_factory) -> dict[str, SystemSnapshot]:
    """Every system of the real sample VH file, by name, read from a copy (SQLite makes -wal
    and -shm files beside a WAL database even to read it, and examples/ stays untouched)."""
    path = writable_copy(SAMPLE_VH, tmp_path_factory.mktemp("vh") / "vh.db")
    with closing(sqlite3.connect(path)) as conn:
        systems = {}
        for system_id, name in conn.execute("SELECT id, name FROM systems").fetchall():
            planets = dict(
                conn.execute("SELECT name, id FROM planets WHERE system_id = ?", (system_id,))
            )
            moons = tuple(
                conn.execute(
                    "SELECT m.name, m.id, m.planet_id FROM moons m"
                    " JOIN planets p ON p.id = m.planet_id WHERE p.system_id = ? ORDER BY m.id",
                    (system_id,),
                )
            )
            systems[name] = SystemSnapshot(system_id, planets, moons)
    return systems


def resolve_sample(systems, system_name, location, location_type) -> ResolvedLocation:
    return location_resolve(
        system_name=system_name,
        location=location,
        location_type=location_type,
        system=systems.get(system_name),
    )


def test_sample_planet_in_oculi(sample_systems):
    """Planet 'Krospen L49' of system 'Oculi' resolves to VH planet 20."""
    result = resolve_sample(sample_systems, "Oculi", "Krospen L49", "planet")
    assert result == ResolvedLocation("SYS_EUCLID_F04784DD", 20, None, "planet", None)


def test_sample_moon_in_ixiezh_hv(sample_systems):
    """Moon 'Getre Beta' of system 'Ixiezh HV' resolves to VH moon 6 on planet 31."""
    result = resolve_sample(sample_systems, "Ixiezh HV", "Getre Beta", "moon")
    assert result == ResolvedLocation("SYS_EUCLID_D148E5FD", 31, 6, "moon", None)


@pytest.mark.parametrize("location_type", ["moon", None])
def test_sample_moon_in_tenex(sample_systems, location_type):
    """Moon 'Mikeen' of system 'Tenex[VH]' resolves to VH moon 3 on planet 6, typed or legacy."""
    result = resolve_sample(sample_systems, "Tenex[VH]", "Mikeen", location_type)
    assert result == ResolvedLocation("SYS_EUCLID_F725F072", 6, 3, "moon", None)


def test_sample_unknown_system_is_unresolved(sample_systems):
    """A system the sample does not hold resolves to NULL ids and an unresolved sentence."""
    result = resolve_sample(sample_systems, "Nowhere Prime", "Krospen L49", "planet")
    assert (result.system_id, result.planet_id, result.moon_id) == (None, None, None)
    assert not result.resolved
    assert "Nowhere Prime" in result.unresolved
