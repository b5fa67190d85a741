"""A fake Discord (REST and gateway websocket) on 127.0.0.1, for end-to-end tests of the bot.

Discord is unreachable from the tests, so the real discord.py client (2.7.x) is pointed at this
server instead. It fakes one application, its bot user and one guild with two text channels, and
answers the calls the bot makes with the shapes Discord gives (see ``../shared/FAKE_DISCORD.md``):

- login: ``GET /users/@me`` (only ``Authorization: Bot <token>`` with :attr:`FakeDiscord.token`;
  anything else is 401), ``GET /oauth2/applications/@me``, command sync
  ``PUT /applications/{app}[/guilds/{guild}]/commands``;
- the gateway: HELLO, heartbeat ACKs, IDENTIFY -> READY + GUILD_CREATE, RESUME -> RESUMED when
  :attr:`FakeDiscord.resumable`, else op 9 (the client identifies again); dispatches
  INTERACTION_CREATE and MESSAGE_CREATE on a test's request and echoes MESSAGE_CREATE /
  MESSAGE_UPDATE / MESSAGE_DELETE for the public messages the bot sends or edits;
- interaction callbacks, followups and ``@original`` webhook calls, and channel messages.

Pointing a client at it (process-wide, so set it before login and restore it afterwards)::

    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)

``DEFAULT_GATEWAY`` must be a ``yarl.URL``: discord.py calls ``.with_query()`` on it.

The rules Discord enforces and the fake enforces too, so that the tests catch what users would see:

- the deadline: an interaction callback (``POST /interactions/{id}/{token}/callback``) received
  more than :attr:`FakeDiscord.deadline` seconds (3 by default) after the fake sent the
  INTERACTION_CREATE gets 404 ``{"message": "Unknown interaction", "code": 10062}``;
- one acknowledgement: any callback after an accepted one gets 400
  ``{"message": "Interaction has already been acknowledged.", "code": 40060}``;
- followups and ``@original`` calls before the interaction was acknowledged get 404
  ``{"message": "Unknown Webhook", "code": 10015}``;
- the first followup after a deferred reply (callback type 5, "thinking") replaces the loading
  message, keeping its id and the deferral's ephemeral flag;
- callback types must fit the interaction (6 and 7 only for components and modal submits, no
  modal in answer to a modal submit), messages must not be empty (400, code 50006) and must keep
  Discord's form limits (content 2000 characters, embed limits, 5 action rows, select options,
  modal title and text inputs...), else 400 ``Invalid Form Body`` code 50035 naming the field;
- unknown routes get 404 ``{"message": "404: Not Found", "code": 0}`` and are recorded, so a test
  can assert none happened. The fake never answers 5xx (discord.py retries those for ~25 s).

Every REST call is recorded as a :class:`RestCall`, with the interaction it belongs to; every
message created or edited is kept as a full Discord message object in :attr:`FakeDiscord.messages`.

The server runs in a background thread with its own event loop; the public methods are synchronous
and thread-safe, so plain (sync) pytest tests drive it while the bot runs in another process or
thread. Dispatching helpers (:meth:`FakeDiscord.select`, :meth:`FakeDiscord.submit_modal`...) act
as a user in the Discord client would and raise ``AssertionError`` for what a user could not do
(clicking a component that is not on the message, a select value that is not an option, a modal
value longer than the text input allows...).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

__all__ = [
    "FakeDiscord",
    "Interaction",
    "RestCall",
    "components_of",
    "find_component",
    "is_ephemeral",
    "snowflake_time",
]

logger = logging.getLogger(__name__)

DISCORD_EPOCH_MS = 1420070400000
API_PREFIX = "/api/v10"

# Message flags (https://discord.com/developers/docs/resources/message#message-object-message-flags).
SUPPRESS_EMBEDS = 1 << 2
EPHEMERAL = 1 << 6
LOADING = 1 << 7
IS_COMPONENTS_V2 = 1 << 15

# Interaction types and callback types.
APPLICATION_COMMAND, MESSAGE_COMPONENT, MODAL_SUBMIT = 2, 3, 5
REPLY, DEFERRED_REPLY, DEFERRED_UPDATE, UPDATE, MODAL = 4, 5, 6, 7, 9

# Component types.
ACTION_ROW, BUTTON, STRING_SELECT, TEXT_INPUT = 1, 2, 3, 4
SELECT_TYPES = (3, 5, 6, 7, 8)
SECTION, CONTAINER, LABEL = 9, 17, 18
LINK_STYLE, PREMIUM_STYLE = 5, 6

UNAUTHORIZED = {"message": "401: Unauthorized", "code": 0}
NOT_FOUND = {"message": "404: Not Found", "code": 0}
UNKNOWN_INTERACTION = {"message": "Unknown interaction", "code": 10062}
ALREADY_ACKNOWLEDGED = {"message": "Interaction has already been acknowledged.", "code": 40060}
UNKNOWN_WEBHOOK = {"message": "Unknown Webhook", "code": 10015}
UNKNOWN_CHANNEL = {"message": "Unknown Channel", "code": 10003}
UNKNOWN_MESSAGE = {"message": "Unknown Message", "code": 10008}
UNKNOWN_APPLICATION = {"message": "Unknown Application", "code": 10002}
MISSING_ACCESS = {"message": "Missing Access", "code": 50001}
EMPTY_MESSAGE = {"message": "Cannot send an empty message", "code": 50006}
NOT_AUTHOR = {"message": "Cannot edit a message authored by another user", "code": 50005}

# What the bot may do in the guild's channels: view, send, embed links, attach files, read
# history, add reactions, use external emojis.
BOT_PERMISSIONS = 0x400 | 0x800 | 0x4000 | 0x8000 | 0x10000 | 0x40 | 0x40000


def snowflake_time(snowflake: str | int) -> datetime.datetime:
    """The UTC creation time encoded in a Discord snowflake."""
    ms = (int(snowflake) >> 22) + DISCORD_EPOCH_MS
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)


def is_ephemeral(message: dict) -> bool:
    """Whether a recorded message is ephemeral (flag 64: only the invoking user sees it)."""
    return bool(message.get("flags", 0) & EPHEMERAL)


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


@dataclass
class RestCall:
    """One REST call the fake received, with what it answered.

    ``path`` is the part after ``/api/v10``; ``json`` the parsed body (for multipart bodies, the
    parsed ``payload_json`` part); ``at`` the ``time.monotonic()`` of arrival; ``interaction_id``
    the interaction an interaction callback or webhook call belongs to (through its token);
    ``response`` the JSON body answered (``None`` for 204).
    """

    method: str
    path: str
    query: dict[str, str]
    json: object | None
    status: int
    at: float
    interaction_id: str | None
    response: object | None = None


@dataclass
class Interaction:
    """One INTERACTION_CREATE the fake dispatched.

    ``sent_at`` is the ``time.monotonic()`` when it went out on the gateway (the deadline counts
    from there); ``payload`` the full dispatched ``d``, which :meth:`FakeDiscord.resend` sends
    again.
    """

    id: str
    token: str
    type: int
    data: dict
    user_id: str
    sent_at: float
    payload: dict


@dataclass
class _InteractionState:
    interaction: Interaction
    acked_type: int | None = None
    original_id: str | None = None  # the message @original designates, once there is one
    loading: bool = False  # deferred with type 5 and not yet answered by a followup or edit
    modal: dict | None = None
    followup_ids: list[str] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)  # messages created or edited, in order


@dataclass
class _OpenedModal:
    data: dict
    opener_id: str  # the interaction the modal answered
    channel_id: str
    submissions: list[str] = field(default_factory=list)  # interaction ids of its submits


@dataclass
class _GatewaySession:
    ws: web.WebSocketResponse
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    seq: int = 0
    ready: bool = False


@dataclass
class _Reply:
    status: int
    body: object | None
    interaction_id: str | None = None
    events: list[tuple[str, dict]] = field(default_factory=list)  # gateway echoes to send after


class _Refused(Exception):
    """Raised by a REST handler to answer with ``reply`` at once."""

    def __init__(self, reply: _Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


class _FormErrors:
    """Discord's ``Invalid Form Body`` (400, code 50035): errors keyed by the field's path."""

    def __init__(self) -> None:
        self.errors: dict[str, dict] = {}

    def add(self, path: str, message: str, code: str = "BASE_TYPE_BAD_LENGTH") -> None:
        entry = self.errors.setdefault(path, {"_errors": []})
        entry["_errors"].append({"code": code, "message": message})

    def length(self, path: str, value: object, low: int, high: int) -> None:
        if value is None:
            if low > 0:
                self.add(path, "This field is required", "BASE_TYPE_REQUIRED")
            return
        size = len(value) if isinstance(value, str | list) else len(str(value))
        if not low <= size <= high:
            self.add(path, f"Must be between {low} and {high} in length.")

    def raise_if_any(self, interaction_id: str | None = None) -> None:
        """Refuse the request with 400 ``Invalid Form Body`` if any error was added."""
        if self.errors:
            body = {"message": "Invalid Form Body", "code": 50035, "errors": self.errors}
            raise _Refused(_Reply(400, body, interaction_id))


def _walk(
    components: list[dict], wrapper_label: str | None = None
) -> Iterator[tuple[dict, str | None]]:
    """Leaf components with the text of the Label (type 18) wrapping them, if any."""
    for component in components or []:
        kind = component.get("type")
        if kind in (ACTION_ROW, CONTAINER):
            yield from _walk(component.get("components") or [], wrapper_label)
        elif kind == SECTION:
            yield from _walk(component.get("components") or [], wrapper_label)
            if component.get("accessory"):
                yield from _walk([component["accessory"]], wrapper_label)
        elif kind == LABEL:
            if isinstance(component.get("component"), dict):
                yield from _walk([component["component"]], component.get("label"))
        else:
            yield component, wrapper_label


def components_of(message: dict) -> list[dict]:
    """The leaf components of a message or modal dict, flattened in display order.

    Buttons, selects, text inputs (and, in Components V2 layouts, text displays and the like);
    action rows (type 1), containers (17), sections (9) and labels (18, key ``component``) are
    recursed into, not returned.
    """
    return [leaf for leaf, _ in _walk(message.get("components") or [])]


def _describe(leaf: dict, wrapper_label: str | None) -> str:
    parts = [f"type={leaf.get('type')}"]
    for key in ("custom_id", "label", "placeholder", "url"):
        if leaf.get(key) is not None:
            parts.append(f"{key}={leaf[key]!r}")
    if wrapper_label is not None:
        parts.append(f"in Label {wrapper_label!r}")
    return "{" + ", ".join(parts) + "}"


def find_component(
    message: dict,
    *,
    type: int | None = None,
    label: str | None = None,
    custom_id: str | None = None,
    placeholder: str | None = None,
) -> dict:
    """The one leaf component of ``message`` (or modal) matching every given criterion.

    ``label`` matches a button's ``label``, a select's ``placeholder`` and a text input's label
    (its own or that of the Label component wrapping it). Raises ``AssertionError`` listing the
    components that exist when none or several match.
    """
    matches = []
    leaves = list(_walk(message.get("components") or []))
    for leaf, wrapper_label in leaves:
        if type is not None and leaf.get("type") != type:
            continue
        if custom_id is not None and leaf.get("custom_id") != custom_id:
            continue
        if placeholder is not None and leaf.get("placeholder") != placeholder:
            continue
        if label is not None:
            names = {leaf.get("label"), wrapper_label}
            if leaf.get("type") in SELECT_TYPES:
                names.add(leaf.get("placeholder"))
            if label not in names:
                continue
        matches.append(leaf)
    if len(matches) != 1:
        wanted = {"type": type, "label": label, "custom_id": custom_id, "placeholder": placeholder}
        wanted = {k: v for k, v in wanted.items() if v is not None}
        existing = "\n  ".join(_describe(leaf, wl) for leaf, wl in leaves) or "(none)"
        found = "no component" if not matches else f"{len(matches)} components"
        raise AssertionError(f"{found} match {wanted}; the components are:\n  {existing}")
    return matches[0]


class FakeDiscord:
    """A fake Discord on an ephemeral 127.0.0.1 port; see the module docstring for the rules.

    Use as ``with FakeDiscord() as fake: ...`` or ``fake = FakeDiscord().start()`` ...
    ``fake.stop()``. ``deadline`` (seconds) is the interaction callback deadline; it is a plain
    attribute, so a test may lower it for a while.
    """

    APP_ID = "1085170463539331073"
    BOT_USER_ID = "1085170463539331074"
    OWNER_ID = "584350433280131075"  # owns the application and the guild
    GUILD_ID = "668786805964931076"
    CHANNEL_ID = "668786805964931077"  # text channel #discoveries
    ARCHIVE_CHANNEL_ID = "871724010700931078"  # text channel #discovery-archive
    MEMBER_USER_ID = "906150857932931079"  # a member holding MEMBER_ROLE_ID
    MEMBER_ROLE_ID = "673135460352131080"
    GUILD_NAME = "Keeper Test Guild"
    ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024

    def __init__(self, *, deadline: float = 3.0) -> None:
        self.deadline = deadline
        #: Whether a dropped client may RESUME its session (else op 9: identify afresh).
        self.resumable = False
        self.token = "MTA4NTE3MDQ2MzUzOTMzMTA3NA.fake." + secrets.token_urlsafe(24)
        self.api_base = ""
        self.gateway_url = ""
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._calls: list[RestCall] = []
        self._messages: dict[str, dict] = {}
        self._deleted: dict[str, dict] = {}
        self._channel_log: dict[str, list[str]] = {self.CHANNEL_ID: [], self.ARCHIVE_CHANNEL_ID: []}
        self._interactions: dict[str, _InteractionState] = {}
        self._tokens: dict[str, str] = {}
        self._modals: dict[str, _OpenedModal] = {}
        self._commands: dict[str, list[dict]] = {"guild": [], "global": []}
        self._command_ids: dict[tuple[str, str, int], str] = {}
        self._events: list[tuple[str, dict]] = []
        self._gateway_ops: list[int] = []
        self._session_ids: set[str] = set()
        self._refusals: list[tuple[str, re.Pattern[str], int]] = []
        self._sessions: list[_GatewaySession] = []
        self._last_snowflake = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task] = set()
        self._routes = self._route_table()

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

    def _call_soon(self, coro: Any, *, timeout: float = 5) -> Any:
        if self._loop is None:
            coro.close()
            raise RuntimeError("FakeDiscord is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # ---------------------------------------------------------------------- recorded state

    @property
    def calls(self) -> list[RestCall]:
        """Every REST call so far, in arrival order (a snapshot)."""
        with self._lock:
            return list(self._calls)

    @property
    def messages(self) -> dict[str, dict]:
        """Every message alive (created and not deleted) by id, in creation order (a snapshot of
        the mapping; the message dicts themselves are updated in place on edits)."""
        with self._lock:
            return dict(self._messages)

    @property
    def deleted_messages(self) -> dict[str, dict]:
        """Messages deleted through the API, by id, as they were when deleted."""
        with self._lock:
            return dict(self._deleted)

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

    def commands(self, guild: bool = True) -> list[dict]:
        """The last command list the bot PUT for the guild (or, ``guild=False``, globally), as
        the fake answered it (with ``id``, ``application_id``, ``version``); ``[]`` before any."""
        with self._lock:
            return copy.deepcopy(self._commands["guild" if guild else "global"])

    def channel_messages(self, channel_id: str) -> list[dict]:
        """The live messages of a channel in creation order: the bot's posts, interaction replies
        and followups (ephemeral ones included: filter with :func:`is_ephemeral`) and the user
        messages sent with :meth:`mention_message`."""
        with self._lock:
            ids = self._channel_log.get(str(channel_id), [])
            return [self._messages[mid] for mid in ids if mid in self._messages]

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

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        with self._changed:
            if not self._changed.wait_for(condition, timeout):
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; calls seen:\n"
                    + self._format_calls()
                )

    def wait_for(
        self, predicate: Callable[[RestCall], bool], *, timeout: float = 5, after: int = 0
    ) -> RestCall:
        """The first recorded call with index ``>= after`` matching ``predicate``, waiting up to
        ``timeout`` seconds for it. Raises ``AssertionError`` listing the calls seen."""
        found: list[RestCall] = []

        def matched() -> bool:
            found.extend(c for c in self._calls[after:] if predicate(c))
            return bool(found)

        with self._changed:
            if not self._changed.wait_for(matched, timeout):
                raise AssertionError(
                    f"no matching call within {timeout}s (after index {after}); calls seen:\n"
                    + self._format_calls()
                )
            return found[0]

    def _format_calls(self) -> str:
        lines = [
            f"  [{i}] {c.method} {c.path} -> {c.status}"
            + (f" (interaction {c.interaction_id})" if c.interaction_id else "")
            for i, c in enumerate(self._calls)
        ]
        return "\n".join(lines) or "  (none)"

    def responses(self, interaction: Interaction) -> list[RestCall]:
        """The callbacks and webhook calls made for ``interaction``, in order."""
        with self._lock:
            return [c for c in self._calls if c.interaction_id == interaction.id]

    def wait_response(
        self,
        interaction: Interaction,
        *,
        timeout: float = 5,
        kind: str = "callback",
        after: int = 0,
    ) -> RestCall:
        """The first call for ``interaction`` of ``kind``: ``"callback"`` (the acknowledgement),
        ``"followup"`` (POST of a followup), ``"edit"`` (PATCH of @original or a followup),
        ``"delete"`` or ``"any"``; whatever its status. Waits up to ``timeout`` seconds."""
        kinds: dict[str, Callable[[RestCall], bool]] = {
            "callback": lambda c: c.path.endswith("/callback"),
            "followup": lambda c: c.method == "POST" and c.path.startswith("/webhooks/"),
            "edit": lambda c: c.method == "PATCH" and c.path.startswith("/webhooks/"),
            "delete": lambda c: c.method == "DELETE" and c.path.startswith("/webhooks/"),
            "any": lambda c: True,
        }
        if kind not in kinds:
            raise ValueError(f"kind must be one of {sorted(kinds)}")
        test = kinds[kind]
        return self.wait_for(
            lambda c: c.interaction_id == interaction.id and test(c), timeout=timeout, after=after
        )

    def message_of(self, interaction: Interaction) -> dict:
        """The message the interaction's responses most recently created or edited: a type 4
        reply, the component's message for type 7 (or an @original edit after type 6), the
        followup (after type 5 the first followup is the former loading message). Raises
        ``AssertionError`` when the responses touched no live message."""
        with self._lock:
            state = self._state_of(interaction)
            for mid in reversed(state.touched):
                if mid in self._messages:
                    return self._messages[mid]
            raise AssertionError(
                f"interaction {interaction.id} has no message; its calls:\n"
                + "\n".join(
                    f"  {c.method} {c.path} -> {c.status}" for c in self.responses(interaction)
                )
            )

    def messages_of(self, interaction: Interaction) -> list[dict]:
        """Every live message the interaction's responses created or edited, first touch first."""
        with self._lock:
            state = self._state_of(interaction)
            seen = dict.fromkeys(state.touched)
            return [self._messages[mid] for mid in seen if mid in self._messages]

    def modal_of(self, interaction: Interaction) -> dict:
        """The modal (``{custom_id, title, components}``) the bot answered ``interaction`` with
        (callback type 9); raises ``AssertionError`` if it answered otherwise or not yet."""
        with self._lock:
            state = self._state_of(interaction)
            if state.modal is None:
                raise AssertionError(
                    f"interaction {interaction.id} was answered with type {state.acked_type}, "
                    "not a modal"
                )
            return copy.deepcopy(state.modal)

    def _state_of(self, interaction: Interaction) -> _InteractionState:
        state = self._interactions.get(interaction.id)
        if state is None:
            raise AssertionError(f"interaction {interaction.id} was not dispatched by this fake")
        return state

    # ---------------------------------------------------------------------- users and guild

    def _user(self, user_id: str) -> dict:
        names = {
            self.BOT_USER_ID: ("Keeper Sync", None, "4821"),
            self.OWNER_ID: ("haven_owner", "Haven Owner", "0"),
            self.MEMBER_USER_ID: ("traveller", "Traveller", "0"),
        }
        username, global_name, discriminator = names.get(
            user_id, (f"user{user_id[-4:]}", None, "0")
        )
        user = {
            "id": user_id,
            "username": username,
            "discriminator": discriminator,
            "global_name": global_name,
            "avatar": None,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
        }
        if user_id == self.BOT_USER_ID:
            user["bot"] = True
        return user

    def _roles_of(self, user_id: str) -> list[str]:
        return [self.MEMBER_ROLE_ID] if user_id == self.MEMBER_USER_ID else []

    def _member(
        self, user_id: str, *, permissions: int | None = None, with_user: bool = True
    ) -> dict:
        member = {
            "roles": self._roles_of(user_id),
            "joined_at": snowflake_time(user_id).isoformat(),
            "premium_since": None,
            "nick": None,
            "avatar": None,
            "banner": None,
            "pending": False,
            "flags": 0,
            "deaf": False,
            "mute": False,
            "communication_disabled_until": None,
        }
        if with_user:
            member["user"] = self._user(user_id)
        if permissions is not None:
            member["permissions"] = str(permissions)
        return member

    def _channel(self, channel_id: str) -> dict | None:
        names = {
            self.CHANNEL_ID: ("discoveries", 0),
            self.ARCHIVE_CHANNEL_ID: ("discovery-archive", 1),
        }
        if channel_id not in names:
            return None
        name, position = names[channel_id]
        return {
            "id": channel_id,
            "type": 0,
            "guild_id": self.GUILD_ID,
            "name": name,
            "position": position,
            "permission_overwrites": [],
            "topic": None,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }

    def _guild(self) -> dict:
        everyone = {
            "id": self.GUILD_ID,
            "name": "@everyone",
            "permissions": str(0x400 | 0x800 | 0x10000 | 0x40 | 0x4000 | 0x8000 | 0x80000000),
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }
        keeper = {
            **everyone,
            "id": self.MEMBER_ROLE_ID,
            "name": "Keeper",
            "permissions": "0",
            "position": 1,
        }
        bot_member = self._member(self.BOT_USER_ID)
        return {
            "id": self.GUILD_ID,
            "name": self.GUILD_NAME,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": self.OWNER_ID,
            "application_id": None,
            "unavailable": False,
            "large": False,
            "member_count": 3,
            "joined_at": snowflake_time(self.GUILD_ID).isoformat(),
            "roles": [everyone, keeper],
            "channels": [self._channel(self.CHANNEL_ID), self._channel(self.ARCHIVE_CHANNEL_ID)],
            "threads": [],
            "members": [bot_member],
            "presences": [],
            "voice_states": [],
            "emojis": [],
            "stickers": [],
            "features": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "afk_channel_id": None,
            "afk_timeout": 300,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "vanity_url_code": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "incidents_data": None,
        }

    def _application(self) -> dict:
        return {
            "id": self.APP_ID,
            "name": "Keeper Sync",
            "icon": None,
            "description": "Syncs the Keeper's discoveries into the Control Room.",
            "summary": "",
            "type": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "verify_key": "6a1fd7d6c2b5b3d6e0b4f0a1c9e8d7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0",
            "owner": self._user(self.OWNER_ID),
            "team": None,
            "flags": 0,
            "rpc_origins": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "approximate_guild_count": 1,
            "bot": self._user(self.BOT_USER_ID),
            "tags": [],
        }

    def _snowflake(self) -> str:
        """A fresh id from the current time; strictly increasing, as Discord's are."""
        with self._lock:
            now = ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (1 << 17)
            self._last_snowflake = max(now, self._last_snowflake + 1)
            return str(self._last_snowflake)

    # ---------------------------------------------------------------------- gateway

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, timeout=2.0)
        await ws.prepare(request)
        session = _GatewaySession(ws)
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

    async def _resume(self, session: _GatewaySession, data: dict) -> None:
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

    async def _identify(self, session: _GatewaySession, data: dict) -> None:
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

    async def _send(self, session: _GatewaySession, frame: dict) -> None:
        async with session.send_lock:
            if not session.ws.closed:
                await session.ws.send_str(json.dumps(frame))

    async def _dispatch_to(self, session: _GatewaySession, event: str, data: dict) -> None:
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

    # ---------------------------------------------------------------------- dispatching

    def _interaction_payload(
        self,
        kind: int,
        data: dict,
        *,
        user_id: str,
        permissions: int,
        channel_id: str,
        message: dict | None = None,
    ) -> dict:
        channel = self._channel(channel_id) or {
            "id": channel_id,
            "type": 0,
            "name": "unknown",
            "position": 0,
        }
        payload = {
            "id": self._snowflake(),
            "application_id": self.APP_ID,
            "type": kind,
            "data": data,
            "guild_id": self.GUILD_ID,
            "guild": {"id": self.GUILD_ID, "locale": "en-US", "features": []},
            "channel_id": channel_id,
            "channel": {**channel, "guild_id": self.GUILD_ID, "permissions": str(permissions)},
            "member": self._member(user_id, permissions=permissions),
            "token": "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48),
            "version": 1,
            "app_permissions": str(BOT_PERMISSIONS),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": self.GUILD_ID},
            "context": 0,
            "attachment_size_limit": self.ATTACHMENT_SIZE_LIMIT,
        }
        if message is not None:
            payload["message"] = copy.deepcopy(message)
        return payload

    def _dispatch_interaction(self, payload: dict, user_id: str) -> Interaction:
        interaction = Interaction(
            id=payload["id"],
            token=payload["token"],
            type=payload["type"],
            data=payload["data"],
            user_id=user_id,
            sent_at=0.0,
            payload=payload,
        )
        state = _InteractionState(interaction)

        def register() -> None:
            # On the server's loop, just before the frame goes out: a callback, handled on the
            # same loop, always finds the interaction and the time the deadline counts from.
            with self._lock:
                interaction.sent_at = time.monotonic()
                self._interactions[interaction.id] = state
                self._tokens[interaction.token] = interaction.id

        self._call_soon(self._broadcast("INTERACTION_CREATE", payload, before_send=register))
        return interaction

    def resend(self, interaction: Interaction) -> None:
        """Dispatch the very same INTERACTION_CREATE again (same id and token); the deadline
        still counts from the first sending."""
        self._call_soon(self._broadcast("INTERACTION_CREATE", copy.deepcopy(interaction.payload)))

    def slash(
        self,
        name: str,
        options: list[dict] | None = None,
        *,
        user_id: str | None = None,
        permissions: int = 0,
        channel_id: str | None = None,
        resolved: dict | None = None,
    ) -> Interaction:
        """Run slash command ``name`` as ``user_id`` (default :attr:`MEMBER_USER_ID`) with member
        permission bits ``permissions`` in ``channel_id`` (default :attr:`CHANNEL_ID`).

        ``options`` are Discord's ``[{name, type, value}]`` (subcommands: ``{type: 1, name,
        options}``). User (6), channel (7) and role (8) options of the fake's known ids get their
        ``resolved`` data; pass ``resolved`` to give it yourself. The command's id and, for a guild
        command, ``guild_id`` come from the last synced list (the guild's first). ``permissions``
        is sent as given, for the guild owner too (Discord would send the owner every bit). The
        command's ``default_member_permissions`` are not enforced: server admins can override
        them per role or member, so the bot must check permissions itself.
        """
        user_id = user_id or self.MEMBER_USER_ID
        data: dict[str, Any] = {"name": name, "type": 1}
        with self._lock:
            guild_cmd = next((c for c in self._commands["guild"] if c["name"] == name), None)
            global_cmd = next((c for c in self._commands["global"] if c["name"] == name), None)
        command = guild_cmd or global_cmd
        data["id"] = command["id"] if command else self._snowflake()
        if guild_cmd is not None:
            data["guild_id"] = self.GUILD_ID
        if options:
            data["options"] = copy.deepcopy(options)
            auto = self._resolved_for_options(options)
            if auto:
                data["resolved"] = auto
        if resolved is not None:
            data["resolved"] = resolved
        payload = self._interaction_payload(
            APPLICATION_COMMAND,
            data,
            user_id=user_id,
            permissions=permissions,
            channel_id=channel_id or self.CHANNEL_ID,
        )
        return self._dispatch_interaction(payload, user_id)

    def _resolved_for_options(self, options: list[dict]) -> dict:
        users: list[str] = []
        channels: list[str] = []
        roles: list[str] = []
        for option in options:
            if option.get("type") in (1, 2):
                nested = self._resolved_for_options(option.get("options") or [])
                users += list(nested.get("users", {}))
                channels += list(nested.get("channels", {}))
                roles += list(nested.get("roles", {}))
            elif option.get("type") == 6:
                users.append(str(option["value"]))
            elif option.get("type") == 7:
                channels.append(str(option["value"]))
            elif option.get("type") == 8:
                roles.append(str(option["value"]))
        return self._resolved(users=users, channels=channels, roles=roles)

    def _resolved(
        self, *, users: Sequence[str] = (), channels: Sequence[str] = (), roles: Sequence[str] = ()
    ) -> dict:
        """Discord's ``resolved`` data for the known users, channels and roles among the ids."""
        resolved: dict[str, dict] = {}
        if users:
            resolved["users"] = {u: self._user(u) for u in users}
            resolved["members"] = {
                u: self._member(u, permissions=0, with_user=False) for u in users
            }
        known_channels = {c: self._channel(c) for c in channels if self._channel(c)}
        if known_channels:
            resolved["channels"] = {
                c: {**data, "permissions": str(BOT_PERMISSIONS)}
                for c, data in known_channels.items()
            }
        known_roles = {r["id"]: r for r in self._guild()["roles"] if r["id"] in roles}
        if known_roles:
            resolved["roles"] = known_roles
        return resolved

    def _live_message(self, message: dict) -> dict:
        with self._lock:
            current = self._messages.get(str(message.get("id")))
        if current is None:
            raise AssertionError(
                f"message {message.get('id')} is not a live message the fake recorded"
            )
        return current

    def _clickable(self, message: dict, custom_id: str, types: tuple[int, ...]) -> dict:
        leaves = list(_walk(message.get("components") or []))
        for leaf, _ in leaves:
            if leaf.get("custom_id") == custom_id and leaf.get("type") in types:
                if leaf.get("disabled"):
                    raise AssertionError(
                        f"component {custom_id!r} is disabled: a user cannot use it"
                    )
                return leaf
        existing = "\n  ".join(_describe(leaf, wl) for leaf, wl in leaves) or "(none)"
        raise AssertionError(
            f"message {message['id']} has no component of type {types} with custom_id "
            f"{custom_id!r}; it has:\n  {existing}"
        )

    def select(
        self,
        message: dict,
        custom_id: str,
        values: list[str],
        *,
        user_id: str | None = None,
        permissions: int = 0,
    ) -> Interaction:
        """Choose ``values`` in the select ``custom_id`` of ``message`` (a recorded message; its
        current version is sent). For a string select the values must be among its options and
        their count within ``min_values``/``max_values``, as the Discord client allows."""
        user_id = user_id or self.MEMBER_USER_ID
        current = self._live_message(message)
        select = self._clickable(current, custom_id, SELECT_TYPES)
        low, high = select.get("min_values", 1), select.get("max_values", 1)
        if not low <= len(values) <= high:
            raise AssertionError(
                f"select {custom_id!r} takes {low} to {high} values, not {len(values)}"
            )
        data: dict[str, Any] = {
            "custom_id": custom_id,
            "component_type": select["type"],
            "values": list(values),
        }
        if select["type"] == STRING_SELECT:
            allowed = [o["value"] for o in select.get("options") or []]
            unknown = [v for v in values if v not in allowed]
            if unknown:
                raise AssertionError(
                    f"{unknown} are not options of select {custom_id!r}; its options: {allowed}"
                )
        else:
            kind = select["type"]
            data["resolved"] = self._resolved(
                users=values if kind in (5, 7) else [],
                roles=values if kind in (6, 7) else [],
                channels=values if kind == 8 else [],
            )
        payload = self._interaction_payload(
            MESSAGE_COMPONENT,
            data,
            user_id=user_id,
            permissions=permissions,
            channel_id=current["channel_id"],
            message=current,
        )
        return self._dispatch_interaction(payload, user_id)

    def button(
        self, message: dict, custom_id: str, *, user_id: str | None = None, permissions: int = 0
    ) -> Interaction:
        """Click the button ``custom_id`` of ``message`` (a recorded message; its current version
        is sent). Link and premium buttons send no interaction, so they cannot be clicked here."""
        user_id = user_id or self.MEMBER_USER_ID
        current = self._live_message(message)
        button = self._clickable(current, custom_id, (BUTTON,))
        if button.get("style") in (LINK_STYLE, PREMIUM_STYLE):
            raise AssertionError(
                f"button {custom_id!r} is a link or premium button: it sends no interaction"
            )
        payload = self._interaction_payload(
            MESSAGE_COMPONENT,
            {"custom_id": custom_id, "component_type": BUTTON},
            user_id=user_id,
            permissions=permissions,
            channel_id=current["channel_id"],
            message=current,
        )
        return self._dispatch_interaction(payload, user_id)

    def submit_modal(
        self,
        custom_id: str,
        values: dict[str, str | list[str]],
        *,
        message: dict | None = None,
        user_id: str | None = None,
        permissions: int = 0,
        forged: bool = False,
    ) -> Interaction:
        """Submit the modal ``custom_id`` the bot opened, with ``values`` (input custom_id -> text;
        a list of values for a select inside a Label).

        The submit mirrors the modal's layout as Discord does: an input sent in an action row
        comes back as ``{type: 1, components: [{type: 4, custom_id, value}]}``, one inside a Label
        as ``{type: 18, component: {type: 4, custom_id, value}}``. A required input must be given
        and every value must fit the input's ``min_length``/``max_length``. ``message`` defaults to
        the current version of the message whose component opened the modal, if one did. A modal
        can be submitted again only while its earlier submits went unacknowledged (Discord keeps
        it open after "This interaction failed"). ``forged=True`` skips the length checks, as a
        modified client could: the bot must refuse such values itself.
        """
        user_id = user_id or self.MEMBER_USER_ID
        with self._lock:
            opened = self._modals.get(custom_id)
            if opened is None:
                raise AssertionError(
                    f"the bot opened no modal {custom_id!r}; it opened: {sorted(self._modals)}"
                )
            for earlier in opened.submissions:
                if self._interactions[earlier].acked_type is not None:
                    raise AssertionError(
                        f"modal {custom_id!r} was already submitted and acknowledged; open it again"
                    )
            opener = self._interactions[opened.opener_id].interaction
        inputs = {
            leaf.get("custom_id"): leaf for leaf, _ in _walk(opened.data.get("components") or [])
        }
        unknown = sorted(set(values) - {k for k in inputs if k})
        if unknown:
            raise AssertionError(
                f"modal {custom_id!r} has no inputs {unknown}; "
                f"its inputs: {sorted(k for k in inputs if k)}"
            )
        components = [
            c
            for c in (
                self._submitted(c, values, forged=forged)
                for c in opened.data.get("components") or []
            )
            if c
        ]
        if message is None and "message" in opener.payload:
            message = opener.payload["message"]
        current = self._live_message(message) if message is not None else None
        payload = self._interaction_payload(
            MODAL_SUBMIT,
            {"custom_id": custom_id, "components": components},
            user_id=user_id,
            permissions=permissions,
            channel_id=current["channel_id"] if current else opened.channel_id,
            message=current,
        )
        interaction = self._dispatch_interaction(payload, user_id)
        with self._lock:
            opened.submissions.append(interaction.id)
        return interaction

    def _submitted(
        self, component: dict, values: dict[str, str | list[str]], *, forged: bool = False
    ) -> dict | None:
        kind = component.get("type")
        if kind == ACTION_ROW:
            inner = [
                c
                for c in (
                    self._submitted(c, values, forged=forged)
                    for c in component.get("components") or []
                )
                if c
            ]
            return {"type": ACTION_ROW, "components": inner} if inner else None
        if kind == LABEL:
            inner = self._submitted(component["component"], values, forged=forged)
            if inner is None:
                return None
            out = {"type": LABEL, "component": inner}
            if component.get("id") is not None:
                out["id"] = component["id"]
            return out
        custom_id = component.get("custom_id")
        if custom_id is None:
            return None
        out: dict[str, Any] = {"type": kind, "custom_id": custom_id}
        if component.get("id") is not None:
            out["id"] = component["id"]
        given = values.get(custom_id)
        if kind == TEXT_INPUT:
            if given is None:
                if component.get("required", True):
                    raise AssertionError(
                        f"text input {custom_id!r} is required: a user must fill it"
                    )
                given = ""
            if not isinstance(given, str):
                raise AssertionError(f"text input {custom_id!r} takes a string, not {given!r}")
            low, high = component.get("min_length") or 0, component.get("max_length") or 4000
            if given and not forged and not low <= len(given) <= high:
                raise AssertionError(
                    f"text input {custom_id!r} takes {low} to {high} characters; "
                    f"the Discord client does not submit {len(given)}"
                )
            out["value"] = given
        elif kind in SELECT_TYPES:
            chosen = [] if given is None else ([given] if isinstance(given, str) else list(given))
            out["values"] = chosen
        else:
            return None
        return out

    def mention_message(
        self,
        content: str,
        *,
        author_id: str,
        channel_id: str | None = None,
        roles: list[str] | None = None,
    ) -> dict:
        """Post a user's guild text message whose mentions include the bot user (so its content
        reaches the bot even without the message content intent), e.g.
        ``f"<@{fake.BOT_USER_ID}> sync global"``; dispatches MESSAGE_CREATE and returns the
        message. ``roles`` overrides the author's roles (default: MEMBER_ROLE_ID for
        MEMBER_USER_ID, none otherwise; OWNER_ID owns the guild)."""
        channel_id = channel_id or self.CHANNEL_ID
        mentioned = [self.BOT_USER_ID]
        for user_id in re.findall(r"<@!?(\d+)>", content):
            if user_id not in mentioned:
                mentioned.append(user_id)
        member = self._member(author_id, with_user=False)
        if roles is not None:
            member["roles"] = list(roles)
        message = self._base_message(channel_id=channel_id, author=self._user(author_id))
        message.update(
            content=content,
            member=member,
            mentions=[
                {**self._user(u), "member": self._member(u, with_user=False)} for u in mentioned
            ],
        )
        with self._lock:
            self._store(message)
        self._call_soon(self._broadcast("MESSAGE_CREATE", copy.deepcopy(message)))
        return message

    # ---------------------------------------------------------------------- REST plumbing

    def _route_table(self) -> list[tuple[str, re.Pattern[str], Callable[..., _Reply], bool]]:
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
        reply: _Reply | None = None
        try:
            body, files = await self._read_body(request)
        except ValueError as exc:  # JSONDecodeError included
            reply = _Reply(400, {"message": f"400: Bad Request ({exc})", "code": 50109})
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

    def _refusal(self, method: str, path: str) -> _Reply | None:
        for index, (wanted, pattern, status) in enumerate(self._refusals):
            if wanted == method and pattern.search(path):
                del self._refusals[index]
                return _Reply(status, {"message": f"{status}: refused by the test", "code": 0})
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
    ) -> _Reply:
        for route_method, pattern, handler, auth in self._routes:
            match = pattern.fullmatch(path)
            if match is None or route_method != method:
                continue
            if auth and headers.get("Authorization") != f"Bot {self.token}":
                return _Reply(401, UNAUTHORIZED)
            try:
                return handler(body=body, files=files, query=query, at=at, **match.groupdict())
            except _Refused as refused:
                return refused.reply
            except Exception as exc:  # noqa: BLE001 - a 5xx would stall the client in retries
                logger.exception("fake Discord failed on %s %s", method, path)
                return _Reply(400, {"message": f"fake Discord failed: {exc!r}", "code": 0})
        return _Reply(404, NOT_FOUND)

    # ---------------------------------------------------------------------- REST: login

    def _get_me(self, **_: Any) -> _Reply:
        me = {
            **self._user(self.BOT_USER_ID),
            "verified": True,
            "mfa_enabled": False,
            "email": None,
            "locale": "en-US",
        }
        return _Reply(200, me)

    def _get_user(self, *, user_id: str, **_: Any) -> _Reply:
        return _Reply(200, self._user(user_id))

    def _get_application(self, **_: Any) -> _Reply:
        return _Reply(200, self._application())

    def _scope(self, app_id: str, guild_id: str | None) -> str:
        if app_id != self.APP_ID:
            raise _Refused(_Reply(404, UNKNOWN_APPLICATION))
        if guild_id is not None and guild_id != self.GUILD_ID:
            raise _Refused(_Reply(403, MISSING_ACCESS))
        return "guild" if guild_id else "global"

    def _put_commands(
        self, *, app_id: str, body: object, guild_id: str | None = None, **_: Any
    ) -> _Reply:
        scope = self._scope(app_id, guild_id)
        errors = _FormErrors()
        if not isinstance(body, list):
            errors.add("_", "Expected a list of commands", "BASE_TYPE_ARRAY")
            errors.raise_if_any()
        if len(body) > 100:
            errors.add("_", "Must be 100 or fewer in length.", "BASE_TYPE_MAX_LENGTH")
        seen: set[tuple[str, int]] = set()
        for i, command in enumerate(body):
            kind = command.get("type", 1)
            name = command.get("name") or ""
            if kind == 1:
                if not re.fullmatch(r"[-_\w]{1,32}", name) or name != name.lower():
                    errors.add(
                        f"{i}.name", "Command name is invalid", "APPLICATION_COMMAND_INVALID_NAME"
                    )
                errors.length(f"{i}.description", command.get("description"), 1, 100)
            if (name, kind) in seen:
                errors.add(
                    f"{i}.name",
                    "Command names must be unique",
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                )
            seen.add((name, kind))
        errors.raise_if_any()
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
        return _Reply(200, copy.deepcopy(stored))

    def _get_commands(self, *, app_id: str, guild_id: str | None = None, **_: Any) -> _Reply:
        return _Reply(200, copy.deepcopy(self._commands[self._scope(app_id, guild_id)]))

    # ---------------------------------------------------------------------- REST: guild

    def _get_guild(self, *, guild_id: str, **_: Any) -> _Reply:
        if guild_id != self.GUILD_ID:
            return _Reply(403, MISSING_ACCESS)
        guild = self._guild()
        # GET /guilds/{id} leaves out what only GUILD_CREATE carries.
        for key in ("channels", "members", "threads", "presences", "voice_states", "joined_at"):
            guild.pop(key, None)
        return _Reply(200, guild)

    def _get_guild_channels(self, *, guild_id: str, **_: Any) -> _Reply:
        if guild_id != self.GUILD_ID:
            return _Reply(403, MISSING_ACCESS)
        return _Reply(200, self._guild()["channels"])

    def _get_member(self, *, guild_id: str, user_id: str, **_: Any) -> _Reply:
        known = (self.BOT_USER_ID, self.OWNER_ID, self.MEMBER_USER_ID)
        if guild_id != self.GUILD_ID or user_id not in known:
            return _Reply(404, {"message": "Unknown Member", "code": 10007})
        return _Reply(200, self._member(user_id))

    def _get_channel(self, *, channel_id: str, **_: Any) -> _Reply:
        channel = self._channel(channel_id)
        return _Reply(200, channel) if channel else _Reply(404, UNKNOWN_CHANNEL)

    # ---------------------------------------------------------------------- messages

    def _base_message(self, *, channel_id: str, author: dict) -> dict:
        return {
            "id": self._snowflake(),
            "type": 0,
            "channel_id": channel_id,
            "guild_id": self.GUILD_ID,
            "author": author,
            "content": "",
            "embeds": [],
            "attachments": [],
            "components": [],
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": False,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "flags": 0,
        }

    def _bot_message(
        self,
        *,
        channel_id: str,
        data: dict,
        files: list[dict],
        flags: int,
        state: _InteractionState | None = None,
    ) -> dict:
        """A new message of the bot user; ``flags`` as decided by the caller (the body's own
        ``flags`` are not applied here, since not all of them may be set everywhere)."""
        message = self._base_message(channel_id=channel_id, author=self._user(self.BOT_USER_ID))
        message["flags"] = flags
        self._apply(message, data, files, editing=False)
        if data.get("message_reference"):
            message["type"] = 19
            reference = {"guild_id": self.GUILD_ID, **data["message_reference"]}
            # Discord answers snowflakes as strings, whatever type the client sent.
            message["message_reference"] = {
                key: str(value) if key.endswith("_id") and value is not None else value
                for key, value in reference.items()
            }
        if state is not None:
            interaction = state.interaction
            user = self._user(interaction.user_id)
            message["webhook_id"] = self.APP_ID
            message["application_id"] = self.APP_ID
            message["interaction_metadata"] = {
                "id": interaction.id,
                "type": interaction.type,
                "user": user,
                "authorizing_integration_owners": {"0": self.GUILD_ID},
            }
            if interaction.type == APPLICATION_COMMAND:
                message["type"] = 20
                name = interaction.data.get("name", "")
                message["interaction"] = {
                    "id": interaction.id,
                    "type": 2,
                    "name": name,
                    "user": user,
                }
            elif "message" in interaction.payload:
                interacted = interaction.payload["message"]["id"]
                message["interaction_metadata"]["interacted_message_id"] = interacted
        return message

    def _apply(self, message: dict, data: dict, files: list[dict], *, editing: bool) -> None:
        """Write a create or edit body's fields into ``message`` in place, as Discord keeps them."""
        if "content" in data:
            message["content"] = "" if data["content"] is None else str(data["content"])
        if "embeds" in data:
            message["embeds"] = copy.deepcopy(data["embeds"] or [])
        if "components" in data:
            message["components"] = copy.deepcopy(data["components"] or [])
        if "allowed_mentions" in data:
            message["allowed_mentions"] = copy.deepcopy(data["allowed_mentions"])
        if not editing:
            message["tts"] = bool(data.get("tts"))
            if data.get("poll") is not None:
                message["poll"] = copy.deepcopy(data["poll"])
        elif data.get("flags") is not None:
            # Only SUPPRESS_EMBEDS may change on an edit; ephemerality is fixed at creation.
            suppress = data["flags"] & SUPPRESS_EMBEDS
            message["flags"] = (message["flags"] & ~SUPPRESS_EMBEDS) | suppress
        kept = message["attachments"]
        if data.get("attachments") is not None:
            wanted = {str(a.get("id")) for a in data["attachments"]}
            kept = [a for a in message["attachments"] if a["id"] in wanted]
        descriptions = {
            str(a.get("id")): a.get("description") for a in data.get("attachments") or []
        }
        cdn = f"attachments/{message['channel_id']}"
        for index, upload in enumerate(files):
            attachment_id = self._snowflake()
            filename = upload["filename"] or f"file{index}"
            kept.append(
                {
                    "id": attachment_id,
                    "filename": filename,
                    "size": upload["size"],
                    "content_type": upload["content_type"],
                    "description": descriptions.get(str(index)),
                    "url": f"https://cdn.discordapp.com/{cdn}/{attachment_id}/{filename}",
                    "proxy_url": f"https://media.discordapp.net/{cdn}/{attachment_id}/{filename}",
                }
            )
        message["attachments"] = kept
        if editing:
            message["edited_timestamp"] = _now_iso()

    def _store(self, message: dict) -> None:
        self._messages[message["id"]] = message
        self._channel_log.setdefault(message["channel_id"], []).append(message["id"])

    def _delete(self, message: dict) -> list[tuple[str, dict]]:
        self._messages.pop(message["id"], None)
        self._deleted[message["id"]] = message
        if is_ephemeral(message):
            return []
        event = {
            "id": message["id"],
            "channel_id": message["channel_id"],
            "guild_id": self.GUILD_ID,
        }
        return [("MESSAGE_DELETE", event)]

    def _gateway_copy(self, message: dict) -> dict:
        echoed = copy.deepcopy(message)
        echoed.pop("allowed_mentions", None)  # a request field, not part of a message object
        if echoed["author"]["id"] == self.BOT_USER_ID and "webhook_id" not in echoed:
            echoed["member"] = self._member(self.BOT_USER_ID, with_user=False)
        return echoed

    def _created(self, message: dict) -> list[tuple[str, dict]]:
        if is_ephemeral(message):
            return []
        return [("MESSAGE_CREATE", self._gateway_copy(message))]

    def _edited(self, message: dict) -> list[tuple[str, dict]]:
        if is_ephemeral(message):
            return []
        return [("MESSAGE_UPDATE", self._gateway_copy(message))]

    # ---------------------------------------------------------------------- validation

    def _check_message(
        self, data: dict, files: list[dict], *, creating: bool, interaction_id: str | None = None
    ) -> None:
        """Refuse a message body Discord would refuse: form limits (50035), empty (50006)."""
        errors = _FormErrors()
        if data.get("content") is not None and len(str(data["content"])) > 2000:
            errors.add("content", "Must be 2000 or fewer in length.", "BASE_TYPE_MAX_LENGTH")
        embeds = data.get("embeds") or []
        if len(embeds) > 10:
            errors.add("embeds", "Must be 10 or fewer in length.", "BASE_TYPE_MAX_LENGTH")
        total = 0
        for i, embed in enumerate(embeds):
            texts = [
                (f"embeds.{i}.title", embed.get("title"), 256),
                (f"embeds.{i}.description", embed.get("description"), 4096),
                (f"embeds.{i}.footer.text", (embed.get("footer") or {}).get("text"), 2048),
                (f"embeds.{i}.author.name", (embed.get("author") or {}).get("name"), 256),
            ]
            for path, text, limit in texts:
                if text is not None:
                    errors.length(path, text, 0, limit)
                    total += len(str(text))
            fields = embed.get("fields") or []
            if len(fields) > 25:
                errors.add(
                    f"embeds.{i}.fields", "Must be 25 or fewer in length.", "BASE_TYPE_MAX_LENGTH"
                )
            for j, embed_field in enumerate(fields):
                errors.length(f"embeds.{i}.fields.{j}.name", embed_field.get("name"), 1, 256)
                errors.length(f"embeds.{i}.fields.{j}.value", embed_field.get("value"), 1, 1024)
                total += len(str(embed_field.get("name") or ""))
                total += len(str(embed_field.get("value") or ""))
        if total > 6000:
            errors.add(
                "embeds", "Embed size exceeds maximum size of 6000", "MAX_EMBED_SIZE_EXCEEDED"
            )
        v2 = bool((data.get("flags") or 0) & IS_COMPONENTS_V2)
        self._check_components(data.get("components") or [], errors, v2=v2)
        errors.raise_if_any(interaction_id)
        has_body = (
            data.get("content")
            or embeds
            or data.get("components")
            or files
            or data.get("sticker_ids")
            or data.get("poll")
        )
        if creating and not has_body:
            raise _Refused(_Reply(400, EMPTY_MESSAGE, interaction_id))

    @staticmethod
    def _check_components(rows: list[dict], errors: _FormErrors, *, v2: bool) -> None:
        if not v2 and len(rows) > 5:
            errors.add("components", "Must be 5 or fewer in length.", "BASE_TYPE_MAX_LENGTH")
        for i, row in enumerate(rows):
            if not v2 and row.get("type") != ACTION_ROW:
                errors.add(
                    f"components.{i}.type", "Must be an action row", "COMPONENT_LAYOUT_INVALID"
                )
                continue
            if row.get("type") != ACTION_ROW:
                continue
            children = row.get("components") or []
            errors.length(f"components.{i}.components", children, 1, 5)
            if len(children) > 1 and any(c.get("type") in SELECT_TYPES for c in children):
                errors.add(
                    f"components.{i}.components",
                    "A select menu must be alone in its row",
                    "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                )
        custom_ids: set[str] = set()
        for n, (leaf, _) in enumerate(_walk(rows)):
            path = f"components.leaf{n}"
            custom_id = leaf.get("custom_id")
            if custom_id is not None:
                errors.length(f"{path}.custom_id", custom_id, 1, 100)
                if custom_id in custom_ids:
                    errors.add(
                        f"{path}.custom_id",
                        "Duplicated custom id",
                        "COMPONENT_CUSTOM_ID_DUPLICATED",
                    )
                custom_ids.add(custom_id)
            kind = leaf.get("type")
            if kind == BUTTON:
                if leaf.get("label") is not None:
                    errors.length(f"{path}.label", leaf["label"], 0, 80)
                if leaf.get("style") == LINK_STYLE:
                    if not leaf.get("url") or custom_id:
                        errors.add(f"{path}.url", "A link button has a url and no custom_id")
                elif leaf.get("style") != PREMIUM_STYLE and not custom_id:
                    errors.add(f"{path}.custom_id", "This field is required", "BASE_TYPE_REQUIRED")
            elif kind in SELECT_TYPES:
                if leaf.get("placeholder") is not None:
                    errors.length(f"{path}.placeholder", leaf["placeholder"], 0, 150)
                low, high = leaf.get("min_values", 1), leaf.get("max_values", 1)
                if not (0 <= low <= 25 and 1 <= high <= 25 and low <= high):
                    errors.add(f"{path}.max_values", "Needs 0 <= min_values <= max_values <= 25")
                if kind == STRING_SELECT:
                    options = leaf.get("options") or []
                    errors.length(f"{path}.options", options, 1, 25)
                    if options and high > len(options):
                        errors.add(f"{path}.max_values", f"Must be {len(options)} or fewer.")
                    for j, option in enumerate(options):
                        errors.length(f"{path}.options.{j}.label", option.get("label"), 1, 100)
                        errors.length(f"{path}.options.{j}.value", option.get("value"), 1, 100)
                        if option.get("description") is not None:
                            errors.length(
                                f"{path}.options.{j}.description", option["description"], 0, 100
                            )

    @staticmethod
    def _check_modal(data: dict, interaction_id: str) -> None:
        """Refuse a modal Discord would refuse (400, code 50035)."""
        errors = _FormErrors()
        errors.length("data.title", data.get("title"), 1, 45)
        errors.length("data.custom_id", data.get("custom_id"), 1, 100)
        components = data.get("components") or []
        errors.length("data.components", components, 1, 5)
        for i, component in enumerate(components):
            path = f"data.components.{i}"
            if component.get("type") == ACTION_ROW:
                children = component.get("components") or []
                if len(children) != 1 or children[0].get("type") != TEXT_INPUT:
                    errors.add(
                        path,
                        "A modal's action row holds one text input",
                        "COMPONENT_LAYOUT_INVALID",
                    )
                for child in children:
                    errors.length(f"{path}.components.0.label", child.get("label"), 1, 45)
            elif component.get("type") == LABEL:
                errors.length(f"{path}.label", component.get("label"), 1, 45)
                if component.get("description") is not None:
                    errors.length(f"{path}.description", component["description"], 0, 100)
                if not isinstance(component.get("component"), dict):
                    errors.add(f"{path}.component", "This field is required", "BASE_TYPE_REQUIRED")
        seen: set[str] = set()
        for n, (leaf, _) in enumerate(_walk(components)):
            path = f"data.components.leaf{n}"
            if leaf.get("custom_id") is not None:
                errors.length(f"{path}.custom_id", leaf["custom_id"], 1, 100)
                if leaf["custom_id"] in seen:
                    errors.add(
                        f"{path}.custom_id",
                        "Duplicated custom id",
                        "COMPONENT_CUSTOM_ID_DUPLICATED",
                    )
                seen.add(leaf["custom_id"])
            if leaf.get("type") != TEXT_INPUT:
                continue
            if leaf.get("style") not in (1, 2):
                errors.add(f"{path}.style", "Value must be one of {1, 2}.", "BASE_TYPE_CHOICES")
            low, high = leaf.get("min_length") or 0, leaf.get("max_length") or 4000
            if not (0 <= low <= 4000 and 1 <= high <= 4000 and low <= high):
                errors.add(f"{path}.max_length", "Needs 0 <= min_length <= max_length <= 4000")
            if leaf.get("placeholder") is not None:
                errors.length(f"{path}.placeholder", leaf["placeholder"], 0, 100)
            if leaf.get("value") is not None:
                errors.length(f"{path}.value", leaf["value"], 0, 4000)
        errors.raise_if_any(interaction_id)

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
    ) -> _Reply:
        state = self._interactions.get(interaction_id)
        if state is None or state.interaction.token != token:
            return _Reply(404, UNKNOWN_INTERACTION)
        interaction = state.interaction
        iid = interaction.id
        if state.acked_type is not None:
            return _Reply(400, ALREADY_ACKNOWLEDGED, iid)
        if at - interaction.sent_at > self.deadline:
            return _Reply(404, UNKNOWN_INTERACTION, iid)
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
            errors = _FormErrors()
            errors.add(
                "type",
                f"Callback type {kind} is not valid for interaction type {interaction.type}",
                "INTERACTION_RESPONSE_TYPE_INVALID",
            )
            errors.raise_if_any(iid)
        if kind in (REPLY, UPDATE):
            self._check_message(data, files, creating=kind == REPLY, interaction_id=iid)
        elif kind == MODAL:
            self._check_modal(data, iid)

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
            self._modals[data["custom_id"]] = _OpenedModal(
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
        return _Reply(200, {"interaction": summary, "resource": resource}, iid, events)

    def _webhook_state(self, app_id: str, token: str) -> _InteractionState:
        """The acknowledged interaction a webhook token belongs to, or refuse with 10015."""
        interaction_id = self._tokens.get(token)
        if app_id != self.APP_ID or interaction_id is None:
            raise _Refused(_Reply(404, UNKNOWN_WEBHOOK))
        state = self._interactions[interaction_id]
        if state.acked_type is None:
            raise _Refused(_Reply(404, UNKNOWN_WEBHOOK, interaction_id))
        return state

    def _followup(
        self, *, app_id: str, token: str, body: object, files: list[dict], query: dict, **_: Any
    ) -> _Reply:
        state = self._webhook_state(app_id, token)
        iid = state.interaction.id
        data = body if isinstance(body, dict) else {}
        self._check_message(data, files, creating=True, interaction_id=iid)
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
            return _Reply(200, copy.deepcopy(message), iid, events)
        return _Reply(204, None, iid, events)

    def _webhook_message(
        self, app_id: str, token: str, message_id: str
    ) -> tuple[_InteractionState, dict]:
        state = self._webhook_state(app_id, token)
        wanted = state.original_id if message_id == "@original" else message_id
        belongs = wanted is not None and (
            wanted == state.original_id or wanted in state.followup_ids
        )
        if not belongs or wanted not in self._messages:
            raise _Refused(_Reply(404, UNKNOWN_MESSAGE, state.interaction.id))
        return state, self._messages[wanted]

    def _webhook_get(self, *, app_id: str, token: str, message_id: str, **_: Any) -> _Reply:
        state, message = self._webhook_message(app_id, token, message_id)
        return _Reply(200, copy.deepcopy(message), state.interaction.id)

    def _webhook_edit(
        self, *, app_id: str, token: str, message_id: str, body: object, files: list[dict], **_: Any
    ) -> _Reply:
        state, message = self._webhook_message(app_id, token, message_id)
        iid = state.interaction.id
        data = body if isinstance(body, dict) else {}
        self._check_message(data, files, creating=False, interaction_id=iid)
        self._apply(message, data, files, editing=True)
        if message["id"] == state.original_id and state.loading:
            message["flags"] &= ~LOADING
            state.loading = False
        state.touched.append(message["id"])
        return _Reply(200, copy.deepcopy(message), iid, self._edited(message))

    def _webhook_delete(self, *, app_id: str, token: str, message_id: str, **_: Any) -> _Reply:
        state, message = self._webhook_message(app_id, token, message_id)
        return _Reply(204, None, state.interaction.id, self._delete(message))

    # ---------------------------------------------------------------------- REST: channels

    def _channel_message(self, channel_id: str, message_id: str) -> dict:
        if self._channel(channel_id) is None:
            raise _Refused(_Reply(404, UNKNOWN_CHANNEL))
        message = self._messages.get(message_id)
        if message is None or message["channel_id"] != channel_id or is_ephemeral(message):
            raise _Refused(_Reply(404, UNKNOWN_MESSAGE))
        return message

    def _post_message(
        self, *, channel_id: str, body: object, files: list[dict], **_: Any
    ) -> _Reply:
        if self._channel(channel_id) is None:
            return _Reply(404, UNKNOWN_CHANNEL)
        data = body if isinstance(body, dict) else {}
        self._check_message(data, files, creating=True)
        # Only interaction responses can be ephemeral: Discord drops the flag on channel posts.
        flags = (data.get("flags") or 0) & ~(EPHEMERAL | LOADING)
        message = self._bot_message(channel_id=channel_id, data=data, files=files, flags=flags)
        self._store(message)
        return _Reply(200, copy.deepcopy(message), events=self._created(message))

    def _get_history(self, *, channel_id: str, query: dict, **_: Any) -> _Reply:
        if self._channel(channel_id) is None:
            return _Reply(404, UNKNOWN_CHANNEL)
        limit = max(1, min(100, int(query.get("limit", 50))))
        public = [m for m in self.channel_messages(channel_id) if not is_ephemeral(m)]
        return _Reply(200, copy.deepcopy(public[::-1][:limit]))

    def _get_message(self, *, channel_id: str, message_id: str, **_: Any) -> _Reply:
        return _Reply(200, copy.deepcopy(self._channel_message(channel_id, message_id)))

    def _patch_message(
        self, *, channel_id: str, message_id: str, body: object, files: list[dict], **_: Any
    ) -> _Reply:
        message = self._channel_message(channel_id, message_id)
        if message["author"]["id"] != self.BOT_USER_ID:
            return _Reply(403, NOT_AUTHOR)
        data = body if isinstance(body, dict) else {}
        self._check_message(data, files, creating=False)
        self._apply(message, data, files, editing=True)
        return _Reply(200, copy.deepcopy(message), events=self._edited(message))

    def _delete_message(self, *, channel_id: str, message_id: str, **_: Any) -> _Reply:
        message = self._channel_message(channel_id, message_id)
        return _Reply(204, None, events=self._delete(message))
