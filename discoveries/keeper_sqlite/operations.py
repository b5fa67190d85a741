"""keeper.db's SQL operations: Django's, except that a date-time column holding text that
names no real moment (written by other tools: ``2024-02-30 10:00:00``) reads as missing
instead of failing every page that lists the row."""

import logging

from django.db.backends.sqlite3 import operations
from django.utils.dateparse import parse_datetime

logger = logging.getLogger(__name__)


def parse_datetime_or_none(text: str):
    """Django's ``parse_datetime``, but ``None`` for text that looks like a date-time and names
    no real moment (``2024-02-30 10:00:00``) instead of ``ValueError``."""
    try:
        return parse_datetime(text)
    except ValueError:
        logger.warning("keeper.db holds %r where a date-time belongs; read as missing", text)
        return None


class DatabaseOperations(operations.DatabaseOperations):
    def convert_datetimefield_value(self, value, expression, connection):
        try:
            return super().convert_datetimefield_value(value, expression, connection)
        except (ValueError, TypeError, OverflowError):
            logger.warning("keeper.db holds %r where a date-time belongs; read as missing", value)
            return None
