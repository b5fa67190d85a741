"""What other processes may read about the bot."""

from datetime import timedelta

from django.core.cache import cache
from django.utils import timezone

#: The bot stores the time of its last gateway event here (UTC, aware datetime).
BOT_HEARTBEAT_CACHE_KEY = "keeper-bot:heartbeat"
BOT_HEARTBEAT_FRESH = timedelta(seconds=90)


def bot_online() -> bool:
    """True when the bot, in whatever process, recorded a heartbeat in the last 90 s."""
    beat = cache.get(BOT_HEARTBEAT_CACHE_KEY)
    return beat is not None and timezone.now() - beat <= BOT_HEARTBEAT_FRESH
