"""The queue's figures at a cost that does not grow with the queue (issue 14, part 4).

- ``sync_queue_tally``: how many queue items are in each state, kept by triggers on
  ``sync_queue`` in the same transaction as each change, whoever makes it (the services, a bulk
  ``.update()``, an operator's SQL), and computed here from the rows. ``queue_counts`` reads it
  instead of grouping every row.

  On SQLite, one row per state, changed in place by an upsert (SQLite has one writer at a
  time; a NULL state, which an old bot's column allows, adds rows of its own). A row an
  ``INSERT OR REPLACE`` (or ``UPDATE OR REPLACE``) deletes to make room fires no delete trigger
  unless the connection has ``recursive_triggers`` on, so a BEFORE trigger notes the rows the
  new one collides with in ``sync_queue_tally_replaced``, and the AFTER trigger takes off those
  that are gone.

  On PostgreSQL, statement triggers add one row per state a statement changed (``+k``/``-k``):
  writers only insert, so no two transactions wait for each other on a counter. Now and then a
  writer folds the rows it can lock (``SKIP LOCKED``, never waiting) into one per state. Every
  snapshot sees each change with its rows, so the sums are exact at every moment.

- Indexes for the claim (one for each kind of due item, see
  ``SyncQueueItemQuerySet.due_ids``), the lists by state (``/sync/failed``, waiting,
  conflicts), and the time windows and orders of ``/sync/status``, ``/sync/statistics``, the
  dashboard's hourly series and the bot's summary. On SQLite the time indexes are
  on ``syncq.models.UtcText`` of the column, the expression the queries compare, so rows other
  tools wrote (``T``, ``Z``, ``+00:00``) are read right and through the index. Partial indexes
  state their condition exactly as the queries do (SQLite matches it term by term).

The queue table itself is never rebuilt: ``CREATE INDEX``, ``CREATE TABLE`` and triggers only.
"""

from django.db import migrations


def utc(column: str) -> str:
    """``syncq.models.UtcText`` of ``column``, as its queries write it."""
    return f"CASE WHEN lower({column}) = 'now' THEN NULL ELSE datetime({column}) END"


#: ``SyncQueueItemQuerySet.unsynced_errors`` as Django writes it.
UNSYNCED_ERROR = (
    "NOT (sync_status = 'synced') AND NOT (sync_error IS NULL)"
    " AND NOT (sync_error = '' AND sync_error IS NOT NULL)"
)

# Indexes on one state lead with sync_status although it is the same in every entry: SQLite's
# planner, without statistics, takes an index whose leading columns the query constrains over
# one that leaves them to a partial index's condition.
SQLITE_INDEXES = {
    # Lists by state (/sync/failed, waiting, conflicts); the claim's lapsed leases. The claim's
    # items without a due time and past it use idx_sync_queue_due (sync_status,
    # next_retry_after), which on SQLite ends with the rowid, that is the id.
    "sync_queue_state_id": "(sync_status, id)",
    # The claim's items never tried since their last reset.
    "sync_queue_pending_attempts": (
        "(sync_status, sync_attempts, id) WHERE sync_status = 'pending'"
    ),
    "sync_queue_pending_created": (
        f"(sync_status, {utc('created_at')}) WHERE sync_status = 'pending'"
    ),
    "sync_queue_synced_at": f"(sync_status, {utc('synced_at')}) WHERE sync_status = 'synced'",
    "sync_queue_last_attempt": f"({utc('last_sync_attempt')})",
    # With sync_status, so that the top errors are read from the index alone: a query with the
    # state as a parameter checks it on each entry.
    "sync_queue_unsynced_error": f"(sync_error, sync_status) WHERE {UNSYNCED_ERROR}",
    "sync_queue_unsynced_error_at": f"({utc('last_sync_attempt')}) WHERE {UNSYNCED_ERROR}",
}
# PostgreSQL plans with statistics and drops a partial index's condition from the query before
# it looks for index columns: its partial indexes start with the columns searched.
POSTGRESQL_INDEXES = {
    "sync_queue_state_id": "(sync_status, id)",
    "sync_queue_pending_attempts": "(sync_attempts, id) WHERE sync_status = 'pending'",
    "sync_queue_pending_undated": (
        "(id) WHERE sync_status = 'pending' AND next_retry_after IS NULL"
    ),
    "sync_queue_pending_retry": "(next_retry_after, id) WHERE sync_status = 'pending'",
    "sync_queue_pending_created": "(created_at, id) WHERE sync_status = 'pending'",
    "sync_queue_synced_at": "(synced_at, id) WHERE sync_status = 'synced'",
    "sync_queue_last_attempt": "(last_sync_attempt)",
    "sync_queue_unsynced_error": f"(sync_error, sync_status, id) WHERE {UNSYNCED_ERROR}",
    "sync_queue_unsynced_error_at": f"(last_sync_attempt, id) WHERE {UNSYNCED_ERROR}",
}

TALLY_FILL = (
    "INSERT INTO sync_queue_tally (sync_status, n)"
    " SELECT sync_status, COUNT(*) FROM sync_queue GROUP BY sync_status"
)


