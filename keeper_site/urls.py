"""Keeper Sync's URLs: the admin for now; the Control Room API joins under /sync/."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
