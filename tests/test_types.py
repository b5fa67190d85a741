"""The ten discovery types of REFERENCE.md and how a type is looked up."""

from __future__ import annotations

import pytest

from discoveries.rules import FIELDS
from discoveries.types import ALL_TYPE_FIELD_KEYS, DISCOVERY_TYPES, discovery_type_lookup

VS16 = "\ufe0f"
VS15 = "\ufe0e"

#: The type table of ../shared/REFERENCE.md, written out independently of discoveries.types.
#: Emoji are escaped so that no editor can silently add or drop the U+FE0F variation selector.
REFERENCE_TYPES: tuple[tuple[str, str, tuple[str, str, str, str]], ...] = (
    (
        "\U0001f9b4",  # 🦴
        "Ancient bones & fossils",
        ("species_type", "size_scale", "preservation_quality", "estimated_age"),
    ),
    (
        "\U0001f4dc",  # 📜
        "Text logs & documents",
        ("key_excerpt", "language_status", "completeness", "author_origin"),
    ),
    (
        "\U0001f3db\ufe0f",  # 🏛️
        "Ruins & structures",
        ("structure_type", "architectural_style", "structural_integrity", "purpose_function"),
    ),
    (
        "\u2699\ufe0f",  # ⚙️
        "Alien technology & artifacts",
        ("tech_category", "operational_status", "power_source", "reverse_engineering"),
    ),
    (
        "\U0001f997",  # 🦗
        "Flora & fauna",
        ("species_name", "behavioral_notes", "habitat_biome", "threat_level"),
    ),
    (
        "\U0001f48e",  # 💎
        "Minerals & resources",
        ("resource_type", "deposit_richness", "extraction_method", "economic_value"),
    ),
    (
        "\U0001f680",  # 🚀
        "Crashed ships & wrecks",
        ("ship_class", "hull_condition", "salvageable_tech", "pilot_status"),
    ),
    (
        "\u26a1",  # ⚡
        "Environmental hazards",
        ("hazard_type", "severity_level", "duration_frequency", "protection_required"),
    ),
    (
        "\U0001f195",  # 🆕
        "Game-update content",
        ("update_name", "feature_category", "gameplay_impact", "first_impressions"),
    ),
    (
        "\U0001f4d6",  # 📖
        "Player-created lore",
        ("story_type", "lore_connections", "creative_elements", "collaborative_work"),
    ),
)

TYPE_IDS = [name for _, name, _ in REFERENCE_TYPES]


def test_types_match_reference_table_in_order():
    """The ten types carry exactly REFERENCE.md's emoji, names and four field keys, in order."""
    actual = [(t.emoji, t.name, t.field_keys) for t in DISCOVERY_TYPES]
    assert actual == list(REFERENCE_TYPES)


def test_forty_distinct_type_field_keys():
    """The type fields are 40 distinct keys, one per VH column of the type table."""
    expected = [key for _, _, keys in REFERENCE_TYPES for key in keys]
    assert len(set(ALL_TYPE_FIELD_KEYS)) == 40
    assert sorted(ALL_TYPE_FIELD_KEYS) == sorted(expected)


def test_emoji_and_slugs_are_distinct():
    """No two types share an emoji or a slug, so a stored emoji names exactly one type."""
    assert len({t.emoji for t in DISCOVERY_TYPES}) == 10
    assert len({t.slug for t in DISCOVERY_TYPES}) == 10


@pytest.mark.parametrize(("emoji", "name", "keys"), REFERENCE_TYPES, ids=TYPE_IDS)
def test_lookup_by_emoji_with_and_without_variation_selector(emoji, name, keys):
    """A type is found by its emoji whether or not U+FE0F follows it (Discord sends either)."""
    bare = emoji.replace(VS16, "")
    assert discovery_type_lookup(emoji).name == name
    assert discovery_type_lookup(bare).name == name
    assert discovery_type_lookup(bare + VS16).name == name


@pytest.mark.parametrize(("emoji", "name", "keys"), REFERENCE_TYPES, ids=TYPE_IDS)
def test_lookup_by_emoji_with_text_variation_selector(emoji, name, keys):
    """A type is found by its emoji followed by U+FE0E (text style) instead of U+FE0F."""
    assert discovery_type_lookup(emoji.replace(VS16, "") + VS15).name == name


def test_gear_in_text_style_is_technology():
    """'⚙︎' (gear with U+FE0E), as some keyboards send it, is the technology type."""
    assert discovery_type_lookup("\u2699\ufe0e").slug == "tech"


@pytest.mark.parametrize(("emoji", "name", "keys"), REFERENCE_TYPES, ids=TYPE_IDS)
def test_lookup_by_name_ignores_case_and_spacing(emoji, name, keys):
    """A type is found by its name in any case and with stray or doubled spaces."""
    assert discovery_type_lookup(name).emoji == emoji
    assert discovery_type_lookup(name.upper()).emoji == emoji
    assert discovery_type_lookup("  " + name.lower().replace(" ", "   ") + " ").emoji == emoji


@pytest.mark.parametrize("dtype", DISCOVERY_TYPES, ids=lambda t: t.slug)
def test_lookup_by_slug_and_by_emoji_name(dtype):
    """A type is found by its slug (any case) and by its "emoji name" label."""
    assert discovery_type_lookup(dtype.slug) is dtype
    assert discovery_type_lookup(dtype.slug.upper()) is dtype
    assert discovery_type_lookup(f"{dtype.emoji} {dtype.name}") is dtype


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "dragons",
        "Ruin",
        "Ruins & structure",
        "\U0001f409",
        "\ufe0f",
        "\ufe0e",
        None,
        3,
        ["\U0001f9b4"],
    ],
    ids=repr,
)
def test_lookup_unknown_is_none(value):
    """Anything that is not one of the ten types (or not a string) looks up as None."""
    assert discovery_type_lookup(value) is None


@pytest.mark.parametrize("dtype", DISCOVERY_TYPES, ids=lambda t: t.slug)
def test_field_labels_fit_a_discord_modal(dtype):
    """Every field label is non-empty and at most 45 characters (Discord's modal label limit)."""
    for field in dtype.fields:
        assert 0 < len(field.label) <= 45, field


def test_field_length_limits():
    """The key excerpt allows 500 characters, every other type field 200, a description 1000."""
    limits = {f.key: f.max_length for t in DISCOVERY_TYPES for f in t.fields}
    assert limits.pop("key_excerpt") == 500
    assert set(limits.values()) == {200}
    assert len(limits) == 39
    assert FIELDS["description"].max_length == 1000
