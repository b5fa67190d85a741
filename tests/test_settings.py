"""Settings from the environment: strict typed values, empty paths, the sync timing rule, and
the two databases' files. Each case starts ``manage.py`` in a clean environment."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from discoveries.haven.files import haven_file_create
from tests.conftest import ROOT, haven_at, manage_env, run_manage
from tests.factories import discovery_make

#: A folder name holding every character that means something in an SQLite URI.
URI_HOSTILE = "ha#sh?q%41"


def manage(tmp_path: Path, *args: str, **overrides: str):
    """Run ``manage.py args`` on files under ``tmp_path`` with ``overrides`` in the env."""
    env = manage_env(keeper=tmp_path / "keeper.db", haven=tmp_path / "VH-Database.db", **overrides)
    return run_manage(*args, env=env)


def printed(tmp_path: Path, expression: str, **overrides: str) -> str:
    """The last line ``manage.py shell`` prints for ``print(expression)`` (``settings`` is
    django.conf.settings)."""
    done = manage(
        tmp_path,
        "shell",
        "-v0",
        "-c",
        f"from django.conf import settings; print({expression})",
        **overrides,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def refused(tmp_path: Path, **overrides: str) -> str:
    """Run ``manage.py check``, expect it to stop on the settings with exit code 2 and one
    line instead of a traceback, and return its stderr."""
    done = manage(tmp_path, "check", **overrides)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("Keeper Sync cannot start: ")
    assert "Traceback" not in done.stderr
    return done.stderr


# --- typed values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("USE_HAVEN_DATABASE", "maybe"),
        ("USE_HAVEN_DATABASE", "2"),
        ("DEBUG", "yes please"),
        ("HAVEN_BUSY_TIMEOUT_SECONDS", "abc"),
        ("HAVEN_BUSY_TIMEOUT_SECONDS", "-1"),
        ("HAVEN_BUSY_TIMEOUT_SECONDS", "nan"),
        ("KEEPER_BUSY_TIMEOUT_SECONDS", "-0.5"),
        ("SYNC_BATCH_SIZE", "0"),
        ("SYNC_BATCH_SIZE", "1.5"),
        ("SYNC_LEASE_SECONDS", "ten"),
        ("SYNC_API_PORT", "70000"),
        ("Q_WORKERS", "0"),
        ("LOG_LEVEL", "loud"),
        ("GUILD_ID", "my-server"),
        ("GUILD_ID", "123"),
        ("ARCHIVE_CHANNEL_ID", "#archive"),
        ("DISCOVERY_CHANNEL_ID", "12345678901234567890123"),
        ("DISCORD_API_BASE", "ftp://proxy.local/api/v10"),
        ("DISCORD_API_BASE", "discord.com/api"),
        ("DISCORD_GATEWAY_URL", "https://gateway.discord.gg"),
        ("BOT_VIEW_TIMEOUT_SECONDS", "0"),
        ("BOT_VIEW_TIMEOUT_SECONDS", "900"),
    ],
)
def test_bad_typed_value_stops_the_start_naming_it(tmp_path, name, value):
    """A typed setting whose value does not parse (or is out of range) stops manage.py with
    ImproperlyConfigured naming the variable and the bad value, never a silent default."""
    stderr = refused(tmp_path, **{name: value})
    assert f"{name}={value!r} is not valid" in stderr


@pytest.mark.parametrize(
    ("debug", "use_haven"), [("TRUE", "False"), ("Yes", "no"), ("ON", "off"), ("1", "0")]
)
def test_booleans_accept_the_usual_words_in_any_case(tmp_path, debug, use_haven):
    """true/false, yes/no, on/off and 1/0 are read as booleans whatever their case."""
    shown = printed(
        tmp_path,
        "settings.DEBUG, settings.USE_HAVEN_DATABASE",
        DEBUG=debug,
        USE_HAVEN_DATABASE=use_haven,
    )
    assert shown == "True False"


def test_empty_values_mean_the_defaults(tmp_path):
    """Empty database paths give the default files (not the project folder), and an empty
    number its default."""
    shown = printed(
        tmp_path,
        "settings.KEEPER_DB_PATH, settings.HAVEN_DB_PATH, settings.SYNC_BATCH_SIZE",
        KEEPER_DB_PATH="",
        HAVEN_DB_PATH="",
        SYNC_BATCH_SIZE="",
    )
    assert shown == f"{ROOT / 'data' / 'keeper.db'} {ROOT / 'data' / 'VH-Database.db'} 500"


# --- sync timing --------------------------------------------------------------------------------


def test_default_timing_is_consistent(tmp_path):
    """With the defaults a batch may take 36 s (20 s of VH transactions, then one more that
    may wait 5 s for the lock and hold it 0.1 s, and 10 s of slack), a task 82 s (django-q2's
    timeout), and django-q2 redelivers only after 142 s; manage.py check passes."""
    assert manage(tmp_path, "check").returncode == 0
    shown = printed(
        tmp_path,
        "settings.SYNC_BATCH_WORST_SECONDS, settings.SYNC_TASK_TIMEOUT_SECONDS,"
        " settings.Q_CLUSTER['timeout'], settings.Q_CLUSTER['retry']",
    )
    assert shown == "36 82 82 142"


def test_lease_not_longer_than_the_task_timeout_is_refused_with_the_rule(tmp_path):
    """A lease that does not outlast the sync task is refused, the message showing the rule
    with the numbers that gave the timeout."""
    stderr = refused(tmp_path, SYNC_LEASE_SECONDS="82")
    assert (
        "SYNC_LEASE_SECONDS (82) must exceed the sync task timeout (82 s = 2 × "
        "(SYNC_BATCH_SECONDS 20 + HAVEN_BUSY_TIMEOUT_SECONDS 5 + HAVEN_WRITE_HOLD_SECONDS 0.1 "
        "+ 10) + 10); raise it or lower those"
    ) in stderr
    assert manage(tmp_path, "check", SYNC_LEASE_SECONDS="83").returncode == 0


@pytest.mark.parametrize(
    ("overrides", "timeout"),
    [
        ({"HAVEN_BUSY_TIMEOUT_SECONDS": "200"}, 472),
        ({"SYNC_BATCH_SECONDS": "250"}, 542),
        ({"HAVEN_WRITE_HOLD_SECONDS": "200"}, 480),
        (
            {
                "SYNC_BATCH_SECONDS": "4",
                "HAVEN_BUSY_TIMEOUT_SECONDS": "2.5",
                "SYNC_LEASE_SECONDS": "44",
            },
            44,
        ),
    ],
    ids=["longer-busy-timeout", "longer-batch", "longer-hold", "decimal-busy-timeout"],
)
def test_batch_time_and_busy_timeout_raise_the_lease_needed(tmp_path, overrides, timeout):
    """A longer VH busy timeout, batch time or lock hold lengthens the sync task, so a lease
    that no longer outlasts it is refused."""
    stderr = refused(tmp_path, **overrides)
    assert f"must exceed the sync task timeout ({timeout} s = " in stderr


# --- database files -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True, databases=["default", "haven"])
def test_haven_file_in_a_folder_with_uri_characters_syncs(tmp_path, settings):
    """A VH file whose folder name holds '#', '?' and '%' is the file synced into, and no
    stray database appears beside that folder."""
    from syncq.services import sync_batch

    haven = haven_file_create(tmp_path / URI_HOSTILE / "VH-Database.db", with_demo_data=True)
    with haven_at(haven, settings):
        discovery_make()
        report = sync_batch()
    assert (report.claimed, report.synced) == (1, 1), report
    with sqlite3.connect(haven) as conn:
        assert conn.execute("SELECT COUNT(*) FROM discoveries").fetchone() == (1,)
    assert [p.name for p in tmp_path.iterdir()] == [URI_HOSTILE]


def test_haven_db_path_with_uri_characters_is_the_file_opened(tmp_path):
    """HAVEN_DB_PATH in a folder named with '#', '?' and '%' is the file manage.py sync_now
    writes to, and no other file is created beside that folder."""
    haven = haven_file_create(tmp_path / URI_HOSTILE / "VH-Database.db", with_demo_data=True)
    (tmp_path / "keeper").mkdir()
    entry = tmp_path / "keeper" / "one.json"
    entry.write_text(
        json.dumps(
            {
                "user_id": "1",
                "username": "Path Test",
                "discovery_type": "ruins",
                "system_name": "Demo Alpha",
                "location": "Alpha Prime",
                "description": "A tower by a strange path.",
            }
        ),
        encoding="utf-8",
    )
    env = manage_env(keeper=tmp_path / "keeper" / "keeper.db", haven=haven)
    for args in (("migrate", "--no-input", "-v0"), ("submit_discovery", "--file", str(entry))):
        done = run_manage(*args, env=env)
        assert done.returncode == 0, done.stderr
    synced = run_manage("sync_now", env=env)
    assert "synced 1" in synced.stdout, synced.stdout + synced.stderr
    with sqlite3.connect(haven) as conn:
        assert conn.execute("SELECT COUNT(*) FROM discoveries").fetchone() == (1,)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([URI_HOSTILE, "keeper"])


def test_migrate_creates_the_missing_folder_of_keeper_db(tmp_path):
    """On a fresh clone, migrate creates keeper.db together with the folders it is to be in."""
    keeper = tmp_path / "some" / "new" / "dir" / "keeper.db"
    done = run_manage(
        "migrate", "--no-input", "-v0", env=manage_env(keeper=keeper, haven=tmp_path / "VH.db")
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(keeper) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"discoveries", "sync_queue"} <= tables


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SYNC_LEASE_SECONDS", "300000000000"),
        ("SYNC_BASE_DELAY_SECONDS", "1000000"),
        ("SYNC_BATCH_SIZE", "10000000"),
    ],
)
def test_values_too_large_to_schedule_are_refused(tmp_path, name, value):
    """Durations and sizes past their upper bound stop the start instead of crashing a batch."""
    assert f"{name}={value!r}" in refused(tmp_path, **{name: value})


def test_bot_settings_are_read_as_typed(tmp_path):
    """Discord ids become integers, a REST proxy URL loses its trailing slash, and the
    gateway URL is kept as given."""
    shown = printed(
        tmp_path,
        "settings.GUILD_ID, settings.ARCHIVE_CHANNEL_ID, settings.DISCOVERY_CHANNEL_ID, "
        "settings.DISCORD_API_BASE, settings.DISCORD_GATEWAY_URL, "
        "settings.BOT_VIEW_TIMEOUT_SECONDS",
        GUILD_ID=" 123456789012345678 ",
        ARCHIVE_CHANNEL_ID="223456789012345678",
        DISCORD_API_BASE="http://127.0.0.1:8000/api/v10/",
        DISCORD_GATEWAY_URL="ws://127.0.0.1:9000/gateway",
    )
    assert shown.split() == [
        "123456789012345678",
        "223456789012345678",
        "None",
        "http://127.0.0.1:8000/api/v10",
        "ws://127.0.0.1:9000/gateway",
        "600",
    ]


def test_a_relative_file_cache_starts_at_the_project_folder(tmp_path):
    """CACHE_URL=filecache://data/cache is the project's data/cache, from any working folder,
    so the bot, the worker and the web server share it."""
    shown = printed(
        tmp_path, "settings.CACHES['default']['LOCATION']", CACHE_URL="filecache://data/x"
    )
    assert shown == str(ROOT / "data" / "x")


def test_a_bot_token_with_a_trailing_comment_is_refused_saying_why(tmp_path):
    """`BOT_TOKEN=abc   # comment` in .env reaches the settings whole: refused at start with
    the reason, instead of Discord refusing the token later."""
    stderr = refused(tmp_path, BOT_TOKEN="abc.def   # required by runbot")
    assert "BOT_TOKEN contains a space" in stderr and "abc.def" not in stderr


def test_q_redis_url_makes_redis_the_broker(tmp_path):
    """Without Q_REDIS_URL django-q2's broker is keeper.db's table; with it, that Redis
    server; a URL of another scheme is refused."""
    expression = "settings.Q_CLUSTER.get('orm'), settings.Q_CLUSTER.get('redis')"
    assert printed(tmp_path, expression).split() == ["default", "None"]
    shown = printed(tmp_path, expression, Q_REDIS_URL="redis://127.0.0.1:6379/3")
    assert shown.split() == ["None", "redis://127.0.0.1:6379/3"]
    stderr = refused(tmp_path, Q_REDIS_URL="http://127.0.0.1:6379")
    assert "Q_REDIS_URL='http://127.0.0.1:6379' is not valid" in stderr


def test_q_cluster_name_names_the_queue_on_the_broker(tmp_path):
    """Q_CLUSTER_NAME (default ``keeper``) becomes django-q2's cluster name, which names its
    Redis keys; a name with spaces or other characters is refused."""
    assert printed(tmp_path, "settings.Q_CLUSTER['name']") == "keeper"
    shown = printed(tmp_path, "settings.Q_CLUSTER['name']", Q_CLUSTER_NAME="keeper-eu_2")
    assert shown == "keeper-eu_2"
    stderr = refused(tmp_path, Q_CLUSTER_NAME="keeper eu")
    assert "Q_CLUSTER_NAME='keeper eu' is not valid" in stderr


@pytest.mark.parametrize(
    "command",
    [("check",), ("makemigrations", "--check", "--dry-run"), ("migrate", "--no-input")],
    ids=["check", "makemigrations", "migrate"],
)
def test_every_command_stops_on_missing_settings_with_one_line(tmp_path, command):
    """Without SECRET_KEY, commands whose first step needs no settings (makemigrations runs
    its model checks first) stop the same way as the rest: exit 2 and the reason, never
    Django's "Models aren't loaded yet" traceback."""
    full = manage_env(keeper=tmp_path / "keeper.db", haven=tmp_path / "VH-Database.db")
    # A bare environment, as a cron job or a service manager gives: only what is needed.
    env = {k: full[k] for k in ("PATH", "HOME", "KEEPER_ENV_FILE") if k in full}
    done = run_manage(*command, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("Keeper Sync cannot start: SECRET_KEY is not set")
    assert "Traceback" not in done.stderr


# --- production settings and clear messages ------------------------------------------------------

#: A key as make run writes one: long, random.
GOOD_KEY = "Jq3vX9-kLr7TzW2_mB8nYc4HsPe5GaU0oRiXwQzMbNkVyEtF6dA1uCg"

#: The production values README ("Running on the internet") documents.
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": GOOD_KEY,
    "ALLOWED_HOSTS": "keeper.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://keeper.example.com",
    "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
    "TRUSTED_PROXY_COUNT": "1",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
}


