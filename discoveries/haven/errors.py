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
