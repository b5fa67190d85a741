"""The bot's writes and reads of its own rows (:class:`botrunner.models.ArchivePost`), each a
sync function the cogs run through :func:`botrunner.db.run_db`, never on the event loop."""

from __future__ import annotations

from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import F
from django.utils import timezone

from botrunner.models import ArchiveEdit, ArchivePost
from syncq.models import SyncStatus

#: Refused edits of one archive post (other than "message gone") before it is given up.
EDIT_FAILURES_MAX = 5


def archive_post_record(*, discovery_id: int, channel_id: int, message_id: int) -> ArchivePost:
    """Record that discovery ``discovery_id`` was posted as message ``message_id`` of channel
    ``channel_id``; posting it again replaces the record. Returns the row."""
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        post, _ = ArchivePost.objects.update_or_create(
            discovery_id=discovery_id,
            defaults={
                "channel_id": channel_id,
                "message_id": message_id,
                "posted_at": timezone.now(),
                "edit": ArchiveEdit.NOT_YET,
                "edit_failures": 0,
            },
        )
    return post


def archive_posts_reached(*, limit: int) -> list[ArchivePost]:
    """Up to ``limit`` archive posts not edited yet whose discovery is synced, oldest first,
    each with its discovery and ``reached_at`` set to the queue item's ``synced_at`` (UTC;
    now, for an item synced without a time)."""
    posts = list(
        ArchivePost.objects.filter(
            edit=ArchiveEdit.NOT_YET, discovery__queue_item__sync_status=SyncStatus.SYNCED
        )
        .select_related("discovery", "discovery__queue_item")
        .order_by("id")[:limit]
    )
    for post in posts:
        post.reached_at = post.discovery.queue_item.synced_at or timezone.now()
    return posts


def archive_post_edited(*, post_id: int, edit: str, reached_at: datetime | None = None) -> None:
    """Record how archive post ``post_id``'s edit ended: ``edited`` (showing ``reached_at``)
    or ``gone`` (the message was deleted: never tried again)."""
    ArchivePost.objects.filter(id=post_id).update(
        edit=edit, reached_at=reached_at, edited_at=timezone.now()
    )


def archive_post_edit_failed(*, post_id: int) -> bool:
    """Count a refused edit of archive post ``post_id``; after :data:`EDIT_FAILURES_MAX` the
    post is given up. Returns True when it was given up."""
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        ArchivePost.objects.filter(id=post_id).update(edit_failures=F("edit_failures") + 1)
        return bool(
            ArchivePost.objects.filter(id=post_id, edit_failures__gte=EDIT_FAILURES_MAX).update(
                edit=ArchiveEdit.GIVEN_UP, edited_at=timezone.now()
            )
        )
