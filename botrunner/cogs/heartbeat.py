"""The bot's heartbeat: every 30 s, and at once when the gateway connects, resumes or drops,
the bot records its state where ``/health`` reads it (:func:`syncq.selectors.
bot_heartbeat_key`, this keeper database's entry in the cache all processes share), so
``bot_online`` is true in the API's process while the bot runs in another."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from discord.ext import commands, tasks
from django.core.cache import cache

from syncq.selectors import bot_heartbeat_key

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30
#: A heartbeat outlives a bot killed without warning only this long in the cache.
HEARTBEAT_TTL_SECONDS = 300


class Heartbeat(commands.Cog):
    """Writes the heartbeat; reads nothing."""

    def __init__(self, bot: commands.Bot):
        self.bot = bot
        self.key = bot_heartbeat_key()
        self.last_event_at: datetime | None = None
        self.connected = False
        self.stopped = False
        # Writes run in threads: the lock keeps a late write from landing after forget().
        self._writing = asyncio.Lock()

    async def cog_load(self) -> None:
        self.connected = self.bot.is_ready() and not self.bot.is_closed()
        self.beat.start()

    async def cog_unload(self) -> None:
        # commands.Bot.close() unloads every cog: the heartbeat goes with the bot.
        await self.forget()

    def state(self) -> dict:
        """The heartbeat as stored: ``{at, ready, connected, last_event_at, user, guilds,
        latency_ms}`` (times aware UTC; ``latency_ms`` None until the gateway measured it)."""
        latency = self.bot.latency
        return {
            "at": datetime.now(UTC),
            "ready": self.bot.is_ready(),
            "connected": self.connected and not self.bot.is_closed(),
            "last_event_at": self.last_event_at,
            "user": str(self.bot.user) if self.bot.user else None,
            "guilds": len(self.bot.guilds),
            "latency_ms": round(latency * 1000, 1)
            if latency == latency and latency != float("inf")
            else None,
        }

    async def record(self) -> None:
        """Store the heartbeat now; a cache that cannot be written is logged, never fatal."""
        async with self._writing:
            if self.stopped:
                return
            state = self.state()
            try:
                await asyncio.to_thread(cache.set, self.key, state, HEARTBEAT_TTL_SECONDS)
            except Exception as exc:  # the cache backend's own errors vary by backend
                logger.warning("cannot record the bot's heartbeat: %s", exc)

    async def forget(self) -> None:
        """Remove the heartbeat (the bot is stopping)."""
        self.connected = False
        self.beat.cancel()
        async with self._writing:
            self.stopped = True
            try:
                await asyncio.to_thread(cache.delete, self.key)
            except Exception as exc:  # the cache backend's own errors vary by backend
                logger.warning("cannot remove the bot's heartbeat: %s", exc)

    @tasks.loop(seconds=HEARTBEAT_SECONDS)
    async def beat(self) -> None:
        if self.connected:
            await self.record()

    @commands.Cog.listener()
    async def on_socket_event_type(self, event_type: str) -> None:
        self.last_event_at = datetime.now(UTC)

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        self.connected = True
        await self.record()

    @commands.Cog.listener()
    async def on_resumed(self) -> None:
        self.connected = True
        await self.record()

    @commands.Cog.listener()
    async def on_connect(self) -> None:
        self.connected = True

    @commands.Cog.listener()
    async def on_disconnect(self) -> None:
        self.connected = False
        await self.record()


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Heartbeat(bot))
