"""Interactions as they reach the bot: each handled once, and none left unanswered.

Discord may deliver the same interaction again (a gateway resume replays events), and discord.py
would run its handler again: a second acknowledgement of one interaction is refused by Discord
(400, code 40060), and a second run would repeat its work. :func:`interaction_first_seen` is
true only for the first delivery of an interaction id.

A click on a form the bot no longer knows (the bot restarted, or the form was closed) is
dropped by discord.py without an answer, and Discord shows the member "This interaction
failed". :func:`interaction_answer_if_orphaned` answers such a click instead.

What the bot's forms send back: :data:`NO_MENTIONS` on every message that carries text a member
typed, and :func:`reply_error` when a handler failed on our side.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

import discord

logger = logging.getLogger(__name__)

#: Interaction ids remembered; a replay comes within seconds, so a few thousand is plenty.
REMEMBERED = 5000
#: How long a form's own handler has to take an interaction before it counts as orphaned. The
#: handlers take their interactions at once (before any database work); Discord allows 3 s.
ORPHAN_AFTER_SECONDS = 1.5
#: Nothing in a message pings anyone: the bot's default, restated where member text is sent so
#: that the rule holds at each call.
NO_MENTIONS = discord.AllowedMentions.none()

_seen: OrderedDict[int, None] = OrderedDict()
_taken: OrderedDict[int, None] = OrderedDict()


def _remember(store: OrderedDict[int, None], interaction_id: int) -> bool:
    if interaction_id in store:
        return False
    store[interaction_id] = None
    while len(store) > REMEMBERED:
        store.popitem(last=False)
    return True


def interaction_first_seen(interaction: discord.Interaction) -> bool:
    """True the first time this interaction id comes by, False for every later delivery."""
    return _remember(_seen, interaction.id)


def interaction_taken(interaction: discord.Interaction) -> None:
    """Mark an interaction as taken by a live form (it will be answered there)."""
    _remember(_taken, interaction.id)


async def interaction_answer_if_orphaned(interaction: discord.Interaction, *, prefix: str) -> None:
    """For a component click or modal submit whose ``custom_id`` starts with ``prefix``: when
    no live form took it within :data:`ORPHAN_AFTER_SECONDS`, tell the member (ephemeral) that
    the form is no longer active. Anything else is left alone."""
    if interaction.type not in (
        discord.InteractionType.component,
        discord.InteractionType.modal_submit,
    ):
        return
    custom_id = (interaction.data or {}).get("custom_id", "")
    if not isinstance(custom_id, str) or not custom_id.startswith(prefix):
        return
    await asyncio.sleep(ORPHAN_AFTER_SECONDS)
    if interaction.id in _taken or interaction.response.is_done():
        return
    try:
        await interaction.response.send_message(
            "That form, or that step of it, is no longer active (it moved on, timed out, was "
            "sent, or the bot restarted). Use the form's current buttons, or run "
            "/discovery-report to start a new one.",
            ephemeral=True,
        )
    except discord.HTTPException as exc:
        logger.info("could not answer a click on an inactive form: %s", exc)


async def reply_error(interaction: discord.Interaction) -> None:
    """Tell the member, ephemerally, that something failed on our side (the caller has logged
    it): as the interaction's answer, or as a follow-up when it is already answered. A Discord
    error on the way is logged, not raised."""
    text = "Something went wrong on our side; it has been logged. Please try again."
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException as exc:
        logger.warning("could not report an error to the member: %s", exc)
