"""Archive posts follow their discovery into the Control Room: every
``BOT_ARCHIVE_EDIT_SECONDS`` (20 s), the bot finds the archive posts (:class:`botrunner.models.
ArchivePost`) whose discovery is now synced and edits each once, its embed gaining the line
"Reached the Control Room at … UTC", so members see the sync land without asking.

Each edit is one REST call, a few per round at most (:data:`EDITS_PER_ROUND`); discord.py
waits out Discord's rate limits (429) itself. A message someone deleted (404) is marked gone
and never tried again; other refusals are counted, and a post refused
:data:`~botrunner.services.EDIT_FAILURES_MAX` times is given up. The database work runs
through :func:`botrunner.db.run_db`, never on the event loop."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands, tasks
from django.conf import settings
from django.db import DatabaseError

from botrunner.cogs.discovery_report.embed import discovery_embed
from botrunner.db import run_db
from botrunner.delivery import NO_MENTIONS
from botrunner.models import ArchiveEdit, ArchivePost
from botrunner.services import (
    archive_post_edit_failed,
    archive_post_edited,
    archive_posts_reached,
)

logger = logging.getLogger(__name__)

#: Archive posts edited at most per round.
EDITS_PER_ROUND = 10


class ArchiveEditCog(commands.Cog, name="ArchiveEdit"):
    """Edits each archive post once its discovery reached the Control Room."""

    def __init__(self, bot: commands.Bot):
        self.bot = bot

    async def cog_load(self) -> None:
        self.edit_round.change_interval(seconds=settings.BOT_ARCHIVE_EDIT_SECONDS)
        self.edit_round.start()

    async def cog_unload(self) -> None:
        self.edit_round.cancel()

    @tasks.loop(seconds=20)
    async def edit_round(self) -> None:
        try:
            posts = await run_db(archive_posts_reached, limit=EDITS_PER_ROUND)
        except DatabaseError as exc:
            logger.warning("cannot read the archive posts to edit: %s", exc)
            return
        for post in posts:
            await self.edit(post)

    @edit_round.before_loop
    async def _ready(self) -> None:
        await self.bot.wait_until_ready()

    async def edit(self, post: ArchivePost) -> None:
        """Edit ``post``'s message once to show when its discovery reached the Control Room,
        and record how that went (a database error is logged; the next round tries again)."""
        embed = discovery_embed(post.discovery, reached_at=post.reached_at)
        message = self.bot.get_partial_messageable(post.channel_id).get_partial_message(
            post.message_id
        )
        try:
            try:
                await message.edit(embed=embed, allowed_mentions=NO_MENTIONS)
            except discord.NotFound:
                logger.info(
                    "archive post %s of discovery %s is gone", post.message_id, post.discovery_id
                )
                await run_db(archive_post_edited, post_id=post.id, edit=ArchiveEdit.GONE)
            except discord.HTTPException as exc:
                given_up = await run_db(archive_post_edit_failed, post_id=post.id)
                logger.warning(
                    "could not edit archive post %s of discovery %s%s: %s",
                    post.message_id,
                    post.discovery_id,
                    " (given up)" if given_up else "",
                    exc,
                )
            else:
                await run_db(
                    archive_post_edited,
                    post_id=post.id,
                    edit=ArchiveEdit.EDITED,
                    reached_at=post.reached_at,
                )
        except DatabaseError as exc:
            logger.warning("cannot record the edit of archive post %s: %s", post.message_id, exc)


async def setup(bot: commands.Bot) -> None:
    """Load the cog: discord.py's extension entry point (``botrunner.bot.COGS``)."""
    await bot.add_cog(ArchiveEditCog(bot))
