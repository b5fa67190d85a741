"""What a member has entered in the /discovery-report form so far (:class:`ReportDraft`), and
how a refused draft is told back to them (:func:`invalid_text`)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from botrunner import limits
from discoveries.rules import (
    FIELDS,
    UNSAFE_CHARACTERS,
    DiscoveryInvalid,
    field_label,
    text_blank,
    text_markup_neutralise,
)
from discoveries.types import DiscoveryType


@dataclass
class ReportDraft:
    """What a member has entered so far; nothing is stored until the report is submitted.

    ``user_id`` and ``guild_id`` are Discord snowflakes (``guild_id`` None outside a server);
    ``username`` is the member's name as Discord shows it (their display name) and
    ``account_name`` their account's name, both as Discord gives them (see
    :meth:`submit_kwargs`); ``location_type`` is ``planet``, ``moon``, ``space`` or None (a
    typed name, which the sync looks up as both); ``planet_name`` is a moon's planet;
    ``type_fields`` maps the type's field keys to the text typed, empty ones left out.
    """

    user_id: int
    username: str
    guild_id: int | None
    account_name: str | None = None
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
        strings, the type by its emoji, the member's name as :func:`submitter_name` makes it.
        The name is Discord's, not typed in this form, so what the rules would refuse in it is
        mended rather than refused: a member named ``<Zed>`` or ``ㅤ`` can still report."""
        extra = {"planet_name": self.planet_name} if self.planet_name else {}
        return {
            "user_id": str(self.user_id),
            "username": submitter_name(
                display_name=self.username, account_name=self.account_name, user_id=self.user_id
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


def submitter_name(*, display_name: str | None, account_name: str | None, user_id: int) -> str:
    """The submitter name stored for a member whose Discord names are ``display_name`` and
    ``account_name`` (``discord.Member.display_name`` and ``.name``) and id ``user_id``: the
    first of the two with something visible in it (:func:`name_visible`), else ``"member
    <id>"``; markup in it made harmless (:func:`discoveries.rules.text_markup_neutralise`) and
    cut to ``username``'s limit (:data:`discoveries.rules.FIELDS`). Always a name
    :func:`discoveries.rules.discovery_validate` accepts: Discord lets a member be called
    ``ㅤ`` (a Hangul filler), a zero-width space or a right-to-left override, which the rules
    refuse as blank or unsafe, and which the member cannot change in the form."""
    name = name_visible(display_name) or name_visible(account_name) or f"member {user_id}"
    return text_markup_neutralise(limits.cut(name, FIELDS["username"].max_length))


def name_visible(name: str | None) -> str:
    """``name`` without the characters :func:`discoveries.rules.text_unsafe` refuses (the
    bidirectional controls, control characters, lone surrogates) and without the characters
    that show nothing (:func:`discoveries.rules.text_blank`: spaces, zero-width and format
    characters, Hangul fillers, the blank braille pattern…) at either end; ``""`` when nothing
    visible remains or ``name`` is ``None``. Those between visible characters are kept, and so
    are nonspacing marks right after the last one: zero-width joiners and variation selectors
    are part of how an emoji shows (a red heart is U+2764 then the selector U+FE0F)."""
    kept = UNSAFE_CHARACTERS.sub("", name or "")
    shown = [i for i, char in enumerate(kept) if not text_blank(char)]
    if not shown:
        return ""
    end = shown[-1] + 1
    # A nonspacing mark (variation selectors are) draws as part of the character before it.
    while end < len(kept) and unicodedata.category(kept[end]) == "Mn":
        end += 1
    return kept[shown[0] : end]


def invalid_text(exc: DiscoveryInvalid) -> str:
    """An ephemeral reply naming every refused field of ``exc`` by its label, with its
    messages, in at most Discord's 2,000 characters of a message."""
    lines = [
        f"• **{field_label(name)}**: {'; '.join(messages)}" for name, messages in exc.errors.items()
    ]
    return limits.cut(
        "Nothing was stored. Please fix:\n" + "\n".join(lines), limits.MESSAGE_CONTENT_MAX
    )
