"""The /discovery-report form: its view, its modals and the archive embed.

One :class:`ReportView` walks a member through the report on one ephemeral message:

1. the type (a select of the 10 types of REFERENCE.md);
2. the star system: a select of VH-Database.db's systems, 25 to a page, or, when VH is switched
   off, missing or unreadable (or the system is not listed), a modal asking for the system and
   place as text;
3. the place: the system's planets and moons, and "in space";
4. the type's modal: the description and the type's four fields;
5. an optional evidence link (its own modal), then the submission.

Submitting defers first, then stores the discovery through
:func:`syncq.services.discovery_submit_once` via :func:`botrunner.db.run_db`, keyed by the
/discovery-report interaction, so the same report is never stored twice. Text the member typed
is always sent with mentions disabled and cut to Discord's limits (:mod:`botrunner.limits`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import discord
from discord import ui
from django.db import DatabaseError

from botrunner import limits
from botrunner.db import run_db
from botrunner.delivery import interaction_first_seen, interaction_taken
from discoveries.haven.catalog import HavenPlace, HavenSystem, catalog_places, catalog_systems
from discoveries.rules import (
    FIELDS,
    NAME_MAX_LENGTH,
    UNSAFE_CHARACTERS,
    DiscoveryInvalid,
    discovery_validate,
    field_label,
    name_problem,
    text_blank,
)
from discoveries.types import DISCOVERY_TYPES, DiscoveryType
from syncq.services import discovery_submit_once

if TYPE_CHECKING:
    from discoveries.models import Discovery

logger = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
#: Discord keeps an interaction's token 15 minutes; a little less, for the request itself.
TOKEN_LIFETIME_SECONDS = 14 * 60 + 30
STEPS = 5

DESCRIPTION_MAX_LENGTH = FIELDS["description"].max_length
EVIDENCE_URL_MAX_LENGTH = FIELDS["evidence_url"].max_length


@dataclass
class ReportDraft:
    """What a member has entered so far; nothing is stored until the report is submitted."""

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
        """The keyword arguments of :func:`discoveries.rules.discovery_validate`."""
        extra = {"planet_name": self.planet_name} if self.planet_name else {}
        return {
            "user_id": str(self.user_id),
            "username": limits.cut(self.username, 100),
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
        if self.location_type == "space" or not self.location:
            return "in space"
        if self.location_type == "moon" and self.planet_name:
            return f"{self.location} (moon of {self.planet_name})"
        return self.location


def invalid_text(exc: DiscoveryInvalid) -> str:
    """An ephemeral reply naming every refused field by its label, at most 2,000 characters."""
    lines = [
        f"• **{field_label(name)}**: {'; '.join(messages)}" for name, messages in exc.errors.items()
    ]
    return limits.cut(
        "Nothing was stored. Please fix:\n" + "\n".join(lines), limits.MESSAGE_CONTENT_MAX
    )


def _shown(text: str, limit: int) -> str:
    """Member text as an embed shows it: markdown escaped (no masked links, no formatting
    tricks), then cut to ``limit``."""
    return limits.cut(discord.utils.escape_markdown(text), limit)


def discovery_embed(discovery: Discovery) -> discord.Embed:
    """The archive channel's embed of a stored discovery, within every embed limit (title 256,
    description 4,096, field values 1,024, 25 fields, 6,000 in all), whatever the lengths of
    the stored texts. Member text is shown literally (markdown escaped); the evidence link is
    the title's link."""
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
    for name, value in fields[: limits.EMBED_FIELDS_MAX - 1]:
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


