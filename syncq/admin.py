from django.contrib import admin

from syncq.models import SyncQueueItem


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