def test_check_deploy_is_clean_with_the_documented_production_values(tmp_path):
    """manage.py check --deploy --fail-level WARNING passes, without a warning, with the
    production values of the README; with the defaults it warns (so the check is real)."""
    done = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout
    assert "WARNING" not in done.stdout + done.stderr
    defaults = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING")
    assert defaults.returncode == 1 and "security.W004" in defaults.stderr


def test_production_values_are_read_from_the_environment(tmp_path):
    """The proxy header becomes Django's (META name, "https"), origins a list, the switches
    booleans and numbers."""
    shown = printed(
        tmp_path,
        "settings.SECURE_PROXY_SSL_HEADER, settings.CSRF_TRUSTED_ORIGINS, "
        "settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_PRELOAD, settings.TRUSTED_PROXY_COUNT",
        **{**PRODUCTION, "CSRF_TRUSTED_ORIGINS": "https://keeper.example.com, http://[::1]:8080"},
    )
    assert shown == (
        "('HTTP_X_FORWARDED_PROTO', 'https') ['https://keeper.example.com', 'http://[::1]:8080'] "
        "31536000 True 1"
    )
    assert (
        printed(
            tmp_path,
            "settings.SECURE_PROXY_SSL_HEADER",
            SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO",
        )
        == "('HTTP_X_FORWARDED_PROTO', 'https')"
    )
    assert printed(tmp_path, "settings.SECURE_PROXY_SSL_HEADER, settings.CSRF_TRUSTED_ORIGINS") == (
        "None []"
    )


