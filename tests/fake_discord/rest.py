"""The fake Discord's REST API under ``/api/v10``: login, command sync, the guild and its
channels, interaction callbacks, followups and ``@original`` webhook calls, and channel messages.

Every call is recorded as a :class:`~tests.fake_discord.protocol.RestCall`. Answers are JSON with
a ``Content-Type`` of exactly ``application/json`` (discord.py compares it for equality); unknown
routes get 404 and nothing gets a 5xx, which discord.py would retry for about 25 seconds. What the
bot sends is checked by :mod:`tests.fake_discord.forms`; the deadline and the single
acknowledgement of an interaction are enforced here.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fake_discord.forms import FormErrors, commands_check, message_check, modal_check
from tests.fake_discord.gateway import Gateway
from tests.fake_discord.protocol import (
    ALREADY_ACKNOWLEDGED,
    API_PREFIX,
    APPLICATION_COMMAND,
    DEFERRED_REPLY,
    DEFERRED_UPDATE,
    EPHEMERAL,
    LOADING,
    MESSAGE_COMPONENT,
    MISSING_ACCESS,
    MODAL,
    MODAL_SUBMIT,
    NOT_AUTHOR,
    NOT_FOUND,
    REPLY,
    UNAUTHORIZED,
    UNKNOWN_APPLICATION,
    UNKNOWN_CHANNEL,
    UNKNOWN_INTERACTION,
    UNKNOWN_MESSAGE,
    UNKNOWN_WEBHOOK,
    UPDATE,
    Refused,
    Reply,
    RestCall,
    is_ephemeral,
)
from tests.fake_discord.world import InteractionState, OpenedModal

logger = logging.getLogger(__name__)


class RestApi(Gateway):
    """The routes, their handlers, and refusals a test asks for (:meth:`refuse_next`)."""

    def __init__(self) -> None:
        super().__init__()
        self._refusals: list[tuple[str, re.Pattern[str], int]] = []
        self._routes = self._route_table()

    def _route_table(self) -> list[tuple[str, re.Pattern[str], Callable[..., Reply], bool]]:
        app = r"(?P<app_id>\d+)"
        token = r"(?P<token>[^/]+)"
        webhook_message = rf"/webhooks/{app}/{token}/messages/(?P<message_id>@original|\d+)"
        channel_message = r"/channels/(?P<channel_id>\d+)/messages/(?P<message_id>\d+)"
        guild_commands = rf"/applications/{app}/guilds/(?P<guild_id>\d+)/commands"
        table = [
            ("GET", r"/users/@me", self._get_me, True),
            ("GET", r"/users/(?P<user_id>\d+)", self._get_user, True),
            ("GET", r"/oauth2/applications/@me", self._get_application, True),
            ("GET", r"/applications/@me", self._get_application, True),
            ("PUT", rf"/applications/{app}/commands", self._put_commands, True),
            ("PUT", guild_commands, self._put_commands, True),
            ("GET", rf"/applications/{app}/commands", self._get_commands, True),
            ("GET", guild_commands, self._get_commands, True),
            (
                "POST",
                rf"/interactions/(?P<interaction_id>\d+)/{token}/callback",
                self._callback,
                False,
            ),
            ("POST", rf"/webhooks/{app}/{token}", self._followup, False),
            ("GET", webhook_message, self._webhook_get, False),
            ("PATCH", webhook_message, self._webhook_edit, False),
            ("DELETE", webhook_message, self._webhook_delete, False),
            ("GET", r"/channels/(?P<channel_id>\d+)", self._get_channel, True),
            ("GET", r"/channels/(?P<channel_id>\d+)/messages", self._get_history, True),
            ("POST", r"/channels/(?P<channel_id>\d+)/messages", self._post_message, True),
            ("GET", channel_message, self._get_message, True),
            ("PATCH", channel_message, self._patch_message, True),
            ("DELETE", channel_message, self._delete_message, True),
            ("GET", r"/guilds/(?P<guild_id>\d+)", self._get_guild, True),
            ("GET", r"/guilds/(?P<guild_id>\d+)/channels", self._get_guild_channels, True),
            ("GET", r"/guilds/(?P<guild_id>\d+)/members/(?P<user_id>\d+)", self._get_member, True),
        ]
        return [
            (method, re.compile(pattern), handler, auth) for method, pattern, handler, auth in table
        ]

    async def _rest(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        path = request.path
        if path.startswith(API_PREFIX + "/"):
            path = path[len(API_PREFIX) :]
        query = dict(request.query)
        body: object | None = None
        files: list[dict] = []
        reply: Reply | None = None
        try:
            body, files = await self._read_body(request)
        except ValueError as exc:  # JSONDecodeError included
            reply = Reply(400, {"message": f"400: Bad Request ({exc})", "code": 50109})
        with self._changed:
            if reply is None:
                reply = self._refusal(request.method, path)
            if reply is None:
                reply = self._handle(request.method, request.headers, path, query, body, files, at)
            self._calls.append(
                RestCall(
                    method=request.method,
                    path=path,
                    query=query,
                    json=body,
                    status=reply.status,
                    at=at,
                    interaction_id=reply.interaction_id,
                    response=copy.deepcopy(reply.body),
                )
            )
            self._changed.notify_all()
        if reply.events:
            self._echo(reply.events)
        if reply.status == 204:
            return web.Response(status=204)
        # Exactly "application/json": discord.py compares the header for equality, and aiohttp's
        # json_response would add "; charset=utf-8".
        payload = json.dumps(reply.body).encode()
        return web.Response(status=reply.status, body=payload, content_type="application/json")

    def refuse_next(self, method: str, path_pattern: str, *, status: int = 400) -> None:
        """Refuse the next ``method`` call whose path (after ``/api/v10``) matches the regular
        expression ``path_pattern``, with ``status`` and a Discord-shaped error body, as a
        Discord hiccup would; the call is recorded but has no effect."""
        with self._lock:
            self._refusals.append((method, re.compile(path_pattern), status))

    def _refusal(self, method: str, path: str) -> Reply | None:
        for index, (wanted, pattern, status) in enumerate(self._refusals):
            if wanted == method and pattern.search(path):
                del self._refusals[index]
                return Reply(status, {"message": f"{status}: refused by the test", "code": 0})
        return None

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[object | None, list[dict]]:
        """The JSON body (multipart: its ``payload_json`` part) and the uploaded files."""
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            body = json.loads(form["payload_json"]) if "payload_json" in form else None
            files = [
                {
                    "field": name,
                    "filename": value.filename,
                    "content_type": value.content_type,
                    "size": len(value.file.read()),
                }
                for name, value in form.items()
                if isinstance(value, web.FileField)
            ]
            return body, files
        raw = await request.read()
        return (json.loads(raw) if raw.strip() else None), []

    def _handle(
        self,
        method: str,
        headers: Any,
        path: str,
        query: dict[str, str],
        body: object,
        files: list[dict],
        at: float,
    ) -> Reply:
        for route_method, pattern, handler, auth in self._routes:
            match = pattern.fullmatch(path)
            if match is None or route_method != method:
                continue
            if auth and headers.get("Authorization") != f"Bot {self.token}":
                return Reply(401, UNAUTHORIZED)
            try:
                return handler(body=body, files=files, query=query, at=at, **match.groupdict())
            except Refused as refused:
                return refused.reply
            except Exception as exc:  # noqa: BLE001 - a 5xx would stall the client in retries
                logger.exception("fake Discord failed on %s %s", method, path)
                return Reply(400, {"message": f"fake Discord failed: {exc!r}", "code": 0})
        return Reply(404, NOT_FOUND)

    # ---------------------------------------------------------------------- REST: login

    def _get_me(self, **_: Any) -> Reply:
        me = {
            **self._user(self.BOT_USER_ID),
            "verified": True,
            "mfa_enabled": False,
            "email": None,
            "locale": "en-US",
        }
        return Reply(200, me)

    def _get_user(self, *, user_id: str, **_: Any) -> Reply:
        return Reply(200, self._user(user_id))

    def _get_application(self, **_: Any) -> Reply:
        return Reply(200, self._application())

    def _scope(self, app_id: str, guild_id: str | None) -> str:
        if app_id != self.APP_ID:
            raise Refused(Reply(404, UNKNOWN_APPLICATION))
        if guild_id is not None and guild_id != self.GUILD_ID:
            raise Refused(Reply(403, MISSING_ACCESS))
        return "guild" if guild_id else "global"

    def _put_commands(
        self, *, app_id: str, body: object, guild_id: str | None = None, **_: Any
    ) -> Reply:
        scope = self._scope(app_id, guild_id)
        commands_check(body)
        stored = []
        for command in body:
            kind = command.get("type", 1)
            # Discord keeps a command's id across syncs while its name and type stay the same.
            command_id = self._command_ids.setdefault(
                (scope, command["name"], kind), self._snowflake()
            )
            out = {
                "default_member_permissions": None,
                "dm_permission": True,
                "nsfw": False,
                "options": [],
                **copy.deepcopy(command),
                "id": command_id,
                "application_id": self.APP_ID,
                "type": kind,
                "version": self._snowflake(),
            }
            if scope == "guild":
                out["guild_id"] = self.GUILD_ID
            stored.append(out)
        self._commands[scope] = stored
        return Reply(200, copy.deepcopy(stored))

    def _get_commands(self, *, app_id: str, guild_id: str | None = None, **_: Any) -> Reply:
        return Reply(200, copy.deepcopy(self._commands[self._scope(app_id, guild_id)]))

    # ---------------------------------------------------------------------- REST: guild

    def _get_guild(self, *, guild_id: str, **_: Any) -> Reply:
        if guild_id != self.GUILD_ID:
            return Reply(403, MISSING_ACCESS)
        guild = self._guild()
        # GET /guilds/{id} leaves out what only GUILD_CREATE carries.
        for key in ("channels", "members", "threads", "presences", "voice_states", "joined_at"):
            guild.pop(key, None)
        return Reply(200, guild)

    def _get_guild_channels(self, *, guild_id: str, **_: Any) -> Reply:
        if guild_id != self.GUILD_ID:
            return Reply(403, MISSING_ACCESS)
        return Reply(200, self._guild()["channels"])

    def _get_member(self, *, guild_id: str, user_id: str, **_: Any) -> Reply:
        known = (self.BOT_USER_ID, self.OWNER_ID, self.MEMBER_USER_ID)
        if guild_id != self.GUILD_ID or user_id not in known:
            return Reply(404, {"message": "Unknown Member", "code": 10007})
        return Reply(200, self._member(user_id))

    def _get_channel(self, *, channel_id: str, **_: Any) -> Reply:
        channel = self._channel(channel_id)
        return Reply(200, channel) if channel else Reply(404, UNKNOWN_CHANNEL)

    # ---------------------------------------------------------------------- REST: interactions

    def _callback(
        self,
        *,
        interaction_id: str,
        token: str,
        body: object,
        files: list[dict],
        at: float,
        **_: Any,
    ) -> Reply:
        state = self._interactions.get(interaction_id)
        if state is None or state.interaction.token != token:
            return Reply(404, UNKNOWN_INTERACTION)
        interaction = state.interaction
        iid = interaction.id
        if state.acked_type is not None:
            return Reply(400, ALREADY_ACKNOWLEDGED, iid)
        if at - interaction.sent_at > self.deadline:
            return Reply(404, UNKNOWN_INTERACTION, iid)
        body = body if isinstance(body, dict) else {}
        kind = body.get("type")
        data = body.get("data") or {}
        allowed = {
            APPLICATION_COMMAND: (REPLY, DEFERRED_REPLY, MODAL),
            MESSAGE_COMPONENT: (REPLY, DEFERRED_REPLY, DEFERRED_UPDATE, UPDATE, MODAL),
            MODAL_SUBMIT: (REPLY, DEFERRED_REPLY, DEFERRED_UPDATE, UPDATE),
        }[interaction.type]
        component_message = self._messages.get(interaction.payload.get("message", {}).get("id", ""))
        if kind not in allowed or (kind == UPDATE and component_message is None):
            errors = FormErrors()
            errors.add(
                "type",
                f"Callback type {kind} is not valid for interaction type {interaction.type}",
                "INTERACTION_RESPONSE_TYPE_INVALID",
            )
            errors.raise_if_any(iid)
        if kind in (REPLY, UPDATE):
            message_check(data, files, creating=kind == REPLY, interaction_id=iid)
        elif kind == MODAL:
            modal_check(data, iid)

        events: list[tuple[str, dict]] = []
        message: dict | None = None
        channel_id = interaction.payload["channel_id"]
        if kind == REPLY:
            flags = (data.get("flags") or 0) & ~LOADING
            message = self._bot_message(
                channel_id=channel_id, data=data, files=files, flags=flags, state=state
            )
            self._store(message)
            events = self._created(message)
        elif kind == DEFERRED_REPLY:
            flags = LOADING | ((data.get("flags") or 0) & EPHEMERAL)
            message = self._bot_message(
                channel_id=channel_id, data={}, files=[], flags=flags, state=state
            )
            self._store(message)
            state.loading = True
            events = self._created(message)
        elif kind == UPDATE:
            message = component_message
            self._apply(message, data, files, editing=True)
            events = self._edited(message)
        elif kind == DEFERRED_UPDATE and component_message is not None:
            state.original_id = component_message["id"]
        elif kind == MODAL:
            state.modal = copy.deepcopy(data)
            self._modals[data["custom_id"]] = OpenedModal(
                data=copy.deepcopy(data), opener_id=iid, channel_id=channel_id
            )
        if message is not None:
            state.original_id = message["id"]
            state.touched.append(message["id"])
        state.acked_type = kind

        summary: dict[str, Any] = {
            "id": iid,
            "type": interaction.type,
            "response_message_loading": kind == DEFERRED_REPLY,
            "response_message_ephemeral": bool(message and is_ephemeral(message)),
        }
        if state.original_id is not None:
            summary["response_message_id"] = state.original_id
        resource: dict[str, Any] = {"type": kind}
        if message is not None:
            resource["message"] = copy.deepcopy(message)
        return Reply(200, {"interaction": summary, "resource": resource}, iid, events)

    def _webhook_state(self, app_id: str, token: str) -> InteractionState:
        """The acknowledged interaction a webhook token belongs to, or refuse with 10015."""
        interaction_id = self._tokens.get(token)
        if app_id != self.APP_ID or interaction_id is None:
            raise Refused(Reply(404, UNKNOWN_WEBHOOK))
        state = self._interactions[interaction_id]
        if state.acked_type is None:
            raise Refused(Reply(404, UNKNOWN_WEBHOOK, interaction_id))
        return state

    def _followup(
        self, *, app_id: str, token: str, body: object, files: list[dict], query: dict, **_: Any
    ) -> Reply:
        state = self._webhook_state(app_id, token)
        iid = state.interaction.id
        data = body if isinstance(body, dict) else {}
        message_check(data, files, creating=True, interaction_id=iid)
        requested = (data.get("flags") or 0) & ~LOADING
        if state.loading and state.original_id in self._messages:
            # The first followup after a deferred reply becomes the reply: it replaces the
            # "thinking" message, which keeps its id and the deferral's ephemerality.
            message = self._messages[state.original_id]
            self._apply(message, data, files, editing=False)
            message["flags"] = (message["flags"] & EPHEMERAL) | (requested & ~EPHEMERAL)
            state.loading = False
            events = self._edited(message)
        else:
            channel_id = state.interaction.payload["channel_id"]
            message = self._bot_message(
                channel_id=channel_id, data=data, files=files, flags=requested, state=state
            )
            self._store(message)
            events = self._created(message)
        state.followup_ids.append(message["id"])
        state.touched.append(message["id"])
        if str(query.get("wait", "")).lower() in ("1", "true"):
            return Reply(200, copy.deepcopy(message), iid, events)
        return Reply(204, None, iid, events)

    def _webhook_message(
        self, app_id: str, token: str, message_id: str
    ) -> tuple[InteractionState, dict]:
        state = self._webhook_state(app_id, token)
        wanted = state.original_id if message_id == "@original" else message_id
        belongs = wanted is not None and (
            wanted == state.original_id or wanted in state.followup_ids
        )
        if not belongs or wanted not in self._messages:
            raise Refused(Reply(404, UNKNOWN_MESSAGE, state.interaction.id))
        return state, self._messages[wanted]

    def _webhook_get(self, *, app_id: str, token: str, message_id: str, **_: Any) -> Reply:
        state, message = self._webhook_message(app_id, token, message_id)
        return Reply(200, copy.deepcopy(message), state.interaction.id)

    def _webhook_edit(
        self, *, app_id: str, token: str, message_id: str, body: object, files: list[dict], **_: Any
    ) -> Reply:
        state, message = self._webhook_message(app_id, token, message_id)
        iid = state.interaction.id
        data = body if isinstance(body, dict) else {}
        message_check(data, files, creating=False, interaction_id=iid)
        self._apply(message, data, files, editing=True)
        if message["id"] == state.original_id and state.loading:
            message["flags"] &= ~LOADING
            state.loading = False
        state.touched.append(message["id"])
        return Reply(200, copy.deepcopy(message), iid, self._edited(message))

    def _webhook_delete(self, *, app_id: str, token: str, message_id: str, **_: Any) -> Reply:
        state, message = self._webhook_message(app_id, token, message_id)
        return Reply(204, None, state.interaction.id, self._delete(message))

    # ---------------------------------------------------------------------- REST: channels

    def _channel_message(self, channel_id: str, message_id: str) -> dict:
        if self._channel(channel_id) is None:
            raise Refused(Reply(404, UNKNOWN_CHANNEL))
        message = self._messages.get(message_id)
        if message is None or message["channel_id"] != channel_id or is_ephemeral(message):
            raise Refused(Reply(404, UNKNOWN_MESSAGE))
        return message

    def _post_message(self, *, channel_id: str, body: object, files: list[dict], **_: Any) -> Reply:
        if self._channel(channel_id) is None:
            return Reply(404, UNKNOWN_CHANNEL)
        data = body if isinstance(body, dict) else {}
        message_check(data, files, creating=True)
        # Only interaction responses can be ephemeral: Discord drops the flag on channel posts.
        flags = (data.get("flags") or 0) & ~(EPHEMERAL | LOADING)
        message = self._bot_message(channel_id=channel_id, data=data, files=files, flags=flags)
        self._store(message)
        return Reply(200, copy.deepcopy(message), events=self._created(message))

    def _get_history(self, *, channel_id: str, query: dict, **_: Any) -> Reply:
        if self._channel(channel_id) is None:
            return Reply(404, UNKNOWN_CHANNEL)
        limit = max(1, min(100, int(query.get("limit", 50))))
        public = [m for m in self.channel_messages(channel_id) if not is_ephemeral(m)]
        return Reply(200, copy.deepcopy(public[::-1][:limit]))

    def _get_message(self, *, channel_id: str, message_id: str, **_: Any) -> Reply:
        return Reply(200, copy.deepcopy(self._channel_message(channel_id, message_id)))

    def _patch_message(
        self, *, channel_id: str, message_id: str, body: object, files: list[dict], **_: Any
    ) -> Reply:
        message = self._channel_message(channel_id, message_id)
        if message["author"]["id"] != self.BOT_USER_ID:
            return Reply(403, NOT_AUTHOR)
        data = body if isinstance(body, dict) else {}
        message_check(data, files, creating=False)
        self._apply(message, data, files, editing=True)
        return Reply(200, copy.deepcopy(message), events=self._edited(message))

    def _delete_message(self, *, channel_id: str, message_id: str, **_: Any) -> Reply:
        message = self._channel_message(channel_id, message_id)
        return Reply(204, None, events=self._delete(message))
