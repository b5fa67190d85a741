"""How the queue reads to people: ages, due times and timestamps as the console, the API and the
bot show them."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, as DRF writes times, or None."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def age_text(seconds: float | None) -> str:
    """``seconds`` as an operator reads an age: ``"45 s"``, ``"12 min"``, ``"3 h 5 min"``,
    ``"2 d 4 h"``; ``"—"`` for None."""
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 1:
        return f"{minutes} min"
    if days < 1:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"
