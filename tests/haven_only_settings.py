"""Settings with only the Control Room's side configured, as on the operator's desktop: no
keeper.db (Django's ``default`` alias is the dummy backend, which refuses every query), no cache,
no queue. ``HAVEN_DB_PATH`` comes from the environment."""

import os
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "haven-only-tests"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["discoveries"]
HAVEN_DB_PATH = Path(os.environ["HAVEN_DB_PATH"])
USE_HAVEN_DATABASE = True
HAVEN_BUSY_TIMEOUT_SECONDS = 5.0
DATABASES = {
    "default": {},
    "haven": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": f"file:{quote(str(HAVEN_DB_PATH), safe='/')}?mode=rw",
        "OPTIONS": {"timeout": HAVEN_BUSY_TIMEOUT_SECONDS, "transaction_mode": "IMMEDIATE"},
    },
}
DATABASE_ROUTERS = ["discoveries.haven.router.HavenRouter"]
