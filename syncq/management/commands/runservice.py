"""``manage.py runservice``: the django-q2 cluster and the web server together (``make run``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from discoveries.haven_files import haven_file_create

DEMO_HAVEN = Path("data/demo/VH-Database.db")
STOP_GRACE_SECONDS = 10


class Command(BaseCommand):
    help = (
        "Start the django-q2 cluster (the sync worker) and the web server on "
        "SYNC_API_HOST:SYNC_API_PORT, and stop both on Ctrl-C or SIGTERM. When HAVEN_DB_PATH "
        "is unset and there is no VH-Database.db at the default path, use (and, the first "
        "time, create) a demo Control Room database under data/demo/ and say so."
    )

    def add_arguments(self, parser):
        parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers")

    def handle(self, *args, web_workers, **options):
        child_env = dict(os.environ)
        haven = self._choose_haven(child_env)
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
                "--access-logfile",
                "-",
            ],
        }
        self.stdout.write(
            f"Keeper Sync: keeper.db {self._where_keeper()}; VH {haven}; web on http://{bind}/ "
            "(admin at /admin/; make an account with: .venv/bin/python manage.py "
            "createsuperuser). Ctrl-C stops."
        )
        self.stdout.flush()  # the notices must reach a log file before the children write
        # Each child gets its own session: a Ctrl-C reaches only this process, which then stops
        # each child through its main process. (django-q2's cluster does not stop when SIGTERM
        # reaches all of its processes at once.)
        children = {
            name: subprocess.Popen(
                cmd, env=child_env, cwd=settings.BASE_DIR, start_new_session=True
            )
            for name, cmd in commands.items()
        }
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    self.stderr.write(f"the {name} exited with code {child.returncode}")
                    exit_code = child.returncode or 1
                    stopping = True
            time.sleep(0.5)
        self._stop(children)
        if exit_code:
            raise SystemExit(exit_code)

    def _where_keeper(self) -> str:
        db = settings.DATABASES["default"]
        return db["NAME"] if "sqlite" in db["ENGINE"] else f"{db['ENGINE']} database"

    def _choose_haven(self, child_env: dict[str, str]) -> str:
        if not settings.USE_HAVEN_DATABASE:
            return "not used (USE_HAVEN_DATABASE=false: discoveries stay queued)"
        if os.environ.get("HAVEN_DB_PATH") or Path(settings.HAVEN_DB_PATH).exists():
            state = "" if Path(settings.HAVEN_DB_PATH).exists() else " (MISSING: items wait)"
            return f"{settings.HAVEN_DB_PATH}{state}"
        demo = Path(settings.BASE_DIR) / DEMO_HAVEN
        if not demo.exists():
            haven_file_create(demo, with_demo_data=True)
        child_env["HAVEN_DB_PATH"] = str(demo)
        self.stdout.write(
            self.style.WARNING(
                f"No VH-Database.db at {settings.HAVEN_DB_PATH} and HAVEN_DB_PATH is not set: "
                f"using a DEMO Control Room database at {demo}, not the real one. To sync into "
                "the real one, set HAVEN_DB_PATH in .env or put the file at the default path."
            )
        )
        return f"{demo} (demo)"

    def _stop(self, children: dict[str, subprocess.Popen]) -> None:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
