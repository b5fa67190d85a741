"""Database work from the bot's event loop.

The bot never calls the ORM on its event loop (a query there would stall every user's
interaction while SQLite waits on a lock). Each unit of work is one synchronous function,
usually a service or selector, run by :func:`run_db` in asgiref's thread-sensitive executor,
as Django's own async views do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

P = ParamSpec("P")
R = TypeVar("R")


def _unit(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    # As around a request: a connection left broken or past CONN_MAX_AGE is not reused.
    close_old_connections()
    try:
        return func(*args, **kwargs)
    finally:
        close_old_connections()


async def run_db(func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Await ``func(*args, **kwargs)`` run in a worker thread; returns what it returns and
    raises what it raises."""
    return await sync_to_async(_unit, thread_sensitive=False)(func, *args, **kwargs)