@pytest.mark.parametrize(
    "origin", ["keeper.example.com", "https://keeper.example.com/admin", "ftp://keeper.example.com"]
)
def test_a_trusted_origin_that_is_not_an_origin_is_refused(tmp_path, origin):
    """CSRF_TRUSTED_ORIGINS entries must be scheme://host[:port]: a bare host, a path or
    another scheme stops the start naming the entry."""
    stderr = refused(tmp_path, CSRF_TRUSTED_ORIGINS=f"https://ok.example.com,{origin}")
    assert f"CSRF_TRUSTED_ORIGINS entry {origin!r} is not valid" in stderr


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("short-but-random-Xk29", "is too short (21 characters, at least 50 needed)"),
        ("abcd" * 20, "has only 4 different characters (at least 5 needed)"),
        ("django-insecure-" + GOOD_KEY, "is a placeholder (it starts with 'django-insecure')"),
        ("change-me-" + GOOD_KEY, "is a placeholder (it starts with 'change')"),
        ("CHANGEME" + GOOD_KEY, "is a placeholder (it starts with 'CHANGE')"),
        ("secret-" + GOOD_KEY, "is a placeholder (it starts with 'secret')"),
        ("<your-secret-key-here>" + GOOD_KEY, "is a placeholder (it says 'yoursecret')"),
        ("PLEASE_CHANGE_THIS_" + GOOD_KEY, "is a placeholder (it says 'changethis')"),
        ("put-your-secret-key-here-" + GOOD_KEY, "is a placeholder (it says 'yoursecret')"),
        ("1234567890" * 5, "repeats a shorter text"),
    ],
    ids=[
        "short",
        "few-characters",
        "django-insecure",
        "change-me",
        "changeme",
        "secret",
        "your-secret-key-here",
        "please-change-this",
        "put-your-secret-key",
        "repeated",
    ],
)
def test_a_weak_secret_key_stops_the_start_in_one_line(tmp_path, key, problem):
    """With DEBUG off, a short, repetitive or placeholder SECRET_KEY stops every command with
    one line saying what is wrong and how to make a good one, without showing the key."""
    stderr = refused(tmp_path, SECRET_KEY=key)
    assert stderr.strip().splitlines() == [
        f"Keeper Sync cannot start: SECRET_KEY {problem}: set a long random one "
        "(python3 -c 'import secrets; print(secrets.token_urlsafe(50))' prints one; "
        "make run writes one)"
    ]
    assert GOOD_KEY not in stderr


