"""The fake Discord's gateway websocket: HELLO, heartbeat ACKs, IDENTIFY -> READY and
GUILD_CREATE, RESUME -> RESUMED when :attr:`Gateway.resumable` (else op 9), member chunk
requests, the dispatches a test asks for and the echoes of what the bot posts through REST.

Frames go out as text JSON, which discord.py reads without the zlib stream it asks for.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.fake_discord.world import World


@dataclass
class GatewaySession:
    """One open websocket: its send lock, the sequence of its dispatches, READY sent or not."""

    ws: web.WebSocketResponse
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    seq: int = 0
    ready: bool = False


class Gateway(World):
    """The websocket sessions of the world's bot, and what was said on them."""

    def __init__(self) -> None:
        super().__init__()
        #: Whether a dropped client may RESUME its session (else op 9: identify afresh).
        self.resumable = False
        self._events: list[tuple[str, dict]] = []
        self._gateway_ops: list[int] = []
        self._session_ids: set[str] = set()
        self._sessions: list[GatewaySession] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()

    def _call_soon(self, coro: Any, *, timeout: float = 5) -> Any:
        """Run ``coro`` on the server's loop from the tests' thread and return its result."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("FakeDiscord is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def events(self) -> list[tuple[str, dict]]:
        """Every gateway dispatch sent (``(t, d)``), READY and GUILD_CREATE included."""
        with self._lock:
            return list(self._events)

    @property
    def gateway_ops(self) -> list[int]:
        """The opcode of every frame clients sent on the gateway, in order (1 heartbeat,
        2 IDENTIFY, 6 RESUME, 8 request members...)."""
        with self._lock:
            return list(self._gateway_ops)

    def connected(self) -> bool:
        """Whether a gateway websocket is open now."""
        with self._lock:
            return any(not s.ws.closed for s in self._sessions)

    def wait_ready(self, timeout: float = 10) -> None:
        """Wait until an open gateway connection has IDENTIFYed and been sent READY and
        GUILD_CREATE; raises ``AssertionError`` (with the calls seen) on timeout."""
        self._wait(
            lambda: any(s.ready and not s.ws.closed for s in self._sessions),
            timeout,
            "a client to be READY",
        )

    def wait_disconnected(self, timeout: float = 10) -> None:
        """Wait until no gateway websocket is open."""
        self._wait(
            lambda: not any(not s.ws.closed for s in self._sessions),
            timeout,
            "the gateway to be closed",
        )

    # ---------------------------------------------------------------------- the websocket

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, timeout=2.0)
        await ws.prepare(request)
        session = GatewaySession(ws)
        with self._changed:
            self._sessions.append(session)
            self._changed.notify_all()
        try:
            await self._send(session, {"op": 10, "d": {"heartbeat_interval": 41250}})
            async for frame in ws:
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    continue
                message = json.loads(frame.data)
                op = message.get("op")
                with self._changed:
                    self._gateway_ops.append(op)
                    self._changed.notify_all()
                if op == 1:
                    await self._send(session, {"op": 11})
                elif op == 2:
                    await self._identify(session, message.get("d") or {})
                elif op == 6:
                    await self._resume(session, message.get("d") or {})
                elif op == 8:
                    chunk = {
                        "guild_id": self.GUILD_ID,
                        "members": [],
                        "chunk_index": 0,
                        "chunk_count": 1,
                        "not_found": [],
                    }
                    if (message.get("d") or {}).get("nonce"):
                        chunk["nonce"] = message["d"]["nonce"]
                    await self._dispatch_to(session, "GUILD_MEMBERS_CHUNK", chunk)
        finally:
            with self._changed:
                self._sessions.remove(session)
                self._changed.notify_all()
        return ws

    async def _resume(self, session: GatewaySession, data: dict) -> None:
        """RESUME: a session this fake issued is resumed (RESUMED) when :attr:`resumable`;
        otherwise the client is told to identify afresh (op 9, ``d: false``)."""
        known = data.get("session_id") in self._session_ids and data.get("token") == self.token
        if not (self.resumable and known):
            await self._send(session, {"op": 9, "d": False})
            return
        await self._dispatch_to(session, "RESUMED", {})
        with self._changed:
            session.ready = True
            self._changed.notify_all()

    async def _identify(self, session: GatewaySession, data: dict) -> None:
        if data.get("token") != self.token:
            await session.ws.close(code=4004, message=b"Authentication failed.")
            return
        ready = {
            "v": 10,
            "user": {
                **self._user(self.BOT_USER_ID),
                "verified": True,
                "mfa_enabled": False,
                "email": None,
            },
            "guilds": [{"id": self.GUILD_ID, "unavailable": True}],
            "session_id": self._new_session_id(),
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "shard": data.get("shard") or [0, 1],
            "application": {"id": self.APP_ID, "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
        }
        await self._dispatch_to(session, "READY", ready)
        await self._dispatch_to(session, "GUILD_CREATE", self._guild())
        with self._changed:
            session.ready = True
            self._changed.notify_all()

    def _new_session_id(self) -> str:
        with self._lock:
            session_id = secrets.token_hex(16)
            self._session_ids.add(session_id)
            return session_id

    async def _send(self, session: GatewaySession, frame: dict) -> None:
        async with session.send_lock:
            if not session.ws.closed:
                await session.ws.send_str(json.dumps(frame))

    async def _dispatch_to(self, session: GatewaySession, event: str, data: dict) -> None:
        async with session.send_lock:
            if session.ws.closed:
                return
            session.seq += 1
            with self._lock:
                self._events.append((event, data))
            await session.ws.send_str(
                json.dumps({"op": 0, "t": event, "s": session.seq, "d": data})
            )

    async def _broadcast(
        self, event: str, data: dict, *, before_send: Callable[[], None] | None = None
    ) -> None:
        sessions = [s for s in self._sessions if s.ready and not s.ws.closed]
        if not sessions:
            raise AssertionError(f"no bot is connected to the fake gateway to receive {event}")
        if before_send is not None:
            before_send()
        for session in sessions:
            await self._dispatch_to(session, event, data)

    def _echo(self, events: list[tuple[str, dict]]) -> None:
        """Send the gateway echoes of a REST call after its answer, as Discord does."""

        async def send_all() -> None:
            for event, data in events:
                for session in [s for s in self._sessions if s.ready and not s.ws.closed]:
                    await self._dispatch_to(session, event, data)

        task = asyncio.get_running_loop().create_task(send_all())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def drop_gateway(self, code: int = 4000) -> None:
        """Close every gateway websocket with ``code`` (4000: the client reconnects, tries to
        RESUME, is told op 9 and IDENTIFYs again)."""

        async def close_all() -> None:
            for session in list(self._sessions):
                await session.ws.close(code=code)

        self._call_soon(close_all())
