"""Reading the submission times legacy files hold: pure functions, no Django, no database.

The old bot, and tools operators ran on its files, left ``submission_timestamp`` values in more
than one form, in keeper.db and in VH-Database.db alike: REFERENCE.md's ``YYYY-MM-DD HH:MM:SS``
UTC text, ISO 8601 with ``T``, ``Z`` or an offset, and epoch integers. :func:`timestamp_read`
reads each of them as the same aware UTC instant, and reads nothing it would have to guess.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, tzinfo
from datetime import timezone as dt_timezone
from decimal import ROUND_DOWN, Decimal, InvalidOperation

#: How the forms :func:`timestamp_read` reads are named to operators.
TIMESTAMP_FORMS = "epoch seconds/ms or ISO 8601"

#: Epoch values, by magnitude: 10–11 digits are seconds (2001-09-09 to 5138-11-16), 13–14
#: digits milliseconds (the same span). Nothing else is a submission time: 20251112 or a
#: 12-digit number could only be read by guessing what was meant.
EPOCH_SECONDS = (10**9, 10**11)
EPOCH_MILLISECONDS = (10**12, 10**14)

#: The instants a submission time may be: from the second day of year 1 to the end of the
#: second-to-last day of year 9999 (UTC), end excluded. Every UTC offset is under a day, so
#: each such instant is a date in every time zone an operator's page may show it in; the
#: first and last day are not (9999-12-31T23:00Z is in year 10000 in Tokyo).
TIMESTAMP_RANGE = (datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC))

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Places kept in an epoch value in seconds and in milliseconds: to the microsecond.
_MICRO, _MILLI = Decimal("0.000001"), Decimal("0.001")
_EPOCH_TEXT = re.compile(r"\d+(?:\.\d+)?", re.ASCII)
_ISO = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[Tt ]"
    r"(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?)?"
    r" ?(?P<zone>[Zz]|[+-]\d{2}:?\d{2})?",
    re.ASCII,
)


def timestamp_read(raw: object) -> datetime | None:
    """Read a stored submission time as an aware UTC ``datetime``, or ``None``.

    The rule, in the order applied:

    - an ``int`` or ``float`` (not a ``bool``), or text of ASCII digits with an optional
      fraction (``"1762912415"``, ``"1762912415.5"``), is an epoch time, told apart by its
      magnitude (:data:`EPOCH_SECONDS`, :data:`EPOCH_MILLISECONDS`): 10–11 digits before the
      point are seconds, 13–14 are milliseconds (``1762912415`` and ``1762912415000`` are the
      same instant); any other magnitude, a negative or a non-finite number is ``None``;
    - text ``YYYY-MM-DD`` then ``T`` or a space then ``HH:MM[:SS[.fraction]]`` (``,`` also
      marks the fraction; digits past microseconds are dropped; no seconds means ``:00``),
      then ``Z``, ``±HH:MM``, ``±HHMM`` or no zone, is ISO 8601; no zone means UTC, as
      legacy text is UTC (REFERENCE.md, ``submission_timestamp``). ``T`` and ``Z`` may be
      lower case (RFC 3339);
    - a ``datetime`` is taken as it is, naive meaning UTC;
    - anything else (a date without a time, a day that does not exist, ``"last tuesday"``,
      ``None``, bytes) is ``None``: a time is read, never guessed.

    Surrounding whitespace in text is ignored. The result is converted to UTC; an instant
    outside :data:`TIMESTAMP_RANGE` (``"9999-12-31T23:59:59-01:00"``, which no ``datetime``
    holds in UTC, or ``"9999-12-31 12:00"``, which is in year 10000 east of UTC) is ``None``
    too. Whatever ``raw`` is, this never raises:
    migration ``0003`` and :func:`discoveries.haven.ledger.legacy_match` read whatever a legacy
    file holds through it.
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, datetime):
        return _utc(raw)
    if isinstance(raw, int):
        # Bounded first: str() refuses an int of over 4,300 digits, and Decimal() of a huge
        # one takes seconds.
        return _epoch_read(Decimal(raw)) if 0 <= raw < EPOCH_MILLISECONDS[1] else None
    if isinstance(raw, float):
        return _epoch_read(Decimal(str(raw))) if math.isfinite(raw) else None
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if _EPOCH_TEXT.fullmatch(text):
        try:
            return _epoch_read(Decimal(text))
        except InvalidOperation:
            return None
    match = _ISO.fullmatch(text)
    return _iso_read(match) if match else None


def timestamp_unreadable(column: str, raw: object) -> str:
    """The sentence that tells an operator ``raw``, the value of ``column``, is no time."""
    return f"{column} {raw!r} cannot be read as a time ({TIMESTAMP_FORMS})"


def _epoch_read(value: Decimal) -> datetime | None:
    # Cut to the unit first, as digits past microseconds are dropped from ISO text: the
    # product of a long fraction would be rounded, up into the next second at worst.
    if EPOCH_SECONDS[0] <= value < EPOCH_SECONDS[1]:
        microseconds = int(value.quantize(_MICRO, rounding=ROUND_DOWN) * 1_000_000)
    elif EPOCH_MILLISECONDS[0] <= value < EPOCH_MILLISECONDS[1]:
        microseconds = int(value.quantize(_MILLI, rounding=ROUND_DOWN) * 1_000)
    else:
        return None
    return _EPOCH + timedelta(microseconds=microseconds)


def _iso_read(match: re.Match) -> datetime | None:
    zone = _zone_read(match["zone"])
    if zone is None:
        return None
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    try:
        value = datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"] or 0),
            int(fraction),
            tzinfo=zone,
        )
    except ValueError:
        return None
    return _utc(value)


def _utc(value: datetime) -> datetime | None:
    # utcoffset(), not tzinfo: a tzinfo giving no offset leaves a datetime naive, and
    # astimezone() would take it as the local time of this machine.
    if value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        # The instant lies before year 1 or after year 9999 once in UTC.
        return None
    return value if timestamp_in_range(value) else None


def timestamp_in_range(value: datetime) -> bool:
    """Whether ``value``, an aware ``datetime``, lies in :data:`TIMESTAMP_RANGE`, so that it
    can be shown in any time zone. keeper.db's reader (``discoveries.keeper_sqlite``) reads a
    stored time outside it as missing, as :func:`timestamp_read` does."""
    return TIMESTAMP_RANGE[0] <= value < TIMESTAMP_RANGE[1]


def _zone_read(zone: str | None) -> tzinfo | None:
    if zone is None or zone in ("Z", "z"):
        return UTC
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        return None
    offset = timedelta(hours=hours, minutes=minutes)
    return dt_timezone(-offset if zone[0] == "-" else offset)
