"""Settings of the Control Room agent (``manage.py haven_agent``), which ``manage.py`` picks
for that command: Keeper Sync's own settings, read from the same environment and ``.env``, but
for a process that opens VH-Database.db and nothing of the server's. It needs no
``SECRET_KEY`` (it signs nothing), never opens keeper.db (its default database is an empty one
in memory, so a read that should not happen fails loudly) and writes VH whatever the server's
``USE_HAVEN_DATABASE`` says (README, "The Control Room agent on a desktop")."""

import os
import secrets

if not os.environ.get("SECRET_KEY"):
    os.environ["SECRET_KEY"] = secrets.token_urlsafe(50)
# Read from this agent's environment as for the server, whose values a copied .env may hold.
os.environ["USE_HAVEN_DATABASE"] = "true"
os.environ["USE_HAVEN_AGENT"] = "false"
os.environ.pop("DATABASE_URL", None)

from keeper_site.settings import *  # noqa: E402, F403

DATABASES["default"] = {  # noqa: F405
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": ":memory:",
}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
