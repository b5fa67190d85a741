"""``manage.py runbot``: The Keeper, the Discord bot, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

import aiohttp
import discord
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from botrunner.bot import KeeperBot, discord_endpoints_set
from discoveries.haven.files import haven_demo_warning, haven_for_service, haven_use
from syncq.processes import children_start, children_stop

logger = logging.getLogger("botrunner")

#: SIGTERM to exit: the bot finishes the submits members wait on, then closes, within this;
#: the worker (with --with-worker) stops alongside.
STOP_SECONDS = 10
#: Of those, at most this long for submits in flight (each waits at most
#: ``botrunner.db.LOCK_WAIT_SECONDS`` for keeper.db), and this long for the worker.
DRAIN_SECONDS = 6.5
WORKER_STOP_SECONDS = 8
#: While Discord cannot be reached at start, login is tried again after 1, 2, 4 … 60 s.
RETRY_FIRST_SECONDS = 1
RETRY_MAX_SECONDS = 60


class Command(BaseCommand):
    help = (
        "Run The Keeper, the Discord bot, with BOT_TOKEN; its slash commands are synced to "
        "GUILD_ID at start when that is set. SIGINT or SIGTERM closes it within 10 s. "
        "--with-worker also runs the sync worker (django-q2's qcluster) in this service, for "
        "hosts that run one process; otherwise run `manage.py qcluster` beside it."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--with-worker",
            action="store_true",
            help="also run the django-q2 cluster that syncs the queue into VH-Database.db",
        )

    def handle(self, *args, with_worker: bool, **options):
        if not settings.BOT_TOKEN:
            raise CommandError(
                "BOT_TOKEN is not set: put the bot's token (Discord Developer Portal → your "
                "application → Bot → Reset Token) in the environment or in .env",
                returncode=2,
            )
        discord_endpoints_set(
            api_base=settings.DISCORD_API_BASE, gateway_url=settings.DISCORD_GATEWAY_URL
        )
        choice = haven_for_service()
        if choice.demo:
            self.stdout.write(self.style.WARNING(haven_demo_warning(choice)))
            haven_use(choice.path)
        self.stdout.write(
            f"The Keeper: VH {choice.described}; guild {settings.GUILD_ID or 'not set'}; "
            f"worker {'in this service' if with_worker else 'separate (manage.py qcluster)'}. "
            "Ctrl-C stops."
        )
        self.stdout.flush()
        workers = {}
        if with_worker:
            manage = str(Path(settings.BASE_DIR) / "manage.py")
            workers = children_start({"sync worker": [sys.executable, manage, "qcluster"]})
        try:
            asyncio.run(self._run())
        finally:
            # Stopping is under way: a second Ctrl-C must not cut it short half-way.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            children_stop(workers, grace_seconds=WORKER_STOP_SECONDS)
            connections.close_all()
        self.stdout.write("The Keeper stopped.")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()

        def stop(signame: str) -> None:
            if not stopping.is_set():
                logger.info("%s: closing the bot", signame)
                stopping.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop, signal.Signals(signum).name)

        delay = RETRY_FIRST_SECONDS
        while not stopping.is_set():
            bot = KeeperBot(guild_id=settings.GUILD_ID)
            runner = asyncio.create_task(self._start(bot))
            waiter = asyncio.create_task(stopping.wait())
            await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            await self._close(bot, runner)
            error = runner.exception() if runner.done() and not runner.cancelled() else None
            if not isinstance(error, DiscordUnreachable):
                if error is not None:
                    raise error
                return
            logger.warning(
                "cannot reach Discord at %s (%s); trying again in %d s",
                settings.DISCORD_API_BASE,
                error,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _close(self, bot: KeeperBot, runner: asyncio.Task) -> None:
        if not await bot.wait_idle(DRAIN_SECONDS):
            logger.warning("stopping with member requests still in flight")
        if not bot.is_closed():
            try:
                await asyncio.wait_for(bot.close(), timeout=STOP_SECONDS - DRAIN_SECONDS - 1)
            except TimeoutError:
                logger.warning("the bot did not close in time; leaving anyway")
        # The runner ends once the bot is closed; its error, if any, is the caller's to read.
        await asyncio.wait({runner}, timeout=2)
        if not runner.done():
            runner.cancel()
            await asyncio.wait({runner})

    async def _start(self, bot: KeeperBot) -> None:
        try:
            await bot.login(settings.BOT_TOKEN)
        except discord.LoginFailure as exc:
            raise CommandError(
                f"Discord refused BOT_TOKEN ({exc}): copy the token again from the Developer "
                "Portal (Bot → Reset Token)",
                returncode=2,
            ) from None
        except (aiohttp.ClientError, OSError, discord.DiscordServerError) as exc:
            raise DiscordUnreachable(f"{type(exc).__name__}: {exc}") from exc
        try:
            await bot.connect(reconnect=True)
        except discord.PrivilegedIntentsRequired as exc:
            raise CommandError(str(exc), returncode=2) from None
        except (aiohttp.ClientError, OSError, discord.GatewayNotFound) as exc:
            raise DiscordUnreachable(f"gateway: {type(exc).__name__}: {exc}") from exc
        except AttributeError as exc:
            # discord.py 2.7 fails this way when its first gateway connection never opened.
            if bot.ws is not None:
                raise
            raise DiscordUnreachable(f"gateway at {settings.DISCORD_GATEWAY_URL}: {exc}") from exc


class DiscordUnreachable(Exception):
    """Discord's API (or the proxy at ``DISCORD_API_BASE``) could not be reached to log in."""
