"""The owner's command sync: ``@The Keeper sync [guild|global|clear]``, by mention, for the
bot's owner (or its team) in the Developer Portal only.

Commands are synced to ``GUILD_ID`` at every start, which Discord applies at once; a global
sync takes effect everywhere, may take up to an hour, and is rate limited, so it is done only
when the owner asks, never on start.
"""

from __future__ import annotations

import logging

import discord
from discord.ext import commands
from django.conf import settings

logger = logging.getLogger(__name__)


class Owner(commands.Cog):
    """Commands for the bot's owner."""

    def __init__(self, bot: commands.Bot):
        self.bot = bot

    @commands.command(name="sync")
    @commands.is_owner()
    async def sync(self, ctx: commands.Context, scope: str = "guild") -> None:
        """``guild`` (default): this server's commands now; ``global``: every server's;
        ``clear``: remove this server's copies (after a global sync, to avoid doubles)."""
        tree = self.bot.tree
        guild = ctx.guild or (discord.Object(settings.GUILD_ID) if settings.GUILD_ID else None)
        if scope == "global":
            synced = await tree.sync()
            text = f"Synced {len(synced)} commands globally (Discord may take up to an hour)."
        elif scope in ("guild", "clear") and guild is not None:
            if scope == "clear":
                tree.clear_commands(guild=guild)
            else:
                tree.copy_global_to(guild=guild)
            synced = await tree.sync(guild=guild)
            text = f"Synced {len(synced)} commands to this server."
        else:
            text = "Say `sync`, `sync global` or `sync clear`, in a server."
        logger.info("owner %s: sync %s: %s", ctx.author.id, scope, text)
        await ctx.reply(text, mention_author=False)

    @sync.error
    async def sync_error(self, ctx: commands.Context, error: commands.CommandError) -> None:
        if isinstance(error, commands.NotOwner):
            logger.info("user %s asked for a command sync and is not the owner", ctx.author.id)
            return
        raise error


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Owner(bot))
