"""``/sync-status`` and ``/sync-retry``: the queue for the server's operators (members with
Manage Server), through the same selectors and retry service as the API and the admin."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands
from django.utils import timezone

from botrunner import limits
from botrunner.db import run_db
from syncq.display import age_text
from syncq.errors import QueueItemNotFound, QueueItemNotRetryable
from syncq.selectors import queue_summary
from syncq.services import queue_item_retry

logger = logging.getLogger(__name__)

#: Discord's largest integer option (2^53, what JavaScript holds exactly).
ITEM_ID_MAX = 2**53

_STATE_LABELS = (
    ("pending", "pending"),
    ("syncing", "syncing"),
    ("synced", "synced"),
    ("max_retries_exceeded", "failed"),
    ("waiting", "waiting"),
    ("conflict", "conflict"),
)


def summary_text(summary: dict) -> str:
    """The ``/sync-status`` reply for :func:`syncq.selectors.queue_summary`'s result: counts
    (``waiting``: for their place in VH; ``conflict``: for an operator's choice), the oldest
    pending age, the last error and why the first waiting item waits; at most 2,000
    characters. The reason quotes names members typed: the reply is sent without mentions."""
    counts = summary["counts"]
    lines = [
        "**Sync queue**: "
        + " · ".join(f"{label} {counts.get(state, 0):,}" for state, label in _STATE_LABELS)
    ]
    oldest = summary["oldest_pending_age_seconds"]
    lines.append(f"Oldest pending: {age_text(oldest) + ' ago' if oldest is not None else 'none'}")
    last = summary["last_error"]
    if last is None:
        lines.append("Last error: none")
    else:
        ago = age_text((timezone.now() - last["at"]).total_seconds())
        lines.append(
            f"Last error ({ago} ago, queue item {last['queue_id']}, discovery "
            f"{last['discovery_id']}): {limits.cut(last['error'], 1000)}"
        )
    waiting = summary.get("first_waiting")
    if waiting is not None:
        line = (
            f"First waiting (queue item {waiting['queue_id']}, discovery "
            f"{waiting['discovery_id']}): {limits.cut(waiting['reason'], 500)}"
        )
        if waiting.get("suggestions"):
            nearest = ", ".join(f"'{name}'" for name in waiting["suggestions"])
            line += f"; nearest in the Control Room: {limits.cut(nearest, 200)}"
        lines.append(line)
    if counts.get("conflict"):
        lines.append("Conflicts wait for a choice in the admin (Queue items, state Conflict).")
    return limits.cut("\n".join(lines), limits.MESSAGE_CONTENT_MAX)


class SyncAdmin(commands.Cog):
    """Operators' view of the sync queue from Discord."""

    def __init__(self, bot: commands.Bot):
        self.bot = bot

    @app_commands.command(
        name="sync-status", description="Sync queue counts, the last error and what waits"
    )
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def sync_status(self, interaction: discord.Interaction) -> None:
        """Counts per state, the oldest pending item's age, the last error and why the first
        waiting item waits (ephemeral)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.bot.busy():
            summary = await run_db(queue_summary)
            await interaction.followup.send(
                summary_text(summary),
                ephemeral=True,
                allowed_mentions=discord.AllowedMentions.none(),
            )

    @app_commands.command(name="sync-retry", description="Retry one queue item now")
    @app_commands.rename(item_id="id")
    @app_commands.describe(item_id="The queue item's number (see /sync-status or the admin)")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def sync_retry(
        self, interaction: discord.Interaction, item_id: app_commands.Range[int, 1, ITEM_ID_MAX]
    ) -> None:
        """Reset queue item ``item_id`` (pending or failed) to due now, as the API's retry
        does; the reset is logged as an operator action of this member via ``bot``."""
        if not (isinstance(item_id, int) and not isinstance(item_id, bool)) or not (
            1 <= item_id <= ITEM_ID_MAX
        ):
            # Discord's client keeps to the option's range; a forged request may not.
            await interaction.response.send_message(
                f"Give a queue item number from 1 to {ITEM_ID_MAX}.", ephemeral=True
            )
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = interaction.user
        async with self.bot.busy():
            try:
                item = await run_db(
                    queue_item_retry,
                    item_id=item_id,
                    source="bot",
                    actor_name=f"discord:{user.name} ({user.id})",
                )
            except QueueItemNotFound:
                text = f"There is no queue item {item_id}."
            except QueueItemNotRetryable as exc:
                text = (
                    f"Queue item {item_id} is {exc.status}; only pending or failed items are "
                    "retried."
                )
            else:
                text = f"Queue item {item.id} (discovery {item.discovery_id}) reset: due now."
            await interaction.followup.send(text, ephemeral=True)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(SyncAdmin(bot))
