"""Names matched as people type them: the folding of :mod:`discoveries.names`, resolution of
places against the real sample VH files (case, Unicode forms, invisible characters), names of
the Control Room that fold alike refused, and the nearest names told to the submitter by
``manage.py submit_discovery``."""

from __future__ import annotations

import io
import json
import sqlite3
import unicodedata
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.db import connections

from discoveries.haven.catalog import catalog_location_check, catalog_location_resolve
from discoveries.haven.mapping import ResolvedLocation, SystemSnapshot, location_resolve
from discoveries.haven.writer import haven_row_preview
from discoveries.names import name_key, names_ambiguity, names_matching, names_nearest

OCULI = "SYS_EUCLID_F04784DD"
WITH_HAVEN = pytest.mark.django_db(transaction=True, databases=["default", "haven"])
#: Both real sample files: the old schema, and the one the Control Room creates today.
SAMPLES = pytest.mark.parametrize("vh", ["sample_haven_db", "control_room_schema_haven_db"])


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


# --- folding ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "oculi",
        "OCULI",
        "  Oculi  ",
        "O\u200bculi",  # zero-width space
        "Ocu\u200dli",  # zero-width joiner
        "Oc\u200culi",  # zero-width non-joiner
        "\ufeffOculi",  # byte order mark
        "\u200eOculi\u200f",  # left-to-right and right-to-left marks
        "\u202aOculi\u202c",  # a bidirectional embedding and its end
        "\u2067Oculi\u2069",  # a bidirectional isolate and its end
        "Ocu\u00adli",  # soft hyphen
        "Oculi\ufe0f",  # variation selector
        "Oc\U000e0041uli",  # a tag character
        "\uff2f\uff43\uff55\uff4c\uff49",  # fullwidth letters
    ],
)
def test_name_key_folds_case_width_and_invisible_characters(typed):
    """Case, fullwidth letters, surrounding spaces and characters that show nothing do not
    change a name's key."""
    assert name_key(typed) == name_key("Oculi") == "oculi"


def test_name_key_composes_accents_and_collapses_spaces():
    """A decomposed "Ésa Prime" (NFD) and one typed with a no-break space, an ideographic space
    or a tab are the composed name; ß folds to ss."""
    assert nfd("Ésa Prime") != "Ésa Prime"
    expected = name_key("Ésa Prime")
    assert expected == "ésa prime"
    for typed in (nfd("Ésa Prime"), "ÉSA\u00a0PRIME", "Ésa\u3000 Prime", "Ésa\t\n Prime"):
        assert name_key(typed) == expected
    assert name_key("Straße") == name_key("STRASSE")


def test_name_key_keeps_different_names_apart():
    """Names a person reads as different keep different keys."""
    for one, other in [
        ("Oculi", "Oculs"),
        ("Tenex[VH]", "Tenex VH"),
        ("Kesen 49/X3", "Kesen 49X3"),
    ]:
        assert name_key(one) != name_key(other)


def test_name_of_nothing_visible_has_an_empty_key_and_matches_nothing():
    """A name of only invisible characters has the empty key: it matches nothing, not even
    another invisible name, and has no nearest names."""
    assert name_key("\u200b\u3164 \ufeff") == ""
    assert names_matching("\u200b", ["\u200d", "Oculi"]) == []
    assert names_nearest("\u200b", ["Oculi"]) == []


def test_exact_spelling_comes_before_folding():
    """Of two names that fold alike, the one spelled exactly as typed is the match; a folded
    spelling matches both, which the caller refuses."""
    assert names_matching("Terra", ["Terra", "TERRA"]) == ["Terra"]
    assert names_matching("terra", ["Terra", "TERRA", "Mars"]) == ["Terra", "TERRA"]
    assert names_matching(" TERRA ", ["Terra", "TERRA"]) == ["TERRA"]


def test_nearest_names_come_closest_first_as_spelled():
    """The nearest names are the candidates' own spellings, closest first, at most ``limit``,
    each once; nothing when no name is close."""
    systems = ["Oculi", "Tenex[VH]", "Ixiezh HV", "Luzhilar XVIII", "Oculus Major"]
    assert names_nearest("Okuli", systems) == ["Oculi"]
    assert names_nearest("oculus", systems, limit=1) == ["Oculi"]
    assert names_nearest("OCULI", [*systems, "Oculi"]) == ["Oculi"]
    assert names_nearest("ORACLE ZETA", systems) == []
    planets = ["Krospen L49", "Kesen 49/X3", "Kimberto II", "Krospen L50"]
    assert names_nearest("krospen l94", planets)[:2] == ["Krospen L49", "Krospen L50"]
    assert len(names_nearest("Krospen", planets, limit=2)) == 2


