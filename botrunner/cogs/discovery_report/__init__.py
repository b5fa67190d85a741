"""``/discovery-report``: members report a discovery through a form, and each stored report is
posted to the archive channel.

This module holds the cog and its ``setup``; the form is :mod:`.view` (its steps) with
:mod:`.modals` (what the member types) and :mod:`.draft` (what they entered so far), and the
archive channel's embed is :mod:`.embed`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands
from django.conf import settings
from django.db import DatabaseError

from botrunner.cogs.discovery_report.draft import ReportDraft
from botrunner.cogs.discovery_report.embed import discovery_embed
from botrunner.cogs.discovery_report.view import ReportView
from botrunner.db import run_db
from botrunner.delivery import NO_MENTIONS, interaction_answer_if_orphaned
from botrunner.services import archive_post_record

if TYPE_CHECKING:
    from discoveries.models import Discovery

logger = logging.getLogger(__name__)


class DiscoveryReport(commands.Cog):
    """The report command and the archive post."""

    def __init__(self, bot: commands.Bot):
        self.bot = bot

    @app_commands.command(name="discovery-report", description="Report a discovery to the archive")
    @app_commands.guild_only()
    async def discovery_report(self, interaction: discord.Interaction) -> None:
        """Open the report form, visible to the member only; with ``DISCOVERY_CHANNEL_ID`` set,
        only in that channel and its threads (elsewhere the member is pointed there)."""
        where = settings.DISCOVERY_CHANNEL_ID
        channel = interaction.channel
        in_place = where is None or where in (
            interaction.channel_id,
            getattr(channel, "parent_id", None),
        )
        if not in_place:
            await interaction.response.send_message(
                f"Discoveries are reported in <#{where}>.", ephemeral=True
            )
            return
        draft = ReportDraft(
            user_id=interaction.user.id,
            username=interaction.user.display_name,
            guild_id=interaction.guild_id,
            account_name=interaction.user.name,
        )
        view = ReportView(
            draft=draft,
            origin=interaction,
            timeout=settings.BOT_VIEW_TIMEOUT_SECONDS,
            on_stored=self.archive_post,
        )
        await interaction.response.send_message(
            view.render(), view=view, ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """A click on a report form no live form takes gets an answer, not Discord's "This
        interaction failed"."""
        await interaction_answer_if_orphaned(interaction, prefix="report:")

    async def archive_post(self, discovery: Discovery) -> None:
        """Post ``discovery``'s embed to ``ARCHIVE_CHANNEL_ID`` when set, and record the
        message (:func:`botrunner.services.archive_post_record`) for its edit once the
        discovery reaches the Control Room (:mod:`botrunner.cogs.archive_edit`). A failure is
        logged and costs the member nothing: the discovery is already stored."""
        channel_id = settings.ARCHIVE_CHANNEL_ID
        if channel_id is None:
            return
        try:
            message = await self.bot.get_partial_messageable(channel_id).send(
                embed=discovery_embed(discovery), allowed_mentions=NO_MENTIONS
            )
        except discord.HTTPException as exc:
            logger.warning(
                "could not post discovery %s to the archive channel %s: %s",
                discovery.id,
                channel_id,
                exc,
            )
            return
        try:
            await run_db(
                archive_post_record,
                discovery_id=discovery.id,
                channel_id=channel_id,
                message_id=message.id,
            )
        except DatabaseError as exc:
            logger.warning(
                "could not record discovery %s's archive post %s: %s", discovery.id, message.id, exc
            )


async def setup(bot: commands.Bot) -> None:
    """Load the cog: discord.py's extension entry point (``botrunner.bot.COGS``)."""
    await bot.add_cog(DiscoveryReport(bot))
