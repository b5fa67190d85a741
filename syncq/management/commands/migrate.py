"""``manage.py migrate``, Django's own, one at a time per keeper database.

``make run`` and ``make bot`` each migrate keeper.db before they start, and two started at once
on a new keeper.db would both create its tables: the second failed half-way ("table … already
exists"). Here each run first takes a lock of the database it migrates, held until it ends: a
file lock beside a SQLite file (``keeper.db.migrate-lock``), a session advisory lock on
PostgreSQL. The second run waits, then finds everything applied and exits 0.
"""

from __future__ import annotations

import contextlib
import os
import sys
import zlib
from pathlib import Path

from django.core.management.commands import migrate
from django.db import DEFAULT_DB_ALIAS, connections

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl

#: The PostgreSQL advisory lock's key (one 64-bit number): a CRC of a name of our own.
ADVISORY_KEY = zlib.crc32(b"keeper-sync:migrate")


@contextlib.contextmanager
def _file_locked(path: Path):
    """Hold an exclusive lock of the file ``path`` (created if missing, never removed: a
    removed lock file could be locked by two processes at once) for the block, waiting for
    it as long as another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        if sys.platform == "win32":
            handle.seek(0)
            while True:
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after 10 s; keep waiting
                    continue
        else:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if sys.platform == "win32":
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
            else:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _advisory_locked(connection):
    """Hold PostgreSQL's session advisory lock :data:`ADVISORY_KEY` on ``connection``."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_KEY])
    try:
        yield
    finally:
        if connection.connection is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_KEY])


def migrate_lock(alias: str):
    """A context manager that holds the migration lock of database ``alias``: a file lock
    beside a SQLite file (not an in-memory database), an advisory lock on PostgreSQL, and
    nothing on any other backend."""
    connection = connections[alias]
    name = str(connection.settings_dict.get("NAME") or "")
    if connection.vendor == "sqlite":
        if not name or name == ":memory:" or name.startswith("file:"):
            return contextlib.nullcontext()
        return _file_locked(Path(os.path.abspath(name) + ".migrate-lock"))
    if connection.vendor == "postgresql":
        return _advisory_locked(connection)
    return contextlib.nullcontext()


class Command(migrate.Command):
    help = (
        f"{migrate.Command.help} Runs one at a time per database: a second run waits for "
        "the first to end."
    )

    def handle(self, *args, **options):
        with migrate_lock(options.get("database") or DEFAULT_DB_ALIAS):
            return super().handle(*args, **options)