def test_ambiguity_is_one_sentence_naming_every_name():
    """The sentence names what matched, each name, and what to do."""
    assert names_ambiguity("planets of system 'Oculi'", "terra", ["Terra", "TERRA"]) == (
        "two planets of system 'Oculi' match 'terra': 'Terra' and 'TERRA'; rename one in the "
        "Control Room"
    )
    assert names_ambiguity("systems", "a", ["A", "a\u200b", "A\ufe0f"]).startswith(
        "three systems match 'a': 'A', 'a\\u200b' and 'A\\ufe0f'; rename all but one"
    )


# --- resolution against one system (pure) -------------------------------------------------------

TWINS = SystemSnapshot(
    "SYS_T",
    planets={"Terra": 1, "TERRA": 2, "Mars": 3},
    moons=(("Luna", 11, 1), ("LUNA", 12, 3), ("Phobos", 13, 3)),
    name="Twins",
)


def resolve(location, location_type=None, system=TWINS, system_name="twins"):
    return location_resolve(
        system_name=system_name, location=location, location_type=location_type, system=system
    )


def test_planet_and_moon_match_in_another_case():
    """A planet or a moon typed in another case, or with an invisible character, is found."""
    assert resolve("MARS", "planet") == ResolvedLocation("SYS_T", 3, None, "planet", None)
    assert resolve("pho\u200bbos", "moon") == ResolvedLocation("SYS_T", 3, 13, "moon", None)
    assert resolve("phobos") == ResolvedLocation("SYS_T", 3, 13, "moon", None)


def test_two_planets_folding_alike_are_refused_naming_both():
    """'terra' matches planets 'Terra' and 'TERRA': neither is taken, both are named, and the
    exact spellings still resolve each to its own."""
    result = resolve("terra", "planet")
    assert (result.system_id, result.planet_id, result.moon_id) == ("SYS_T", None, None)
    assert result.ambiguous and not result.resolved
    assert result.unresolved == (
        "two planets of system 'Twins' match 'terra': 'Terra' and 'TERRA'; rename one in the "
        "Control Room"
    )
    assert resolve("Terra", "planet").planet_id == 1
    assert resolve("TERRA", "planet").planet_id == 2


def test_two_moons_folding_alike_are_refused_naming_their_planets():
    """Moons 'Luna' and 'LUNA' of different planets: 'luna' is refused, each named with its
    planet."""
    result = resolve("luna", "moon")
    assert result.moon_id is None and result.ambiguous
    assert "'Luna' (moon of 'Terra') and 'LUNA' (moon of 'Mars')" in result.unresolved
    assert resolve("LUNA", "moon") == ResolvedLocation("SYS_T", 3, 12, "moon", None)


def test_an_unknown_place_is_one_sentence_with_the_nearest_names_beside_it():
    """A planet the system lacks: one sentence naming it and the system as VH spells it, and
    the nearest planets' names in ``suggestions``; the hint adds that the discovery waits."""
    result = resolve("Marz", "planet")
    assert result.unresolved == "planet 'Marz' is not in system 'Twins' in the Control Room"
    assert result.suggestions == ("Mars",)
    assert result.hint == (
        "Planet 'Marz' is not in system 'Twins' in the Control Room; the nearest name there is "
        "'Mars'. The discovery is kept and waits until the place is added to the Control Room."
    )
    unknown = resolve("Zzyzx")
    assert unknown.unresolved.startswith("planet or moon 'Zzyzx' is not in system 'Twins'")
    assert unknown.suggestions == () and unknown.location_type == "planet"


def test_an_ambiguous_place_hint_says_it_waits_until_then():
    """The hint of an ambiguity names both names and says the discovery waits until then."""
    hint = resolve("terra", "planet").hint
    assert hint.startswith("Two planets of system 'Twins' match 'terra': 'Terra' and 'TERRA'")
    assert hint.endswith(
        "rename one in the Control Room. The discovery is kept and waits until then."
    )
    assert resolve("Mars", "planet").hint is None


# --- resolution against the real sample files ---------------------------------------------------


def _vh(request, name: str) -> Path:
    path = request.getfixturevalue(name)
    connections["haven"].close()
    return path


def _vh_execute(path: Path, *statements: tuple[str, tuple]) -> None:
    """Change the test's copy of VH as the Control Room would, on a connection of its own."""
    connections["haven"].close()
    with closing(sqlite3.connect(path)) as vh, vh:
        for sql, params in statements:
            vh.execute(sql, params)


def _resolve(system_name, location, location_type):
    return catalog_location_resolve(
        system_name=system_name, location=location, location_type=location_type
    )


