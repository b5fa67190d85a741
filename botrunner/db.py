"""Database work from the bot's event loop.

The bot never calls the ORM on its event loop (a query there would stall every member's
interaction while SQLite waits on a lock). Each unit of database work is one synchronous function,
usually a service or selector, run by :func:`run_db` in a thread of the bot's own pool through
asgiref's ``sync_to_async``: not the one thread Django's async views share, so that a submit
waiting for keeper.db's lock never holds up another member's form, and not the event loop's
default pool, which discord.py and the heartbeat use.

On SQLite, a unit waits at most :data:`LOCK_WAIT_SECONDS` for keeper.db's write lock (the
service's own setting, ``KEEPER_BUSY_TIMEOUT_SECONDS``, is for the worker): a member hears
within seconds that their report could not be stored and may press Submit again, and a
stopping bot can still answer everyone within its 10 seconds. Each thread's connections are
closed after its unit.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections

P = ParamSpec("P")
R = TypeVar("R")

#: How long the bot's database work waits for keeper.db's write lock, in seconds.
LOCK_WAIT_SECONDS = 5.0
#: Units that may wait at once; more wait for a thread.
THREADS = 16

_pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="keeper-db")


def _unit(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    # As around a request: a connection left broken or past CONN_MAX_AGE is not reused.
    close_old_connections()
    keeper = connections[DEFAULT_DB_ALIAS]
    if keeper.vendor == "sqlite":
        keeper.ensure_connection()
        keeper.connection.execute(f"PRAGMA busy_timeout = {int(LOCK_WAIT_SECONDS * 1000)}")
    try:
        return func(*args, **kwargs)
    finally:
        close_old_connections()


async def run_db(func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Await ``func(*args, **kwargs)`` run in a thread of the bot's pool; returns what it
    returns and raises what it raises (``django.db.OperationalError`` "database is locked"
    after :data:`LOCK_WAIT_SECONDS` on a locked keeper.db)."""
    return await sync_to_async(_unit, thread_sensitive=False, executor=_pool)(func, *args, **kwargs)
