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

The package, by concern: :mod:`~tests.fake_discord.protocol` (Discord's constants and error
bodies, and the records of calls and interactions), :mod:`~tests.fake_discord.world` (the guild,
its members and messages, and what was recorded), :mod:`~tests.fake_discord.gateway` (the
websocket), :mod:`~tests.fake_discord.actions` (what a member does in the client),
:mod:`~tests.fake_discord.rest` (the REST API), :mod:`~tests.fake_discord.forms` (the form checks
applied to what the bot sends) and :mod:`~tests.fake_discord.server` (:class:`FakeDiscord`, all of
them served on one port).
"""

from tests.fake_discord.forms import components_of, find_component
from tests.fake_discord.protocol import (
    ALREADY_ACKNOWLEDGED,
    EMPTY_MESSAGE,
    NOT_FOUND,
    UNAUTHORIZED,
    UNKNOWN_CHANNEL,
    UNKNOWN_INTERACTION,
    UNKNOWN_WEBHOOK,
    Interaction,
    RestCall,
    is_ephemeral,
    snowflake_time,
)
from tests.fake_discord.server import FakeDiscord

__all__ = [
    "ALREADY_ACKNOWLEDGED",
    "EMPTY_MESSAGE",
    "NOT_FOUND",
    "UNAUTHORIZED",
    "UNKNOWN_CHANNEL",
    "UNKNOWN_INTERACTION",
    "UNKNOWN_WEBHOOK",
    "FakeDiscord",
    "Interaction",
    "RestCall",
    "components_of",
    "find_component",
    "is_ephemeral",
    "snowflake_time",
]