@WITH_HAVEN
@SAMPLES
@pytest.mark.parametrize(
    ("system_name", "location"),
    [
        ("oculi", "Krospen L49"),
        ("OCULI", "krospen l49"),
        ("O\u200bculi", "KROSPEN\u00a0L49"),
        ("\ufeffoculi ", "Krospen\u200b L49"),
        ("Oculi", "Krospen L49"),
    ],
)
def test_sample_system_and_planet_match_as_typed(request, vh, system_name, location):
    """System 'Oculi' and its planet 'Krospen L49' of the real sample files, typed in another
    case or with invisible characters, resolve to VH system SYS_EUCLID_F04784DD, planet 20."""
    _vh(request, vh)
    assert _resolve(system_name, location, "planet") == ResolvedLocation(
        OCULI, 20, None, "planet", None
    )


@WITH_HAVEN
@SAMPLES
def test_sample_moons_match_in_another_case(request, vh):
    """Moon 'Getre Beta' of 'Ixiezh HV' (moon 6 on planet 31) and 'Mikeen' of 'Tenex[VH]'
    (moon 3 on planet 6, legacy untyped) resolve typed in other cases."""
    _vh(request, vh)
    assert _resolve("ixiezh hv", "GETRE BETA", "moon") == ResolvedLocation(
        "SYS_EUCLID_D148E5FD", 31, 6, "moon", None
    )
    assert _resolve("TENEX[vh]", "mikeen", None) == ResolvedLocation(
        "SYS_EUCLID_F725F072", 6, 3, "moon", None
    )


@WITH_HAVEN
@SAMPLES
@pytest.mark.parametrize("stored_nfd", [False, True], ids=["vh-composed", "vh-decomposed"])
def test_decomposed_accents_match_the_composed_name(request, vh, stored_nfd):
    """The sample has no accented name, so the test's copy gains system 'Ésa Prime' with
    planet 'Éden': typed decomposed (NFD) it resolves to them, and so does the composed name
    when the Control Room stored the decomposed one."""
    path = _vh(request, vh)
    spell = nfd if stored_nfd else (lambda text: text)
    _vh_execute(
        path,
        (
            "INSERT INTO systems (id, name, x, y, z, region) VALUES (?, ?, 0, 0, 0, 'Test')",
            ("SYS_ESA", spell("Ésa Prime")),
        ),
        ("INSERT INTO planets (id, system_id, name) VALUES (90, 'SYS_ESA', ?)", (spell("Éden"),)),
    )
    typed = (lambda text: text) if stored_nfd else nfd
    assert typed("Ésa Prime") != spell("Ésa Prime")
    assert _resolve(typed("Ésa Prime"), typed("éden"), "planet") == ResolvedLocation(
        "SYS_ESA", 90, None, "planet", None
    )


@WITH_HAVEN
@SAMPLES
def test_two_sample_systems_folding_alike_are_refused_naming_both(request, vh):
    """The test's copy gains a system 'OCULI' beside 'Oculi': 'oculi' is refused, naming
    both; each exact spelling still resolves to its own system."""
    path = _vh(request, vh)
    _vh_execute(
        path,
        (
            "INSERT INTO systems (id, name, x, y, z, region) VALUES (?, ?, 0, 0, 0, 'Test')",
            ("SYS_LOUD", "OCULI"),
        ),
    )
    result = _resolve("oculi", "Krospen L49", "planet")
    assert (result.system_id, result.planet_id) == (None, None)
    assert result.ambiguous and not result.resolved
    assert result.unresolved == (
        "two systems match 'oculi': 'Oculi' and 'OCULI'; rename one in the Control Room"
    )
    assert _resolve("Oculi", "Krospen L49", "planet").planet_id == 20
    assert _resolve("OCULI", "Krospen L49", "planet").system_id == "SYS_LOUD"


@WITH_HAVEN
@SAMPLES
def test_two_sample_planets_folding_alike_are_refused_naming_both(request, vh):
    """The copy's 'Oculi' gains a planet 'KROSPEN L49': 'krospen l49' is refused naming both."""
    path = _vh(request, vh)
    _vh_execute(
        path,
        ("INSERT INTO planets (id, system_id, name) VALUES (91, ?, 'KROSPEN L49')", (OCULI,)),
    )
    result = _resolve("oculi", "krospen l49", "planet")
    assert (result.system_id, result.planet_id) == (OCULI, None)
    assert result.unresolved == (
        "two planets of system 'Oculi' match 'krospen l49': 'Krospen L49' and 'KROSPEN L49'; "
        "rename one in the Control Room"
    )
    assert _resolve("Oculi", "Krospen L49", "planet").planet_id == 20


