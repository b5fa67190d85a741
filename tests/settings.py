"""Settings for the test suite: the project's own, with a throwaway keeper.db and secret."""

import os
import tempfile

# A developer's own .env must not leak into the tests.
os.environ["KEEPER_ENV_FILE"] = ""
# Long and varied, as settings demand with DEBUG off; never used outside the tests.
os.environ.setdefault("SECRET_KEY", "tests-only-7f3Kq9ZxW2mB8vLr4TnY6cJd1HsPe5GaU0oRiXwQzMbNkVyEt")
os.environ.setdefault("CACHE_URL", "locmemcache://")
os.environ.setdefault("DEBUG", "false")

from keeper_site.settings import *  # noqa: E402,F403
from keeper_site.settings import DATABASES  # noqa: E402

# A real file, not SQLite's in-memory database, so WAL, IMMEDIATE transactions and the busy
# timeout behave as in production when tests use several connections.
if DATABASES["default"]["ENGINE"] == "discoveries.keeper_sqlite":
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"keeper-sync-test-{os.getpid()}.db")
    }

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Whitenoise warns about a missing STATIC_ROOT; the tests serve no collected files.
STATIC_ROOT = tempfile.mkdtemp(prefix="keeper-sync-static-")
