"""Who may use the Control Room API: reads need ``syncq.view_syncqueueitem``, retries
``syncq.change_syncqueueitem`` (superusers have both). ``SYNC_API_PUBLIC_READ`` opens only the
actions marked ``@action(public_read=True)`` (status and statistics: counts, no user data) to
anonymous GETs (README, "The Control Room API")."""

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission

VIEW_PERMISSION = "syncq.view_syncqueueitem"
CHANGE_PERMISSION = "syncq.change_syncqueueitem"


class SyncQueuePermission(BasePermission):
    """No credentials → 401 (DRF answers NotAuthenticated); authenticated without the
    permission for the method → 403."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        public = getattr(view, "public_read", False) and settings.SYNC_API_PUBLIC_READ
        if request.method in SAFE_METHODS and public:
            return True
        if not (user and user.is_authenticated):
            return False
        needed = VIEW_PERMISSION if request.method in SAFE_METHODS else CHANGE_PERMISSION
        return user.has_perm(needed)
