"""WSGI entry point for Keeper Sync (gunicorn keeper_site.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keeper_site.settings")
application = get_wsgi_application()
