"""The retry schedule of the sync queue (REFERENCE.md, "Retry schedule").

A failed attempt *n* (1-based) is retried after ``base · 2^(n−1)``: with the default base of
30 s that is 30 s, 60 s, 2 m, 4 m, 8 m, 16 m, 32 m, 64 m, 128 m; the ``max_attempts``-th failure
is final. django-q2 has no backoff of its own, so the queue table keeps the due time.
"""

from datetime import timedelta

from django.conf import settings

#: The longest wait between two attempts, however many attempts an item is allowed.
MAX_RETRY_DELAY = timedelta(days=7)


def retry_delay(attempt: int, *, base_seconds: int | None = None) -> timedelta:
    """The wait after failed attempt ``attempt`` (1-based) before the item is due again, at
    most ``MAX_RETRY_DELAY``.

    ``base_seconds`` defaults to ``SYNC_BASE_DELAY_SECONDS``. Raises ``ValueError`` for an
    attempt below 1.
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    base = settings.SYNC_BASE_DELAY_SECONDS if base_seconds is None else base_seconds
    # The doubling stops at MAX_RETRY_DELAY, so a long attempt table never overflows a date.
    seconds = min(base * 2 ** (attempt - 1), MAX_RETRY_DELAY.total_seconds())
    return timedelta(seconds=seconds)
