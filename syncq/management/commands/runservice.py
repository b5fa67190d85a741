"""``manage.py runservice``: the django-q2 cluster and the web server together (``make run``);
with ``--bot`` the Discord bot too (one process for a whole host, as the container runs it),
or with ``--only`` one of the three alone (one service each, on PostgreSQL and Redis)."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from discoveries.haven.files import haven_demo_warning, haven_for_service
from syncq.processes import child_exited, children_start, children_stop

#: SIGTERM or Ctrl-C to exit: the children get this long in all to stop by themselves, then
#: are killed. A second short of the 10 s container engines wait (``docker stop``) before they
#: kill the service: noticing the signal and reaping what was killed take the rest.
#: gunicorn threads per web worker process.
WEB_THREADS = 8
STOP_GRACE_SECONDS = 9
#: gunicorn's own grace for requests in flight (long polls among them) once it is told to
#: stop, so that it ends its workers itself well before the service's grace runs out.
WEB_GRACE_SECONDS = 6
CREATE_ADMIN_HINT = ".venv/bin/python manage.py createsuperuser"
#: The parts ``--only`` names, in the order they start.
PARTS = ("web", "worker", "bot")
#: What the web server listens on when the platform gives only a port (``PORT``): every
#: address, since its router reaches the container from outside.
ALL_ADDRESSES = "0.0.0.0"  # noqa: S104


def admin_first_run() -> str:
    """Make sure an operator can sign in to the admin, and say how, as one line to print.

    With ``DJANGO_SUPERUSER_USERNAME`` and ``DJANGO_SUPERUSER_PASSWORD`` set (and optionally
    ``DJANGO_SUPERUSER_EMAIL``; Django's own variables for ``createsuperuser --noinput``), that
    superuser is created through ``createsuperuser`` when no user of that name exists; an
    existing user is never changed, its password least of all. Without them, when no superuser
    exists, the line names the one command that makes one. Raises ``CommandError`` when only
    one of the two variables is set (a half-configured account must not pass unnoticed)."""
    username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "").strip()
    password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
    users = get_user_model()._default_manager
    if username and password:
        if users.filter(**{get_user_model().USERNAME_FIELD: username}).exists():
            return f"Admin: sign in as {username} (existing account, left as it is)."
        # An explicit empty email is how --noinput accepts a superuser without one.
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "").strip()
        call_command(
            "createsuperuser", interactive=False, username=username, email=email, verbosity=0
        )
        return f"Admin: created superuser {username} from DJANGO_SUPERUSER_*; sign in at /admin/."
    if username or password:
        missing = "DJANGO_SUPERUSER_PASSWORD" if username else "DJANGO_SUPERUSER_USERNAME"
        raise CommandError(
            f"{missing} is not set: set both DJANGO_SUPERUSER_USERNAME and "
            "DJANGO_SUPERUSER_PASSWORD to create the first admin, or neither."
        )
    if users.filter(is_superuser=True).exists():
        return "Admin: sign in at /admin/ with your account."
    return (
        "Admin: no admin account yet. Make one with: "
        f"{CREATE_ADMIN_HINT} (or set DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD "
        "before make run)."
    )


def port_in_use(host: str, port: int) -> str | None:
    """Why the web server could not listen on ``host:port`` (another program holds the port,
    or the address is not this machine's), or ``None`` when it can. Binds and closes a
    socket as gunicorn would (``SO_REUSEADDR``, so a port just freed counts as free)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"{host} is not an address of this machine ({exc.strerror or exc})"
    family, kind, proto, _, address = addresses[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def web_bind() -> tuple[str, int, str]:
    """Where the web server listens: ``(host, port, how to change it)``, the last in a few
    words for messages. ``PORT``, which platforms such as Railway and Heroku set for the one port
    they route to (gunicorn reads it the same way), wins over ``SYNC_API_PORT``, and then the
    host is every address (``0.0.0.0``) unless ``SYNC_API_HOST`` is set; without ``PORT``,
    ``SYNC_API_HOST:SYNC_API_PORT`` (``127.0.0.1:8080``). Raises ``CommandError`` when
    ``PORT`` is not a port number (1 to 65535)."""
    raw = os.environ.get("PORT", "").strip()
    if not raw:
        change = "set SYNC_API_PORT (and SYNC_API_HOST) to another in .env"
        return settings.SYNC_API_HOST, settings.SYNC_API_PORT, change
    if not re.fullmatch(r"[0-9]{1,5}", raw) or not 1 <= int(raw) <= 65535:
        raise CommandError(f"PORT={raw!r} is not valid: expected a port number from 1 to 65535")
    host = settings.SYNC_API_HOST if os.environ.get("SYNC_API_HOST", "").strip() else ALL_ADDRESSES
    return host, int(raw), "set PORT to another"


class Command(BaseCommand):
    help = (
        "Start the django-q2 cluster (the sync worker) and the web server on "
        "SYNC_API_HOST:SYNC_API_PORT (with PORT set, as platforms set it: 0.0.0.0:PORT), and "
        "stop both on Ctrl-C or SIGTERM within 10 s (on Linux they stop too if this command "
        "is killed). --bot adds the Discord bot when BOT_TOKEN is set; --only runs one part "
        "alone; --migrate applies migrations first. When HAVEN_DB_PATH "
        "is unset and there is no VH-Database.db at the default path, use (and, the first "
        "time, create) a demo Control Room database under data/demo/ and say so. First, "
        "create the superuser named by DJANGO_SUPERUSER_USERNAME/_PASSWORD if it does not "
        "exist, or, when there is no superuser at all, print the command that makes one."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--web-workers",
            type=int,
            default=1,
            help="gunicorn worker processes, of 8 threads each (1)",
        )
        parser.add_argument(
            "--bot",
            action="store_true",
            help="also run The Keeper, the Discord bot (manage.py runbot), when BOT_TOKEN is "
            "set; without it, say the bot is off and run the rest",
        )
        parser.add_argument(
            "--only",
            choices=PARTS,
            help="run this part alone, for hosts that run each as a service of its own "
            "(keeper on PostgreSQL with DATABASE_URL, the broker on Redis with Q_REDIS_URL)",
        )
        parser.add_argument(
            "--migrate",
            action="store_true",
            help="apply migrations first (migrate --no-input), as the container does at start",
        )

    def handle(self, *args, web_workers, bot, only, migrate, **options):
        if web_workers < 1:
            raise CommandError("--web-workers must be at least 1")
        parts, bot_off = self._parts(bot=bot, only=only)
        bind = None
        if "web" in parts:
            host, port, change = web_bind()
            if why := port_in_use(host, port):
                raise CommandError(
                    f"the web server cannot listen on {host}:{port}: {why}. Stop the program "
                    f"using it, or {change}."
                )
            bind = f"{host}:{port}"
        if migrate:
            call_command("migrate", interactive=False)
        admin_line = admin_first_run() if "web" in parts else None
        child_env = dict(os.environ)
        choice = haven_for_service()
        if choice.demo:
            child_env["HAVEN_DB_PATH"] = str(choice.path)
            self.stdout.write(self.style.WARNING(haven_demo_warning(choice)))
        # The children open their own; this one would otherwise sit idle on the database.
        connections.close_all()
        commands = self._commands(parts, bind=bind, web_workers=web_workers)
        self.stdout.write(
            self._started_line(parts, bind=bind, haven=choice.described, bot_off=bot_off)
        )
        if admin_line:
            self.stdout.write(admin_line)
        self.stdout.flush()  # the notices must reach a log file before the children write
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        # Before the children start: as a container's first process this one ignores any
        # signal it has no handler for, so a stop sent meanwhile would be lost.
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        children = children_start(commands, env=child_env)
        exited = None
        while not stopping:
            # Not reaped yet: children_stop then still finds what it left in its group.
            exited = next((n for n, c in children.items() if child_exited(c)), None)
            if exited is not None:
                break
            time.sleep(0.5)
        children_stop(children, grace_seconds=STOP_GRACE_SECONDS)
        if exited is not None:
            code = children[exited].returncode
            self.stderr.write(f"the {exited} exited with code {code}")
            raise SystemExit(code or 1)

    def _parts(self, *, bot: bool, only: str | None) -> tuple[list[str], bool]:
        """The parts to run, of :data:`PARTS`, and whether the bot was asked for with
        ``--bot`` but is left out for want of ``BOT_TOKEN``. ``--only bot`` without it is an
        error (exit code 2, as ``runbot``'s): that service would have nothing to run."""
        if only and bot:
            raise CommandError(
                "--bot adds the bot to the web server and the worker: use --only bot"
            )
        if only == "bot" and not settings.BOT_TOKEN:
            raise CommandError(
                "BOT_TOKEN is not set: put the bot's token (Discord Developer Portal → your "
                "application → Bot → Reset Token) in the environment or in .env",
                returncode=2,
            )
        if only:
            return [only], False
        if bot and not settings.BOT_TOKEN:
            return ["web", "worker"], True
        return ["web", "worker", *(["bot"] if bot else [])], False

    def _commands(self, parts: list[str], *, bind: str | None, web_workers: int) -> dict:
        """``{child name: argv}`` of ``parts``, for :func:`children_start`."""
        python = sys.executable
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        every = {
            "sync worker": ("worker", [python, manage, "qcluster"]),
            "web server": (
                "web",
                [
                    python,
                    "-m",
                    "gunicorn",
                    "keeper_site.wsgi:application",
                    "--bind",
                    str(bind),
                    "--workers",
                    str(web_workers),
                    # Threads rather than processes: each process holds its own Django (about
                    # 60 MiB); eight threads answer as many clients within the memory of one,
                    # with room beside the Control Room agents' long polls (one thread each).
                    "--threads",
                    str(WEB_THREADS),
                    "--graceful-timeout",
                    str(WEB_GRACE_SECONDS),
                    "--access-logfile",
                    "-",
                    # gunicorn's control socket sits at one path per user and host, which a
                    # second service would take over and the first one's stop would delete.
                    "--no-control-socket",
                ],
            ),
            "bot": ("bot", [python, manage, "runbot"]),
        }
        return {name: argv for name, (part, argv) in every.items() if part in parts}

    def _started_line(self, parts: list[str], *, bind: str | None, haven: str, bot_off: bool):
        """The one line that says what runs where, once everything is ready to start."""
        what = "" if len(parts) > 1 else f" ({parts[0]} only)"
        said = [f"keeper.db {self._where_keeper()}", f"VH {haven}"]
        if bind:
            said.append(
                f"web on http://{bind}/ (admin at /admin/, queue dashboard at /admin/dashboard/)"
            )
        if "bot" in parts:
            said.append("bot The Keeper")
        elif bot_off:
            said.append("bot off (BOT_TOKEN is not set)")
        return f"Keeper Sync{what}: {'; '.join(said)}. Ctrl-C stops."

    def _where_keeper(self) -> str:
        db = settings.DATABASES["default"]
        return db["NAME"] if "sqlite" in db["ENGINE"] else f"{db['ENGINE']} database"
