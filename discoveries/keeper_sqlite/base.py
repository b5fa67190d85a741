"""The SQLite backend for keeper.db: Django's own, except that a schema change checks foreign
keys only in the tables Django manages, and that the file's folder is created when missing.

keeper.db also holds the old bot's tables (patterns, pattern_discoveries, archive_entries, …),
which are not ours and may hold references to discoveries that were deleted long ago. Django's
schema editor runs ``PRAGMA foreign_key_check`` over the whole file after every migration, so
one such stale row would stop ``migrate`` before it starts. Those rows are kept as they are.

keeper.db is ours, so on a fresh clone ``manage.py migrate`` creates it, folder and all
(``KEEPER_DB_PATH=some/new/dir/keeper.db``), where SQLite alone would fail with "unable to open
database file".
"""

from pathlib import Path

from django.db.backends.sqlite3 import base
from django.db.utils import OperationalError

from discoveries.keeper_sqlite.operations import DatabaseOperations, parse_datetime_or_none

# Django registers these with Python's sqlite3 module (process-wide) for columns declared
# datetime/timestamp; the tolerant parser reads text naming no real moment as missing.
base.Database.register_converter("datetime", base.decoder(parse_datetime_or_none))
base.Database.register_converter("timestamp", base.decoder(parse_datetime_or_none))


class DatabaseWrapper(base.DatabaseWrapper):
    """Django's SQLite wrapper with :meth:`check_constraints` limited to Django's tables, a
    missing folder of the database file created on connecting, and date-time text that names
    no real moment read as missing (:mod:`discoveries.keeper_sqlite.operations`)."""

    ops_class = DatabaseOperations

    def get_new_connection(self, conn_params):
        """Create the folder of a plain file ``NAME`` (not ``:memory:``, not a ``file:`` URI,
        whose path and options are SQLite's to interpret), then connect as Django does.
        Raises ``OperationalError`` naming the folder when it cannot be created."""
        name = str(conn_params["database"])
        if name != ":memory:" and not name.startswith("file:"):
            folder = Path(name).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OperationalError(
                    f"cannot create {folder}, the folder of {name}: {exc.strerror}"
                ) from exc
        return super().get_new_connection(conn_params)

    def check_constraints(self, table_names=None):
        if table_names is None:
            table_names = self.introspection.django_table_names(
                only_existing=True, include_views=False
            )
        super().check_constraints(table_names)