def _pages(count: int) -> int:
    return max(1, -(-count // limits.SELECT_OPTIONS_MAX))


class ReportView(ui.View):
    """The report form on one ephemeral message, for the member who opened it only.

    ``origin`` is the /discovery-report interaction: its id keys the submission. After
    ``timeout`` seconds (``BOT_VIEW_TIMEOUT_SECONDS``) without an interaction the form
    disables its components and says so, through the newest interaction answered on the form
    (Discord keeps its token 15 minutes). ``on_stored`` is awaited with each newly stored
    discovery.
    """

    def __init__(
        self, *, draft: ReportDraft, origin: discord.Interaction, timeout: float, on_stored
    ):
        super().__init__(timeout=timeout)
        self.draft = draft
        self.origin_id = origin.id
        self.last_interaction: discord.Interaction = origin
        self.on_stored = on_stored
        self.step = "type"
        self.systems: list[HavenSystem] | None = None
        self.places: list[HavenPlace] | None = None
        self.page = 0
        self.submitting_interaction_id: int | None = None
        self.discovery_id: int | None = None
        self._before: tuple | None = None
        self.render()

    # --- what the message shows -------------------------------------------------------------
    def render(self) -> str:
        """Rebuild the components for the current step; returns the message text."""
        self.clear_items()
        return getattr(self, f"_render_{self.step}")()

    def _header(self, number: int, text: str) -> str:
        return f"**Report a discovery** · step {number} of {STEPS}: {text}"

    def _render_type(self) -> str:
        select = ui.Select(
            custom_id="report:type",
            placeholder="Choose the discovery type",
            options=[
                discord.SelectOption(
                    label=limits.cut(f"{t.emoji} {t.name}", limits.SELECT_OPTION_LABEL_MAX),
                    value=t.slug,
                    default=self.draft.discovery_type == t,
                )
                for t in DISCOVERY_TYPES
            ],
        )
        select.callback = self._type_chosen
        self.add_item(select)
        return self._header(1, "what did you find?")

    def _render_system(self) -> str:
        chosen = self._chosen_line()
        if not self.systems:
            button = ui.Button(
                label="Enter the system and place",
                style=discord.ButtonStyle.primary,
                custom_id="report:system:text",
            )
            button.callback = self._system_as_text
            self.add_item(button)
            self._add_back()
            reason = (
                "the Control Room's star map cannot be read right now, so please type the "
                "system's name."
                if self.systems is None
                else "the Control Room's star map lists no systems yet, so please type it."
            )
            return f"{self._header(2, 'which star system?')}\n{chosen}\nNote: {reason}"
        pages = _pages(len(self.systems))
        self.page = min(self.page, pages - 1)
        first = self.page * limits.SELECT_OPTIONS_MAX
        shown = self.systems[first : first + limits.SELECT_OPTIONS_MAX]
        select = ui.Select(
            custom_id="report:system",
            placeholder=limits.cut(
                f"Star system ({first + 1}–{first + len(shown)} of {len(self.systems)})",
                limits.SELECT_PLACEHOLDER_MAX,
            ),
            options=[
                discord.SelectOption(
                    label=limits.cut(system.name, limits.SELECT_OPTION_LABEL_MAX),
                    value=str(first + offset),
                )
                for offset, system in enumerate(shown)
            ],
        )
        select.callback = self._system_chosen
        self.add_item(select)
        self._add_pager(pages, "system", [s.name for s in self.systems])
        other = ui.Button(
            label="Not listed? Type it",
            style=discord.ButtonStyle.secondary,
            custom_id="report:system:text",
            row=3,
        )
        other.callback = self._system_as_text
        self.add_item(other)
        self._add_back(row=3)
        page_text = f" (page {self.page + 1} of {pages})" if pages > 1 else ""
        return f"{self._header(2, 'which star system?')}{page_text}\n{chosen}"

    def _render_place(self) -> str:
        places = self.places or [HavenPlace(kind="space", name=None)]
        pages = _pages(len(places))
        self.page = min(self.page, pages - 1)
        first = self.page * limits.SELECT_OPTIONS_MAX
        shown = places[first : first + limits.SELECT_OPTIONS_MAX]
        select = ui.Select(
            custom_id="report:place",
            placeholder=limits.cut(
                f"Planet, moon or space ({first + 1}–{first + len(shown)} of {len(places)})",
                limits.SELECT_PLACEHOLDER_MAX,
            ),
            options=[
                discord.SelectOption(
                    label=limits.cut(_place_label(place), limits.SELECT_OPTION_LABEL_MAX),
                    value=str(first + offset),
                )
                for offset, place in enumerate(shown)
            ],
        )
        select.callback = self._place_chosen
        self.add_item(select)
        self._add_pager(pages, "place", [_place_label(p) for p in places])
        self._add_back(row=3)
        page_text = f" (page {self.page + 1} of {pages})" if pages > 1 else ""
        return f"{self._header(3, 'where in the system?')}{page_text}\n{self._chosen_line()}"

    def _render_describe(self) -> str:
        button = ui.Button(
            label="Describe the discovery",
            style=discord.ButtonStyle.primary,
            custom_id="report:describe",
        )
        button.callback = self._describe
        self.add_item(button)
        self._add_back()
        return (
            f"{self._header(4, 'describe it')}\n{self._chosen_line()}\n"
            f"The form asks for a description (up to {DESCRIPTION_MAX_LENGTH} characters) and "
            "four optional details."
        )

    def _render_review(self) -> str:
        for label, style, custom_id, callback in (
            (
                "Change evidence link" if self.draft.evidence_url else "Add evidence link",
                discord.ButtonStyle.secondary,
                "report:evidence",
                self._evidence,
            ),
            ("Submit", discord.ButtonStyle.success, "report:submit", self._submit_plain),
            ("Edit description", discord.ButtonStyle.secondary, "report:describe", self._describe),
            ("Cancel", discord.ButtonStyle.danger, "report:cancel", self._cancel),
        ):
            button = ui.Button(label=label, style=style, custom_id=custom_id)
            button.callback = callback
            self.add_item(button)
        preview = discord.utils.escape_markdown(limits.cut(self.draft.description, 300))
        evidence = (
            f"\nEvidence: <{limits.cut(self.draft.evidence_url, 300)}>"
            if self.draft.evidence_url
            else ""
        )
        return limits.cut(
            f"{self._header(5, 'add an evidence link (optional), then submit')}\n"
            f"{self._chosen_line()}\n> {preview}{evidence}",
            limits.MESSAGE_CONTENT_MAX,
        )

    def _chosen_line(self) -> str:
        d = self.draft
        parts = [str(d.discovery_type)] if d.discovery_type else []
        if d.system_name and self.step in ("place", "describe", "review"):
            parts.append(f"system **{discord.utils.escape_markdown(d.system_name)}**")
        if (d.location_type or d.location) and self.step in ("describe", "review"):
            parts.append(discord.utils.escape_markdown(d.place_text))
        return limits.cut(" · ".join(parts), 1000)

    def _add_pager(self, pages: int, what: str, names: list[str]) -> None:
        """Previous/Next buttons (row 2) and, past two pages, a select to jump to any of up to
        25 pages around this one (row 1), each labelled by its first and last name."""
        if pages <= 1:
            return
        if pages > 2:
            size = limits.SELECT_OPTIONS_MAX
            low = max(0, min(self.page - size // 2, pages - size))
            jump = ui.Select(
                custom_id=f"report:{what}:jump",
                placeholder=f"Jump to a page (this is {self.page + 1} of {pages})",
                options=[
                    discord.SelectOption(
                        label=limits.cut(
                            f"{n + 1}: {names[n * size]} – "
                            f"{names[min(len(names), (n + 1) * size) - 1]}",
                            limits.SELECT_OPTION_LABEL_MAX,
                        ),
                        value=str(n),
                        default=n == self.page,
                    )
                    for n in range(low, min(pages, low + size))
                ],
                row=1,
            )
            jump.callback = self._jump
            self.add_item(jump)
        for label, delta, disabled in (
            ("◀ Previous", -1, self.page == 0),
            ("Next ▶", 1, self.page >= pages - 1),
        ):
            button = ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"report:{what}:page:{'prev' if delta < 0 else 'next'}",
                disabled=disabled,
                row=2,
            )
            button.callback = self._pager(delta)
            self.add_item(button)

    def _add_back(self, *, row: int | None = None) -> None:
        button = ui.Button(
            label="Back", style=discord.ButtonStyle.secondary, custom_id="report:back", row=row
        )
        button.callback = self._back
        self.add_item(button)

    def _form_state(self) -> tuple:
        d = self.draft
        return (
            self.step,
            self.page,
            self.systems,
            self.places,
            replace(d, type_fields=dict(d.type_fields)),
        )

    def _form_state_restore(self, state: tuple) -> None:
        self.step, self.page, self.systems, self.places, self.draft = state

    async def show(self, interaction: discord.Interaction) -> None:
        """Answer ``interaction`` (a component or a modal submit on this form) by redrawing the
        form for the current step; after a deferral, by editing the form. When Discord refuses
        the redrawn form, the form goes back to what the member still sees (the state of
        :meth:`interaction_check`), is drawn again, and the member is asked to repeat the step.
        """
        content = self.render()
        # The newest interaction answered on the form itself: the one to edit it through later
        # (a click answered with a modal, or a refusal sent as its own message, is not).
        self.last_interaction = interaction
        try:
            if interaction.response.is_done():
                await interaction.edit_original_response(
                    content=content, view=self, allowed_mentions=NO_MENTIONS
                )
            else:
                await interaction.response.edit_message(
                    content=content, view=self, allowed_mentions=NO_MENTIONS
                )
        except discord.HTTPException as exc:
            logger.warning("Discord refused a report form step (%s); going back one", exc)
            if self._before is not None:
                self._form_state_restore(self._before)
            with contextlib.suppress(discord.HTTPException):
                if not interaction.response.is_done():
                    await interaction.response.defer()
                await interaction.edit_original_response(
                    content=self.render(), view=self, allowed_mentions=NO_MENTIONS
                )
            with contextlib.suppress(discord.HTTPException):
                await interaction.followup.send(
                    "Discord did not take that step; please do it again.", ephemeral=True
                )

    # --- the member's actions ---------------------------------------------------------------
    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        interaction_taken(interaction)
        if not interaction_first_seen(interaction):
            logger.info("interaction %s delivered again; ignored", interaction.id)
            return False
        if interaction.user.id != self.draft.user_id:
            await interaction.response.send_message(
                "This form belongs to someone else; run /discovery-report to open your own.",
                ephemeral=True,
            )
            return False
        self._before = self._form_state()
        return True

    async def _type_chosen(self, interaction: discord.Interaction) -> None:
        slug = (interaction.data.get("values") or [""])[0]
        chosen = next((t for t in DISCOVERY_TYPES if t.slug == slug), None)
        if chosen is None:
            await _choose_again(interaction, "type")
            return
        if chosen != self.draft.discovery_type:
            self.draft.description = ""
            self.draft.type_fields = {}
        self.draft.discovery_type = chosen
        # Acknowledged before VH is read: the Control Room may hold its lock for seconds.
        await interaction.response.defer()
        # The map is read once per form; the member can go back to read it again.
        self.systems = await run_db(catalog_systems)
        self.step, self.page = "system", 0
        await self.show(interaction)

    async def _system_chosen(self, interaction: discord.Interaction) -> None:
        system = self._pick(self.systems, interaction)
        if system is None:
            await _choose_again(interaction, "system")
            return
        self.draft.system_name = system.name
        self.draft.location = self.draft.location_type = self.draft.planet_name = None
        await interaction.response.defer()
        self.places = await run_db(catalog_places, system.id)
        if self.places is None:
            # The map went away between the two steps: the system and place are typed instead.
            self.systems, self.step = None, "system"
        else:
            self.step, self.page = "place", 0
        await self.show(interaction)

    async def _place_chosen(self, interaction: discord.Interaction) -> None:
        place = self._pick(self.places, interaction)
        if place is None:
            await _choose_again(interaction, "place")
            return
        self.draft.location_type = place.kind
        self.draft.location = place.name if place.kind != "space" else "Space"
        self.draft.planet_name = place.planet
        self.step = "describe"
        await self.show(interaction)

    async def _system_as_text(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(
            LocationModal(self, system_name=self.draft.system_name)
        )

    async def _describe(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(TypeModal(self))

    async def _evidence(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(EvidenceModal(self))

    async def _submit_plain(self, interaction: discord.Interaction) -> None:
        await self.submit(interaction)

    async def _cancel(self, interaction: discord.Interaction) -> None:
        if self.submitting_interaction_id is not None:
            await interaction.response.send_message(
                "This report is being archived and can no longer be cancelled.", ephemeral=True
            )
            return
        self.stop()
        self.clear_items()
        await interaction.response.edit_message(
            content="Report cancelled; nothing was stored.", view=None
        )

    async def _back(self, interaction: discord.Interaction) -> None:
        self.step = {
            "system": "type",
            "place": "system",
            "describe": "place",
            "review": "describe",
        }[self.step]
        if self.step == "place" and not self.places:
            self.step = "system"
        if self.step == "system":
            await interaction.response.defer()
            self.systems = await run_db(catalog_systems)
        self.page = 0
        await self.show(interaction)

    async def _jump(self, interaction: discord.Interaction) -> None:
        self.page = self._chosen_index(interaction) or 0
        await self.show(interaction)

    def _pager(self, delta: int):
        async def turn(interaction: discord.Interaction) -> None:
            self.page = max(0, self.page + delta)
            await self.show(interaction)

        return turn

    @staticmethod
    def _chosen_index(interaction: discord.Interaction) -> int | None:
        """The option index a select sent (the form's values are ASCII digits), or None."""
        value = (interaction.data.get("values") or [""])[0]
        if not (isinstance(value, str) and value.isascii() and value.isdigit()):
            return None
        return int(value)

    @classmethod
    def _pick(cls, choices, interaction: discord.Interaction):
        index = cls._chosen_index(interaction)
        if index is None or not choices or index >= len(choices):
            return None
        return choices[index]

    # --- submitting -------------------------------------------------------------------------
    async def submit(self, interaction: discord.Interaction) -> None:
        """Store the report: acknowledge ``interaction`` at once (Discord's 3 s), store through
        the submit service off the event loop, then confirm to the member (ephemeral), close
        the form and post to the archive channel. A second submit of this form, by another
        click or by the evidence form, stores nothing. A stopping bot waits for this to end
        (see :meth:`botrunner.bot.KeeperBot.busy`)."""
        if self.submitting_interaction_id is not None:
            await interaction.response.send_message(
                "This report is already being archived; its number will show here.",
                ephemeral=True,
            )
            return
        self.submitting_interaction_id = interaction.id
        busy = getattr(interaction.client, "busy", contextlib.nullcontext)
        async with busy():
            await interaction.response.defer()
            self.last_interaction = interaction
            try:
                discovery, created = await run_db(
                    discovery_submit_once,
                    submission_key=f"discord:{self.origin_id}",
                    **self.draft.submit_kwargs(),
                )
            except DiscoveryInvalid as exc:
                self.submitting_interaction_id = None
                if "evidence_url" in exc.errors:
                    self.draft.evidence_url = None
                await interaction.followup.send(
                    invalid_text(exc), ephemeral=True, allowed_mentions=NO_MENTIONS
                )
                return
            except DatabaseError:
                self.submitting_interaction_id = None
                logger.exception("could not store the report of user %s", self.draft.user_id)
                await interaction.followup.send(
                    "The archive could not store your report just now; nothing was stored. "
                    "Your form is kept: press Submit again in a minute.",
                    ephemeral=True,
                )
                with contextlib.suppress(discord.HTTPException):
                    await self.show(interaction)
                return
            self.discovery_id = discovery.id
            self.stop()
            self.clear_items()
            await self._confirm(interaction, discovery)
            if created:
                await self.on_stored(discovery)

    async def _confirm(self, interaction: discord.Interaction, discovery: Discovery) -> None:
        """Tell the member their report's number and close the form; a Discord error on one
        of the two is logged, and the other is still tried (the discovery is stored)."""
        summary = limits.cut(
            f"📥 Discovery **#{discovery.id}** archived: {discovery.discovery_type} in "
            f"{discord.utils.escape_markdown(discovery.system_name or '')}, "
            f"{discord.utils.escape_markdown(self.draft.place_text)}. "
            "Syncing to the Control Room.",
            limits.MESSAGE_CONTENT_MAX,
        )
        try:
            await interaction.followup.send(summary, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            logger.warning("could not confirm discovery %s to its member: %s", discovery.id, exc)
        try:
            await interaction.edit_original_response(
                content=f"Archived as discovery #{discovery.id}.",
                view=None,
                allowed_mentions=NO_MENTIONS,
            )
        except discord.HTTPException as exc:
            logger.warning("could not close the form of discovery %s: %s", discovery.id, exc)

    # --- endings ----------------------------------------------------------------------------
    async def on_timeout(self) -> None:
        for item in self.children:
            item.disabled = True
        seconds = round(self.timeout or 0)
        minutes = seconds // 60
        if minutes >= 1:
            span = f"{minutes} minute{'s' if minutes != 1 else ''}"
        else:
            span = f"{seconds} second{'s' if seconds != 1 else ''}"
        age = discord.utils.utcnow() - self.last_interaction.created_at
        if age.total_seconds() > TOKEN_LIFETIME_SECONDS:
            # Its token has lapsed; a later click on the form is answered as orphaned instead.
            logger.info("a timed-out form's last token is %s old; left as it is", age)
            return
        try:
            await self.last_interaction.edit_original_response(
                content=f"This report timed out after {span} and nothing was stored. Run "
                "/discovery-report to start again.",
                view=self,
            )
        except discord.HTTPException as exc:
            logger.info("could not disable a timed-out report form: %s", exc)

    async def on_error(self, interaction: discord.Interaction, error: Exception, item) -> None:
        logger.error("report form failed", exc_info=error)
        await reply_error(interaction)

    def keep_alive(self) -> None:
        """A modal of this form was submitted: that counts as activity on the form."""
        self.timeout = self.timeout  # restarts the countdown


async def reply_error(interaction: discord.Interaction) -> None:
    """Tell the member that something failed on our side (it is in the bot's log)."""
    text = "Something went wrong on our side; it has been logged. Please try again."
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException as exc:
        logger.warning("could not report an error to the member: %s", exc)


async def _choose_again(interaction: discord.Interaction, what: str) -> None:
    """Answer a select whose value names no option (a forged or stale request)."""
    await interaction.response.send_message(f"Unknown {what}; please choose again.", ephemeral=True)


def _place_label(place: HavenPlace) -> str:
    if place.kind == "space":
        return "✨ In space (no planet or moon)"
    if place.kind == "moon":
        return f"🌙 {place.name} (moon of {place.planet})"
    return f"🪐 {place.name}"


def prefill(value: str | None, max_length: int) -> str | None:
    """``value`` as a modal's default text: without the characters the form refuses, cut to
    the input's ``max_length`` (Discord refuses a longer default); None when nothing is left."""
    if not value:
        return None
    cleaned = UNSAFE_CHARACTERS.sub("", value)[:max_length]
    return cleaned or None


class FormModal(ui.Modal):
    """A modal of a :class:`ReportView`: taken once per interaction, errors logged and
    apologised for."""

    report: ReportView

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        interaction_taken(interaction)
        return interaction_first_seen(interaction)

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        logger.error("%s failed", type(self).__name__, exc_info=error)
        await reply_error(interaction)


class TypeModal(FormModal):
    """The type's form: the description (required, up to 1,000 characters) and the type's four
    fields (optional; 200 characters, the 📜 key excerpt 500), prefilled with what the member
    typed before. Five text inputs, Discord's most for a modal; labels are at most 45."""

    def __init__(self, view: ReportView):
        dtype = view.draft.discovery_type
        super().__init__(
            title=limits.cut(f"{dtype.emoji} {dtype.name}", limits.MODAL_TITLE_MAX),
            timeout=view.timeout,
            custom_id=f"report:modal:type:{view.origin_id}",
        )
        self.report = view
        self.description = ui.TextInput(
            label="Description",
            custom_id="description",
            style=discord.TextStyle.paragraph,
            required=True,
            max_length=DESCRIPTION_MAX_LENGTH,
            placeholder="What did you find? What makes it notable?",
            default=prefill(view.draft.description, DESCRIPTION_MAX_LENGTH),
        )
        self.add_item(self.description)
        self.inputs: dict[str, ui.TextInput] = {}
        for type_field in dtype.fields:
            text_input = ui.TextInput(
                label=limits.cut(type_field.label, limits.TEXT_INPUT_LABEL_MAX),
                custom_id=type_field.key,
                style=(
                    discord.TextStyle.paragraph
                    if type_field.max_length > 200
                    else discord.TextStyle.short
                ),
                required=False,
                max_length=type_field.max_length,
                default=prefill(view.draft.type_fields.get(type_field.key), type_field.max_length),
            )
            self.inputs[type_field.key] = text_input
            self.add_item(text_input)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        self.report.keep_alive()
        draft = self.report.draft
        description = self.description.value
        type_fields = {key: text_input.value for key, text_input in self.inputs.items()}
        candidate = {
            **draft.submit_kwargs(),
            "description": description,
            "type_fields": type_fields,
        }
        # Kept even when refused, so that the next form shows what was typed.
        draft.description = description
        draft.type_fields = {k: v for k, v in type_fields.items() if v}
        try:
            discovery_validate(**candidate)
        except DiscoveryInvalid as exc:
            await interaction.response.send_message(
                invalid_text(exc), ephemeral=True, allowed_mentions=NO_MENTIONS
            )
            return
        self.report.step = "review"
        await self.report.show(interaction)


class LocationModal(FormModal):
    """The system and place as text, for when the Control Room's map cannot be read or the
    system is not listed. An empty place means in space."""

    def __init__(self, view: ReportView, *, system_name: str | None):
        super().__init__(
            title="Where was it?",
            timeout=view.timeout,
            custom_id=f"report:modal:where:{view.origin_id}",
        )
        self.report = view
        self.system = ui.TextInput(
            label="Star system",
            custom_id="system_name",
            required=True,
            max_length=NAME_MAX_LENGTH,
            default=prefill(system_name, NAME_MAX_LENGTH),
        )
        self.place = ui.TextInput(
            label="Planet or moon (empty if in space)",
            custom_id="location",
            required=False,
            max_length=NAME_MAX_LENGTH,
            default=(
                prefill(view.draft.location, NAME_MAX_LENGTH)
                if view.draft.location_type != "space"
                else None
            ),
        )
        self.add_item(self.system)
        self.add_item(self.place)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        self.report.keep_alive()
        problems = [
            f"• **{label}**: {problem}"
            for label, value, required in (
                ("Star system", self.system.value, True),
                ("Planet or moon", self.place.value, False),
            )
            if (problem := name_problem(value, required=required))
        ]
        if problems:
            await interaction.response.send_message(
                "Please fix:\n" + "\n".join(problems),
                ephemeral=True,
                allowed_mentions=NO_MENTIONS,
            )
            return
        draft = self.report.draft
        typed = self.system.value.strip()
        # A name the map knows, typed in another case, is stored as the map writes it.
        known = {s.name.casefold(): s.name for s in self.report.systems or []}
        draft.system_name = known.get(typed.casefold(), typed)
        place = "" if text_blank(self.place.value) else self.place.value.strip()
        # A typed name may be a planet or a moon: the sync looks it up as both.
        draft.location, draft.location_type = (place, None) if place else ("Space", "space")
        draft.planet_name = None
        self.report.places = None
        self.report.step = "describe"
        await self.report.show(interaction)


class EvidenceModal(FormModal):
    """One http(s) link to a screenshot or page; submitting it submits the report."""

    def __init__(self, view: ReportView):
        super().__init__(
            title="Evidence link",
            timeout=view.timeout,
            custom_id=f"report:modal:evidence:{view.origin_id}",
        )
        self.report = view
        self.url = ui.TextInput(
            label="Link to a screenshot or page (http/https)",
            custom_id="evidence_url",
            required=True,
            max_length=EVIDENCE_URL_MAX_LENGTH,
            placeholder="https://",
            default=prefill(view.draft.evidence_url, EVIDENCE_URL_MAX_LENGTH),
        )
        self.add_item(self.url)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        self.report.keep_alive()
        if self.report.submitting_interaction_id is None:
            # Kept with the form: a Submit after a failed attempt sends it too.
            self.report.draft.evidence_url = self.url.value
        await self.report.submit(interaction)