def _sqlite_add(status: str, change: int) -> str:
    """The statement adding ``change`` to the tally of state ``status``. A NULL state (an old
    bot's column allows it) matches no other, so each adds a row of its own; the sums stay
    exact."""
    return (
        f"INSERT INTO sync_queue_tally (sync_status, n) VALUES ({status}, {change})"
        " ON CONFLICT (sync_status) DO UPDATE SET n = n + excluded.n;"
    )


#: Take off the tally the rows noted in sync_queue_tally_replaced that are gone: a row with the
#: new row's id was replaced by it, any other one only if it no longer exists.
_SQLITE_SETTLE = (
    "UPDATE sync_queue_tally SET n = n - (SELECT COUNT(*) FROM sync_queue_tally_replaced AS r"
    " WHERE r.sync_status IS sync_queue_tally.sync_status AND (r.id = NEW.id OR NOT EXISTS"
    " (SELECT 1 FROM sync_queue AS q WHERE q.id = r.id)));"
    " DELETE FROM sync_queue_tally_replaced WHERE id IS NOT NULL;"
)
#: The rows a new row (or a row given a new id or discovery) collides with.
_SQLITE_COLLIDING = "FROM sync_queue WHERE (id = NEW.id OR discovery_id = NEW.discovery_id)"
#: Note those rows, after forgetting what an earlier row noted (an INSERT OR IGNORE skips a
#: row after its BEFORE trigger ran, leaving its notes behind); only when there is either.
_SQLITE_NOTE = (
    " WHEN EXISTS (SELECT 1 FROM sync_queue_tally_replaced)"
    " OR EXISTS (SELECT 1 {colliding}) BEGIN"
    " DELETE FROM sync_queue_tally_replaced WHERE id IS NOT NULL;"
    " INSERT OR REPLACE INTO sync_queue_tally_replaced (id, sync_status)"
    " SELECT id, sync_status {colliding}; END"
)

SQLITE_TALLY = [
    "CREATE TABLE sync_queue_tally (id integer NOT NULL PRIMARY KEY,"
    " sync_status varchar(32) NULL UNIQUE, n integer NOT NULL)",
    "CREATE TABLE sync_queue_tally_replaced"
    " (id integer NOT NULL PRIMARY KEY, sync_status varchar(32) NULL)",
    "CREATE TRIGGER sync_queue_tally_insert AFTER INSERT ON sync_queue"
    f" BEGIN {_sqlite_add('NEW.sync_status', 1)} END",
    "CREATE TRIGGER sync_queue_tally_delete AFTER DELETE ON sync_queue BEGIN"
    f" {_sqlite_add('OLD.sync_status', -1)}"
    " DELETE FROM sync_queue_tally_replaced WHERE id = OLD.id; END",
    "CREATE TRIGGER sync_queue_tally_update AFTER UPDATE OF sync_status ON sync_queue"
    " WHEN OLD.sync_status IS NOT NEW.sync_status BEGIN"
    f" {_sqlite_add('NEW.sync_status', 1)} {_sqlite_add('OLD.sync_status', -1)} END",
    "CREATE TRIGGER sync_queue_tally_insert_note BEFORE INSERT ON sync_queue"
    + _SQLITE_NOTE.format(colliding=_SQLITE_COLLIDING),
    "CREATE TRIGGER sync_queue_tally_insert_settle AFTER INSERT ON sync_queue"
    " WHEN EXISTS (SELECT 1 FROM sync_queue_tally_replaced)"
    f" BEGIN {_SQLITE_SETTLE} END",
    "CREATE TRIGGER sync_queue_tally_rekey_note BEFORE UPDATE OF id, discovery_id ON sync_queue"
    + _SQLITE_NOTE.format(colliding=f"{_SQLITE_COLLIDING} AND id IS NOT OLD.id"),
    "CREATE TRIGGER sync_queue_tally_rekey_settle AFTER UPDATE OF id, discovery_id ON sync_queue"
    " WHEN EXISTS (SELECT 1 FROM sync_queue_tally_replaced)"
    f" BEGIN {_SQLITE_SETTLE} END",
    TALLY_FILL,
]
SQLITE_TALLY_DROP = [
    *(
        f"DROP TRIGGER IF EXISTS sync_queue_tally_{name}"
        for name in (
            "insert",
            "delete",
            "update",
            "insert_note",
            "insert_settle",
            "rekey_note",
            "rekey_settle",
        )
    ),
    "DROP TABLE IF EXISTS sync_queue_tally_replaced",
    "DROP TABLE IF EXISTS sync_queue_tally",
]

#: Rows of sync_queue_tally beyond which a writer folds them.
PG_FOLD_ABOVE = 64

