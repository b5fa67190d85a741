"""The ten discovery types, their emoji and their four type-specific fields.

Source: the type table of ``../shared/REFERENCE.md``. keeper.db stores a discovery's type as its
emoji (``discoveries.discovery_type``) and its type-specific values in ``discoveries.metadata``
under the keys below; VH-Database.db has one column per key, named the same.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from django.db import models

TYPE_FIELD_MAX_LENGTH = 200
KEY_EXCERPT_MAX_LENGTH = 500

#: U+FE0E (text style) and U+FE0F (emoji style) only choose how an emoji is drawn.
_VARIATION_SELECTORS = str.maketrans("", "", "\ufe0e\ufe0f")


class LocationType(models.TextChoices):
    """Where on a system a discovery was made; the values of VH's ``discoveries.location_type``."""

    PLANET = "planet", "Planet"
    MOON = "moon", "Moon"
    SPACE = "space", "In space"


@dataclass(frozen=True)
class TypeField:
    """One type-specific field: ``key`` is the metadata key and the VH column, ``label`` is what
    a person sees (at most 45 characters, Discord's limit for a modal input label), and
    ``max_length`` is in characters."""

    key: str
    label: str
    max_length: int = TYPE_FIELD_MAX_LENGTH


@dataclass(frozen=True)
class DiscoveryType:
    """A discovery type: ``emoji`` as stored in keeper.db and VH, ``slug`` a short ASCII name,
    ``name`` the human name, and its four ``fields``."""

    emoji: str
    slug: str
    name: str
    fields: tuple[TypeField, TypeField, TypeField, TypeField]

    @property
    def field_keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields)

    def __str__(self) -> str:
        return f"{self.emoji} {self.name}"


def _t(emoji: str, slug: str, name: str, *fields: tuple[str, str] | tuple[str, str, int]):
    return DiscoveryType(emoji, slug, name, tuple(TypeField(*f) for f in fields))


DISCOVERY_TYPES: tuple[DiscoveryType, ...] = (
    _t(
        "🦴",
        "bones",
        "Ancient bones & fossils",
        ("species_type", "Species type"),
        ("size_scale", "Size / scale"),
        ("preservation_quality", "Preservation quality"),
        ("estimated_age", "Estimated age"),
    ),
    _t(
        "📜",
        "logs",
        "Text logs & documents",
        ("key_excerpt", "Key excerpt", KEY_EXCERPT_MAX_LENGTH),
        ("language_status", "Language status"),
        ("completeness", "Completeness"),
        ("author_origin", "Author / origin"),
    ),
    _t(
        "🏛️",
        "ruins",
        "Ruins & structures",
        ("structure_type", "Structure type"),
        ("architectural_style", "Architectural style"),
        ("structural_integrity", "Structural integrity"),
        ("purpose_function", "Purpose / function"),
    ),
    _t(
        "⚙️",
        "tech",
        "Alien technology & artifacts",
        ("tech_category", "Technology category"),
        ("operational_status", "Operational status"),
        ("power_source", "Power source"),
        ("reverse_engineering", "Reverse engineering notes"),
    ),
    _t(
        "🦗",
        "flora_fauna",
        "Flora & fauna",
        ("species_name", "Species name"),
        ("behavioral_notes", "Behavioural notes"),
        ("habitat_biome", "Habitat / biome"),
        ("threat_level", "Threat level"),
    ),
    _t(
        "💎",
        "minerals",
        "Minerals & resources",
        ("resource_type", "Resource type"),
        ("deposit_richness", "Deposit richness"),
        ("extraction_method", "Extraction method"),
        ("economic_value", "Economic value"),
    ),
    _t(
        "🚀",
        "wrecks",
        "Crashed ships & wrecks",
        ("ship_class", "Ship class"),
        ("hull_condition", "Hull condition"),
        ("salvageable_tech", "Salvageable technology"),
        ("pilot_status", "Pilot status"),
    ),
    _t(
        "⚡",
        "hazards",
        "Environmental hazards",
        ("hazard_type", "Hazard type"),
        ("severity_level", "Severity level"),
        ("duration_frequency", "Duration / frequency"),
        ("protection_required", "Protection required"),
    ),
    _t(
        "🆕",
        "update",
        "Game-update content",
        ("update_name", "Update name"),
        ("feature_category", "Feature category"),
        ("gameplay_impact", "Gameplay impact"),
        ("first_impressions", "First impressions"),
    ),
    _t(
        "📖",
        "lore",
        "Player-created lore",
        ("story_type", "Story type"),
        ("lore_connections", "Lore connections"),
        ("creative_elements", "Creative elements"),
        ("collaborative_work", "Collaborative work"),
    ),
)

#: Every type-specific key of every type: the 40 VH columns of the type table.
ALL_TYPE_FIELD_KEYS: tuple[str, ...] = tuple(k for t in DISCOVERY_TYPES for k in t.field_keys)


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFC", text).translate(_VARIATION_SELECTORS)
    return " ".join(text.split()).casefold()


_LOOKUP: dict[str, DiscoveryType] = {}
for _type in DISCOVERY_TYPES:
    for _alias in (_type.emoji, _type.slug, _type.name, str(_type)):
        _LOOKUP[_fold(_alias)] = _type


def discovery_type_lookup(value: object) -> DiscoveryType | None:
    """Find a type by its emoji (with or without a variation selector, U+FE0F or U+FE0E), its
    slug, its name or ``"emoji name"``, ignoring case and extra spaces; ``None`` when nothing
    matches or ``value`` is not a string."""
    if not isinstance(value, str):
        return None
    return _LOOKUP.get(_fold(value))
