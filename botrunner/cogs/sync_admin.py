"""``/sync-status`` and ``/sync-retry``: the queue (and, in agent mode, the Control Room agent)
for the server's operators (members with Manage Server), through the same selectors and retry
service as the API and the admin."""

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

#: The most agents ``/sync-status`` names one by one; there is one as a rule.
AGENTS_SHOWN = 3


def _when(moment) -> str:
    """``moment`` (aware) as a Discord relative timestamp (``<t:…:R>``), which each reader's
    client shows as "3 minutes ago" in their own language; "never" for None."""
    return discord.utils.format_dt(moment, "R") if moment is not None else "never"


def _plain(text: str, limit: int) -> str:
    return limits.cut(discord.utils.escape_markdown(text or "?"), limit)


def agent_lines(agent: dict | None) -> list[str]:
    """The Control Room agent's lines of ``/sync-status`` for
    :func:`syncq.selectors.agent_status`'s result (None: not in agent mode and no agent
    known, no line): online or offline, then each agent (the first :data:`AGENTS_SHOWN`) with
    when it was last seen, its version and what it found of VH-Database.db, and the catalog
    it uploaded: how many systems and when it was last confirmed. Names and versions are the
    agent's own text, shown as typed (markdown escaped, cut); ``vh_detail``, which may name
    paths on the desktop, is left to the admin and the API."""
    if agent is None:
        return []
    head = "**Control Room agent**: " + ("online" if agent["online"] else "offline")
    if not agent["enabled"]:
        head += " (USE_HAVEN_AGENT is off: not in agent mode)"
    elif not agent["agents"]:
        head += ": no agent has called yet (manage.py agent_token, then haven_agent)"
    lines = [head]
    for row in agent["agents"][:AGENTS_SHOWN]:
        lines.append(
            f"- {_plain(row['name'], 100)}: {'online' if row['online'] else 'offline'}, "
            f"last seen {_when(row['last_seen_at'])}, version {_plain(row['version'], 64)}, "
            f"VH-Database.db {_plain(row['vh_state'], 32)}"
        )
    hidden = len(agent["agents"]) - AGENTS_SHOWN
    if hidden > 0:
        lines.append(f"- and {hidden:,} more (admin: Control Room agents)")
    catalog = agent["catalog"]
    if catalog is None:
        lines.append("VH catalog: none uploaded yet")
    else:
        lines.append(
            f"VH catalog: {catalog['systems']:,} systems · {catalog['planets']:,} planets · "
            f"{catalog['moons']:,} moons, confirmed {_when(catalog['checked_at'])} "
            f"({age_text(catalog['age_seconds'])} old), changed {_when(catalog['uploaded_at'])}"
        )
    return lines


def summary_text(summary: dict) -> str:
    """The ``/sync-status`` reply for :func:`syncq.selectors.queue_summary`'s result: counts
    (``waiting``: for their place in VH; ``conflict``: for an operator's choice), the oldest
    pending age, the Control Room agent when there is one to show (:func:`agent_lines`), the
    last error and why the first waiting item waits; at most 2,000 characters (Discord's
    message limit). The reason quotes names members typed: the reply is sent without
    mentions."""
    counts = summary["counts"]
    lines = [
        "**Sync queue**: "
        + " · ".join(f"{label} {counts.get(state, 0):,}" for state, label in _STATE_LABELS)
    ]
    oldest = summary["oldest_pending_age_seconds"]
    lines.append(f"Oldest pending: {age_text(oldest) + ' ago' if oldest is not None else 'none'}")
    lines.extend(agent_lines(summary.get("agent")))
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
        """Counts per state, the oldest pending item's age, the Control Room agent in agent
        mode, the last error and why the first waiting item waits (ephemeral)."""
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
