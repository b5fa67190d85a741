"""The bot's cogs, one per module, each loaded by :class:`botrunner.bot.KeeperBot`."""
