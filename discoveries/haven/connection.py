"""The connection to VH-Database.db: checks of the file, the ``haven`` connection, and the probe.

The file is opened read-write without create (``mode=rw``, set in the ``haven`` alias), with a
busy timeout (``HAVEN_BUSY_TIMEOUT_SECONDS``); its journal mode and pragmas are left alone. The
connection remembers which file it opened (device and inode), so a file moved away and another
put in its place is never written through a connection to the old one.
"""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import quote

from django.conf import settings
from django.db import connections

from discoveries.haven.errors import HavenUnavailable
from discoveries.haven.files import haven_where
from discoveries.haven.router import HAVEN_ALIAS

_file_identity: tuple[int, int] | None = None


def haven_status() -> str:
    """``disabled``, ``missing`` or ``ok`` by configuration and the file's presence alone
    (opens nothing)."""
    if not settings.USE_HAVEN_DATABASE:
        return "disabled"
    return "ok" if os.path.isfile(settings.HAVEN_DB_PATH) else "missing"


def haven_probe(*, timeout_seconds: float = 0.2) -> str:
    """The Control Room file's state for ``/health``: ``disabled``, ``missing``, ``locked``
    (another program holds its write lock now, or the file is read-only) or ``ok``; a file
    that is not a SQLite database counts as missing. Opens it read-write without create and
    takes and releases the write lock, writing nothing."""
    status = haven_status()
    if status != "ok":
        return status
    try:
        # SQLite quietly opens a write-protected file read-only; the OS tells the truth.
        os.close(os.open(settings.HAVEN_DB_PATH, os.O_RDWR))
    except PermissionError:
        return "locked"
    except OSError:
        return "missing"
    uri = f"file:{quote(str(settings.HAVEN_DB_PATH), safe='/')}?mode=rw"
    try:
        probe = sqlite3.connect(uri, uri=True, timeout=timeout_seconds, isolation_level=None)
    except sqlite3.Error:
        return "missing"
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
    except sqlite3.DatabaseError as exc:
        # A read-only file cannot take writes either: to the operator it is locked.
        text = str(exc)
        locked = any(word in text for word in ("locked", "busy", "readonly"))
        return "locked" if locked else "missing"
    finally:
        probe.close()
    return "ok"


def haven_connection():
    """The ``haven`` connection, checked to point at the file now at ``HAVEN_DB_PATH``.

    Raises :class:`HavenUnavailable` when the sync is switched off, the file is missing, or it
    cannot be written (checked before a new connection opens it). If
    the file was replaced since the connection opened (moved away and restored, say), the old
    connection is closed first, so no write lands in a file that is no longer the Control
    Room's.
    """
    global _file_identity
    if not settings.USE_HAVEN_DATABASE:
        raise HavenUnavailable("USE_HAVEN_DATABASE is false: the queue is kept, VH is not used")
    identity = _path_identity()
    if identity is None:
        haven_close()
        raise HavenUnavailable(
            f"VH-Database.db is missing at {haven_where()}; waiting for it to come back"
        )
    conn = connections[HAVEN_ALIAS]
    if conn.connection is not None and identity != _file_identity:
        conn.close()
    if conn.connection is None:
        _writable_check()
    conn.ensure_connection()
    _file_identity = identity
    return conn


def _writable_check() -> None:
    """Raise :class:`HavenUnavailable` when this process cannot write the file or the WAL files
    beside it. Opening a WAL-mode file that cannot be written would make SQLite leave ``-wal``
    and ``-shm`` files as unwritable as it, which would then stop every writer, the Control
    Room too, after the file itself is writable again."""
    for suffix in ("", "-wal", "-shm"):
        path = f"{settings.HAVEN_DB_PATH}{suffix}"
        try:
            os.close(os.open(path, os.O_RDWR))
        except FileNotFoundError:
            continue
        except PermissionError:
            raise HavenUnavailable(
                f"{path} is read-only to this process (attempt to write a readonly "
                "database); waiting for it to be writable"
            ) from None


def _path_identity() -> tuple[int, int] | None:
    try:
        st = os.stat(settings.HAVEN_DB_PATH)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def haven_replaced_check(conn) -> None:
    """Raise :class:`HavenUnavailable` if the file at ``HAVEN_DB_PATH`` is no longer the one
    ``conn`` opened (moved away, or another put in its place, while we wrote).

    SQLite finds a WAL file by name: our committed pages still sit in ``VH-Database.db-wal``,
    which now stands beside the new file and would be replayed into it. A TRUNCATE checkpoint
    through our connection first moves those pages into the file we wrote (wherever it went)
    and empties the WAL, so the new file is left intact. The caller's item is then retried
    into the file now at the path.
    """
    if _path_identity() == _file_identity:
        return
    with conn.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    haven_close()
    raise HavenUnavailable(
        "VH-Database.db was moved or replaced while this discovery was being written; it is "
        f"written again into the file now at {haven_where()}"
    )


def haven_close() -> None:
    """Close the ``haven`` connection so that no file handle is held between batches."""
    connections[HAVEN_ALIAS].close()
