"""The fake Discord of :mod:`tests.fake_discord` against the real discord.py client.

A minimal ``commands.Bot`` runs in a background thread with its own event loop, pointed at the
fake: it logs in, syncs its guild commands, and answers ``/pick`` (a select whose callback opens
a modal, whose submit defers and sends an ephemeral followup), ``/post`` (a message to another
channel), ``/slow`` (answers after a delay) and the mention command ``ping``. No database.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import threading
import time
import urllib.parse
from collections.abc import Callable

import discord
import pytest
import yarl
from discord import app_commands
from discord.ext import commands

from tests.fake_discord import (
    ALREADY_ACKNOWLEDGED,
    EMPTY_MESSAGE,
    NOT_FOUND,
    UNAUTHORIZED,
    UNKNOWN_CHANNEL,
    UNKNOWN_INTERACTION,
    UNKNOWN_WEBHOOK,
    FakeDiscord,
    components_of,
    find_component,
    is_ephemeral,
)

GUILD = discord.Object(int(FakeDiscord.GUILD_ID))


class NoteModal(discord.ui.Modal, title="Describe it"):
    """One text input in an action row (the classic way) and one inside a Label (the 2.6+ way)."""

    def __init__(self, planet: str) -> None:
        super().__init__()
        self.planet = planet
        self.note = discord.ui.TextInput(label="Note", custom_id="note", max_length=200)
        self.add_item(self.note)
        self.where = discord.ui.TextInput(custom_id="where", required=False)
        self.add_item(discord.ui.Label(text="Where", component=self.where))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        where = self.where.value or "nowhere"
        await interaction.followup.send(
            f"Noted {self.planet}: {self.note.value} ({where})", ephemeral=True
        )


class PickView(discord.ui.View):
    @discord.ui.select(
        custom_id="pick:planet",
        placeholder="Choose a planet",
        options=[
            discord.SelectOption(label="Alpha Prime", value="alpha"),
            discord.SelectOption(label="Beta Minor", value="beta"),
        ],
    )
    async def choose(self, interaction: discord.Interaction, select: discord.ui.Select) -> None:
        await interaction.response.send_modal(NoteModal(select.values[0]))

    @discord.ui.button(label="Cancel", custom_id="pick:cancel")
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content="Cancelled.", view=None)


class MiniBot(commands.Bot):
    """What the bot under test does, in miniature; records what it saw for the assertions."""

    def __init__(self) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            chunk_guilds_at_startup=False,
            guild_ready_timeout=0.05,
            help_command=None,
        )
        self.seen: list[tuple[int, str, int]] = []  # MESSAGE_CREATE: channel, content, author
        self.errors: list[Exception] = []

    async def setup_hook(self) -> None:
        tree = self.tree
        tree.on_error = self.record_error

        @tree.command(guild=GUILD, description="Pick a planet")
        async def pick(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("Pick a planet", view=PickView())

        @tree.command(guild=GUILD, description="Post to the archive")
        async def post(interaction: discord.Interaction, text: str) -> None:
            archive = self.get_channel(int(FakeDiscord.ARCHIVE_CHANNEL_ID))
            await archive.send(f"Archived: {text}", allowed_mentions=discord.AllowedMentions.none())
            await interaction.response.send_message("Posted.", ephemeral=True)

        @tree.command(guild=GUILD, description="Answer after a delay")
        async def slow(interaction: discord.Interaction, delay: float) -> None:
            await asyncio.sleep(delay)
            await interaction.response.send_message("Done.")

        @tree.command(guild=GUILD, description="Describe a member")
        async def who(interaction: discord.Interaction, member: discord.Member) -> None:
            roles = ",".join(role.name for role in member.roles if not role.is_default())
            manager = interaction.permissions.manage_guild
            await interaction.response.send_message(
                f"{member.display_name} [{roles}] manager={manager}", ephemeral=True
            )

        @tree.command(guild=GUILD, description="Send a report file")
        async def report(interaction: discord.Interaction) -> None:
            report = discord.File(io.BytesIO(b"hello"), filename="report.txt")
            await interaction.response.send_message("Report attached.", file=report)

        @commands.command()
        async def ping(ctx: commands.Context) -> None:
            await ctx.reply("pong", mention_author=False)

        self.add_command(ping)
        await tree.sync(guild=GUILD)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No pause before a re-IDENTIFY (discord.py waits 5 s by default)."""

    async def record_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        self.errors.append(getattr(error, "original", error))

    async def on_message(self, message: discord.Message) -> None:
        self.seen.append((message.channel.id, message.content, message.author.id))
        await self.process_commands(message)


