"""The error types of the sync queue; callers turn them into messages and HTTP codes."""


class SyncError(Exception):
    """Base class of the errors the sync raises on purpose."""


class HavenUnavailable(SyncError):
    """VH-Database.db cannot be used now: missing, switched off, or not writable. Items wait
    with backoff; nothing is created in its place."""


class HavenSchemaError(SyncError):
    """VH-Database.db lacks a table or column that a mapped row needs; the message names it."""


class QueueItemNotFound(SyncError):
    """No queue item has this id (an API answers 404)."""


class QueueItemNotRetryable(SyncError):
    """The item is ``synced`` or being ``syncing`` now, so an operator retry would be wrong
    (an API answers 409). ``status`` is its state."""

    def __init__(self, item_id: int, status: str):
        self.item_id = item_id
        self.status = status
        super().__init__(f"queue item {item_id} is {status}; only pending or failed items retry")