POSTGRESQL_TALLY = [
    "CREATE TABLE sync_queue_tally"
    " (id bigserial PRIMARY KEY, sync_status varchar(32) NULL, n bigint NOT NULL)",
    # Folds the rows no other transaction holds into one per state. SKIP LOCKED: it never
    # waits, and a row another writer is folding is left to it. Under REPEATABLE READ a row
    # changed since the snapshot cannot be locked: the fold is skipped, the rows stay exact.
    f"""CREATE FUNCTION sync_queue_tally_fold() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT COUNT(*) FROM sync_queue_tally) <= {PG_FOLD_ABOVE} THEN
        RETURN;
    END IF;
    BEGIN
        WITH folded AS (
            DELETE FROM sync_queue_tally WHERE id IN (
                SELECT id FROM sync_queue_tally FOR UPDATE SKIP LOCKED
            ) RETURNING sync_status, n
        )
        INSERT INTO sync_queue_tally (sync_status, n)
        SELECT sync_status, SUM(n) FROM folded GROUP BY sync_status HAVING SUM(n) <> 0;
    EXCEPTION WHEN serialization_failure THEN
        NULL;
    END;
END $$""",
    """CREATE FUNCTION sync_queue_tally_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sync_queue_tally (sync_status, n)
    SELECT sync_status, COUNT(*) FROM sync_queue_tally_new GROUP BY sync_status;
    PERFORM sync_queue_tally_fold();
    RETURN NULL;
END $$""",
    """CREATE FUNCTION sync_queue_tally_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sync_queue_tally (sync_status, n)
    SELECT sync_status, -COUNT(*) FROM sync_queue_tally_old GROUP BY sync_status;
    PERFORM sync_queue_tally_fold();
    RETURN NULL;
END $$""",
    """CREATE FUNCTION sync_queue_tally_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sync_queue_tally (sync_status, n)
    SELECT sync_status, SUM(n) FROM (
        SELECT sync_status, 1 AS n FROM sync_queue_tally_new
        UNION ALL
        SELECT sync_status, -1 AS n FROM sync_queue_tally_old
    ) AS changed GROUP BY sync_status HAVING SUM(n) <> 0;
    IF FOUND THEN
        PERFORM sync_queue_tally_fold();
    END IF;
    RETURN NULL;
END $$""",
    """CREATE FUNCTION sync_queue_tally_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM sync_queue_tally;
    RETURN NULL;
END $$""",
    "CREATE TRIGGER sync_queue_tally_insert AFTER INSERT ON sync_queue"
    " REFERENCING NEW TABLE AS sync_queue_tally_new"
    " FOR EACH STATEMENT EXECUTE FUNCTION sync_queue_tally_inserted()",
    "CREATE TRIGGER sync_queue_tally_delete AFTER DELETE ON sync_queue"
    " REFERENCING OLD TABLE AS sync_queue_tally_old"
    " FOR EACH STATEMENT EXECUTE FUNCTION sync_queue_tally_deleted()",
    "CREATE TRIGGER sync_queue_tally_update AFTER UPDATE ON sync_queue"
    " REFERENCING OLD TABLE AS sync_queue_tally_old NEW TABLE AS sync_queue_tally_new"
    " FOR EACH STATEMENT EXECUTE FUNCTION sync_queue_tally_updated()",
    "CREATE TRIGGER sync_queue_tally_truncate AFTER TRUNCATE ON sync_queue"
    " FOR EACH STATEMENT EXECUTE FUNCTION sync_queue_tally_truncated()",
    TALLY_FILL,
]
POSTGRESQL_TALLY_DROP = [
    *(
        f"DROP TRIGGER IF EXISTS sync_queue_tally_{name} ON sync_queue"
        for name in ("insert", "delete", "update", "truncate")
    ),
    *(
        f"DROP FUNCTION IF EXISTS sync_queue_tally_{name}()"
        for name in ("inserted", "deleted", "updated", "truncated", "fold")
    ),
    "DROP TABLE IF EXISTS sync_queue_tally",
]

FORWARDS = {
    "sqlite": (SQLITE_INDEXES, SQLITE_TALLY),
    "postgresql": (POSTGRESQL_INDEXES, POSTGRESQL_TALLY),
}
BACKWARDS = {"sqlite": SQLITE_TALLY_DROP, "postgresql": POSTGRESQL_TALLY_DROP}


def _vendor(schema_editor) -> str:
    vendor = schema_editor.connection.vendor
    if vendor not in FORWARDS:
        raise NotImplementedError(f"keeper.db on {vendor} is not supported: SQLite or PostgreSQL")
    return vendor


def forwards(apps, schema_editor) -> None:
    indexes, tally = FORWARDS[_vendor(schema_editor)]
    for name, definition in indexes.items():
        schema_editor.execute(f"CREATE INDEX {name} ON sync_queue {definition}")
    # The counts are taken last, in the same transaction as the triggers: on PostgreSQL,
    # CREATE INDEX and CREATE TRIGGER keep other writers of sync_queue out until it ends, and
    # SQLite has one writer at a time, so no change falls between the counts and the triggers.
    for statement in tally:
        schema_editor.execute(statement)


def backwards(apps, schema_editor) -> None:
    vendor = _vendor(schema_editor)
    for statement in BACKWARDS[vendor]:
        schema_editor.execute(statement)
    for name in FORWARDS[vendor][0]:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("syncq", "0006_lease_holder"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
