"""What a member does in the Discord client, dispatched to the bot on the gateway: run a
slash command, choose in a select, click a button, submit a modal the bot opened, post a message
mentioning the bot. Each raises ``AssertionError`` for what the client would not let a member do
(a component that is not on the message or is disabled, a value that is not an option, a text
longer than its input allows...)."""

from __future__ import annotations

import copy
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

from tests.fake_discord.forms import describe, walk
from tests.fake_discord.gateway import Gateway
from tests.fake_discord.protocol import (
    ACTION_ROW,
    APPLICATION_COMMAND,
    BOT_PERMISSIONS,
    BUTTON,
    LABEL,
    LINK_STYLE,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    PREMIUM_STYLE,
    SELECT_TYPES,
    STRING_SELECT,
    TEXT_INPUT,
    Interaction,
)
from tests.fake_discord.world import InteractionState


class MemberActions(Gateway):
    """The member's side: each action builds the INTERACTION_CREATE (or MESSAGE_CREATE) Discord
    would send and dispatches it to every ready session."""

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
        state = InteractionState(interaction)

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
        leaves = list(walk(message.get("components") or []))
        for leaf, _ in leaves:
            if leaf.get("custom_id") == custom_id and leaf.get("type") in types:
                if leaf.get("disabled"):
                    raise AssertionError(
                        f"component {custom_id!r} is disabled: a user cannot use it"
                    )
                return leaf
        existing = "\n  ".join(describe(leaf, wl) for leaf, wl in leaves) or "(none)"
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
            leaf.get("custom_id"): leaf for leaf, _ in walk(opened.data.get("components") or [])
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
