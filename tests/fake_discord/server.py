"""The fake Discord as one server: :class:`FakeDiscord` joins the world, the gateway, the
member's actions and the REST API, and serves the gateway and the REST routes on one ephemeral
127.0.0.1 port from a background thread with its own event loop."""

from __future__ import annotations

import asyncio
import socket
import threading

from aiohttp import web

from tests.fake_discord.actions import MemberActions
from tests.fake_discord.protocol import API_PREFIX
from tests.fake_discord.rest import RestApi


class FakeDiscord(RestApi, MemberActions):
    """A fake Discord on an ephemeral 127.0.0.1 port; see :mod:`tests.fake_discord` for the rules.

    Use as ``with FakeDiscord() as fake: ...`` or ``fake = FakeDiscord().start()`` ...
    ``fake.stop()``. ``deadline`` (seconds) is the interaction callback deadline; it is a plain
    attribute, so a test may lower it for a while.
    """

    def __init__(self, *, deadline: float = 3.0) -> None:
        super().__init__()
        self.deadline = deadline
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # ---------------------------------------------------------------------- lifecycle

    def start(self) -> FakeDiscord:
        """Start serving on a free 127.0.0.1 port; sets :attr:`api_base` and :attr:`gateway_url`."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fake-discord", daemon=True
        )
        self._thread.start()
        port = self._call_soon(self._serve(), timeout=10)
        self.api_base = f"http://127.0.0.1:{port}{API_PREFIX}"
        self.gateway_url = f"ws://127.0.0.1:{port}/gateway"
        return self

    def stop(self) -> None:
        """Close every gateway connection and the server, and end the background thread.

        Stop the bot first: a client still running would keep trying to reconnect."""
        if self._loop is None:
            return
        try:
            self._call_soon(self._shutdown(), timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._loop.close()
            self._loop = None

    def __enter__(self) -> FakeDiscord:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _serve(self) -> int:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        app.router.add_route("*", "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        return sock.getsockname()[1]

    async def _shutdown(self) -> None:
        for session in list(self._sessions):
            await session.ws.close(code=1001, message=b"fake Discord stopping")
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
