"""What the fake Discord shares with Discord's own protocol: the API prefix, message flags,
interaction, callback and component types, the error bodies Discord answers, and the records of
a REST call (:class:`RestCall`) and of a dispatched interaction (:class:`Interaction`)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

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


def now_iso() -> str:
    """Now, as Discord writes a message's timestamps (ISO 8601, UTC)."""
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
class Reply:
    """What a REST handler answers: status, JSON body, the interaction it belongs to, and the
    gateway events to send once the answer is out."""

    status: int
    body: object | None
    interaction_id: str | None = None
    events: list[tuple[str, dict]] = field(default_factory=list)  # gateway echoes to send after


class Refused(Exception):
    """Raised by a REST handler to answer with ``reply`` at once."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply
