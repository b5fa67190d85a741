"""The Keeper: a discord.py ``commands.Bot`` with the cogs of :mod:`botrunner.cogs`.

It needs no privileged intent (no member list, no message content: the owner's ``sync``
command is read from messages that mention the bot, whose content Discord always delivers).
Every message it sends has mentions disabled, so text members typed never pings anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import discord
import yarl
from discord import app_commands
from discord.ext import commands

from botrunner.delivery import interaction_first_seen, reply_error

logger = logging.getLogger(__name__)

COGS = (
    "botrunner.cogs.heartbeat",
    "botrunner.cogs.discovery_report",
    "botrunner.cogs.archive_edit",
    "botrunner.cogs.sync_admin",
    "botrunner.cogs.owner",
)


def discord_endpoints_set(*, api_base: str, gateway_url: str) -> None:
    """Point discord.py, process-wide, at ``api_base`` for REST (``…/api/v10``, no trailing
    slash) and ``gateway_url`` for the gateway websocket: Discord's own, a REST proxy such as
    nirn-proxy, or a test double. Must run before the client makes its first request."""
    discord.http.Route.BASE = api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class DeliveredAgain(app_commands.CheckFailure):
    """This slash command's interaction was delivered before; it is handled once."""


class KeeperTree(app_commands.CommandTree):
    """The command tree, running each slash command interaction once however often Discord
    delivers it (see :mod:`botrunner.delivery`)."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if not interaction_first_seen(interaction):
            raise DeliveredAgain()
        return True


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
            tree_cls=KeeperTree,
        )
        self.guild_id = guild_id
        self.tree.on_error = self.on_app_command_error
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.asynccontextmanager
    async def busy(self) -> AsyncIterator[None]:
        """Mark work a member is waiting on (a submit, an operator command) for as long as the
        block runs, so that a stopping bot finishes it first (:meth:`wait_idle`)."""
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if not self._busy:
                self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the work marked by :meth:`busy` to end; True when
        none is left."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

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
        if isinstance(error, DeliveredAgain):
            logger.info("interaction %s delivered again; ignored", interaction.id)
            return
        if isinstance(error, app_commands.TransformerError | app_commands.CommandSignatureMismatch):
            logger.info("command %s got options it cannot read: %s", interaction.data, error)
            text = "That command's options could not be read; please try again."
        elif isinstance(error, app_commands.MissingPermissions):
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
