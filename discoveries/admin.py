from django.contrib import admin

from discoveries.models import Discovery


@admin.register(Discovery)
class DiscoveryAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "discovery_type",
        "system_name",
        "location",
        "username",
        "submission_timestamp",
        "haven_discovery_id",
    )
    list_filter = ("discovery_type",)
    search_fields = ("description", "system_name", "location", "username")