def test_a_key_starting_with_a_dollar_sign_is_read_as_it_is(tmp_path):
    """A key starting with "$" (Django's own generator makes one in fifty) is the key, not the
    name of another variable."""
    assert manage(tmp_path, "check", SECRET_KEY="$" + GOOD_KEY).returncode == 0


@pytest.mark.parametrize(
    "host", ["https://keeper.example.com", "keeper.example.com/", "keeper.example.com#admin"]
)
def test_an_allowed_host_that_is_no_host_name_stops_the_start(tmp_path, host):
    """A scheme, a path or a comment in ALLOWED_HOSTS, which would make every request a 400,
    stops the start naming the entry."""
    stderr = refused(tmp_path, ALLOWED_HOSTS=f"ok.example.com,{host}")
    assert f"ALLOWED_HOSTS entry {host!r} is not valid" in stderr


def test_a_weak_secret_key_is_accepted_with_debug_on(tmp_path):
    """A developer's DEBUG=true takes any key; a good key passes with DEBUG off."""
    assert manage(tmp_path, "check", DEBUG="true", SECRET_KEY="dev").returncode == 0
    assert manage(tmp_path, "check", SECRET_KEY=GOOD_KEY).returncode == 0


def test_an_unknown_time_zone_stops_the_start_in_one_line(tmp_path):
    """TIME_ZONE=Mars/Olympus is refused with one line naming it, not Django's traceback; a
    real zone is taken."""
    stderr = refused(tmp_path, TIME_ZONE="Mars/Olympus")
    assert stderr.strip().splitlines() == [
        "Keeper Sync cannot start: TIME_ZONE='Mars/Olympus' is not valid: expected a time zone "
        "name such as UTC, Europe/Berlin or America/New_York"
    ]
    assert printed(tmp_path, "settings.TIME_ZONE", TIME_ZONE="America/New_York") == (
        "America/New_York"
    )


