"""The SQLite backend for keeper.db: Django's own, except that a schema change checks foreign
keys only in the tables Django manages.

keeper.db also holds the old bot's tables (patterns, pattern_discoveries, archive_entries, …),
which are not ours and may hold references to discoveries that were deleted long ago. Django's
schema editor runs ``PRAGMA foreign_key_check`` over the whole file after every migration, so
one such stale row would stop ``migrate`` before it starts. Those rows are kept as they are.
"""

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    """Django's SQLite wrapper with :meth:`check_constraints` limited to Django's tables."""

    def check_constraints(self, table_names=None):
        if table_names is None:
            table_names = self.introspection.django_table_names(
                only_existing=True, include_views=False
            )
        super().check_constraints(table_names)
