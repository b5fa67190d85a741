"""The errors of the Control Room side. Callers (the sync, the admin, the agent) turn them into an
item's backoff, a message or an HTTP code."""


class HavenError(Exception):
    """Base class of the errors raised on purpose about VH-Database.db."""


class HavenUnavailable(HavenError):
    """VH-Database.db cannot be used now: missing, switched off, replaced while being written,
    or not writable. Items wait with backoff; nothing is created in its place."""


class HavenSchemaError(HavenError):
    """VH-Database.db lacks a table or column that a mapped row needs; the message names it."""


class MappingError(HavenError, ValueError):
    """A keeper discovery cannot be turned into a VH row (for example, an unknown type)."""


class HavenTransactionLost(HavenError):
    """VH-Database.db rolled back a whole batch's transaction (a trigger's ``RAISE(ROLLBACK)``,
    an ``ON CONFLICT ROLLBACK`` constraint, a full disk): nothing of the batch is in VH, and
    every discovery of it is to be tried again."""


class HavenRowIgnored(HavenError):
    """VH-Database.db took an INSERT or UPDATE of ours without changing a row (a trigger's
    ``RAISE(IGNORE)``, an ``ON CONFLICT IGNORE`` constraint): the discovery is not in VH."""


class HavenRowMoved(HavenError):
    """The discovery's VH row belongs to another keeper.db now: an import there took over the
    ledger row naming it (:func:`discoveries.haven.ledger.ledger_take_over`). Nothing is written,
    so the row never has two owners whose edits would overwrite each other; the message names
    the VH row and its owner."""
