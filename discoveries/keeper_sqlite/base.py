"""The SQLite backend for keeper.db: Django's own, except that a schema change checks foreign
keys only in the tables Django manages, that the file's folder is created when missing, and that
writers take their turn through a queue in the kernel rather than SQLite's busy handler.

keeper.db also holds the old bot's tables (patterns, pattern_discoveries, archive_entries, …),
which are not ours and may hold references to discoveries that were deleted long ago. Django's
schema editor runs ``PRAGMA foreign_key_check`` over the whole file after every migration, so
one such stale row would stop ``migrate`` before it starts. Those rows are kept as they are.

keeper.db is ours, so on a fresh clone ``manage.py migrate`` creates it, folder and all
(``KEEPER_DB_PATH=some/new/dir/keeper.db``), where SQLite alone would fail with "unable to open
database file".

A crowd of writers (the bot's submits, the sync worker, the web) queue on the writer lock of
:mod:`discoveries.keeper_sqlite.writer_lock`: a connection takes it before any statement that
may write while no transaction is open (``BEGIN IMMEDIATE`` of an atomic block, or a write in
autocommit such as ``Model.save()`` or ``QuerySet.update()`` outside one) and gives it back as
soon as no transaction is open any more (after ``COMMIT`` or ``ROLLBACK``, or the autocommit
statement; on close; when ``BEGIN`` fails). Savepoints of nested atomic blocks run inside the
transaction and take nothing. Statements that only read (``SELECT``, ``EXPLAIN``, ``PRAGMA``,
``VALUES``) never wait for it, so WAL's readers stay beside the writer; an atomic block that only
reads takes it, as it takes SQLite's write lock already (``transaction_mode`` ``IMMEDIATE``).
The lock waits at most the connection's busy timeout (``KEEPER_BUSY_TIMEOUT_SECONDS``) and then
raises ``OperationalError("database is locked")`` as SQLite would; a wait for it counts against
that timeout for the ``BEGIN`` that follows. Statements run on the raw ``sqlite3`` connection
or through ``executescript`` do not queue: SQLite's own locking keeps them right, as it does
for other programs writing keeper.db.
"""

import collections
import re
from pathlib import Path

from django.db.backends.sqlite3 import base, creation
from django.db.utils import OperationalError

from discoveries.keeper_sqlite.operations import DatabaseOperations, parse_datetime_or_none
from discoveries.keeper_sqlite.writer_lock import WriterLock, lock_path_for, writer_lock_for


