"""Keeper Sync's URLs: the Control Room API, its OpenAPI schema and docs, and the admin (named
Keeper Sync) with the queue dashboard (both ahead of ``admin.site.urls``, so they win over its
catch-all)."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from syncq.api import DocsView, SchemaView
from syncq.dashboard import admin_index, queue_dashboard

# The console's name on every admin page, the login included.
admin.site.site_header = "Keeper Sync"
admin.site.site_title = "Keeper Sync"
admin.site.index_title = "Operator console"
# The lists need the page's width (1280 px screens); the index and breadcrumbs lead everywhere.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/dashboard/", admin.site.admin_view(queue_dashboard), name="keeper-dashboard"),
    path("admin/", admin.site.admin_view(admin_index)),
    path("admin/", admin.site.urls),
    # A fixed download name; a ?version= other than the API's one is a 400 (syncq.api.SchemaView).
    path("api/schema/", SchemaView.as_view(), name="schema"),
    # Its start script served apart (?script), so the content security policy needs no inline
    # script.
    path("api/docs/", DocsView.as_view(url_name="schema"), name="api-docs"),
    path("", include("syncq.urls")),
]

# JSON on the API's paths, Django's pages elsewhere (syncq.api).
handler400 = "syncq.api.bad_request"
handler403 = "syncq.api.permission_denied"
handler404 = "syncq.api.not_found"
handler500 = "syncq.api.server_error"
