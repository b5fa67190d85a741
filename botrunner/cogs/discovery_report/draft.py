"""What a member has entered in the /discovery-report form so far (:class:`ReportDraft`), and
how a refused draft is told back to them (:func:`invalid_text`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from botrunner import limits
from discoveries.rules import FIELDS, DiscoveryInvalid, field_label, text_markup_neutralise
from discoveries.types import DiscoveryType


@dataclass
class ReportDraft:
    """What a member has entered so far; nothing is stored until the report is submitted.

    ``user_id`` and ``guild_id`` are Discord snowflakes (``guild_id`` None outside a server);
    ``location_type`` is ``planet``, ``moon``, ``space`` or None (a typed name, which the sync
    looks up as both); ``planet_name`` is a moon's planet; ``type_fields`` maps the type's field
    keys to the text typed, empty ones left out.
    """

    user_id: int
    username: str
    guild_id: int | None
    discovery_type: DiscoveryType | None = None
    system_name: str | None = None
    location: str | None = None
    location_type: str | None = None
    planet_name: str | None = None
    description: str = ""
    type_fields: dict[str, str] = field(default_factory=dict)
    evidence_url: str | None = None

    def submit_kwargs(self) -> dict[str, object]:
        """The keyword arguments of :func:`discoveries.rules.discovery_validate`: ids as
        strings, the type by its emoji, the member's name cut to its limit
        (:data:`discoveries.rules.FIELDS`). The name is Discord's, not typed in this form, so
        markup in it is made harmless (:func:`discoveries.rules.text_markup_neutralise`) rather
        than refused: a member named ``<Zed>`` can still report."""
        extra = {"planet_name": self.planet_name} if self.planet_name else {}
        return {
            "user_id": str(self.user_id),
            "username": text_markup_neutralise(
                limits.cut(self.username, FIELDS["username"].max_length)
            ),
            "guild_id": str(self.guild_id) if self.guild_id else None,
            "discovery_type": self.discovery_type.emoji if self.discovery_type else None,
            "system_name": self.system_name,
            "location": self.location,
            "location_type": self.location_type,
            "description": self.description,
            "type_fields": dict(self.type_fields),
            "evidence_url": self.evidence_url,
            **extra,
        }

    @property
    def place_text(self) -> str:
        """The place as the member reads it: "in space", a planet's name, or "Moon (moon of
        Planet)"."""
        if self.location_type == "space" or not self.location:
            return "in space"
        if self.location_type == "moon" and self.planet_name:
            return f"{self.location} (moon of {self.planet_name})"
        return self.location


def invalid_text(exc: DiscoveryInvalid) -> str:
    """An ephemeral reply naming every refused field of ``exc`` by its label, with its
    messages, in at most Discord's 2,000 characters of a message."""
    lines = [
        f"• **{field_label(name)}**: {'; '.join(messages)}" for name, messages in exc.errors.items()
    ]
    return limits.cut(
        "Nothing was stored. Please fix:\n" + "\n".join(lines), limits.MESSAGE_CONTENT_MAX
    )
