"""The modals of the /discovery-report form: the type's form (:class:`TypeModal`), the system
and place as text (:class:`LocationModal`) and the evidence link (:class:`EvidenceModal`), each
opened by a :class:`~botrunner.cogs.discovery_report.view.ReportView` and reporting back to it.

Limits: Discord's for modals (title and input labels 45, five inputs) and the field lengths of
:mod:`discoveries.rules`; :func:`prefill` makes what the member typed before fit its input.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import ui

from botrunner import limits
from botrunner.cogs.discovery_report.draft import invalid_text
from botrunner.delivery import (
    NO_MENTIONS,
    interaction_first_seen,
    interaction_taken,
    reply_error,
)
from discoveries.names import names_matching
from discoveries.rules import (
    FIELDS,
    NAME_MAX_LENGTH,
    UNSAFE_CHARACTERS,
    DiscoveryInvalid,
    discovery_validate,
    name_problem,
    text_blank,
)
from discoveries.types import TYPE_FIELD_MAX_LENGTH

if TYPE_CHECKING:
    from botrunner.cogs.discovery_report.view import ReportView

logger = logging.getLogger(__name__)

DESCRIPTION_MAX_LENGTH = FIELDS["description"].max_length
EVIDENCE_URL_MAX_LENGTH = FIELDS["evidence_url"].max_length


def prefill(value: str | None, max_length: int) -> str | None:
    """``value`` as a modal's default text: without the characters the form refuses, cut to
    the input's ``max_length`` (Discord refuses a longer default); None when nothing is left."""
    if not value:
        return None
    cleaned = UNSAFE_CHARACTERS.sub("", value)[:max_length]
    return cleaned or None


class FormModal(ui.Modal):
    """A modal of the :class:`ReportView` ``view``, titled ``title``, with the custom id
    ``report:modal:<name>:<origin id>`` (the form's prefix, so that a submit the bot no longer
    knows is answered) and the form's timeout: taken once per interaction, errors logged and
    apologised for."""

    def __init__(self, view: ReportView, *, title: str, name: str):
        super().__init__(
            title=title,
            timeout=view.timeout,
            custom_id=f"report:modal:{name}:{view.origin_id}",
        )
        self.report = view

    def input_add(
        self,
        label: str,
        custom_id: str,
        *,
        max_length: int,
        typed: str | None,
        required: bool,
        style: discord.TextStyle = discord.TextStyle.short,
        placeholder: str | None = None,
    ) -> ui.TextInput:
        """Add a text input of at most ``max_length`` characters, its label cut to Discord's
        45, prefilled with what the member ``typed`` before (see :func:`prefill`); returns it."""
        text_input = ui.TextInput(
            label=limits.cut(label, limits.TEXT_INPUT_LABEL_MAX),
            custom_id=custom_id,
            style=style,
            required=required,
            max_length=max_length,
            placeholder=placeholder,
            default=prefill(typed, max_length),
        )
        self.add_item(text_input)
        return text_input

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """Mark the submit as taken by a live form; True for its first delivery only."""
        interaction_taken(interaction)
        return interaction_first_seen(interaction)

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        """Log a failed submit and tell the member (see :func:`reply_error`)."""
        logger.error("%s failed", type(self).__name__, exc_info=error)
        await reply_error(interaction)


class TypeModal(FormModal):
    """The type's form: the description (required, up to 1,000 characters) and the type's four
    fields (optional; 200 characters, the 📜 key excerpt 500), prefilled with what the member
    typed before. Five text inputs, Discord's most for a modal; labels are at most 45."""

    def __init__(self, view: ReportView):
        dtype = view.draft.discovery_type
        super().__init__(
            view,
            title=limits.cut(f"{dtype.emoji} {dtype.name}", limits.MODAL_TITLE_MAX),
            name="type",
        )
        self.description = self.input_add(
            "Description",
            "description",
            style=discord.TextStyle.paragraph,
            placeholder="What did you find? What makes it notable?",
            max_length=DESCRIPTION_MAX_LENGTH,
            typed=view.draft.description,
            required=True,
        )
        self.inputs = {
            type_field.key: self.input_add(
                type_field.label,
                type_field.key,
                max_length=type_field.max_length,
                typed=view.draft.type_fields.get(type_field.key),
                required=False,
                style=(
                    discord.TextStyle.paragraph
                    if type_field.max_length > TYPE_FIELD_MAX_LENGTH
                    else discord.TextStyle.short
                ),
            )
            for type_field in dtype.fields
        }

    async def on_submit(self, interaction: discord.Interaction) -> None:
        """Keep what was typed in the draft, refused or not; when
        :func:`~discoveries.rules.discovery_validate` refuses it, tell the member (ephemeral),
        else move the form to its review."""
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
        await self.report.described(interaction)


class LocationModal(FormModal):
    """The system and place as text, for when the Control Room's map cannot be read or the
    system is not listed; each a name of at most 200 characters
    (:data:`discoveries.rules.NAME_MAX_LENGTH`). An empty place means in space."""

    def __init__(self, view: ReportView, *, system_name: str | None):
        super().__init__(view, title="Where was it?", name="where")
        place_typed = view.draft.location if view.draft.location_type != "space" else None
        self.system, self.place = (
            self.input_add(
                label, custom_id, max_length=NAME_MAX_LENGTH, typed=typed, required=required
            )
            for label, custom_id, typed, required in (
                ("Star system", "system_name", system_name, True),
                ("Planet or moon (empty if in space)", "location", place_typed, False),
            )
        )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        """Refuse names :func:`~discoveries.rules.name_problem` refuses (ephemeral, naming
        each); else write the system and place into the draft and move the form to the type's
        form."""
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
        # A name the map knows, typed otherwise (case, accents composed or not, invisible
        # characters), is stored as the map writes it; two names it might mean are left alone.
        known = names_matching(typed, [system.name for system in self.report.systems or []])
        draft.system_name = known[0] if len(known) == 1 else typed
        place = "" if text_blank(self.place.value) else self.place.value.strip()
        # A typed name may be a planet or a moon: the sync looks it up as both.
        draft.location, draft.location_type = (place, None) if place else ("Space", "space")
        draft.planet_name = None
        await self.report.located(interaction)


class EvidenceModal(FormModal):
    """One http(s) link to a screenshot or page, of at most the evidence column's length;
    submitting it submits the report."""

    def __init__(self, view: ReportView):
        super().__init__(view, title="Evidence link", name="evidence")
        self.url = self.input_add(
            "Link to a screenshot or page (http/https)",
            "evidence_url",
            placeholder="https://",
            max_length=EVIDENCE_URL_MAX_LENGTH,
            typed=view.draft.evidence_url,
            required=True,
        )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        """Keep the link in the draft (unless a submit is under way) and submit the report
        (:meth:`ReportView.submit`)."""
        self.report.keep_alive()
        if self.report.submitting_interaction_id is None:
            # Kept with the form: a Submit after a failed attempt sends it too.
            self.report.draft.evidence_url = self.url.value
        await self.report.submit(interaction)
