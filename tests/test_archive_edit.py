"""The archive post follows its discovery into the Control Room: ``manage.py runbot`` against
the fake Discord of :mod:`tests.fake_discord`, a report submitted, ``sync_now`` run, and the
archive message edited once to say when the discovery reached the Control Room."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from discoveries.types import DISCOVERY_TYPES
from tests.bot_driver import BotRun, bot_start, report
from tests.conftest import run_manage
from tests.fake_discord import FakeDiscord, RestCall

ARCHIVE = FakeDiscord.ARCHIVE_CHANNEL_ID
#: How often the bot under test looks for posts to edit, in seconds.
EDIT_SECONDS = 1


@pytest.fixture(scope="module")
def bot(tmp_path_factory) -> Iterator[BotRun]:
    with FakeDiscord() as fake:
        run = bot_start(fake, tmp_path_factory.mktemp("archive-edit"), BOT_ARCHIVE_EDIT_SECONDS="1")
        yield run
        run.stop()


def _archive_post_of(call: RestCall, number: int) -> bool:
    if call.method != "POST" or call.path != f"/channels/{ARCHIVE}/messages":
        return False
    embeds = (call.json or {}).get("embeds") or [{}]
    return f"#{number} " in embeds[0].get("footer", {}).get("text", "")


def _edits_of(bot: BotRun, message_id: str) -> list[RestCall]:
    path = f"/channels/{ARCHIVE}/messages/{message_id}"
    return [c for c in bot.fake.calls if c.method == "PATCH" and c.path == path]


def _edit_state(bot: BotRun, number: int) -> str | None:
    rows = bot.keeper_rows("SELECT edit FROM bot_archive_post WHERE discovery_id = ?", number)
    return rows[0][0] if rows else None


def _wait_state(bot: BotRun, number: int, state: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while _edit_state(bot, number) != state:
        assert time.monotonic() < deadline, (
            f"archive post of #{number} is {_edit_state(bot, number)!r}, not {state!r}:\n"
            + bot.output()[-3000:]
        )
        time.sleep(0.1)


def test_the_archive_post_is_edited_once_when_its_discovery_reaches_the_control_room(bot):
    """Submitted: posted, not edited while queued. Synced: the archive message is edited
    exactly once, its embed gaining "Reached the Control Room at … UTC" (the queue item's
    synced time) with mentions off; later rounds leave it alone."""
    start = len(bot.fake.calls)
    number = report(bot.fake, DISCOVERY_TYPES[2], "Demo Alpha", "🪐 Alpha Prime")
    post = bot.fake.wait_for(lambda c: _archive_post_of(c, number), after=start, timeout=10)
    message_id = post.response["id"]
    _wait_state(bot, number, "")
    time.sleep(3 * EDIT_SECONDS)
    assert _edits_of(bot, message_id) == [], "edited before it was synced"
    synced = run_manage("sync_now", "--until-idle", env=bot.env)
    assert synced.returncode == 0, synced.stderr
    ((synced_at,),) = bot.keeper_rows(
        "SELECT synced_at FROM sync_queue WHERE discovery_id = ? AND sync_status = 'synced'",
        number,
    )
    edit = bot.fake.wait_for(
        lambda c: c.method == "PATCH" and c.path.endswith(f"/messages/{message_id}"),
        after=start,
        timeout=20,
    )
    assert edit.status == 200
    _wait_state(bot, number, "edited")
    time.sleep(3 * EDIT_SECONDS)
    assert len(_edits_of(bot, message_id)) == 1
    embed = edit.json["embeds"][0]
    reached = [f for f in embed["fields"] if f["name"] == "Control Room"]
    shown = f"Reached the Control Room at {synced_at[:19].replace('T', ' ')} UTC"
    assert reached == [{"name": "Control Room", "value": shown, "inline": False}]
    assert embed["footer"] == post.json["embeds"][0]["footer"]
    assert edit.json["allowed_mentions"]["parse"] == []
    stored = bot.fake.messages[message_id]["embeds"][0]
    assert stored["fields"][-1]["value"] == shown
    print(f"archive message of #{number} edited once: {shown}")


def test_an_archive_message_deleted_meanwhile_is_marked_gone_and_not_tried_again(bot):
    """Discord answers 404 to the edit (someone deleted the message): the post is marked
    gone and never edited again."""
    start = len(bot.fake.calls)
    number = report(bot.fake, DISCOVERY_TYPES[0], "Demo Beta", "🪐 Beta Rock")
    post = bot.fake.wait_for(lambda c: _archive_post_of(c, number), after=start, timeout=10)
    message_id = post.response["id"]
    _wait_state(bot, number, "")
    bot.fake.refuse_next("PATCH", rf"/messages/{message_id}$", status=404)
    synced = run_manage("sync_now", "--until-idle", env=bot.env)
    assert synced.returncode == 0, synced.stderr
    _wait_state(bot, number, "gone")
    time.sleep(3 * EDIT_SECONDS)
    edits = _edits_of(bot, message_id)
    assert [c.status for c in edits] == [404]
