"""The error types of the sync queue; callers turn them into messages and HTTP codes."""


class SyncError(Exception):
    """Base class of the errors the queue raises on purpose."""


class QueueItemNotFound(SyncError):
    """No queue item has this id (an API answers 404)."""


class QueueItemNotRetryable(SyncError):
    """The item is ``synced``, ``syncing`` or in ``conflict``, so an operator retry would be
    wrong (an API answers 409). ``status`` is its state."""

    def __init__(self, item_id: int, status: str):
        self.item_id = item_id
        self.status = status
        if status == "conflict":
            text = "in conflict; choose which version to keep in the admin"
        else:
            text = f"{status}; only pending, waiting or failed items retry"
        super().__init__(f"queue item {item_id} is {text}")


class QueueItemNotInConflict(SyncError):
    """An operator chose a version for an item that is not in ``conflict`` (any more); an API
    answers 409. ``status`` is its state."""

    def __init__(self, item_id: int, status: str):
        self.item_id = item_id
        self.status = status
        super().__init__(f"queue item {item_id} is {status}, not in conflict")


class DiscoveryBeingDeleted(SyncError):
    """The discovery is queued for deletion from VH; it can no longer be edited."""


class ConflictVersionChanged(SyncError):
    """An operator's choice named a version of the Control Room's row that the item no longer
    holds (the row changed again, or another operator chose first); nothing was changed."""

    def __init__(self, item_id: int):
        self.item_id = item_id
        super().__init__(f"queue item {item_id} no longer holds the version that was chosen from")


class AlertDeliveryFailed(SyncError):
    """An alert message could not be posted to ``ALERT_WEBHOOK_URL`` and is given up: the
    webhook refused it, or its last try failed. Raised by the delivery task, so django-q2
    keeps it among its failed tasks."""
