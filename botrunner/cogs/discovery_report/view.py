"""The /discovery-report form: :class:`ReportView` walks a member through the report on one
ephemeral message, one :class:`Step` at a time:

1. the type (a select of the 10 types of REFERENCE.md);
2. the star system: a select of VH-Database.db's systems, 25 to a page, or, when VH is switched
   off, missing or unreadable (or the system is not listed), a modal asking for the system and
   place as text;
3. the place: the system's planets and moons, and "in space";
4. the type's modal: the description and the type's four fields;
5. an optional evidence link (its own modal), then the submission.

Submitting defers first, then stores the discovery through
:func:`syncq.services.discovery_submit_once` via :func:`botrunner.db.run_db`, keyed by the
/discovery-report interaction, so the same report is never stored twice. The confirmation says
when the system, planet or moon is not in the Control Room (with its nearest names there): the
discovery is kept and waits until the place is added. Text the member typed is always sent with
mentions disabled and cut to Discord's limits (:mod:`botrunner.limits`).
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar, TypeVar

import discord
from discord import ui
from django.db import DatabaseError

from botrunner import limits
from botrunner.cogs.discovery_report.draft import ReportDraft, invalid_text
from botrunner.cogs.discovery_report.modals import (
    DESCRIPTION_MAX_LENGTH,
    EvidenceModal,
    LocationModal,
    TypeModal,
)
from botrunner.db import run_db
from botrunner.delivery import NO_MENTIONS, interaction_first_seen, interaction_taken, reply_error
from discoveries.catalog import catalog_location_check, catalog_places, catalog_systems
from discoveries.haven.catalog import HavenPlace, HavenSystem
from discoveries.rules import DiscoveryInvalid
from discoveries.types import DISCOVERY_TYPES
from syncq.services import discovery_submit_once

if TYPE_CHECKING:
    from discoveries.models import Discovery

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Discord keeps an interaction's token 15 minutes; a little less, for the request itself.
TOKEN_LIFETIME_SECONDS = 14 * 60 + 30


class Step(enum.Enum):
    """The form's steps, in order; each value is the step's number shown to the member."""

    TYPE = 1
    SYSTEM = 2
    PLACE = 3
    DESCRIBE = 4
    REVIEW = 5


#: Where the Back button leads from each step that has one.
BACK = {
    Step.SYSTEM: Step.TYPE,
    Step.PLACE: Step.SYSTEM,
    Step.DESCRIBE: Step.PLACE,
    Step.REVIEW: Step.DESCRIBE,
}


def _pages(count: int) -> int:
    return max(1, -(-count // limits.SELECT_OPTIONS_MAX))


def _place_label(place: HavenPlace) -> str:
    if place.kind == "space":
        return "✨ In space (no planet or moon)"
    if place.kind == "moon":
        return f"🌙 {place.name} (moon of {place.planet})"
    return f"🪐 {place.name}"


async def _choose_again(interaction: discord.Interaction, what: str) -> None:
    """Answer a select whose value names no option (a forged or stale request)."""
    await interaction.response.send_message(f"Unknown {what}; please choose again.", ephemeral=True)


class ReportView(ui.View):
    """The report form on one ephemeral message, for the member who opened it only.

    ``origin`` is the /discovery-report interaction: its id keys the submission. After
    ``timeout`` seconds (``BOT_VIEW_TIMEOUT_SECONDS``) without an interaction the form
    disables its components and says so, through the newest interaction answered on the form
    (Discord keeps its token 15 minutes). ``on_stored`` is awaited with each newly stored
    discovery.
    """

    def __init__(
        self,
        *,
        draft: ReportDraft,
        origin: discord.Interaction,
        timeout: float,
        on_stored: Callable[[Discovery], Awaitable[None]],
    ):
        super().__init__(timeout=timeout)
        self.draft = draft
        self.origin_id = origin.id
        self.last_interaction: discord.Interaction = origin
        self.on_stored = on_stored
        self.step = Step.TYPE
        self.systems: list[HavenSystem] | None = None
        self.places: list[HavenPlace] | None = None
        self.page = 0
        self.submitting_interaction_id: int | None = None
        self._before: tuple | None = None
        self.render()

    # --- what the message shows -------------------------------------------------------------
    def render(self) -> str:
        """Rebuild the components for the current step; returns the message text."""
        self.clear_items()
        return self._renderers[self.step](self)

    def _header(self, text: str) -> str:
        return f"**Report a discovery** · step {self.step.value} of {len(Step)}: {text}"

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
        return self._header("what did you find?")

    def _render_system(self) -> str:
        chosen = self._chosen_line()
        if not self.systems:
            self._add_button(
                "Enter the system and place",
                discord.ButtonStyle.primary,
                "report:system:text",
                self._system_as_text,
            )
            self._add_back()
            reason = (
                "the Control Room's star map cannot be read right now, so please type the "
                "system's name."
                if self.systems is None
                else "the Control Room's star map lists no systems yet, so please type it."
            )
            return f"{self._header('which star system?')}\n{chosen}\nNote: {reason}"
        page_text = self._add_page_select(
            "system",
            "Star system",
            self.systems,
            lambda system: system.name,
            self._system_chosen,
        )
        self._add_button(
            "Not listed? Type it",
            discord.ButtonStyle.secondary,
            "report:system:text",
            self._system_as_text,
            row=3,
        )
        self._add_back(row=3)
        return f"{self._header('which star system?')}{page_text}\n{chosen}"

    def _render_place(self) -> str:
        places = self.places or [HavenPlace(kind="space", name=None)]
        page_text = self._add_page_select(
            "place",
            "Planet, moon or space",
            places,
            _place_label,
            self._place_chosen,
        )
        self._add_back(row=3)
        return f"{self._header('where in the system?')}{page_text}\n{self._chosen_line()}"

    def _render_describe(self) -> str:
        self._add_button(
            "Describe the discovery",
            discord.ButtonStyle.primary,
            "report:describe",
            self._describe,
        )
        self._add_back()
        return (
            f"{self._header('describe it')}\n{self._chosen_line()}\n"
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
            ("Submit", discord.ButtonStyle.success, "report:submit", self.submit),
            ("Edit description", discord.ButtonStyle.secondary, "report:describe", self._describe),
            ("Cancel", discord.ButtonStyle.danger, "report:cancel", self._cancel),
        ):
            self._add_button(label, style, custom_id, callback)
        preview = discord.utils.escape_markdown(limits.cut(self.draft.description, 300))
        evidence = (
            f"\nEvidence: <{limits.cut(self.draft.evidence_url, 300)}>"
            if self.draft.evidence_url
            else ""
        )
        return limits.cut(
            f"{self._header('add an evidence link (optional), then submit')}\n"
            f"{self._chosen_line()}\n> {preview}{evidence}",
            limits.MESSAGE_CONTENT_MAX,
        )

    _renderers: ClassVar[dict[Step, Callable[[ReportView], str]]] = {
        Step.TYPE: _render_type,
        Step.SYSTEM: _render_system,
        Step.PLACE: _render_place,
        Step.DESCRIBE: _render_describe,
        Step.REVIEW: _render_review,
    }

    def _chosen_line(self) -> str:
        d = self.draft
        parts = [str(d.discovery_type)] if d.discovery_type else []
        if d.system_name and self.step in (Step.PLACE, Step.DESCRIBE, Step.REVIEW):
            parts.append(f"system **{discord.utils.escape_markdown(d.system_name)}**")
        if (d.location_type or d.location) and self.step in (Step.DESCRIBE, Step.REVIEW):
            parts.append(discord.utils.escape_markdown(d.place_text))
        return limits.cut(" · ".join(parts), 1000)

    def _add_button(
        self,
        label: str,
        style: discord.ButtonStyle,
        custom_id: str,
        callback: Callable[[discord.Interaction], Awaitable[None]],
        *,
        row: int | None = None,
    ) -> None:
        button = ui.Button(label=label, style=style, custom_id=custom_id, row=row)
        button.callback = callback
        self.add_item(button)

    def _add_page_select(
        self,
        what: str,
        placeholder: str,
        choices: list[T],
        label: Callable[[T], str],
        chosen: Callable[[discord.Interaction, T], Awaitable[None]],
    ) -> str:
        """A select of this page's 25 of ``choices``, each shown as ``label`` gives it (its
        value is its index in ``choices``), with the pager below it. The member's pick is
        handed to ``chosen``; a value naming none (a forged or stale request) is answered with
        "choose again". Returns the header's page text ("" on one page)."""
        labels = [label(choice) for choice in choices]
        pages = _pages(len(labels))
        self.page = min(self.page, pages - 1)
        first = self.page * limits.SELECT_OPTIONS_MAX
        shown = labels[first : first + limits.SELECT_OPTIONS_MAX]
        select = ui.Select(
            custom_id=f"report:{what}",
            placeholder=limits.cut(
                f"{placeholder} ({first + 1}–{first + len(shown)} of {len(labels)})",
                limits.SELECT_PLACEHOLDER_MAX,
            ),
            options=[
                discord.SelectOption(
                    label=limits.cut(text, limits.SELECT_OPTION_LABEL_MAX),
                    value=str(first + offset),
                )
                for offset, text in enumerate(shown)
            ],
        )

        async def pick(interaction: discord.Interaction) -> None:
            index = self._chosen_index(interaction)
            if index is None or index >= len(choices):
                await _choose_again(interaction, what)
                return
            await chosen(interaction, choices[index])

        select.callback = pick
        self.add_item(select)
        self._add_pager(pages, what, labels)
        return f" (page {self.page + 1} of {pages})" if pages > 1 else ""

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
        self._add_button("Back", discord.ButtonStyle.secondary, "report:back", self._back, row=row)

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
        """True for the first delivery of a click by the member who opened the form; anyone
        else is told, ephemerally, that the form is not theirs. Remembers the form as the
        member sees it, for :meth:`show` to go back to."""
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
        self.step, self.page = Step.SYSTEM, 0
        await self.show(interaction)

    async def _system_chosen(self, interaction: discord.Interaction, system: HavenSystem) -> None:
        self.draft.system_name = system.name
        self.draft.location = self.draft.location_type = self.draft.planet_name = None
        await interaction.response.defer()
        self.places = await run_db(catalog_places, system.id)
        if self.places is None:
            # The map went away between the two steps: the system and place are typed instead.
            self.systems, self.step = None, Step.SYSTEM
        else:
            self.step, self.page = Step.PLACE, 0
        await self.show(interaction)

    async def _place_chosen(self, interaction: discord.Interaction, place: HavenPlace) -> None:
        self.draft.location_type = place.kind
        self.draft.location = place.name if place.kind != "space" else "Space"
        self.draft.planet_name = place.planet
        self.step = Step.DESCRIBE
        await self.show(interaction)

    async def _system_as_text(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(
            LocationModal(self, system_name=self.draft.system_name)
        )

    async def _describe(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(TypeModal(self))

    async def _evidence(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(EvidenceModal(self))

    async def located(self, interaction: discord.Interaction) -> None:
        """The :class:`LocationModal` wrote a typed system and place into the draft: answer
        its submit ``interaction`` with the describe step."""
        self.places = None
        self.step = Step.DESCRIBE
        await self.show(interaction)

    async def described(self, interaction: discord.Interaction) -> None:
        """The :class:`TypeModal` took a valid description: answer its submit
        ``interaction`` with the review step."""
        self.step = Step.REVIEW
        await self.show(interaction)

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
        self.step = BACK[self.step]
        if self.step is Step.PLACE and not self.places:
            self.step = Step.SYSTEM
        if self.step is Step.SYSTEM:
            await interaction.response.defer()
            self.systems = await run_db(catalog_systems)
        self.page = 0
        await self.show(interaction)

    async def _jump(self, interaction: discord.Interaction) -> None:
        self.page = self._chosen_index(interaction) or 0
        await self.show(interaction)

    def _pager(self, delta: int) -> Callable[[discord.Interaction], Awaitable[None]]:
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
            hint = await self._place_hint(discovery)
            self.stop()
            self.clear_items()
            await self._confirm(interaction, discovery, hint=hint)
            if created:
                await self.on_stored(discovery)

    @staticmethod
    async def _place_hint(discovery: Discovery) -> str | None:
        """What to tell the member about ``discovery``'s place: the hint of
        :func:`~discoveries.catalog.catalog_location_check` (the place is not in the
        Control Room, the nearest names there, and that the discovery waits for it), or
        ``None`` when the place is there or VH cannot be read (then nothing is said)."""
        checked = await run_db(
            catalog_location_check,
            system_name=discovery.system_name,
            location=discovery.location,
            location_type=discovery.location_type,
        )
        return checked.hint if checked is not None else None

    async def _confirm(
        self, interaction: discord.Interaction, discovery: Discovery, *, hint: str | None = None
    ) -> None:
        """Tell the member their report's number, and ``hint`` about its place when given, and
        close the form; a Discord error on one of the two is logged, and the other is still
        tried (the discovery is stored)."""
        archived = (
            f"📥 Discovery **#{discovery.id}** archived: {discovery.discovery_type} in "
            f"{discord.utils.escape_markdown(discovery.system_name or '')}, "
            f"{discord.utils.escape_markdown(self.draft.place_text)}."
        )
        if hint:
            text = f"{archived}\n⚠️ {discord.utils.escape_markdown(hint)}"
        else:
            text = f"{archived} Syncing to the Control Room."
        summary = limits.cut(text, limits.MESSAGE_CONTENT_MAX)
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
        """Disable the form and say it timed out and stored nothing, through the newest
        interaction answered on it, unless that interaction's token (15 minutes) has lapsed."""
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
        """Log a failed click and tell the member (see :func:`reply_error`)."""
        logger.error("report form failed", exc_info=error)
        await reply_error(interaction)

    def keep_alive(self) -> None:
        """A modal of this form was submitted: that counts as activity on the form."""
        self.timeout = self.timeout  # restarts the countdown