def test_a_bot_token_pasted_with_its_bot_prefix_is_refused_naming_the_prefix(tmp_path):
    """BOT_TOKEN="Bot MTIz…" says to drop the "Bot " prefix (not that it has a space), and
    does not show the token."""
    stderr = refused(tmp_path, BOT_TOKEN="Bot MTIzNDU2Nzg5.abcdef.ghijkl")
    assert 'BOT_TOKEN starts with "Bot ": drop that prefix' in stderr
    assert "MTIz" not in stderr and "contains a space" not in stderr


SHOUT = (
    "import logging; from django_q.conf import logger; "
    "logger.info('q chatter'); logger.warning('q warning'); "
    "logging.getLogger('syncq.services').info('sync: claimed 1')"
)


@pytest.mark.parametrize(
    ("overrides", "shown", "hidden"),
    [
        ({}, ["q warning", "sync: claimed 1"], ["q chatter"]),
        ({"Q_LOG_LEVEL": "INFO"}, ["q chatter", "q warning", "sync: claimed 1"], []),
        ({"LOG_LEVEL": "WARNING"}, ["q warning"], ["q chatter", "sync: claimed 1"]),
        ({"LOG_LEVEL": "ERROR"}, [], ["q chatter", "q warning", "sync: claimed 1"]),
    ],
    ids=["default", "q-info", "warning", "error"],
)
def test_django_q2_is_quiet_unless_asked(tmp_path, overrides, shown, hidden):
    """django-q2's own logger ("django-q") logs warnings only by default, or what Q_LOG_LEVEL
    says, while ours follow LOG_LEVEL."""
    done = manage(tmp_path, "shell", "-v0", "-c", SHOUT, **overrides)
    assert done.returncode == 0, done.stderr
    for text in shown:
        assert text in done.stderr
    for text in hidden:
        assert text not in done.stderr


@pytest.mark.parametrize("entry", ["999.1.1.1", "10.0.0.0/33", "localhost", "2001:db8::/129"])
def test_a_metrics_allowed_entry_that_is_no_address_is_refused(tmp_path, entry):
    """METRICS_ALLOWED_IPS entries must be IP addresses or networks: anything else stops the
    start naming the entry."""
    stderr = refused(tmp_path, METRICS_ALLOWED_IPS=f"10.0.0.0/8,{entry}")
    assert f"METRICS_ALLOWED_IPS entry {entry!r} is not valid" in stderr


def test_metrics_allowed_ips_are_read_as_networks(tmp_path):
    """Addresses and networks, IPv4 and IPv6, are kept as networks; unset is empty."""
    assert printed(tmp_path, "settings.METRICS_ALLOWED_IPS") == "[]"
    shown = printed(
        tmp_path, "settings.METRICS_ALLOWED_IPS", METRICS_ALLOWED_IPS=" 203.0.113.7, 10.1.0.0/16,"
    )
    assert shown == "['203.0.113.7/32', '10.1.0.0/16']"
