from django.apps import AppConfig


class DiscoveriesConfig(AppConfig):
    name = "discoveries"
    default_auto_field = "django.db.models.AutoField"
