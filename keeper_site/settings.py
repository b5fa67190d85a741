"""Settings for Keeper Sync.

Every setting is read from the process environment or from a ``.env`` file in the project root
(``.env.example`` lists them; ``KEEPER_ENV_FILE`` names another file, or none when empty),
through one typed django-environ reader; the environment wins over the file. Relative paths
are taken from the project root. See README.md for what each one does.
"""

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# KEEPER_ENV_FILE names another file; empty reads none (the tests use that).
_env_file = os.environ.get("KEEPER_ENV_FILE", str(BASE_DIR / ".env"))
if _env_file:
    environ.Env.read_env(_env_file)


def _project_path(value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else BASE_DIR / path


SECRET_KEY = env.str("SECRET_KEY", default="")
DEBUG = env.bool("DEBUG", default=False)
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set: put it in the environment or in .env (make run writes one)"
    )
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_q",
    "discoveries",
    "syncq",
    "botrunner",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "keeper_site.urls"
WSGI_APPLICATION = "keeper_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Databases -------------------------------------------------------------------------------
# keeper.db is ours: WAL lets readers run beside the one writer, the busy timeout makes a second
# writer wait instead of failing with "database is locked", and IMMEDIATE transactions take the
# write lock at BEGIN so a read-then-write transaction never fails half-way on an upgrade.
KEEPER_DB_PATH = _project_path(env.str("KEEPER_DB_PATH", default="data/keeper.db"))
KEEPER_BUSY_TIMEOUT_SECONDS = env.float("KEEPER_BUSY_TIMEOUT_SECONDS", default=30.0)

# VH-Database.db belongs to the Control Room. It is opened with mode=rw (a missing file is an
# error, never silently created) and a busy timeout, and nothing about the file is changed:
# no journal mode, no pragmas that persist.
HAVEN_DB_PATH = _project_path(env.str("HAVEN_DB_PATH", default="data/VH-Database.db"))
USE_HAVEN_DATABASE = env.bool("USE_HAVEN_DATABASE", default=True)
HAVEN_BUSY_TIMEOUT_SECONDS = env.float("HAVEN_BUSY_TIMEOUT_SECONDS", default=5.0)

if env.str("DATABASE_URL", default=""):
    _default_db = env.db_url("DATABASE_URL")
else:
    _default_db = {
        "ENGINE": "discoveries.keeper_sqlite",
        "NAME": str(KEEPER_DB_PATH),
        "OPTIONS": {
            "timeout": KEEPER_BUSY_TIMEOUT_SECONDS,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }

DATABASES = {
    "default": _default_db,
    "haven": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": f"file:{HAVEN_DB_PATH}?mode=rw",
        "OPTIONS": {
            "timeout": HAVEN_BUSY_TIMEOUT_SECONDS,
            "transaction_mode": "IMMEDIATE",
        },
        # The Control Room's file is never created, flushed or migrated by the test runner.
        "TEST": {"NAME": "file:haven_test?mode=memory&cache=shared"},
    },
}
DATABASE_ROUTERS = ["discoveries.routers.HavenRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Sync queue ------------------------------------------------------------------------------
SYNC_INTERVAL_SECONDS = env.int("SYNC_INTERVAL_SECONDS", default=30)
SYNC_BATCH_SIZE = env.int("SYNC_BATCH_SIZE", default=10)
SYNC_MAX_ATTEMPTS = env.int("SYNC_MAX_ATTEMPTS", default=10)
SYNC_BASE_DELAY_SECONDS = env.int("SYNC_BASE_DELAY_SECONDS", default=30)
SYNC_LEASE_SECONDS = env.int("SYNC_LEASE_SECONDS", default=300)
SYNC_PRUNE_AFTER_DAYS = env.int("SYNC_PRUNE_AFTER_DAYS", default=30)
SYNC_API_PORT = env.int("SYNC_API_PORT", default=8080)
SYNC_API_HOST = env.str("SYNC_API_HOST", default="127.0.0.1")

for _name in (
    "SYNC_INTERVAL_SECONDS",
    "SYNC_BATCH_SIZE",
    "SYNC_MAX_ATTEMPTS",
    "SYNC_BASE_DELAY_SECONDS",
    "SYNC_LEASE_SECONDS",
    "SYNC_PRUNE_AFTER_DAYS",
):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be a positive integer")

# One sync task may run this long before django-q2 kills it. It stays well inside the lease,
# so an item whose worker was killed is only taken again after that worker is gone.
SYNC_TASK_TIMEOUT_SECONDS = min(120, max(10, SYNC_LEASE_SECONDS // 2))
if SYNC_LEASE_SECONDS <= SYNC_TASK_TIMEOUT_SECONDS:
    raise ImproperlyConfigured("SYNC_LEASE_SECONDS must be at least 20 seconds")

# --- django-q2 -------------------------------------------------------------------------------
# django-q2 only drives the queue: the sync_queue table owns due times and backoff. `retry` is a
# redelivery timeout and must exceed `timeout`; a missed schedule is not replayed (catch_up).
Q_CLUSTER = {
    "name": "keeper",
    "orm": "default",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": SYNC_TASK_TIMEOUT_SECONDS,
    "retry": SYNC_TASK_TIMEOUT_SECONDS + 60,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 500,
    "label": "Task queue (django-q2)",
}

CACHES = {
    "default": env.cache_url("CACHE_URL", default=f"filecache://{_project_path('data/cache')}")
}

# --- i18n, static, logging -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
