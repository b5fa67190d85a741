from django.contrib import admin

from syncq.models import OperatorAction, SyncAttempt, SyncQueueItem


class SyncAttemptInline(admin.TabularInline):
    """Every attempt of the item, newest first, read-only."""

    model = SyncAttempt
    fields = ("number", "started_at", "duration_ms", "outcome", "error", "haven_discovery_id")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SyncQueueItem)
class SyncQueueItemAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "discovery_id",
        "sync_status",
        "sync_attempts",
        "max_attempts",
        "next_retry_after",
        "haven_discovery_id",
    )
    list_filter = ("sync_status",)
    search_fields = ("sync_error",)
    raw_id_fields = ("discovery",)
    inlines = [SyncAttemptInline]


@admin.register(OperatorAction)
class OperatorActionAdmin(admin.ModelAdmin):
    """Who changed the queue, when, how and how many items: a record, never edited."""

    list_display = ("at", "actor_name", "source", "action", "items_changed")
    list_filter = ("source", "action")
    search_fields = ("actor_name",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
