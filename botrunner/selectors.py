"""What other processes may read about the bot."""

import logging
from datetime import timedelta

from django.core.cache import cache
from django.utils import timezone

#: The bot stores the time of its last gateway event here (UTC, aware datetime).
BOT_HEARTBEAT_CACHE_KEY = "keeper-bot:heartbeat"
BOT_HEARTBEAT_FRESH = timedelta(seconds=90)

logger = logging.getLogger(__name__)


def bot_online() -> bool:
    """True when the bot, in whatever process, recorded a heartbeat in the last 90 s."""
    try:
        beat = cache.get(BOT_HEARTBEAT_CACHE_KEY)
    except Exception as exc:  # the cache backend's own errors vary by backend
        logger.warning("cannot read the bot's heartbeat: %s", exc)
        return False
    return beat is not None and timezone.now() - beat <= BOT_HEARTBEAT_FRESH