# Django registers these with Python's sqlite3 module (process-wide) for columns declared
# datetime/timestamp; the tolerant reader takes text naming no real moment, and bytes that are
# not text, as missing.
def _datetime_read(raw: bytes):
    """A stored date-time as Django reads it, or ``None`` when its bytes are not UTF-8 text (a
    BLOB, say), which names no moment either."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return None
    return parse_datetime_or_none(text)


base.Database.register_converter("datetime", _datetime_read)
base.Database.register_converter("timestamp", _datetime_read)

#: Statements that never take SQLite's write lock when run outside a transaction.
_READS = re.compile(r"\s*(?:SELECT|EXPLAIN|PRAGMA|VALUES)\b", re.IGNORECASE)


def _idle(connection) -> bool:
    """Whether the ``sqlite3`` connection has no transaction open (a closed one has none)."""
    try:
        return not connection.in_transaction
    except base.Database.ProgrammingError:  # closed
        return True


class KeeperCursorWrapper(base.SQLiteCursorWrapper):
    """Django's SQLite cursor, taking the connection's :attr:`writer_lock` (when it has one)
    before a statement that may write while no transaction is open, and giving it back once no
    transaction is open after it. The rows of a write that returns some (``INSERT … RETURNING``)
    outside a transaction are read at once, since SQLite commits such a statement only when its
    last row has been read. Raises ``sqlite3.OperationalError("database is locked")`` when the
    lock is not had within its timeout."""

    #: Set by :meth:`DatabaseWrapper.create_cursor`; ``None`` queues nothing.
    writer_lock: WriterLock | None = None
    _rows: collections.deque | None = None

    def execute(self, query, params=None):
        return self._queued(super().execute, query, params)

    def executemany(self, query, param_list):
        return self._queued(super().executemany, query, param_list)

    def _queued(self, run, query, params):
        self._rows = None
        lock = self.writer_lock
        if lock is None:
            return run(query, params)
        connection = self.connection
        waited = 0.0
        if not lock.held and not _READS.match(query) and _idle(connection):
            waited = lock.acquire()
        try:
            if waited:
                # The queue's wait and SQLite's own share one busy timeout, as one wait would.
                remaining = max(lock.timeout - waited, 0.0)
                connection.execute(f"PRAGMA busy_timeout = {int(remaining * 1000)}")
            result = run(query, params)
            if lock.held and not connection.in_transaction and self.description is not None:
                self._rows = collections.deque(super().fetchall())
        finally:
            try:
                if waited:
                    connection.execute(f"PRAGMA busy_timeout = {int(lock.timeout * 1000)}")
            finally:
                if lock.held and _idle(connection):
                    lock.release()
        return result

    def fetchone(self):
        if self._rows is None:
            return super().fetchone()
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size=None):
        if self._rows is None:
            return super().fetchmany(self.arraysize if size is None else size)
        count = self.arraysize if size is None else size
        return [self._rows.popleft() for _ in range(min(count, len(self._rows)))]

    def fetchall(self):
        if self._rows is None:
            return super().fetchall()
        rows, self._rows = list(self._rows), collections.deque()
        return rows

    def __next__(self):
        if self._rows is None:
            return super().__next__()
        if not self._rows:
            raise StopIteration
        return self._rows.popleft()


class DatabaseCreation(creation.DatabaseCreation):
    """Django's test database handling, removing the test database's writer lock file with the
    file itself."""

    def _destroy_test_db(self, test_database_name, verbosity):
        super()._destroy_test_db(test_database_name, verbosity)
        if test_database_name and not self.is_in_memory_db(test_database_name):
            lock_path_for(test_database_name).unlink(missing_ok=True)


class DatabaseWrapper(base.DatabaseWrapper):
    """Django's SQLite wrapper with :meth:`check_constraints` limited to Django's tables, a
    missing folder of the database file created on connecting, writers queued on the
    connection's :attr:`writer_lock` (see the module's docstring), and date-time text that
    names no real moment read as missing (:mod:`discoveries.keeper_sqlite.operations`)."""

    ops_class = DatabaseOperations
    creation_class = DatabaseCreation
    #: The connection's place in keeper.db's writer queue, or ``None`` where there is none
    #: (:func:`discoveries.keeper_sqlite.writer_lock.writer_lock_for`).
    writer_lock: WriterLock | None = None

    def get_new_connection(self, conn_params):
        """Create the folder of a plain file ``NAME`` (not ``:memory:``, not a ``file:`` URI,
        whose path and options are SQLite's to interpret), then connect as Django does and open
        the connection's place in the writer queue (:attr:`writer_lock`), waiting at most
        ``OPTIONS["timeout"]`` seconds. Raises ``OperationalError`` naming the folder when it
        cannot be created."""
        name = str(conn_params["database"])
        if name != ":memory:" and not name.startswith("file:"):
            folder = Path(name).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OperationalError(
                    f"cannot create {folder}, the folder of {name}: {exc.strerror}"
                ) from exc
        connection = super().get_new_connection(conn_params)
        self._writer_lock_close()
        # sqlite3.connect's own default, for a NAME configured without OPTIONS["timeout"].
        self.writer_lock = writer_lock_for(name, timeout=conn_params.get("timeout", 5.0))
        return connection

    def create_cursor(self, name=None):
        cursor = self.connection.cursor(factory=KeeperCursorWrapper)
        cursor.writer_lock = self.writer_lock
        return cursor

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._writer_lock_release_when_idle()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._writer_lock_release_when_idle()

    def _close(self):
        try:
            return super()._close()
        finally:
            self._writer_lock_close()

    def _writer_lock_release_when_idle(self):
        # A COMMIT that failed leaves the transaction open: the lock stays for its ROLLBACK.
        lock = self.writer_lock
        if lock is not None and lock.held and _idle(self.connection):
            lock.release()

    def _writer_lock_close(self):
        lock, self.writer_lock = self.writer_lock, None
        if lock is not None:
            lock.close()

    def check_constraints(self, table_names=None):
        if table_names is None:
            table_names = self.introspection.django_table_names(
                only_existing=True, include_views=False
            )
        super().check_constraints(table_names)
