"""Adopting a keeper.db written by the old bot, for the initial migrations.

The old bot created ``discoveries`` (and, in later versions, ``sync_queue``) itself, with its
own column order and without our columns. Its files must migrate without losing a row, of these
tables or of the bot's other tables (REFERENCE.md). So the initial migrations do not
``CREATE TABLE`` blindly: :func:`adopt_table` creates a missing table, and on an existing one
only adds what is missing: nullable columns (``ALTER TABLE … ADD COLUMN``, never a table
rebuild), filled on existing rows with the field's default, plus the model's indexes.
"""

from __future__ import annotations

import copy

from django.db.models import NOT_PROVIDED


class AdoptionError(RuntimeError):
    """An existing table cannot be adopted without losing or rewriting data."""


def adopt_table(app_label: str, model_name: str, *, normalize_datetimes: bool = False):
    """Return a ``RunPython`` forwards function that creates or adopts the model's table.

    ``normalize_datetimes`` rewrites, on SQLite, the existing rows' date-time text written as
    ISO 8601 with ``T`` or a zone suffix (``2025-11-12T01:53:40Z``, ``…+02:00``) into Django's
    UTC form (``2025-11-12 01:53:40.000``), the same instant: the queue compares these columns
    as text in SQL, where ``T`` sorts after a space and the same day would look later.
    """

    def forwards(apps, schema_editor) -> None:
        model = apps.get_model(app_label, model_name)
        connection = schema_editor.connection
        table = model._meta.db_table
        introspection = connection.introspection
        with connection.cursor() as cursor:
            if table not in introspection.table_names(cursor):
                schema_editor.create_model(model)
                return
            existing = {c.name for c in introspection.get_table_description(cursor, table)}
            constraints = introspection.get_constraints(cursor, table)
        for field in model._meta.local_fields:
            if field.column not in existing:
                _add_missing_column(schema_editor, model, field)
        _add_missing_indexes(schema_editor, model, constraints)
        if normalize_datetimes and connection.vendor == "sqlite":
            _normalize_datetimes(schema_editor, model, existing)

    return forwards


def _normalize_datetimes(schema_editor, model, existing: set[str]) -> None:
    quote = schema_editor.quote_name
    table = quote(model._meta.db_table)
    for field in model._meta.local_fields:
        if field.get_internal_type() != "DateTimeField" or field.column not in existing:
            continue
        column = quote(field.column)
        utc = f"strftime('%Y-%m-%d %H:%M:%f', {column})"
        # Only values SQLite can read are rewritten; anything else stays as it was.
        schema_editor.execute(
            f"UPDATE {table} SET {column} = {utc}"
            f" WHERE {utc} IS NOT NULL AND ({column} LIKE '%T%' OR {column} LIKE '%Z'"
            f" OR {column} GLOB '*[+-][0-9][0-9]:[0-9][0-9]')"
        )


def _add_missing_column(schema_editor, model, field) -> None:
    table = model._meta.db_table
    if field.primary_key or field.is_relation:
        raise AdoptionError(
            f"table {table!r} exists without column {field.column!r}; "
            "it cannot be adopted (is this a keeper.db?)"
        )
    added = copy.copy(field)
    added.null = True
    added.default = NOT_PROVIDED
    added.db_default = NOT_PROVIDED
    schema_editor.add_field(model, added)
    if field.has_default():
        connection = schema_editor.connection
        value = field.get_db_prep_save(field.get_default(), connection)
        quote = schema_editor.quote_name
        schema_editor.execute(
            f"UPDATE {quote(table)} SET {quote(field.column)} = %s"
            f" WHERE {quote(field.column)} IS NULL",
            [value],
        )


def _add_missing_indexes(schema_editor, model, constraints: dict) -> None:
    covered = {tuple(c["columns"]) for c in constraints.values() if c.get("index")}
    unique = {tuple(c["columns"]) for c in constraints.values() if c.get("unique")}
    for index in model._meta.indexes:
        columns = tuple(model._meta.get_field(name).column for name in index.fields)
        if columns not in covered:
            schema_editor.add_index(model, index)
    quote = schema_editor.quote_name
    table = model._meta.db_table
    for field in model._meta.local_fields:
        if field.unique and not field.primary_key and (field.column,) not in unique:
            with schema_editor.connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT {quote(field.column)} FROM {quote(table)}"
                    f" GROUP BY {quote(field.column)} HAVING COUNT(*) > 1 LIMIT 10"
                )
                repeated = [row[0] for row in cursor.fetchall()]
            if repeated:
                raise AdoptionError(
                    f"table {table!r} has several rows for {field.column} "
                    f"{', '.join(map(str, repeated))}; keep one row each, then migrate again"
                )
            schema_editor.execute(
                f"CREATE UNIQUE INDEX {quote(f'{table}_{field.column}_uniq')} ON {quote(table)}"
                f" ({quote(field.column)})"
            )