class BotThread:
    """Runs a client in a thread with its own event loop, as the bot's process would."""

    def __init__(self, bot: commands.Bot, token: str) -> None:
        self.bot = bot
        self.token = token
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="mini-bot", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.bot.start(self.token))
        finally:
            # start() returns as soon as the gateway loop ends, before close() has finished.
            self.loop.run_until_complete(self.bot.close())
            pending = asyncio.all_tasks(self.loop)  # views' timeout tasks
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def call(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.bot.close(), self.loop)
            self.thread.join(10)
            assert not self.thread.is_alive(), "the bot did not stop"


@pytest.fixture(scope="module")
def fake():
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture(scope="module")
def bot(fake):
    """The mini bot logged in to the fake and ready; Route.BASE and the gateway restored after."""
    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    runner = BotThread(MiniBot(), fake.token)
    runner.thread.start()
    try:
        fake.wait_ready()
        runner.call(runner.bot.wait_until_ready())
        yield runner.bot
    finally:
        runner.stop()
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway
    fake.wait_disconnected()


def eventually(condition: Callable[[], object], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def rest(fake: FakeDiscord, method: str, path: str, body: object = None, *, auth: bool = True):
    """Call the fake's REST API as a raw client: (status, content type, parsed body or None)."""
    base = urllib.parse.urlsplit(fake.api_base)
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = f"Bot {fake.token}"
    data = None if body is None else json.dumps(body).encode()
    connection = http.client.HTTPConnection(base.hostname, base.port, timeout=5)
    try:
        connection.request(method, base.path + path, body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, response.getheader("Content-Type"), json.loads(raw) if raw else None
    finally:
        connection.close()


def test_login_sync_and_guild(fake, bot):
    """The client logs in, syncs its guild commands before the gateway, and sees the guild."""
    first = [(c.method, c.path, c.status) for c in fake.calls[:3]]
    assert first == [
        ("GET", "/users/@me", 200),
        ("GET", "/oauth2/applications/@me", 200),
        ("PUT", f"/applications/{fake.APP_ID}/guilds/{fake.GUILD_ID}/commands", 200),
    ]
    assert fake.gateway_ops[:2] == [1, 2]  # a heartbeat on HELLO, then IDENTIFY
    assert {c["name"] for c in fake.commands()} == {"pick", "post", "slow", "who", "report"}
    assert all(c["id"] and c["guild_id"] == fake.GUILD_ID for c in fake.commands())
    assert fake.commands(guild=False) == []
    assert bot.user.id == int(fake.BOT_USER_ID)
    assert bot.application_id == int(fake.APP_ID)
    assert bot.application.owner.id == int(fake.OWNER_ID)
    guild = bot.get_guild(int(fake.GUILD_ID))
    assert guild is not None and not guild.unavailable
    assert isinstance(guild.get_channel(int(fake.ARCHIVE_CHANNEL_ID)), discord.TextChannel)
    assert guild.get_role(int(fake.MEMBER_ROLE_ID)).name == "Keeper"
    assert [c for c in fake.calls if c.status >= 400] == []


def test_wrong_token_is_a_login_failure(fake, bot):
    """Only the fake's token logs in; another gets 401 and discord.py's LoginFailure."""

    async def login() -> None:
        client = discord.Client(intents=discord.Intents.default())
        try:
            await client.login("not-the-token")
        finally:
            await client.close()

    with pytest.raises(discord.LoginFailure):
        asyncio.run(login())
    refused = fake.wait_for(lambda c: c.path == "/users/@me" and c.status == 401)
    assert refused.response == UNAUTHORIZED


def test_slash_select_modal_deferred_ephemeral_followup(fake, bot):
    """A slash reply with a select, the select opening a modal, the modal's submit deferred
    (thinking, ephemeral) and answered by a followup that replaces the loading message."""
    pick = fake.slash("pick")
    callback = fake.wait_response(pick)
    assert callback.status == 200
    reply = fake.message_of(pick)
    assert callback.response["resource"]["type"] == 4
    assert callback.response["interaction"]["response_message_id"] == reply["id"]
    assert reply["content"] == "Pick a planet" and not is_ephemeral(reply)
    assert reply["author"]["id"] == fake.BOT_USER_ID
    select = find_component(reply, label="Choose a planet")
    assert select["custom_id"] == "pick:planet" and select["type"] == 3
    assert components_of(reply) == [select, find_component(reply, label="Cancel")]

    choose = fake.select(reply, "pick:planet", ["beta"])
    assert fake.wait_response(choose).status == 200
    modal = fake.modal_of(choose)
    assert modal["title"] == "Describe it"
    # discord.py 2.7.1 wraps a bare TextInput in an action row; a ui.Label is sent as type 18.
    assert [c["type"] for c in modal["components"]] == [1, 18]
    assert find_component(modal, label="Where")["custom_id"] == "where"

    submit = fake.submit_modal(modal["custom_id"], {"note": "Ruins by the lake", "where": "north"})
    assert submit.data["components"] == [
        {"type": 1, "components": [{"type": 4, "custom_id": "note", "value": "Ruins by the lake"}]},
        {"type": 18, "component": {"type": 4, "custom_id": "where", "value": "north"}},
    ]
    assert submit.payload["message"]["id"] == reply["id"]  # opened from the select's message
    defer = fake.wait_response(submit)
    assert defer.status == 200 and defer.json == {"type": 5, "data": {"flags": 64}}
    followup = fake.wait_response(submit, kind="followup")
    assert followup.status == 200 and followup.query["wait"] == "1"
    answer = fake.message_of(submit)
    assert answer["content"] == "Noted beta: Ruins by the lake (north)"
    assert is_ephemeral(answer) and not answer["flags"] & 128
    assert answer["id"] == defer.response["interaction"]["response_message_id"]
    assert [c.status for c in fake.responses(submit)] == [200, 200]


def test_button_updates_its_message(fake, bot):
    """A button answered with type 7 edits the message it is on, in place, and echoes the edit."""
    pick = fake.slash("pick")
    fake.wait_response(pick)
    reply = fake.message_of(pick)
    click = fake.button(reply, "pick:cancel")
    callback = fake.wait_response(click)
    assert callback.status == 200 and callback.json["type"] == 7
    assert click.payload["message"]["id"] == reply["id"]
    assert click.data == {"custom_id": "pick:cancel", "component_type": 2}
    edited = fake.message_of(click)
    assert edited is reply and edited["content"] == "Cancelled." and edited["components"] == []
    assert edited["edited_timestamp"] is not None
    eventually(
        lambda: ("MESSAGE_UPDATE", reply["id"]) in [(e, d.get("id")) for e, d in fake.events]
    )
    with pytest.raises(AssertionError, match="no component"):
        fake.select(reply, "pick:planet", ["alpha"])


def test_member_option_is_resolved(fake, bot):
    """A user option of a known member arrives resolved, with roles; permissions as given."""
    who = fake.slash(
        "who",
        [{"name": "member", "type": 6, "value": fake.MEMBER_USER_ID}],
        user_id=fake.OWNER_ID,
        permissions=0x20,
    )
    assert fake.wait_response(who).status == 200
    assert who.payload["member"]["user"]["id"] == fake.OWNER_ID
    assert fake.message_of(who)["content"] == "Traveller [Keeper] manager=True"


def test_multipart_reply_with_a_file(fake, bot):
    """A reply with a file comes as multipart: the payload_json part is parsed, the file kept."""
    report = fake.slash("report")
    callback = fake.wait_response(report)
    assert callback.status == 200 and callback.json["type"] == 4
    assert callback.json["data"]["content"] == "Report attached."
    [attachment] = fake.message_of(report)["attachments"]
    assert (attachment["filename"], attachment["size"]) == ("report.txt", 5)


def test_channel_post_and_its_gateway_echo(fake, bot):
    """A message posted to another channel is stored as sent and echoed on the gateway."""
    post = fake.slash("post", [{"name": "text", "type": 3, "value": "Demo Alpha"}])
    assert fake.wait_response(post).status == 200
    archived = fake.wait_for(
        lambda c: c.path == f"/channels/{fake.ARCHIVE_CHANNEL_ID}/messages" and c.method == "POST"
    )
    assert archived.status == 200 and archived.at < fake.wait_response(post).at
    [message] = fake.channel_messages(fake.ARCHIVE_CHANNEL_ID)
    assert message["content"] == "Archived: Demo Alpha"
    assert message["allowed_mentions"] == {"parse": []}
    assert message["author"]["id"] == fake.BOT_USER_ID and not is_ephemeral(message)
    assert is_ephemeral(fake.message_of(post))
    archive = int(fake.ARCHIVE_CHANNEL_ID)
    eventually(lambda: (archive, "Archived: Demo Alpha", bot.user.id) in bot.seen)


def test_late_callback_gets_unknown_interaction(fake, bot):
    """A callback after the deadline gets 404 code 10062, which discord.py raises as NotFound."""
    fake.deadline = 0.5
    try:
        quick = fake.slash("slow", [{"name": "delay", "type": 10, "value": 0}])
        assert fake.wait_response(quick).status == 200
        late = fake.slash("slow", [{"name": "delay", "type": 10, "value": 0.8}])
        callback = fake.wait_response(late)
    finally:
        fake.deadline = 3.0
    assert callback.status == 404 and callback.response == UNKNOWN_INTERACTION
    assert callback.at - late.sent_at > 0.5
    eventually(lambda: any(getattr(e, "code", None) == 10062 for e in bot.errors))
    assert fake.message_of(quick)["content"] == "Done."
    with pytest.raises(AssertionError):
        fake.message_of(late)


def test_second_acknowledgement_is_refused(fake, bot):
    """The same interaction delivered twice: the second callback gets 400 code 40060."""
    pick = fake.slash("pick")
    first = fake.wait_response(pick)
    assert first.status == 200
    fake.resend(pick)
    second = fake.wait_response(pick, after=fake.calls.index(first) + 1)
    assert second.status == 400 and second.response == ALREADY_ACKNOWLEDGED
    assert len(fake.messages_of(pick)) == 1
    eventually(lambda: any(getattr(e, "code", None) == 40060 for e in bot.errors))


def test_resent_modal_submit_is_dropped_by_discord_py(fake, bot):
    """discord.py forgets a modal once its on_submit succeeded: a redelivered submit is ignored,
    and the fake refuses a second submit of an acknowledged modal as the Discord client would."""
    pick = fake.slash("pick")
    fake.wait_response(pick)
    choose = fake.select(fake.message_of(pick), "pick:planet", ["alpha"])
    fake.wait_response(choose)
    modal = fake.modal_of(choose)
    submit = fake.submit_modal(modal["custom_id"], {"note": "Once"})
    fake.wait_response(submit, kind="followup")
    assert fake.message_of(submit)["content"] == "Noted alpha: Once (nowhere)"
    fake.resend(submit)
    time.sleep(0.3)
    assert len(fake.responses(submit)) == 2  # the defer and the followup, nothing more
    with pytest.raises(AssertionError, match="already submitted"):
        fake.submit_modal(modal["custom_id"], {"note": "Twice"})


def test_user_limits_and_component_helpers(fake, bot):
    """The dispatch helpers refuse what a Discord user could not do, and say what exists."""
    pick = fake.slash("pick")
    fake.wait_response(pick)
    reply = fake.message_of(pick)
    with pytest.raises(AssertionError, match="pick:planet"):
        find_component(reply, label="No such thing")
    with pytest.raises(AssertionError, match="not options"):
        fake.select(reply, "pick:planet", ["gamma"])
    with pytest.raises(AssertionError, match="takes 1 to 1 values"):
        fake.select(reply, "pick:planet", ["alpha", "beta"])
    with pytest.raises(AssertionError, match="no component"):
        fake.button(reply, "pick:planet")
    choose = fake.select(reply, "pick:planet", ["alpha"])
    fake.wait_response(choose)
    custom_id = fake.modal_of(choose)["custom_id"]
    with pytest.raises(AssertionError, match="takes 0 to 200 characters"):
        fake.submit_modal(custom_id, {"note": "x" * 201})
    with pytest.raises(AssertionError, match="required"):
        fake.submit_modal(custom_id, {"where": "north"})


def test_webhook_and_callback_rules(fake, bot):
    """Followups need an acknowledged interaction; @original follows the reply; one ack only."""
    ignored = fake.slash("not-a-command")  # the bot has no such command and never answers
    app, token = fake.APP_ID, ignored.token
    followup = {"content": "too early"}
    status, _, body = rest(fake, "POST", f"/webhooks/{app}/{token}?wait=true", followup, auth=False)
    assert (status, body) == (404, UNKNOWN_WEBHOOK)
    callback = f"/interactions/{ignored.id}/{token}/callback?with_response=1"
    status, _, body = rest(fake, "POST", callback, {"type": 4, "data": {}}, auth=False)
    assert (status, body) == (400, EMPTY_MESSAGE)
    status, _, body = rest(
        fake, "POST", callback, {"type": 7, "data": {"content": "x"}}, auth=False
    )
    assert status == 400 and body["code"] == 50035  # no component message to update
    status, _, body = rest(
        fake, "POST", callback, {"type": 4, "data": {"content": "hi"}}, auth=False
    )
    assert status == 200 and body["resource"]["message"]["content"] == "hi"
    status, _, body = rest(
        fake, "POST", callback, {"type": 4, "data": {"content": "again"}}, auth=False
    )
    assert (status, body) == (400, ALREADY_ACKNOWLEDGED)
    original = f"/webhooks/{app}/{token}/messages/@original"
    status, _, body = rest(fake, "PATCH", original, {"content": "edited"}, auth=False)
    assert status == 200 and body["content"] == "edited" and body["edited_timestamp"]
    assert fake.message_of(ignored)["content"] == "edited"
    status, _, body = rest(fake, "POST", f"/webhooks/{app}/{token}?wait=true", followup, auth=False)
    assert status == 200 and body["id"] != fake.messages_of(ignored)[0]["id"]
    status, _, body = rest(fake, "DELETE", original, auth=False)
    assert (status, body) == (204, None)
    assert [m["content"] for m in fake.messages_of(ignored)] == ["too early"]
    assert all(c.interaction_id == ignored.id for c in fake.responses(ignored))
    assert len(fake.responses(ignored)) == 8


def test_rest_errors_are_json_and_never_5xx(fake, bot):
    """Unknown routes, channels, missing auth and form limits answer Discord's JSON errors."""
    status, ctype, body = rest(fake, "GET", "/no/such/route")
    assert (status, ctype, body) == (404, "application/json", NOT_FOUND)
    assert fake.calls[-1].path == "/no/such/route" and fake.calls[-1].status == 404
    status, _, body = rest(fake, "POST", "/channels/1/messages", {"content": "x"})
    assert (status, body) == (404, UNKNOWN_CHANNEL)
    path = f"/channels/{fake.CHANNEL_ID}/messages"
    status, _, body = rest(fake, "POST", path, {"content": "x"}, auth=False)
    assert (status, body) == (401, UNAUTHORIZED)
    status, _, body = rest(fake, "POST", path, {"content": "x" * 2001})
    assert status == 400 and body["code"] == 50035 and "content" in body["errors"]
    embed = {"title": "t", "fields": [{"name": "n", "value": "v" * 1025}]}
    status, _, body = rest(fake, "POST", path, {"embeds": [embed]})
    assert status == 400 and "embeds.0.fields.0.value" in body["errors"]
    assert all(c.status < 500 for c in fake.calls)


def test_mention_runs_a_prefix_command(fake, bot):
    """A user message mentioning the bot reaches its commands; the answer lands in the channel."""
    before = len(fake.calls)
    mention = fake.mention_message(f"<@{fake.BOT_USER_ID}> ping", author_id=fake.OWNER_ID)
    path = f"/channels/{fake.CHANNEL_ID}/messages"
    sent = fake.wait_for(lambda c: c.method == "POST" and c.path == path, after=before)
    assert sent.status == 200 and sent.json["content"] == "pong"
    assert sent.json["allowed_mentions"]["replied_user"] is False
    *_, asked, answered = fake.channel_messages(fake.CHANNEL_ID)
    assert asked is mention and asked["content"] == f"<@{fake.BOT_USER_ID}> ping"
    assert answered["type"] == 19 and answered["message_reference"]["message_id"] == mention["id"]


def test_dropped_gateway_reidentifies(fake, bot):
    """After the gateway drops, the client's RESUME is refused (op 9) and it identifies anew."""
    readies = sum(1 for event, _ in fake.events if event == "READY")
    fake.drop_gateway()
    eventually(lambda: sum(1 for event, _ in fake.events if event == "READY") == readies + 1)
    fake.wait_ready()
    ops = fake.gateway_ops
    assert 6 in ops and ops.index(2, ops.index(6)) > ops.index(6)  # RESUME, then IDENTIFY
    pick = fake.slash("pick")
    assert fake.wait_response(pick).status == 200
