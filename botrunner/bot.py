"""The Keeper: a discord.py ``commands.Bot`` with the cogs of :mod:`botrunner.cogs`.

It needs no privileged intent (no member list, no message content: the owner's ``sync``
command is read from messages that mention the bot, whose content Discord always delivers).
Every message it sends has mentions disabled, so text members typed never pings anyone.
"""

from __future__ import annotations

import logging

import discord
import yarl
from discord import app_commands
from discord.ext import commands

from botrunner.cogs.discovery_report_ui import reply_error

logger = logging.getLogger(__name__)

COGS = (
    "botrunner.cogs.heartbeat",
    "botrunner.cogs.discovery_report",
    "botrunner.cogs.sync_admin",
    "botrunner.cogs.owner",
)


def discord_endpoints_set(*, api_base: str, gateway_url: str) -> None:
    """Point discord.py, process-wide, at ``api_base`` for REST (``…/api/v10``, no trailing
    slash) and ``gateway_url`` for the gateway websocket: Discord's own, a REST proxy such as
    nirn-proxy, or a test double. Must run before the client makes its first request."""
    discord.http.Route.BASE = api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class KeeperBot(commands.Bot):
    """The bot. ``guild_id``: the server whose commands are synced at every start (None: no
    sync at start). ``guild_ready_timeout`` is discord.py's wait for servers after READY."""

    def __init__(self, *, guild_id: int | None, guild_ready_timeout: float = 2.0):
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            allowed_mentions=discord.AllowedMentions.none(),
            chunk_guilds_at_startup=False,
            guild_ready_timeout=guild_ready_timeout,
            help_command=None,
        )
        self.guild_id = guild_id
        self.tree.on_error = self.on_app_command_error

    async def setup_hook(self) -> None:
        for name in COGS:
            await self.load_extension(name)
        if self.guild_id is None:
            logger.info("GUILD_ID is not set: slash commands are not synced at start")
            return
        guild = discord.Object(self.guild_id)
        self.tree.copy_global_to(guild=guild)
        synced = await self.tree.sync(guild=guild)
        logger.info("synced %d commands to guild %s", len(synced), self.guild_id)

    async def on_ready(self) -> None:
        logger.info("connected as %s to %d servers", self.user, len(self.guilds))

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """Refusals become an ephemeral reply; anything else is logged and apologised for."""
        if isinstance(error, app_commands.MissingPermissions):
            needed = ", ".join(
                p.replace("_", " ").replace("guild", "server").title()
                for p in error.missing_permissions
            )
            text = f"You need the {needed} permission to use this command."
        elif isinstance(error, app_commands.NoPrivateMessage):
            text = "This command works in a server only."
        elif isinstance(error, app_commands.CheckFailure):
            text = "You cannot use this command here."
        else:
            logger.error(
                "command %s failed",
                interaction.command and interaction.command.name,
                exc_info=error,
            )
            await reply_error(interaction)
            return
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)

    async def on_command_error(self, ctx: commands.Context, error: commands.CommandError) -> None:
        # Mentions are how members talk about the bot, not only to it: unknown words are not errors.
        if isinstance(error, commands.CommandNotFound | commands.NotOwner):
            return
        logger.error("command %s failed", ctx.command, exc_info=error)
