"""The archive channel's embed of a stored discovery (:func:`discovery_embed`), kept within
Discord's embed limits (:mod:`botrunner.limits`) whatever the lengths of the stored texts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord

from botrunner import limits

if TYPE_CHECKING:
    from discoveries.models import Discovery


def _shown(text: str, limit: int) -> str:
    """Member text as an embed shows it: markdown escaped (no masked links, no formatting
    tricks), then cut to ``limit``."""
    return limits.cut(discord.utils.escape_markdown(text), limit)


#: The field an archive post gains once its discovery reached the Control Room.
REACHED_FIELD = "Control Room"


def reached_text(reached_at: datetime) -> str:
    """The line an archive post shows once its discovery reached the Control Room at
    ``reached_at`` (aware)."""
    return f"Reached the Control Room at {reached_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def discovery_embed(discovery: Discovery, *, reached_at: datetime | None = None) -> discord.Embed:
    """The archive channel's embed of a stored discovery, within every embed limit (title 256,
    description 4,096, field values 1,024, 25 fields, 6,000 in all), whatever the lengths of
    the stored texts. Member text is shown literally (markdown escaped); the evidence link is
    the title's link. With ``reached_at`` (aware), a last field says when the discovery
    reached the Control Room (:func:`reached_text`)."""
    dtype = discovery.type
    type_name = dtype.name if dtype else "Discovery"
    system = discovery.system_name or "an unknown system"
    embed = discord.Embed(
        title=_shown(f"{discovery.discovery_type} {type_name} in {system}", limits.EMBED_TITLE_MAX),
        description=_shown(discovery.description or "", limits.EMBED_DESCRIPTION_MAX),
        colour=discord.Colour.teal(),
        timestamp=discovery.submission_timestamp,
        url=discovery.evidence_url or None,
    )
    where = discovery.location or "Space"
    if discovery.location_type == "moon" and discovery.planet_name:
        where = f"{where} (moon of {discovery.planet_name})"
    fields: list[tuple[str, str]] = [("Location", where)]
    values = discovery.type_fields
    for type_field in dtype.fields if dtype else ():
        value = values.get(type_field.key)
        if isinstance(value, str) and value.strip():
            fields.append((type_field.label, value))
    kept = limits.EMBED_FIELDS_MAX - (2 if reached_at else 1)
    for name, value in fields[:kept]:
        embed.add_field(
            name=limits.cut(name, limits.EMBED_FIELD_NAME_MAX),
            value=_shown(value, limits.EMBED_FIELD_VALUE_MAX),
            inline=len(value) <= 60,
        )
    if discovery.evidence_url:
        embed.add_field(
            name="Evidence",
            value=limits.cut(
                discord.utils.escape_markdown(discovery.evidence_url, ignore_links=False),
                limits.EMBED_FIELD_VALUE_MAX,
            ),
            inline=False,
        )
    if reached_at is not None:
        embed.add_field(name=REACHED_FIELD, value=reached_text(reached_at), inline=False)
    embed.set_footer(
        text=limits.cut(
            f"Discovery #{discovery.id} · reported by {discovery.username}",
            limits.EMBED_FOOTER_MAX,
        )
    )
    _embed_fit(embed)
    return embed


def _embed_fit(embed: discord.Embed) -> None:
    """Shorten the description, then field values from the last, until the embed's total is
    within Discord's 6,000 characters."""
    over = limits.embed_length(embed.to_dict()) - limits.EMBED_TOTAL_MAX
    if over <= 0:
        return
    text = embed.description or ""
    keep = max(1, limits.text_length(text) - over)
    embed.description = limits.cut(text, keep)
    index = len(embed.fields) - 1
    while (
        over := limits.embed_length(embed.to_dict()) - limits.EMBED_TOTAL_MAX
    ) > 0 and index >= 0:
        f = embed.fields[index]
        keep = max(1, limits.text_length(f.value) - over)
        embed.set_field_at(index, name=f.name, value=limits.cut(f.value, keep), inline=f.inline)
        index -= 1
