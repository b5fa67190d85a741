"""Settings for Keeper Sync.

Every setting is read from the process environment or from a ``.env`` file in the project root
(``.env.example`` lists them; ``KEEPER_ENV_FILE`` names another file, or none when empty),
through one typed django-environ reader; the environment wins over the file. Relative paths
are taken from the project root. A typed setting (a number, a yes/no, a path, ``LOG_LEVEL``)
left empty counts as unset, and one whose value does not parse stops the start with
``ImproperlyConfigured`` naming the variable and the value. See README.md for what each one does.
"""

import ipaddress
import math
import os
import re
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import environ
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# KEEPER_ENV_FILE names another file; empty reads none (the tests use that).
_env_file = os.environ.get("KEEPER_ENV_FILE", str(BASE_DIR / ".env"))
if _env_file:
    environ.Env.read_env(_env_file)

_BOOLEAN = {
    **dict.fromkeys(("true", "1", "yes", "on"), True),
    **dict.fromkeys(("false", "0", "no", "off"), False),
}
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)")


def _typed(name: str, default, parse: Callable[[str], object], expected: str):
    """Read ``name`` through ``env`` and convert it with ``parse``; unset or empty (after
    trimming spaces) gives ``default``. ``parse`` returns ``None`` for a value it refuses, which
    raises ``ImproperlyConfigured`` naming the variable, its value and what was ``expected``."""
    raw = env.str(name, default="").strip()
    if not raw:
        return default
    value = parse(raw)
    if value is None:
        raise ImproperlyConfigured(f"{name}={raw!r} is not valid: expected {expected}")
    return value


def _env_bool(name: str, *, default: bool) -> bool:
    """A yes/no setting: true/false, 1/0, yes/no or on/off, in any case."""
    return _typed(
        name, default, lambda raw: _BOOLEAN.get(raw.lower()), "true/false, 1/0, yes/no or on/off"
    )


def _env_int(name: str, *, default: int, minimum: int, maximum: int | None = None) -> int:
    """A whole number from ``minimum`` to ``maximum`` (inclusive; no upper bound when None)."""
    top = "" if maximum is None else f" and at most {maximum}"
    expected = f"a whole number of at least {minimum}{top}"

    def parse(raw: str) -> int | None:
        if not _INTEGER.fullmatch(raw):
            return None
        value = int(raw)
        return value if value >= minimum and (maximum is None or value <= maximum) else None

    return _typed(name, default, parse, expected)


def _env_seconds(name: str, *, default: float) -> float:
    """A duration in seconds: a number of zero or more, decimals allowed (``5``, ``2.5``)."""

    def parse(raw: str) -> float | None:
        if not _DECIMAL.fullmatch(raw):
            return None
        value = float(raw)
        return value if math.isfinite(value) and value >= 0 else None

    return _typed(name, default, parse, "a number of seconds, zero or more (e.g. 5 or 2.5)")


