"""The fake Discord's world: one application and its bot user, one guild with two text
channels, a few members and a role, and what happened in it: the messages alive and deleted,
the interactions dispatched and how they were answered, the modals the bot opened, the command
lists it synced and every REST call, with the waits tests use to read them.

The tests' thread and the server's loop share this state: it is read and changed under
``_lock``, and ``_changed`` wakes the waits when a call or a session arrives.
"""

from __future__ import annotations

import copy
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.fake_discord.protocol import (
    APPLICATION_COMMAND,
    DISCORD_EPOCH_MS,
    SUPPRESS_EMBEDS,
    Interaction,
    RestCall,
    is_ephemeral,
    now_iso,
    snowflake_time,
)


@dataclass
class InteractionState:
    """How the bot has answered one dispatched interaction so far."""

    interaction: Interaction
    acked_type: int | None = None
    original_id: str | None = None  # the message @original designates, once there is one
    loading: bool = False  # deferred with type 5 and not yet answered by a followup or edit
    modal: dict | None = None
    followup_ids: list[str] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)  # messages created or edited, in order


@dataclass
class OpenedModal:
    """A modal the bot opened (callback type 9), and the submits a member made of it."""

    data: dict
    opener_id: str  # the interaction the modal answered
    channel_id: str
    submissions: list[str] = field(default_factory=list)  # interaction ids of its submits


class World:
    """The guild, its members and messages, and what the fake recorded; the ids are fixed so
    tests may name them (``FakeDiscord.GUILD_ID``...)."""

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

    def __init__(self) -> None:
        self.token = "MTA4NTE3MDQ2MzUzOTMzMTA3NA.fake." + secrets.token_urlsafe(24)
        self.api_base = ""
        self.gateway_url = ""
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._calls: list[RestCall] = []
        self._messages: dict[str, dict] = {}
        self._deleted: dict[str, dict] = {}
        self._channel_log: dict[str, list[str]] = {self.CHANNEL_ID: [], self.ARCHIVE_CHANNEL_ID: []}
        self._interactions: dict[str, InteractionState] = {}
        self._tokens: dict[str, str] = {}
        self._modals: dict[str, OpenedModal] = {}
        self._commands: dict[str, list[dict]] = {"guild": [], "global": []}
        self._command_ids: dict[tuple[str, str, int], str] = {}
        self._last_snowflake = 0

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

    def _state_of(self, interaction: Interaction) -> InteractionState:
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
            "timestamp": now_iso(),
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
        state: InteractionState | None = None,
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
            message["edited_timestamp"] = now_iso()

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
