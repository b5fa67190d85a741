"""``manage.py runservice``: the django-q2 cluster and the web server together (``make run``)."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from discoveries.haven.files import haven_demo_warning, haven_for_service
from syncq.processes import child_exited, children_start, children_stop

STOP_GRACE_SECONDS = 10
CREATE_ADMIN_HINT = ".venv/bin/python manage.py createsuperuser"


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


class Command(BaseCommand):
    help = (
        "Start the django-q2 cluster (the sync worker) and the web server on "
        "SYNC_API_HOST:SYNC_API_PORT, and stop both on Ctrl-C or SIGTERM (on Linux they stop "
        "too if this command is killed). When HAVEN_DB_PATH "
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
            help="gunicorn worker processes, of 4 threads each (1)",
        )

    def handle(self, *args, web_workers, **options):
        if web_workers < 1:
            raise CommandError("--web-workers must be at least 1")
        host, port = settings.SYNC_API_HOST, settings.SYNC_API_PORT
        if why := port_in_use(host, port):
            raise CommandError(
                f"the web server cannot listen on {host}:{port}: {why}. Stop the program "
                "using it, or set SYNC_API_PORT (and SYNC_API_HOST) to another in .env."
            )
        admin_line = admin_first_run()
        child_env = dict(os.environ)
        choice = haven_for_service()
        if choice.demo:
            child_env["HAVEN_DB_PATH"] = str(choice.path)
            self.stdout.write(self.style.WARNING(haven_demo_warning(choice)))
        haven = choice.described
        python = sys.executable
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        bind = f"{settings.SYNC_API_HOST}:{settings.SYNC_API_PORT}"
        commands = {
            "sync worker": [python, manage, "qcluster"],
            "web server": [
                python,
                "-m",
                "gunicorn",
                "keeper_site.wsgi:application",
                "--bind",
                bind,
                "--workers",
                str(web_workers),
                # Threads rather than processes: each process holds its own Django (about
                # 60 MiB); four threads answer as many clients within the memory of one.
                "--threads",
                "4",
                "--access-logfile",
                "-",
                # gunicorn's control socket sits at one path per user and host, which a
                # second service would take over and the first one's stop would delete.
                "--no-control-socket",
            ],
        }
        self.stdout.write(
            f"Keeper Sync: keeper.db {self._where_keeper()}; VH {haven}; web on http://{bind}/ "
            f"(admin at /admin/, queue dashboard at /admin/dashboard/). Ctrl-C stops.\n{admin_line}"
        )
        self.stdout.flush()  # the notices must reach a log file before the children write
        children = children_start(commands, env=child_env)
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
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

    def _where_keeper(self) -> str:
        db = settings.DATABASES["default"]
        return db["NAME"] if "sqlite" in db["ENGINE"] else f"{db['ENGINE']} database"