def _env_choice(name: str, *, default: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (upper case), given in any case."""
    return _typed(
        name,
        default,
        lambda raw: raw.upper() if raw.upper() in choices else None,
        "one of " + ", ".join(choices),
    )


def _env_matching(name: str, *, default: str, pattern: str, expected: str) -> str:
    """Text that matches the regular expression ``pattern`` as a whole."""
    return _typed(name, default, lambda raw: raw if re.fullmatch(pattern, raw) else None, expected)


def _env_path(name: str, *, default: str) -> Path:
    """A file path; ``~`` is expanded and a relative path is taken from the project root.
    Unset or empty gives ``default``, never the project folder itself."""
    path = Path(_typed(name, default, str, "a path")).expanduser()
    return path if path.is_absolute() else BASE_DIR / path


def _env_list(name: str, *, pattern: str, expected: str) -> list[str]:
    """A comma-separated list, each entry (trimmed; empty ones dropped) matching ``pattern``
    as a whole; unset gives an empty list. A bad entry is named with what was ``expected``."""
    entries = [entry.strip() for entry in env.str(name, default="").split(",")]
    entries = [entry for entry in entries if entry]
    for entry in entries:
        if not re.fullmatch(pattern, entry):
            raise ImproperlyConfigured(f"{name} entry {entry!r} is not valid: expected {expected}")
    return entries


def _env_networks(name: str) -> list[str]:
    """A comma-separated list of IP addresses and networks (``203.0.113.7``, ``10.0.0.0/8``,
    ``2001:db8::/32``), each written back as a network (``203.0.113.7/32``; host bits set
    after the prefix are dropped); unset gives an empty list. A bad entry is named."""
    expected = "IP addresses or networks such as 203.0.113.7 or 10.0.0.0/8, separated by commas"
    entries = _env_list(name, pattern=r"[0-9A-Fa-f:.]+(/[0-9]{1,3})?", expected=expected)
    networks = []
    for entry in entries:
        try:
            networks.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} entry {entry!r} is not valid: expected {expected}"
            ) from None
    return networks


# Django's own bar (check --deploy, security.W009), plus the values people paste from examples.
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_UNIQUE_CHARACTERS = 5
_SECRET_KEY_PLACEHOLDERS = (
    "django-insecure",
    "change",
    "secret",
    "replace",
    "your-",
    "your_",
    "example",
    "insecure",
    "dummy",
    "paste",
)
#: Words of example keys found anywhere in one, letters and digits only, in lower case
#: ("<your-secret-key-here>", "PLEASE_CHANGE_THIS_SECRET_KEY…").
_SECRET_KEY_PLACEHOLDER_WORDS = ("changeme", "changethis", "yoursecret", "secretkey", "placeholder")
_KEY_RECIPE = "python3 -c 'import secrets; print(secrets.token_urlsafe(50))' prints one"


def _secret_key_problem(key: str) -> str | None:
    """What makes ``key`` unfit to sign sessions on a server, in a few words, or ``None``."""
    lowered = key.lower()
    placeholder = next((p for p in _SECRET_KEY_PLACEHOLDERS if lowered.startswith(p)), None)
    if placeholder:
        return f"is a placeholder (it starts with {key[: len(placeholder)]!r})"
    letters = re.sub(r"[^a-z0-9]", "", lowered)
    if word := next((w for w in _SECRET_KEY_PLACEHOLDER_WORDS if w in letters), None):
        return f"is a placeholder (it says {word!r})"
    if len(key) < SECRET_KEY_MIN_LENGTH:
        return f"is too short ({len(key)} characters, at least {SECRET_KEY_MIN_LENGTH} needed)"
    if len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        return (
            f"has only {len(set(key))} different characters "
            f"(at least {SECRET_KEY_MIN_UNIQUE_CHARACTERS} needed)"
        )
    if key in (key + key)[1:-1]:
        return "repeats a shorter text"
    return None


# Read as is: django-environ takes a value starting with "$" for the name of another variable,
# and Django's own key generator starts one key in fifty so.
SECRET_KEY = env.ENVIRON.get("SECRET_KEY", "")
DEBUG = _env_bool("DEBUG", default=False)
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set: put it in the environment or in .env (make run writes one)"
    )
# With DEBUG on (a developer's machine) any key will do; otherwise a guessable key lets anyone
# forge a signed-in session cookie.
if not DEBUG and (_problem := _secret_key_problem(SECRET_KEY)):
    raise ImproperlyConfigured(
        f"SECRET_KEY {_problem}: set a long random one ({_KEY_RECIPE}; make run writes one)"
    )
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
# Django's forms: a name, ".domain" for it and its subdomains, an address ("[::1]"), or "*".
_HOST_PATTERN = re.compile(
    r"\*|\.?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?(:[0-9]+)?|\[[0-9A-Fa-f:.]+\]"
)
for _host in ALLOWED_HOSTS:
    if not _HOST_PATTERN.fullmatch(_host):
        raise ImproperlyConfigured(
            f"ALLOWED_HOSTS entry {_host!r} is not valid: expected host names such as "
            "keeper.example.com (no scheme, path or comment), comma-separated"
        )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "axes",
    "csp",
    "discoveries",
    "syncq",
    "botrunner",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Ahead of WhiteNoise, which answers static files itself: those (an HTML page of Swagger
    # UI's among them) carry the policy and the framing ban too.
    "csp.middleware.CSPMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Around CommonMiddleware: its APPEND_SLASH redirects on the API's paths answer in JSON and
    # are not cached.
    "syncq.middleware.APIRedirectMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Last, as django-axes asks: it turns a lockout found during the request into its answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "keeper_site.urls"
WSGI_APPLICATION = "keeper_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "keeper_site" / "templates"],
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
KEEPER_DB_PATH = _env_path("KEEPER_DB_PATH", default="data/keeper.db")
KEEPER_BUSY_TIMEOUT_SECONDS = _env_seconds("KEEPER_BUSY_TIMEOUT_SECONDS", default=30.0)

# VH-Database.db belongs to the Control Room. It is opened with mode=rw (a missing file is an
# error, never silently created) and a busy timeout, and nothing about the file is changed:
# no journal mode, no pragmas that persist.
HAVEN_DB_PATH = _env_path("HAVEN_DB_PATH", default="data/VH-Database.db")
USE_HAVEN_DATABASE = _env_bool("USE_HAVEN_DATABASE", default=True)
HAVEN_BUSY_TIMEOUT_SECONDS = _env_seconds("HAVEN_BUSY_TIMEOUT_SECONDS", default=5.0)
# How long one VH write transaction may hold the Control Room's write lock: a backlog is written
# in transactions of as many items as fit in it, so the Control Room's own saves wait at most
# about this long.
HAVEN_WRITE_HOLD_SECONDS = _env_seconds("HAVEN_WRITE_HOLD_SECONDS", default=0.1)

# The bot in the cloud, VH-Database.db on a desktop: with USE_HAVEN_AGENT the server never opens
# VH and leaves the queue to the Control Room agent (manage.py haven_agent on the desktop), which
# leases items through /agent/ and uploads VH's catalog; README, "The Control Room agent".
USE_HAVEN_AGENT = _env_bool("USE_HAVEN_AGENT", default=False)
if USE_HAVEN_AGENT and USE_HAVEN_DATABASE:
    raise ImproperlyConfigured(
        "USE_HAVEN_AGENT=true needs USE_HAVEN_DATABASE=false: VH-Database.db is written by the "
        "Control Room agent on its desktop, and a second writer here would race it"
    )
# An agent heard from within this many seconds is online (its long poll asks every ~25 s).
HAVEN_AGENT_ONLINE_SECONDS = _env_int(
    "HAVEN_AGENT_ONLINE_SECONDS", default=60, minimum=30, maximum=86_400
)
# The longest an agent's lease request waits for a due item, in seconds (its long poll).
HAVEN_AGENT_POLL_SECONDS = _env_seconds("HAVEN_AGENT_POLL_SECONDS", default=20.0)

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

# A keeper.db connection is kept for a minute and reused by the next request of the same worker
# (checked first, so a broken one is replaced): opening one per request costs more than most
# API answers.
CONN_MAX_AGE = _env_int("CONN_MAX_AGE", default=60, minimum=0, maximum=86_400)
_default_db.setdefault("CONN_MAX_AGE", CONN_MAX_AGE)
_default_db.setdefault("CONN_HEALTH_CHECKS", True)

DATABASES = {
    "default": _default_db,
    "haven": {
        "ENGINE": "django.db.backends.sqlite3",
        # A URI path is percent-decoded, and '#' or '?' would end it: quote the file's path.
        "NAME": f"file:{quote(str(HAVEN_DB_PATH), safe='/')}?mode=rw",
        "OPTIONS": {
            "timeout": HAVEN_BUSY_TIMEOUT_SECONDS,
            "transaction_mode": "IMMEDIATE",
        },
        # The Control Room's file is never created, flushed or migrated by the test runner.
        "TEST": {"NAME": "file:haven_test?mode=memory&cache=shared"},
    },
}
DATABASE_ROUTERS = ["discoveries.haven.router.HavenRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Sync queue ------------------------------------------------------------------------------
# Upper bounds keep every computed due time and lease inside what a datetime can hold.
_DAY = 86_400
SYNC_INTERVAL_SECONDS = _env_int("SYNC_INTERVAL_SECONDS", default=30, minimum=1, maximum=_DAY)
SYNC_BATCH_SIZE = _env_int("SYNC_BATCH_SIZE", default=500, minimum=1, maximum=10_000)
# A batch starts no VH transaction after this long: the items it has not started go back to
# the queue, due at once, so a batch's time is bounded whatever its size.
SYNC_BATCH_SECONDS = _env_int("SYNC_BATCH_SECONDS", default=20, minimum=1, maximum=_DAY)
SYNC_MAX_ATTEMPTS = _env_int("SYNC_MAX_ATTEMPTS", default=10, minimum=1, maximum=1_000)
SYNC_BASE_DELAY_SECONDS = _env_int("SYNC_BASE_DELAY_SECONDS", default=30, minimum=1, maximum=_DAY)
SYNC_LEASE_SECONDS = _env_int("SYNC_LEASE_SECONDS", default=300, minimum=1, maximum=7 * _DAY)
SYNC_PRUNE_AFTER_DAYS = _env_int("SYNC_PRUNE_AFTER_DAYS", default=30, minimum=1, maximum=36_500)
SYNC_API_PORT = _env_int("SYNC_API_PORT", default=8080, minimum=1, maximum=65535)
SYNC_API_HOST = env.str("SYNC_API_HOST", default="127.0.0.1")

# One batch's worst case: its time, then one last VH transaction that may wait the whole VH busy
# timeout and hold the lock its time, plus slack for the keeper.db work around them.
SYNC_BATCH_WORST_SECONDS = math.ceil(
    SYNC_BATCH_SECONDS + HAVEN_BUSY_TIMEOUT_SECONDS + HAVEN_WRITE_HOLD_SECONDS + 10
)
# syncq.tasks.sync_due runs batches for SYNC_BATCH_WORST_SECONDS, then may start one more batch:
# django-q2 kills a task only after both, with slack. The lease must outlast that, so an item
# whose worker was killed is taken again only after that worker is gone.
SYNC_TASK_TIMEOUT_SECONDS = int(2 * SYNC_BATCH_WORST_SECONDS + 10)
if SYNC_LEASE_SECONDS <= SYNC_TASK_TIMEOUT_SECONDS:
    raise ImproperlyConfigured(
        f"SYNC_LEASE_SECONDS ({SYNC_LEASE_SECONDS}) must exceed the sync task timeout "
        f"({SYNC_TASK_TIMEOUT_SECONDS} s = 2 × (SYNC_BATCH_SECONDS {SYNC_BATCH_SECONDS} + "
        f"HAVEN_BUSY_TIMEOUT_SECONDS {HAVEN_BUSY_TIMEOUT_SECONDS:g} + "
        f"HAVEN_WRITE_HOLD_SECONDS {HAVEN_WRITE_HOLD_SECONDS:g} + 10) + 10); "
        "raise it or lower those"
    )

# A discovery whose system, planet or moon is not in the Control Room waits for it (no row, no
# attempt spent). true writes such rows without their place, as older versions did, into files
# whose constraints take them (the Control Room's current schema refuses them; they then wait).
SYNC_WRITE_UNPLACED = _env_bool("SYNC_WRITE_UNPLACED", default=False)

# For fault injection only (make chaos): a pause before each VH commit and another between it and
# the keeper.db commit, so that a killed worker can be caught in either. 0 (the default) pauses
# nothing.
SYNC_CHAOS_PAUSE_SECONDS = _env_seconds("SYNC_CHAOS_PAUSE_SECONDS", default=0.0)

# --- The Control Room API (Django REST framework) --------------------------------------------
# Old Control Room scripts read /sync/status without credentials: this opens that and
# /sync/statistics (counts only, no user data) to anonymous reads, and nothing else.
SYNC_API_PUBLIC_READ = _env_bool("SYNC_API_PUBLIC_READ", default=False)
SYNC_API_RETRY_RATE = _env_matching(
    "SYNC_API_RETRY_RATE",
    default="60/min",
    pattern=r"[1-9][0-9]*/(s|sec|m|min|h|hour|d|day)",
    expected="a DRF rate such as 60/min or 5/s",
)
# GET /metrics (Prometheus) answers these addresses without a token (syncq.metrics); the
# client's address is read as the lockouts read it (TRUSTED_PROXY_COUNT).
METRICS_ALLOWED_IPS = _env_networks("METRICS_ALLOWED_IPS")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # DRF's TokenAuthentication, with failures counted per address (syncq.authentication).
        "syncq.authentication.LockoutTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["syncq.permissions.SyncQueuePermission"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"sync_retry": SYNC_API_RETRY_RATE},
    "EXCEPTION_HANDLER": "syncq.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Keeper Sync: Control Room API",
    "DESCRIPTION": "The sync queue between The Keeper's keeper.db and the Control Room's "
    "VH-Database.db: health, counts, failures and retries.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- On the internet: HTTPS behind a proxy, sign-in protection, content security policy -------
# README, "Running on the internet". Every switch is off by default so that `make run` keeps
# working over plain http://127.0.0.1; the README lists the production values, with which
# `manage.py check --deploy` is clean.
_ORIGIN = r"https?://(\*\.)?([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?"
CSRF_TRUSTED_ORIGINS = _env_list(
    "CSRF_TRUSTED_ORIGINS",
    pattern=_ORIGIN,
    expected="origins such as https://keeper.example.com (scheme://host[:port], no path), "
    "separated by commas",
)


def _env_proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """The request header a TLS-terminating proxy sets to ``https`` (``X-Forwarded-Proto``,
    or Django's spelling ``HTTP_X_FORWARDED_PROTO``), as Django's ``SECURE_PROXY_SSL_HEADER``:
    ``("HTTP_X_FORWARDED_PROTO", "https")``; ``None`` when unset."""

    def parse(raw: str) -> tuple[str, str] | None:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", raw):
            return None
        key = raw.upper().replace("-", "_")
        return (key if key.startswith("HTTP_") else f"HTTP_{key}", "https")

    return _typed(name, None, parse, "a request header name such as X-Forwarded-Proto")


# Behind a proxy that ends TLS: the header it sets to "https" on requests that came in over
# HTTPS. Only set it when that proxy always sets (or strips) the header: a client could
# otherwise claim HTTPS itself.
SECURE_PROXY_SSL_HEADER = _env_proxy_ssl_header("SECURE_PROXY_SSL_HEADER")
# How many proxies in front append to X-Forwarded-For; 0 (default) trusts no such header and
# takes the connection's address. Used for the sign-in lockouts (syncq.authentication.client_ip).
TRUSTED_PROXY_COUNT = _env_int("TRUSTED_PROXY_COUNT", default=0, minimum=0, maximum=10)
SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", default=False)
# Health probes (a platform's, or one on the machine itself) speak plain HTTP to the server
# behind the proxy; /health carries no user data.
SECURE_REDIRECT_EXEMPT = [r"^health$"]
SECURE_HSTS_SECONDS = _env_int("SECURE_HSTS_SECONDS", default=0, minimum=0, maximum=2 * 365 * _DAY)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = _env_bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = _env_bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = _env_bool("CSRF_COOKIE_SECURE", default=False)
# Always on (Django's defaults, stated): no MIME sniffing, no framing, no referrer to others.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# The admin is the only sign-in page; a login whose `next` is refused (another site) or absent
# lands on the admin's index, not on Django's /accounts/profile/.
LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "admin:index"

# django-axes: failed sign-ins are counted per user name and client address together, in
# keeper.db (syncq.authentication says how the admin login and API tokens share it).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_FAILURE_LIMIT = _env_int("AXES_FAILURE_LIMIT", default=5, minimum=1, maximum=1_000)
LOGIN_COOLOFF_MINUTES = _env_int("AXES_COOLOFF_MINUTES", default=15, minimum=1, maximum=7 * 1440)
API_AUTH_FAILURE_LIMIT = _env_int("API_AUTH_FAILURE_LIMIT", default=20, minimum=1, maximum=100_000)
API_AUTH_COOLOFF_SECONDS = _env_int(
    "API_AUTH_COOLOFF_SECONDS", default=300, minimum=1, maximum=_DAY
)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# Read per request: an API token attempt gets the API's limit and cool-off.
AXES_FAILURE_LIMIT = "syncq.authentication.failure_limit"
AXES_COOLOFF_TIME = "syncq.authentication.cool_off"
# Each attempt row keeps its own expiry, so cleaning the admin's rows never cuts the API's
# cool-off short, nor the other way round.
AXES_USE_ATTEMPT_EXPIRATION = True
AXES_CLIENT_IP_CALLABLE = "syncq.authentication.client_ip"
AXES_LOCKOUT_CALLABLE = "syncq.authentication.lockout_response"
# A successful sign-in forgets that user's earlier typos from that address.
AXES_RESET_ON_SUCCESS = True
# No INFO line at every start; failures and lockouts are still logged as warnings.
AXES_VERBOSE = False

# django-csp: scripts only from this site's own files (the admin's, Swagger UI's from
# drf-spectacular-sidecar, its start script served apart by SpectacularSwaggerSplitView).
# Styles may be inline: Django's admin change lists and the queue's coloured states use them.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- The Discord bot (manage.py runbot) ------------------------------------------------------
# BOT_TOKEN is read only by runbot, which refuses to start without it. The ids are Discord
# snowflakes; each feature whose id is missing is off (no guild: commands are not synced at
# start; no archive channel: no archive embed).
_SNOWFLAKE = re.compile(r"[0-9]{15,20}")


def _env_snowflake(name: str) -> int | None:
    """A Discord id (15 to 20 digits), or ``None`` when unset."""
    return _typed(
        name,
        None,
        lambda raw: int(raw) if _SNOWFLAKE.fullmatch(raw) else None,
        "a Discord id (15 to 20 digits; Developer Mode, right-click, Copy ID)",
    )


def _env_url(name: str, *, default: str, schemes: tuple[str, ...]) -> str:
    """A URL with one of ``schemes``, as given."""
    pattern = re.compile(rf"({'|'.join(schemes)})://[^\s/?#]+(/[^\s?#]*)?")
    return _typed(
        name,
        default,
        lambda raw: raw if pattern.fullmatch(raw) else None,
        f"a {' or '.join(s + '://' for s in schemes)} URL",
    )


BOT_TOKEN = env.str("BOT_TOKEN", default="").strip()
if re.match(r"(?i)bot\s", BOT_TOKEN):
    # "Bot <token>" is how the token travels in an Authorization header, and how some guides
    # show it; discord.py adds that prefix itself.
    raise ImproperlyConfigured(
        'BOT_TOKEN starts with "Bot ": drop that prefix and give the token alone, as the '
        "Developer Portal shows it"
    )
if re.search(r"\s", BOT_TOKEN):
    # Tokens have no spaces; this is a comment after the value in .env, read as part of it.
    raise ImproperlyConfigured(
        "BOT_TOKEN contains a space: in .env, put comments on lines of their own (text after "
        "a value is read as part of it)"
    )
GUILD_ID = _env_snowflake("GUILD_ID")
DISCOVERY_CHANNEL_ID = _env_snowflake("DISCOVERY_CHANNEL_ID")
ARCHIVE_CHANNEL_ID = _env_snowflake("ARCHIVE_CHANNEL_ID")
# A REST proxy (nirn-proxy) or a test double; Discord's own by default.
DISCORD_API_BASE = _env_url(
    "DISCORD_API_BASE", default="https://discord.com/api/v10", schemes=("http", "https")
).rstrip("/")
DISCORD_GATEWAY_URL = _env_url(
    "DISCORD_GATEWAY_URL", default="wss://gateway.discord.gg/", schemes=("ws", "wss")
)
# How long a /discovery-report form waits for its user before it disables itself. The form is
# disabled through the user's last interaction, whose token Discord keeps for 15 minutes.
BOT_VIEW_TIMEOUT_SECONDS = _env_int("BOT_VIEW_TIMEOUT_SECONDS", default=600, minimum=1, maximum=840)
# How often the bot looks for archive posts whose discovery reached the Control Room, to edit
# each once to say when.
BOT_ARCHIVE_EDIT_SECONDS = _env_int(
    "BOT_ARCHIVE_EDIT_SECONDS", default=20, minimum=1, maximum=3_600
)

# --- Alerts to a Discord webhook (syncq.alerts; README, "Alerts") ------------------------------
# Off unless ALERT_WEBHOOK_URL is set: then a one-minute schedule looks for failures, items
# waiting for their place, outages and the daily summary, and posts them to that webhook.
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _alert_webhook_url(raw: str) -> str | None:
    """An https URL; http only to a loopback host (a local receiver, as in the tests)."""
    found = re.fullmatch(r"(https?)://([^\s/?#@]+?)(:[0-9]{1,5})?(/[^\s#]*)?", raw)
    if not found:
        return None
    scheme, host = found.group(1), found.group(2).lower()
    return raw if scheme == "https" or host in _LOOPBACK_HOSTS else None


ALERT_WEBHOOK_URL = _typed(
    "ALERT_WEBHOOK_URL",
    "",
    _alert_webhook_url,
    "a Discord webhook's https:// URL (Server Settings, Integrations, Webhooks, Copy Webhook "
    "URL); http:// only to 127.0.0.1, localhost or [::1]",
)
# Failed attempts of one item after which it is reported (once per round of attempts).
ALERT_FAILED_ATTEMPTS = _env_int("ALERT_FAILED_ATTEMPTS", default=5, minimum=1, maximum=1_000)
# How long VH-Database.db (or the Control Room agent) must stay unreachable to be reported.
ALERT_OUTAGE_MINUTES = _env_int("ALERT_OUTAGE_MINUTES", default=10, minimum=1, maximum=1_440)
# When the daily summary is posted, "HH:MM" in UTC.
ALERT_DAILY_AT = _env_matching(
    "ALERT_DAILY_AT",
    default="09:00",
    pattern=r"([01][0-9]|2[0-3]):[0-5][0-9]",
    expected="a UTC time of day as HH:MM, such as 09:00",
)
# Post each discovery as it reaches the Control Room, batched with the other alerts.
ALERT_ON_SYNC = _env_bool("ALERT_ON_SYNC", default=False)
if ALERT_ON_SYNC and not ALERT_WEBHOOK_URL:
    raise ImproperlyConfigured(
        "ALERT_ON_SYNC=true needs ALERT_WEBHOOK_URL: the Discord webhook the discoveries are "
        "posted to"
    )

# The desktop side (manage.py haven_agent): the server's address, the agent's token, and the
# agent's own small state file (its id and the catalog it last uploaded).
AGENT_SERVER_URL = _env_url("AGENT_SERVER_URL", default="", schemes=("http", "https"))
AGENT_TOKEN = env.ENVIRON.get("AGENT_TOKEN", "")
AGENT_STATE_PATH = _env_path("AGENT_STATE_PATH", default="data/haven-agent.json")

# --- django-q2 -------------------------------------------------------------------------------
# django-q2 only drives the queue: the sync_queue table owns due times and backoff. `retry` is a
# redelivery timeout and must exceed `timeout`; a missed schedule is not replayed (catch_up).
# The broker is keeper.db's own table (django-q2's ORM broker) unless Q_REDIS_URL names a Redis
# server, which several clusters on several hosts can share.
Q_REDIS_URL = _env_url("Q_REDIS_URL", default="", schemes=("redis", "rediss"))
# Names django-q2's queue on the broker (its Redis keys are django_q:<name>:…): deployments that
# share one Redis server need names of their own, or their clusters take each other's tasks.
Q_CLUSTER_NAME = _env_matching(
    "Q_CLUSTER_NAME",
    default="keeper",
    pattern=r"[A-Za-z0-9_-]{1,64}",
    expected="1 to 64 letters, digits, '-' or '_'",
)
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_LEVEL = _env_choice("LOG_LEVEL", default="INFO", choices=_LOG_LEVELS)
#: WARNING, or LOG_LEVEL when that says less: the level of libraries that chatter at INFO.
_QUIET_LEVEL = max("WARNING", LOG_LEVEL, key=_LOG_LEVELS.index)
# django-q2 logs several INFO lines every sync run (scheduled, enqueued, processing, processed):
# quiet unless asked. Our own loggers ("sync: claimed …") follow LOG_LEVEL.
Q_LOG_LEVEL = _env_choice("Q_LOG_LEVEL", default=_QUIET_LEVEL, choices=_LOG_LEVELS)
Q_CLUSTER = {
    "name": Q_CLUSTER_NAME,
    "log_level": Q_LOG_LEVEL,
    **({"redis": Q_REDIS_URL} if Q_REDIS_URL else {"orm": "default"}),
    "workers": _env_int("Q_WORKERS", default=2, minimum=1),
    "timeout": SYNC_TASK_TIMEOUT_SECONDS,
    "retry": SYNC_TASK_TIMEOUT_SECONDS + 60,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 500,
    "label": "Task queue (django-q2)",
}

# Shared by every process: the worker's status, the sync's kick requests and the bot's heartbeat.
CACHES = {
    "default": env.cache_url("CACHE_URL", default=f"filecache://{BASE_DIR / 'data' / 'cache'}")
}
if CACHES["default"]["BACKEND"].endswith("FileBasedCache"):
    # Like every other path here, a relative file cache folder starts at the project folder.
    CACHES["default"]["LOCATION"] = str(BASE_DIR / Path(CACHES["default"]["LOCATION"]))

# --- i18n, static, logging -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"


def _time_zone(raw: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(raw)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None
    return raw


TIME_ZONE = _typed(
    "TIME_ZONE",
    "UTC",
    _time_zone,
    "a time zone name such as UTC, Europe/Berlin or America/New_York",
)
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
    "root": {
        "handlers": ["console"],
        "level": LOG_LEVEL,
    },
    "loggers": {
        # django-q2's logger (django_q.conf), through the root's handler.
        "django-q": {"level": Q_LOG_LEVEL},
        # django-axes logs every sign-in and clean-up at INFO; failures and lockouts are
        # warnings.
        "axes": {"level": _QUIET_LEVEL},
        # httpx logs every request's URL at INFO, and an alert webhook's URL holds its token.
        "httpx": {"level": _QUIET_LEVEL},
        # Every request naming a host not in ALLOWED_HOSTS (scanners on the internet send
        # many) would log a traceback; each gets its 400 and a line in the access log.
        "django.security.DisallowedHost": {"level": "CRITICAL"},
    },
}
