"""The bot's own rows in keeper.db: its archive posts."""

from django.db import models
from django.utils import timezone


class ArchiveEdit(models.TextChoices):
    """What became of an archive post's one edit (the time its discovery reached the Control
    Room)."""

    NOT_YET = "", "Not yet"
    EDITED = "edited", "Edited"
    GONE = "gone", "Message gone"
    GIVEN_UP = "given_up", "Given up"


class ArchivePost(models.Model):
    """The message in ``ARCHIVE_CHANNEL_ID`` that shows a discovery (``channel_id``,
    ``message_id``: Discord snowflakes), posted at ``posted_at``. Once the discovery is
    synced, the bot edits the message once to show when it reached the Control Room
    (``reached_at``, UTC): ``edit`` says how that went, ``edited_at`` when, and
    ``edit_failures`` counts tries Discord refused before it is given up."""

    discovery = models.OneToOneField(
        "discoveries.Discovery", on_delete=models.CASCADE, related_name="archive_post"
    )
    channel_id = models.BigIntegerField()
    message_id = models.BigIntegerField(unique=True)
    posted_at = models.DateTimeField(default=timezone.now)
    edit = models.CharField(
        max_length=16, choices=ArchiveEdit.choices, default=ArchiveEdit.NOT_YET, blank=True
    )
    reached_at = models.DateTimeField(null=True, blank=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    edit_failures = models.PositiveSmallIntegerField(default=0)

    class Meta:
        db_table = "bot_archive_post"
        verbose_name = "archive post"
        indexes = [models.Index(fields=["edit", "id"], name="idx_archive_post_edit")]

    def __str__(self) -> str:
        return f"archive post {self.message_id} of discovery {self.discovery_id}"
