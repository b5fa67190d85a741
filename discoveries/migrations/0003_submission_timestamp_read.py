"""Legacy submission times into Django's stored form, read never guessed.

An old bot's keeper.db (or a tool run on it) may hold ``discoveries.submission_timestamp`` as an
epoch integer (``1762912415``), epoch milliseconds, or ISO 8601 text with ``T``, ``Z`` or an
offset. Django's SQLite converter reads epoch values as ``None``, without a word, and those
discoveries would reach the Control Room with no time and never be linked to the row the old
bot wrote; ISO text it reads, but SQL compares these columns as text, where ``T`` sorts after a
space (the adoption in 0001 leaves ``discoveries`` as it found it).

On SQLite, every value :func:`discoveries.timestamps.timestamp_read` reads and which is not
already Django's form (``YYYY-MM-DD HH:MM:SS[.ffffff]`` text, UTC) is rewritten into that form,
the same instant. A value it cannot read is left as it is and logged, one warning per row up to
:data:`LOGGED`, then one line counting the rest; the sync holds such a discovery
(:func:`discoveries.models.discovery_timestamp_problem`). On PostgreSQL the column is a real
``timestamp with time zone``: nothing to do. Reversing it does nothing (the old forms are not
kept).
"""

import logging
import re

from django.db import migrations

from discoveries.timestamps import timestamp_read, timestamp_unreadable

logger = logging.getLogger("discoveries.migrations")

#: How many unreadable values are logged one by one.
LOGGED = 20

#: Text Django stores for a DateTimeField on SQLite, and reads back as it is.
DJANGO_FORM = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?", re.ASCII)


def submission_timestamps_read(apps, schema_editor) -> None:
    connection = schema_editor.connection
    if connection.vendor != "sqlite":
        return
    model = apps.get_model("discoveries", "Discovery")
    quote = schema_editor.quote_name
    table = quote(model._meta.db_table)
    column = quote(model._meta.get_field("submission_timestamp").column)
    with connection.cursor() as cursor:
        # CAST and typeof: an expression has no declared type, so the sqlite3 converters
        # registered for "datetime" columns never see these values. A blob is shown as
        # SQLite's literal, as text it might not be.
        cursor.execute(
            f"SELECT id, typeof({column}),"
            f" CASE typeof({column}) WHEN 'blob' THEN 'x''' || hex({column}) || ''''"
            f" ELSE CAST({column} AS TEXT) END"
            f" FROM {table} WHERE {column} IS NOT NULL ORDER BY id"
        )
        rows = cursor.fetchall()
    rewrites = []
    unreadable = 0
    for discovery_id, kind, raw in rows:
        instant = timestamp_read(raw) if kind != "blob" else None
        if instant is None:
            unreadable += 1
            if unreadable <= LOGGED:
                logger.warning(
                    "keeper discovery %s: %s; left as it is, and the sync holds it until it is"
                    " corrected",
                    discovery_id,
                    timestamp_unreadable("submission_timestamp", raw),
                )
            continue
        if kind == "text" and DJANGO_FORM.fullmatch(raw):
            continue
        rewrites.append((connection.ops.adapt_datetimefield_value(instant), discovery_id))
    if unreadable > LOGGED:
        logger.warning(
            "%s more keeper discoveries hold a submission_timestamp that cannot be read"
            " (not listed; the first %s are above)",
            unreadable - LOGGED,
            LOGGED,
        )
    if rewrites:
        with connection.cursor() as cursor:
            cursor.executemany(f"UPDATE {table} SET {column} = %s WHERE id = %s", rewrites)
        logger.info(
            "%s keeper discoveries' submission_timestamp rewritten as Django's UTC text",
            len(rewrites),
        )


class Migration(migrations.Migration):
    dependencies = [
        ("discoveries", "0002_submission_key"),
    ]

    operations = [
        migrations.RunPython(submission_timestamps_read, migrations.RunPython.noop),
    ]
