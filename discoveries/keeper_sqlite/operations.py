"""keeper.db's SQL operations: Django's, except that a date-time column holding text that
names no real moment (written by other tools: ``2024-02-30 10:00:00``), or a moment outside
:data:`discoveries.timestamps.TIMESTAMP_RANGE`, reads as missing instead of failing every page
that lists the row."""

import logging

from django.db.backends.sqlite3 import operations
from django.utils.dateparse import parse_datetime

from discoveries.timestamps import timestamp_in_range

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
            converted = super().convert_datetimefield_value(value, expression, connection)
        except (ValueError, TypeError, OverflowError):
            converted = None
        else:
            # A time in year 1's first or year 9999's last day is no date in some time zones:
            # every page that showed it there would fail.
            if converted is None or converted.tzinfo is None or timestamp_in_range(converted):
                return converted
        logger.warning("keeper.db holds %r where a date-time belongs; read as missing", value)
        return None
