"""``manage.py haven_agent``: the Control Room agent, on the desktop beside VH-Database.db
(:mod:`syncq.agent_client`; README, "The Control Room agent on a desktop")."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from syncq.agent_client import AgentRefused, HavenAgent


class Command(BaseCommand):
    help = (
        "Run the Control Room agent: write the server's queue into this desktop's "
        "VH-Database.db and upload its catalog, calling out only (no open port)."
    )
    # Nothing of the server's is here to check (no keeper.db).
    requires_system_checks: list = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--server", default=None, help="The server's address (default: AGENT_SERVER_URL)."
        )
        parser.add_argument(
            "--token", default=None, help="The agent's token (default: AGENT_TOKEN)."
        )
        parser.add_argument(
            "--state", default=None, help="The agent's state file (default: AGENT_STATE_PATH)."
        )
        parser.add_argument(
            "--once",
            action="store_true",
            help="One round (heartbeat, catalog, one lease written and acknowledged), then exit.",
        )

    def handle(self, *args, server=None, token=None, state=None, once=False, **options):
        server = (server or settings.AGENT_SERVER_URL or "").strip()
        token = (token or settings.AGENT_TOKEN or "").strip()
        if not server:
            raise CommandError("no server: give --server https://… or set AGENT_SERVER_URL in .env")
        if not server.startswith(("http://", "https://")):
            raise CommandError(
                f"the server's address {server!r} must start with https:// (or http://)"
            )
        if not token:
            raise CommandError(
                "no token: give --token or set AGENT_TOKEN (on the server: "
                "python manage.py agent_token NAME)"
            )
        if not Path(settings.HAVEN_DB_PATH).is_file():
            self.stderr.write(
                f"warning: {settings.HAVEN_DB_PATH} does not exist; items fail (and are tried "
                "again) until it does (set HAVEN_DB_PATH to the Control Room's VH-Database.db)"
            )
        logging.getLogger("syncq").setLevel(logging.INFO)
        # One line per request is httpx's INFO; the agent logs what it does itself.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        stop = threading.Event()
        for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), lambda *_: stop.set())
        state_path = Path(state) if state else Path(settings.AGENT_STATE_PATH)
        try:
            agent = HavenAgent(server=server, token=token, state_path=state_path, stop=stop)
        except OSError as exc:
            raise CommandError(
                f"the agent's state file {state_path} cannot be written ({exc}): give --state "
                "or AGENT_STATE_PATH a file in a folder you can write"
            ) from None
        self.stdout.write(
            f"Control Room agent: {settings.HAVEN_DB_PATH} ↔ {server} "
            f"({'one round' if once else 'Ctrl-C stops'})"
        )
        try:
            report = agent.run(once=once)
        except AgentRefused as exc:
            raise CommandError(f"the server refused the agent: {exc}") from None
        finally:
            agent.close()
        if once and report is not None:
            self.stdout.write(
                f"One round: the server answered; VH {agent.vh_state}; catalog "
                f"{'uploaded' if report.uploaded else 'unchanged'}; {report.leased} leased, "
                f"{report.acknowledged} reported written or held, {report.failed} failed."
            )
        self.stdout.write("Control Room agent stopped.")