@WITH_HAVEN
@SAMPLES
def test_unknown_sample_names_come_with_the_nearest_names(request, vh):
    """A system the sample lacks names it and offers the nearest systems; a planet the system
    lacks names both and offers the nearest planets; a name near none offers nothing."""
    _vh(request, vh)
    system = _resolve("Okuli", "Krospen L49", "planet")
    assert system.unresolved == "system 'Okuli' is not in the Control Room"
    assert system.suggestions == ("Oculi",)
    planet = _resolve("oculi", "Krospen L94", "planet")
    assert planet.system_id == OCULI
    assert planet.unresolved == "planet 'Krospen L94' is not in system 'Oculi' in the Control Room"
    assert planet.suggestions[0] == "Krospen L49"
    far = _resolve("ORACLE ZETA", "Krospen L49", "planet")
    assert far.unresolved == "system 'ORACLE ZETA' is not in the Control Room"
    assert far.suggestions == ()


@WITH_HAVEN
def test_the_writers_preview_resolves_a_name_typed_in_another_case(sample_haven_db):
    """The row the writer would write for 'OCULI' / 'krospen l49' holds Oculi's and Krospen
    L49's ids."""
    discovery = SimpleNamespace(
        id=5,
        discovery_type="🏛️",
        metadata={},
        evidence_url="",
        location="krospen l49",
        location_type="planet",
        system_name="OCULI",
        description="Found by folding.",
        coordinates=None,
        condition=None,
        time_period=None,
        significance=None,
        username="Tester",
        user_id="123456789012345678",
        guild_id=None,
        submission_timestamp="2026-01-02 03:04:05",
        pattern_matches=0,
        mystery_tier=0,
        analysis_status="pending",
        tags=None,
    )
    preview = haven_row_preview(discovery)
    assert preview.problem is None, preview.problem
    assert (preview.row["system_id"], preview.row["planet_id"]) == (OCULI, 20)


@WITH_HAVEN
def test_the_check_reads_vh_and_closes_it_or_says_nothing(sample_haven_db, settings, tmp_path):
    """The doors' check answers from VH and leaves no connection open; with VH switched off or
    missing it answers None."""
    checked = catalog_location_check(system_name="Okuli", location="Erren", location_type=None)
    assert checked.suggestions == ("Oculi",)
    assert connections["haven"].connection is None
    settings.USE_HAVEN_DATABASE = False
    assert catalog_location_check(system_name="Okuli", location="x", location_type=None) is None
    settings.USE_HAVEN_DATABASE = True
    settings.HAVEN_DB_PATH = tmp_path / "absent.db"
    assert catalog_location_check(system_name="Okuli", location="x", location_type=None) is None


# --- manage.py submit_discovery -----------------------------------------------------------------


def _entry(system_name: str, location: str, **extra) -> dict:
    return {
        "user_id": "123456789012345678",
        "username": "Tester",
        "discovery_type": "🏛️",
        "system_name": system_name,
        "location": location,
        "location_type": "planet",
        "description": f"Found on {location}.",
        **extra,
    }


def _submit(tmp_path: Path, entries: list[dict]) -> str:
    path = tmp_path / "entries.json"
    path.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    call_command("submit_discovery", file=str(path), stdout=out, stderr=err)
    assert err.getvalue() == ""
    return out.getvalue()


@WITH_HAVEN
def test_the_command_tells_which_places_are_not_in_the_control_room(sample_haven_db, tmp_path):
    """A place typed in another case is stored without a note; an unknown system and an
    unknown planet are stored and noted, each with the nearest name and that it waits."""
    out = _submit(
        tmp_path,
        [
            _entry("oculi", "KROSPEN L49"),
            _entry("Okuli", "Krospen L49"),
            _entry("Oculi", "Krospen L94"),
        ],
    )
    lines = out.splitlines()
    assert lines[0].startswith("entry 1: discovery") and lines[1].startswith("entry 2:")
    assert lines[2] == (
        "  note: System 'Okuli' is not in the Control Room; the nearest name there is 'Oculi'. "
        "The discovery is kept and waits until the place is added to the Control Room."
    )
    assert lines[3].startswith("entry 3:")
    assert lines[4].startswith(
        "  note: Planet 'Krospen L94' is not in system 'Oculi' in the Control Room; the nearest "
        "name"
    )
    assert "'Krospen L49'" in lines[4]
    assert lines[5] == "3 submitted, 0 refused, 0 not stored"


@pytest.mark.django_db
def test_the_command_says_nothing_of_places_when_vh_is_missing(tmp_path, settings):
    """Without VH the command cannot know the map: no note, whatever the names."""
    settings.HAVEN_DB_PATH = tmp_path / "absent.db"
    out = _submit(tmp_path, [_entry("Okuli", "Krospen L94")])
    assert "note" not in out and "Control Room" not in out
    assert "1 submitted" in out
