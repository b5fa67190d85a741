"""The error types of the sync queue; callers turn them into messages and HTTP codes."""


class SyncError(Exception):
    """Base class of the errors the sync raises on purpose."""


class HavenUnavailable(SyncError):
    """VH-Database.db cannot be used now: missing, switched off, or not writable. Items wait
    with backoff; nothing is created in its place."""


class HavenSchemaError(SyncError):
    """VH-Database.db lacks a table or column that a mapped row needs; the message names it."""
