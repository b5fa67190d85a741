"""The bot end to end: ``manage.py runbot`` in its own process, the real discord.py client, and
the fake Discord of :mod:`tests.fake_discord` on loopback, which enforces the 3-second deadline
and records every REST call, so each test asserts what a member would have seen."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from discoveries.haven.files import haven_file_create
from discoveries.types import DISCOVERY_TYPES, DiscoveryType
from tests.bot_driver import (
    SETTLE_SECONDS,
    BotRun,
    Form,
    bot_env,
    bot_start,
    report,
    runbot_spawn,
    values_for,
)
from tests.conftest import manage_env, run_manage
from tests.fake_discord import FakeDiscord, RestCall, find_component

MANAGE_SERVER = 0x20
#: Where each type is reported in the demo VH: (system, place option label).
PLACES = [
    ("Demo Alpha", "🪐 Alpha Prime"),
    ("Demo Alpha", "🌙 Alpha Prime I (moon of Alpha Prime)"),
    ("Demo Beta", "🪐 Beta Rock"),
    ("Demo Beta", "🌙 Beta Dust (moon of Beta Rock)"),
    ("Demo Gamma", "🪐 Gamma Ice"),
    ("Demo Beta", "✨ In space (no planet or moon)"),
]


@pytest.fixture(scope="module")
def bot(tmp_path_factory) -> Iterator[BotRun]:
    """One fake Discord and one bot for the flow tests of this module."""
    with FakeDiscord() as fake:
        run = bot_start(fake, tmp_path_factory.mktemp("bot"))
        yield run
        run.stop()


@pytest.fixture
def fresh_fake() -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        yield fake


def _hold(path: Path, begin: str, seconds: float) -> threading.Thread:
    """Another process's view of a lock: a connection to ``path`` runs ``begin`` (``BEGIN
    IMMEDIATE``, ``BEGIN EXCLUSIVE``) and keeps the lock ``seconds``; returns once it holds
    it, with the thread to join."""
    held = threading.Event()

    def hold():
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        db.execute(begin)
        held.set()
        time.sleep(seconds)
        db.execute("ROLLBACK")
        db.close()

    locker = threading.Thread(target=hold)
    locker.start()
    held.wait(5)
    return locker


def test_every_type_flows_from_the_form_to_keeper_and_then_to_vh(bot):
    """All 10 types through the whole form end in keeper.db with their four fields, and after
    sync_now in VH with the right system, planet or moon, and each type's columns."""
    ids = {}
    for n, dtype in enumerate(DISCOVERY_TYPES):
        system, place = PLACES[n % len(PLACES)]
        evidence = f"https://example.org/{dtype.slug}.png" if n % 2 else None
        ids[dtype.slug] = report(bot.fake, dtype, system, place, evidence=evidence)
    rows = {
        row[0]: row
        for row in bot.keeper_rows(
            "SELECT d.id, d.discovery_type, d.system_name, d.location, d.location_type, "
            "d.metadata, d.evidence_url, d.user_id, d.guild_id, d.submission_key, q.sync_status "
            "FROM discoveries d JOIN sync_queue q ON q.discovery_id = d.id"
        )
    }
    for n, dtype in enumerate(DISCOVERY_TYPES):
        row = rows[ids[dtype.slug]]
        assert row[1] == dtype.emoji and row[2] == PLACES[n % len(PLACES)][0]
        assert json.loads(row[5]) == {f.key: f"{f.label} value" for f in dtype.fields}
        assert row[6] == (f"https://example.org/{dtype.slug}.png" if n % 2 else "")
        assert (row[7], row[8]) == (FakeDiscord.MEMBER_USER_ID, FakeDiscord.GUILD_ID)
        assert row[9].startswith("discord:")
    synced = run_manage("sync_now", "--until-idle", env=bot.env)
    assert synced.returncode == 0, synced.stderr
    with sqlite3.connect(bot.haven) as vh:
        for n, dtype in enumerate(DISCOVERY_TYPES):
            keeper_id = ids[dtype.slug]
            (vh_id,) = bot.keeper_rows(
                "SELECT haven_discovery_id FROM sync_queue WHERE discovery_id = ? "
                "AND sync_status = 'synced'",
                keeper_id,
            )[0]
            columns = ", ".join(
                ("location_type", "system_id", "planet_id", "moon_id", *dtype.field_keys)
            )
            got = vh.execute(f"SELECT {columns} FROM discoveries WHERE id = ?", (vh_id,)).fetchone()
            kind = {"🪐": "planet", "🌙": "moon", "✨": "space"}[PLACES[n % len(PLACES)][1][0]]
            assert got[0] == kind and got[1] is not None
            assert (got[2] is not None) == (kind != "space")
            assert (got[3] is not None) == (kind == "moon")
            assert list(got[4:]) == [f"{f.label} value" for f in dtype.fields]


def _archive_post_of(call: RestCall, number: int) -> bool:
    """Whether ``call`` posts discovery ``number`` to the archive channel."""
    if call.path != f"/channels/{FakeDiscord.ARCHIVE_CHANNEL_ID}/messages":
        return False
    embeds = (call.json or {}).get("embeds") or [{}]
    return f"#{number} " in embeds[0].get("footer", {}).get("text", "")


def _call_summary(call: RestCall) -> str:
    """One line per REST call: method, route with ids and tokens elided, status, and what the
    member would see (callback type, text or modal title)."""
    path = re.sub(r"/(interactions|webhooks)/[0-9]+/[^/?]+", r"/\1/{id}/{token}", call.path)
    path = re.sub(r"/[0-9]{15,}", "/{id}", path)
    body = call.json if isinstance(call.json, dict) else {}
    if call.path.endswith("/callback"):
        data = body.get("data") or {}
        shown = data.get("title") or data.get("content") or ""
        extra = f" type {body.get('type')}"
    else:
        shown = body.get("content") or (body.get("embeds") or [{}])[0].get("title", "")
        extra = ""
    shown = shown.replace("\n", " ")
    return f"{call.method} {path} -> {call.status}{extra}" + (f": {shown[:70]}" if shown else "")


def test_one_submission_as_discord_saw_it(bot):
    """One report's REST calls in order: the form (reply, deferred updates while VH is read,
    updates, modal, update), then the deferral, the ephemeral confirmation, the form closed,
    the archive post; all accepted."""
    start = len(bot.fake.calls)
    number = report(bot.fake, DISCOVERY_TYPES[2], "Demo Alpha", "🪐 Alpha Prime")
    archive = bot.fake.wait_for(lambda c: _archive_post_of(c, number), after=start)
    calls = bot.fake.calls[start:]
    # This report's calls: those of its interactions, and its archive post.
    flow = [c for c in calls[: calls.index(archive) + 1] if c.interaction_id or c is archive]
    seen = [_call_summary(c) for c in flow]
    print(f"discovery #{number}:\n  " + "\n  ".join(seen))
    callbacks = [c for c in flow if c.path.endswith("/callback")]
    # The type and system steps read VH, so they acknowledge first (6) and then edit the form.
    assert [c.json["type"] for c in callbacks] == [4, 6, 6, 7, 9, 7, 6]
    assert all(c.status == 200 for c in flow)
    assert [(c.method, c.path.split("/")[1]) for c in flow][-4:] == [
        ("POST", "interactions"),
        ("POST", "webhooks"),
        ("PATCH", "webhooks"),
        ("POST", "channels"),
    ]
    embed = archive.json["embeds"][0]
    assert f"#{number}" in embed["footer"]["text"]
    assert archive.json["allowed_mentions"]["parse"] == []


def test_confirmation_comes_in_time_while_keeper_db_is_write_locked(bot):
    """Another process holds keeper.db's write lock for 2 s as the member submits: the
    acknowledgement still arrives within 3 s, the confirmation follows once the lock is gone,
    and the discovery is stored."""
    form = Form(bot.fake)
    form.choose_type(DISCOVERY_TYPES[0])
    form.choose_system("Demo Gamma")
    form.choose_place("🪐 Gamma Ice")
    form.describe(values_for(DISCOVERY_TYPES[0], "Bones under the ice"))
    locker = _hold(bot.keeper, "BEGIN IMMEDIATE", 2)
    submit = bot.fake.button(form.message, "report:submit")
    ack = bot.fake.wait_response(submit, timeout=5)
    assert ack.status == 200 and ack.at - submit.sent_at < 3
    number, _ = form.confirmation(submit, timeout=15)
    confirmed = bot.fake.wait_response(submit, kind="followup")
    print(
        f"keeper.db locked 2 s: acknowledged after {ack.at - submit.sent_at:.3f} s, "
        f"confirmed (#{number}) after {confirmed.at - submit.sent_at:.3f} s"
    )
    locker.join()
    assert bot.keeper_rows("SELECT description FROM discoveries WHERE id = ?", number) == [
        ("Bones under the ice",)
    ]


def test_the_form_answers_in_time_while_the_control_room_locks_vh(bot):
    """The Control Room holds an exclusive lock on VH-Database.db for 4 s just as the member
    picks a type: the click is acknowledged within the deadline, and the form then shows the
    systems once the lock is gone."""
    form = Form(bot.fake)
    locker = _hold(bot.haven, "BEGIN EXCLUSIVE", 4)
    try:
        chosen = bot.fake.select(form.message, "report:type", [DISCOVERY_TYPES[9].slug])
        ack = bot.fake.wait_response(chosen, timeout=5)
        assert ack.status == 200 and ack.at - chosen.sent_at < 3
        edit = bot.fake.wait_response(chosen, kind="edit", timeout=15)
        assert edit.status == 200
        print(
            f"VH locked 4 s: acknowledged after {ack.at - chosen.sent_at:.3f} s, systems shown "
            f"after {edit.at - chosen.sent_at:.3f} s"
        )
    finally:
        locker.join()
    assert find_component(form.message, custom_id="report:system")["options"]


def test_with_vh_missing_the_member_types_the_place_and_is_confirmed(bot):
    """VH-Database.db moved away: the form asks for the system and place as text, the member is
    confirmed as usual, and the item waits, pending, until the file is back."""
    away = bot.haven.with_name("VH-away.db")
    bot.haven.rename(away)
    try:
        form = Form(bot.fake)
        form.choose_type(DISCOVERY_TYPES[4])
        assert "cannot be read" in form.message["content"]
        form.modal("report:system:text", {"system_name": "Demo Beta", "location": "Beta Ocean"})
        form.describe(values_for(DISCOVERY_TYPES[4], "Glowing reeds"))
        number, _ = form.confirmation(form.submit())
        synced = run_manage("sync_now", env=bot.env)
        assert synced.returncode == 0, synced.stderr
        state = bot.keeper_rows(
            "SELECT id, sync_status, sync_error, next_retry_after FROM sync_queue "
            "WHERE discovery_id = ?",
            number,
        )
        queue_id, status, error, due = state[0]
        assert status == "pending" and "missing" in error and due is not None
        assert not bot.haven.exists()
    finally:
        away.rename(bot.haven)
    # Back in place; the item is due after its backoff, or at once by the operators' statement.
    with sqlite3.connect(bot.keeper, timeout=30) as db:
        db.execute(
            "UPDATE sync_queue SET sync_status = 'pending', sync_attempts = 0, sync_error = NULL "
            "WHERE id = ?",
            (queue_id,),
        )
    synced = run_manage("sync_now", "--until-idle", env=bot.env)
    assert synced.returncode == 0, synced.stderr
    assert bot.keeper_rows("SELECT sync_status FROM sync_queue WHERE id = ?", queue_id) == [
        ("synced",)
    ]


@contextlib.contextmanager
def _extra_systems(run: BotRun, names: list[str]) -> Iterator[None]:
    """Add systems named ``names`` to the bot's VH for the block."""
    with sqlite3.connect(run.haven) as vh:
        vh.executemany(
            "INSERT INTO systems (id, name, x, y, z, region) VALUES (?, ?, 0, 0, 0, 'Extra')",
            [(f"SYS_EXTRA_{i:04d}", name) for i, name in enumerate(names)],
        )
    try:
        yield
    finally:
        with sqlite3.connect(run.haven) as vh:
            vh.execute("DELETE FROM systems WHERE region = 'Extra'")


def test_thirty_systems_come_in_pages(bot):
    """With 30 systems in VH the system select shows 25, and the member pages to the 30th."""
    with _extra_systems(bot, [f"Zeta {i:02d}" for i in range(27)]):
        form = Form(bot.fake)
        form.choose_type(DISCOVERY_TYPES[5])
        select = find_component(form.message, custom_id="report:system")
        assert len(select["options"]) == 25 and "of 30" in select["placeholder"]
        assert "page 1 of 2" in form.message["content"]
        form.button("report:system:page:next")
        select = find_component(form.message, custom_id="report:system")
        assert [o["label"] for o in select["options"]] == [f"Zeta {i:02d}" for i in range(22, 27)]
        form.choose_system("Zeta 26")
        form.choose_place("✨ In space (no planet or moon)")
        form.describe(values_for(DISCOVERY_TYPES[5], "Drifting ore"))
        number, _ = form.confirmation(form.submit())
        assert bot.keeper_rows(
            "SELECT system_name, location_type FROM discoveries WHERE id = ?", number
        ) == [("Zeta 26", "space")]


def test_a_long_system_list_can_be_jumped_through(bot):
    """With 63 systems (3 pages) the member jumps straight to the last page and picks there;
    a name typed in another case is stored as the map writes it."""
    with _extra_systems(bot, [f"Yonder {i:02d}" for i in range(60)]):
        form = Form(bot.fake)
        form.choose_type(DISCOVERY_TYPES[2])
        form.select("report:system:jump", "2")
        select = find_component(form.message, custom_id="report:system")
        assert [o["label"] for o in select["options"]][-1] == "Yonder 59"
        assert "page 3 of 3" in form.message["content"]
        form.modal("report:system:text", {"system_name": "yonder 07", "location": "Far Rock"})
        form.describe(values_for(DISCOVERY_TYPES[2], "Jumped ruins"))
        number, _ = form.confirmation(form.submit())
        assert bot.keeper_rows("SELECT system_name FROM discoveries WHERE id = ?", number) == [
            ("Yonder 07",)
        ]


def test_a_typed_place_the_control_room_lacks_is_told_with_the_nearest_names(bot):
    """Typed names: 'demo alpha' (another case) is Demo Alpha, but its planet 'Alpha Prme' is
    not there, and system 'Demo Alfa' is not either. Each confirmation, ephemeral and without
    pings, says so with the nearest name and that the discovery waits; a place picked from the
    map gets no such note."""
    dtype = DISCOVERY_TYPES[0]
    confirmations = {}
    for system, place in (("demo alpha", "Alpha Prme"), ("Demo Alfa", "Alpha Prime")):
        form = Form(bot.fake)
        form.choose_type(dtype)
        form.modal("report:system:text", {"system_name": system, "location": place})
        form.describe(values_for(dtype, f"Bones in {system}"))
        number, body = form.confirmation(form.submit())
        assert body["allowed_mentions"]["parse"] == []
        confirmations[system] = (number, body["content"])
    number, planet = confirmations["demo alpha"]
    assert bot.keeper_rows("SELECT system_name FROM discoveries WHERE id = ?", number) == [
        ("Demo Alpha",)
    ]
    assert (
        "⚠️ Planet or moon 'Alpha Prme' is not in system 'Demo Alpha' in the Control Room; "
        "the nearest names there are 'Alpha Prime'" in planet
    )
    assert planet.endswith(
        "The discovery is kept and waits until the place is added to the Control Room."
    )
    _, system = confirmations["Demo Alfa"]
    assert "⚠️ System 'Demo Alfa' is not in the Control Room; the nearest names there are " in (
        system
    )
    assert "'Demo Alpha'" in system and "Syncing" not in system
    form = Form(bot.fake)
    form.choose_type(dtype)
    form.choose_system("Demo Alpha")
    form.choose_place("🪐 Alpha Prime")
    form.describe(values_for(dtype, "Bones where the map says"))
    _, picked = form.confirmation(form.submit())
    assert "Syncing to the Control Room." in picked["content"]
    assert "⚠️" not in picked["content"]
    away = bot.haven.with_name("VH-away.db")
    bot.haven.rename(away)
    try:
        form = Form(bot.fake)
        form.choose_type(dtype)
        form.modal("report:system:text", {"system_name": "Demo Alfa", "location": "Nowhere"})
        form.describe(values_for(dtype, "Bones with no map to check"))
        _, blind = form.confirmation(form.submit())
    finally:
        away.rename(bot.haven)
    # Without the map nothing can be said of the place.
    assert "⚠️" not in blind["content"] and "Control Room;" not in blind["content"]


def test_mentions_in_what_members_typed_never_ping(bot):
    """A description with @everyone, a role and a user mention: every message the bot sent for
    it, the archive post included, has mentions disabled."""
    start = len(bot.fake.calls)
    text = f"@everyone look <@&1234> and <@{FakeDiscord.OWNER_ID}> @here"
    number = report(bot.fake, DISCOVERY_TYPES[6], "Demo Alpha", "🪐 Alpha Prime", description=text)
    bot.fake.wait_for(lambda c: _archive_post_of(c, number), after=start)
    sent = [
        c
        for c in bot.fake.calls[start:]
        if isinstance(c.json, dict)
        and ("content" in c.json or "embeds" in c.json or "data" in c.json)
    ]
    carrying = []
    for call in sent:
        body = call.json.get("data", call.json) if call.path.endswith("/callback") else call.json
        if call.path.endswith("/callback") and call.json["type"] in (5, 6, 9):
            continue
        if "@everyone" in json.dumps(body, ensure_ascii=False) or str(number) in json.dumps(body):
            carrying.append(body)
        assert body.get("allowed_mentions", {}).get("parse") == [], (call.path, body)
        assert not body["allowed_mentions"].get("users") and not body["allowed_mentions"].get(
            "roles"
        )
    assert carrying, "the text should have been echoed somewhere"


def _nicknamed(fake: FakeDiscord, nick: str):
    """The fake's member payloads, with the member's server nickname (their display name
    there) set to ``nick``: the name a member picks in Discord, not in our form."""
    member_of = fake._member

    def member(user_id: str, **kw) -> dict:
        data = member_of(user_id, **kw)
        if user_id == fake.MEMBER_USER_ID:
            data["nick"] = nick
        return data

    return member


@pytest.mark.parametrize(
    ("nick", "stored"),
    [
        ("\u3164", "traveller"),  # a Hangul filler: blank to the eye
        ("\u200b\u200b", "traveller"),  # zero-width spaces only
        ("\u2800 \u2800", "traveller"),  # blank braille patterns and a space
        ("\u202eZed", "Zed"),  # a right-to-left override before the name
        ("\u2067Zed\u2069\u3164", "Zed"),  # an isolate around it, a filler after it
    ],
    ids=["hangul-filler", "zero-width-only", "blank-braille", "rtl-override", "isolate"],
)
def test_a_member_named_invisibly_or_with_bidi_controls_can_still_report(
    bot, monkeypatch, nick, stored
):
    """A member whose Discord name shows nothing or holds bidirectional controls, which the
    form gives them no way to change, is confirmed like anyone: the discovery is stored, and
    posted to the archive, under their name without those characters, or under their
    account's name ("traveller") when nothing visible is left."""
    monkeypatch.setattr(bot.fake, "_member", _nicknamed(bot.fake, nick))
    start = len(bot.fake.calls)

    number = report(bot.fake, DISCOVERY_TYPES[0], "Demo Alpha", "🪐 Alpha Prime")

    assert bot.keeper_rows("SELECT user_id, username FROM discoveries WHERE id = ?", number) == [
        (FakeDiscord.MEMBER_USER_ID, stored)
    ]
    archive = bot.fake.wait_for(lambda c: _archive_post_of(c, number), after=start)
    assert archive.json["embeds"][0]["footer"]["text"].endswith(f"reported by {stored}")


def test_a_4000_character_description_is_refused_and_nothing_stored(bot):
    """A forged modal submit with a 4,000-character description gets an ephemeral refusal
    naming the field and the limit; nothing is stored."""
    before = bot.keeper_rows("SELECT COUNT(*) FROM discoveries")[0][0]
    form = Form(bot.fake)
    form.choose_type(DISCOVERY_TYPES[1])
    form.choose_system("Demo Alpha")
    form.choose_place("🪐 Alpha Secundus")
    refused = form.describe(values_for(DISCOVERY_TYPES[1], "x" * 4000), forged=True)
    reply = bot.fake.wait_response(refused)
    assert reply.json["type"] == 4 and reply.json["data"]["flags"] & 64
    assert (
        "**Description**: is 4000 characters long; the limit is 1000"
        in reply.json["data"]["content"]
    )
    assert bot.keeper_rows("SELECT COUNT(*) FROM discoveries")[0][0] == before


def test_the_longest_valid_report_gives_an_archive_embed_discord_accepts(bot):
    """Every field at its limit (1,000-character description, 500-character key excerpt,
    200-character fields, a 2,000-character link): the archive embed fits Discord's limits (the
    fake refuses any that does not) and names the discovery."""
    start = len(bot.fake.calls)
    dtype = DISCOVERY_TYPES[1]
    form = Form(bot.fake)
    form.choose_type(dtype)
    form.choose_system("Demo Beta")
    form.choose_place("🌙 Beta Pebble (moon of Beta Rock)")
    form.describe({"description": "d" * 1000, **{f.key: "v" * f.max_length for f in dtype.fields}})
    number, _ = form.confirmation(form.submit("https://example.org/" + "e" * 1980))
    archive = bot.fake.wait_for(lambda c: _archive_post_of(c, number), after=start)
    assert archive.status == 200, archive.response
    assert f"#{number}" in archive.json["embeds"][0]["footer"]["text"]


def test_the_same_submit_twice_stores_one_discovery(bot):
    """The evidence modal's submit delivered twice (same interaction), then Submit clicked
    again: one discovery, one acknowledgement, no "already acknowledged" error."""
    before = bot.keeper_rows("SELECT COUNT(*) FROM discoveries")[0][0]
    form = Form(bot.fake)
    form.choose_type(DISCOVERY_TYPES[3])
    form.choose_system("Demo Alpha")
    form.choose_place("🪐 Alpha Prime")
    form.describe(values_for(DISCOVERY_TYPES[3], "A humming cube"))
    review = dict(form.message)
    opener = form.button("report:evidence")
    modal = bot.fake.modal_of(opener)
    submitted = bot.fake.submit_modal(modal["custom_id"], {"evidence_url": "https://e.org/c"})
    bot.fake.resend(submitted)
    number, _ = form.confirmation(submitted)
    time.sleep(0.5)
    assert [c.status for c in bot.fake.responses(submitted) if c.path.endswith("/callback")] == [
        200
    ]
    assert bot.keeper_rows("SELECT COUNT(*) FROM discoveries")[0][0] == before + 1
    with pytest.raises(AssertionError):
        # The form is closed: its Submit button is gone from the message.
        bot.fake.button(form.message, "report:submit")
    assert find_component(review, custom_id="report:submit")


def _hold_keeper(run: BotRun, seconds: float) -> threading.Thread:
    """Hold keeper.db's write lock from another connection for ``seconds``, starting now."""
    return _hold(run.keeper, "BEGIN IMMEDIATE", seconds)


def _ready_form(fake: FakeDiscord, dtype: DiscoveryType, description: str) -> Form:
    form = Form(fake)
    form.choose_type(dtype)
    form.choose_system("Demo Alpha")
    form.choose_place("🪐 Alpha Prime")
    form.describe(values_for(dtype, description))
    return form


def test_a_locked_keeper_db_is_told_at_once_and_submit_again_keeps_the_evidence(bot):
    """keeper.db stays locked past the bot's 5-second wait: the member hears nothing was
    stored within seconds, the form stays, and Submit afterwards stores the report once, with
    the evidence link given before."""
    form = _ready_form(bot.fake, DISCOVERY_TYPES[5], "Ore under lock")
    locker = _hold_keeper(bot, 7)
    try:
        opener = form.button("report:evidence")
        modal = bot.fake.modal_of(opener)
        sent = bot.fake.submit_modal(modal["custom_id"], {"evidence_url": "https://e.org/ore"})
        told = bot.fake.wait_response(sent, kind="followup", timeout=10)
        assert told.at - sent.sent_at < 7
        assert "nothing was stored" in told.json["content"] and told.json["flags"] & 64
    finally:
        locker.join()
    assert "Evidence: <https://e.org/ore>" in form.message["content"]
    assert "Change evidence link" in {c.get("label") for c in _buttons(form.message)}
    number, _ = form.confirmation(form.submit())
    assert bot.keeper_rows("SELECT evidence_url FROM discoveries WHERE id = ?", number) == [
        ("https://e.org/ore",)
    ]
    assert bot.keeper_rows(
        "SELECT COUNT(*) FROM discoveries WHERE description = 'Ore under lock'"
    ) == [(1,)]


def _buttons(message: dict) -> list[dict]:
    from tests.fake_discord import components_of

    return [c for c in components_of(message) if c.get("type") == 2]


def test_cancel_while_the_report_is_being_stored_is_refused(bot):
    """Cancel during a submit: the member is told it can no longer be cancelled, and the
    report is archived as promised."""
    form = _ready_form(bot.fake, DISCOVERY_TYPES[6], "Wreck being stored")
    locker = _hold_keeper(bot, 2)
    try:
        submit = bot.fake.button(form.message, "report:submit")
        bot.fake.wait_response(submit)
        cancel = bot.fake.button(form.message, "report:cancel")
        refused = bot.fake.wait_response(cancel)
        assert "can no longer be cancelled" in refused.json["data"]["content"]
        number, _ = form.confirmation(submit)
        bot.fake.wait_response(submit, kind="edit", timeout=10)
    finally:
        locker.join()
    assert form.message["content"] == f"Archived as discovery #{number}."


def test_a_lost_confirmation_still_closes_the_form_and_posts_to_the_archive(bot):
    """Discord refuses the confirmation message once: the discovery is stored, the form still
    closes with its number, and the archive post still goes out; no "try again" is sent."""
    start = len(bot.fake.calls)
    form = _ready_form(bot.fake, DISCOVERY_TYPES[7], "Storm with a lost reply")
    bot.fake.refuse_next("POST", r"^/webhooks/\d+/[^/]+$")
    submit = bot.fake.button(form.message, "report:submit")
    edit = bot.fake.wait_response(submit, kind="edit", timeout=10)
    number = int(re.search(r"#(\d+)", edit.json["content"]).group(1))
    archive = bot.fake.wait_for(
        lambda c: (
            c.path == f"/channels/{FakeDiscord.ARCHIVE_CHANNEL_ID}/messages"
            and f"#{number} " in c.json["embeds"][0]["footer"]["text"]
        ),
        after=start,
    )
    assert archive.status == 200
    sent = [
        c
        for c in bot.fake.calls[start:]
        if c.method == "POST"
        and c.path.startswith(f"/webhooks/{FakeDiscord.APP_ID}/")
        and c.at >= submit.sent_at
    ]
    assert [c.status for c in sent] == [400]
    assert bot.keeper_rows("SELECT description FROM discoveries WHERE id = ?", number) == [
        ("Storm with a lost reply",)
    ]


def test_a_step_discord_refuses_can_be_done_again(bot):
    """Discord refuses the edit that shows the system step: the form goes back to the step the
    member still sees, says so, and the same choice then works."""
    form = Form(bot.fake)
    bot.fake.refuse_next("PATCH", r"/messages/@original$")
    chosen = bot.fake.select(form.message, "report:type", [DISCOVERY_TYPES[0].slug])
    told = bot.fake.wait_response(chosen, kind="followup", timeout=10)
    assert "please do it again" in told.json["content"]
    time.sleep(SETTLE_SECONDS)
    assert find_component(form.message, custom_id="report:type")
    form.choose_type(DISCOVERY_TYPES[0])
    assert find_component(form.message, custom_id="report:system")


def test_a_typed_place_is_checked_when_typed(bot):
    """A system name typed with a control character or only invisible characters is refused
    in the place form itself, before the member writes the description."""
    form = Form(bot.fake)
    form.choose_type(DISCOVERY_TYPES[4])
    opener = form.button("report:system:text")
    modal = bot.fake.modal_of(opener)
    sent = bot.fake.submit_modal(modal["custom_id"], {"system_name": "\u200b", "location": "x"})
    reply = bot.fake.wait_response(sent)
    assert reply.json["type"] == 4
    assert "**Star system**: is required" in reply.json["data"]["content"]
    assert find_component(form.message, custom_id="report:system:text")


def test_interactions_delivered_again_are_handled_once(bot):
    """The same /discovery-report and the same type click delivered three times each: one
    answer each, and no acknowledgement Discord would refuse."""
    start = len(bot.fake.calls)
    form = Form(bot.fake)
    bot.fake.resend(form.origin)
    bot.fake.resend(form.origin)
    chosen = bot.fake.select(form.message, "report:type", [DISCOVERY_TYPES[0].slug])
    bot.fake.resend(chosen)
    bot.fake.resend(chosen)
    bot.fake.wait_response(chosen, kind="edit", timeout=10)
    time.sleep(1)
    for interaction in (form.origin, chosen):
        callbacks = [c for c in bot.fake.responses(interaction) if c.path.endswith("/callback")]
        assert [c.status for c in callbacks] == [200]
    assert not [c for c in bot.fake.calls[start:] if c.status >= 400]


def test_a_refused_text_comes_back_fitting_the_form(bot):
    """After a forged 4,000-character description is refused, the reopened form holds the
    text cut to the 1,000 the input takes, without its control characters."""
    form = Form(bot.fake)
    form.choose_type(DISCOVERY_TYPES[1])
    form.choose_system("Demo Alpha")
    form.choose_place("🪐 Alpha Prime")
    form.describe(values_for(DISCOVERY_TYPES[1], "ab\x00" + "x" * 3997), forged=True)
    again = form.button("report:describe")
    inputs = {c["custom_id"]: c for c in _inputs(bot.fake.modal_of(again))}
    assert inputs["description"]["value"] == "ab" + "x" * 998


def _inputs(modal: dict) -> list[dict]:
    from tests.fake_discord import components_of

    return [c for c in components_of(modal) if c.get("type") == 4]


def test_sync_retry_refuses_numbers_discord_would_not_send(bot):
    """A forged /sync-retry id outside 1 to 2^53 gets a clear answer, not an error."""
    for value in (0, -5, 2**63):
        asked = bot.fake.slash(
            "sync-retry", [{"name": "id", "type": 4, "value": value}], permissions=MANAGE_SERVER
        )
        reply = bot.fake.wait_response(asked)
        assert reply.status == 200, reply.response
        assert reply.json["data"]["content"] == f"Give a queue item number from 1 to {2**53}."


def test_sync_status_is_for_members_who_manage_the_server(bot):
    """/sync-status refuses a member without Manage Server (ephemeral, names the permission)
    and shows counts to one who has it."""
    refused = bot.fake.slash("sync-status", permissions=0)
    reply = bot.fake.wait_response(refused)
    assert reply.status == 200 and reply.json["type"] == 4
    assert reply.json["data"]["flags"] & 64
    assert "Manage Server" in reply.json["data"]["content"]
    allowed = bot.fake.slash("sync-status", permissions=MANAGE_SERVER)
    assert bot.fake.wait_response(allowed).json["type"] == 5
    shown = bot.fake.wait_response(allowed, kind="followup", timeout=10)
    assert shown.json["content"].startswith("**Sync queue**: pending ")
    assert " · waiting " in shown.json["content"] and " · conflict " in shown.json["content"]
    assert "Oldest pending:" in shown.json["content"]
    assert "Last error" in shown.json["content"]


def test_sync_retry_resets_a_failed_item_through_the_retry_service(bot):
    """/sync-retry on a failed item resets it to pending with no attempts and records the
    member; a missing item and a synced one are explained."""
    number = report(bot.fake, DISCOVERY_TYPES[7], "Demo Alpha", "🪐 Alpha Prime")
    with sqlite3.connect(bot.keeper, timeout=30) as db:
        db.execute(
            "UPDATE sync_queue SET sync_status = 'max_retries_exceeded', sync_attempts = 10, "
            "sync_error = 'boom' WHERE discovery_id = ?",
            (number,),
        )
    (queue_id,) = bot.keeper_rows("SELECT id FROM sync_queue WHERE discovery_id = ?", number)[0]

    def answer(item_id: int, permissions: int = MANAGE_SERVER) -> str:
        asked = bot.fake.slash(
            "sync-retry", [{"name": "id", "type": 4, "value": item_id}], permissions=permissions
        )
        return bot.fake.wait_response(asked, kind="followup", timeout=10).json["content"]

    assert answer(queue_id) == f"Queue item {queue_id} (discovery {number}) reset: due now."
    assert bot.keeper_rows(
        "SELECT sync_status, sync_attempts, sync_error FROM sync_queue WHERE id = ?", queue_id
    ) == [("pending", 0, None)]
    ((source, actor),) = bot.keeper_rows(
        "SELECT source, actor_name FROM sync_operator_action ORDER BY id DESC LIMIT 1"
    )
    assert source == "bot"
    assert actor.startswith("discord:") and actor.endswith(f"({FakeDiscord.MEMBER_USER_ID})")
    assert answer(999_999) == "There is no queue item 999999."
    refused = bot.fake.slash(
        "sync-retry", [{"name": "id", "type": 4, "value": queue_id}], permissions=0
    )
    assert "Manage Server" in bot.fake.wait_response(refused).json["data"]["content"]


@pytest.mark.django_db
def test_health_in_another_process_sees_the_bot_online(bot, settings, monkeypatch):
    """/health, served by this process with the bot's cache and keeper.db, says bot_online;
    the heartbeat records ready, connected and the last gateway event."""
    from django.core.cache import cache
    from rest_framework.test import APIClient

    from syncq import selectors
    from syncq.selectors import bot_heartbeat

    # The heartbeat is the bot's keeper.db's own: read it as a process on that file would.
    keeper = {"ENGINE": "sqlite3", "NAME": str(bot.keeper)}
    key = selectors.bot_heartbeat_key(database=keeper)
    monkeypatch.setattr(selectors, "bot_heartbeat_key", lambda database=None: key)
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(bot.cache_dir),
        }
    }
    deadline = time.monotonic() + 10
    while bot_heartbeat() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    beat = bot_heartbeat()
    assert beat["ready"] and beat["connected"] and beat["last_event_at"] is not None
    assert APIClient().get("/health").json()["bot_online"] is True
    cache.close()


def test_the_owner_alone_can_sync_commands_globally(bot):
    """`@The Keeper sync global` from the application's owner syncs the global commands; from a
    member it does nothing."""
    start = len(bot.fake.calls)
    global_path = f"/applications/{FakeDiscord.APP_ID}/commands"
    bot.fake.mention_message(
        f"<@{FakeDiscord.BOT_USER_ID}> sync global", author_id=FakeDiscord.MEMBER_USER_ID
    )
    time.sleep(1)
    assert not [c for c in bot.fake.calls[start:] if c.path == global_path]
    bot.fake.mention_message(
        f"<@{FakeDiscord.BOT_USER_ID}> sync global", author_id=FakeDiscord.OWNER_ID
    )
    synced = bot.fake.wait_for(lambda c: c.path == global_path, after=start, timeout=10)
    assert synced.method == "PUT" and {c["name"] for c in synced.json} >= {
        "discovery-report",
        "sync-status",
        "sync-retry",
    }
    reply = bot.fake.wait_for(
        lambda c: c.method == "POST" and c.path.endswith("/messages"), after=start, timeout=10
    )
    assert "globally" in reply.json["content"]


@pytest.fixture(scope="module")
def configured_bot(tmp_path_factory) -> Iterator[BotRun]:
    """A bot whose forms time out after 1 second and whose reports belong in CHANNEL_ID."""
    with FakeDiscord() as fake:
        run = bot_start(
            fake,
            tmp_path_factory.mktemp("configured"),
            BOT_VIEW_TIMEOUT_SECONDS="1",
            DISCOVERY_CHANNEL_ID=FakeDiscord.CHANNEL_ID,
        )
        yield run
        assert run.stop() == 0, run.output()


def test_a_form_left_alone_disables_itself(configured_bot):
    """With a 1-second form timeout, the form's components become disabled and its text says
    it timed out."""
    fake = configured_bot.fake
    form = Form(fake)
    edit = fake.wait_response(form.origin, kind="edit", timeout=10)
    assert edit.status == 200
    message = form.message
    assert "timed out after 1 second and nothing was stored" in message["content"]
    assert find_component(message, custom_id="report:type")["disabled"] is True
    with pytest.raises(AssertionError, match="disabled"):
        fake.select(message, "report:type", [DISCOVERY_TYPES[0].slug])


def test_a_form_left_with_its_modal_dismissed_disables_itself_too(configured_bot):
    """The member opened "Not listed? Type it" and closed the modal without sending it: the
    form still times out, disabled, through the last answer that was a form."""
    fake = configured_bot.fake
    form = Form(fake)
    chosen = form.select("report:type", DISCOVERY_TYPES[0].slug)
    opener = fake.button(form.message, "report:system:text")
    assert fake.wait_response(opener).json["type"] == 9
    edit = fake.wait_for(
        lambda c: (
            c.method == "PATCH"
            and c.interaction_id == chosen.id
            and "timed out" in (c.json or {}).get("content", "")
        ),
        timeout=10,
    )
    assert edit.status == 200
    assert find_component(form.message, custom_id="report:system:text")["disabled"] is True


def test_reports_belong_in_the_discovery_channel(configured_bot):
    """With DISCOVERY_CHANNEL_ID set, /discovery-report elsewhere points the member there and
    opens no form."""
    fake = configured_bot.fake
    elsewhere = fake.slash("discovery-report", channel_id=FakeDiscord.ARCHIVE_CHANNEL_ID)
    reply = fake.wait_response(elsewhere)
    assert reply.json["type"] == 4 and reply.json["data"]["flags"] & 64
    assert reply.json["data"]["content"] == (
        f"Discoveries are reported in <#{FakeDiscord.CHANNEL_ID}>."
    )
    assert not reply.json["data"].get("components")


def test_sigterm_finishes_the_submit_in_flight_then_exits_cleanly(fresh_fake, tmp_path):
    """SIGTERM while a member's submit waits 3 s on keeper.db: the member still gets the
    confirmation and the archive post, then the gateway is closed, the heartbeat removed and
    the process exits 0, all within 10 seconds."""
    run = bot_start(fresh_fake, tmp_path)
    deadline = time.monotonic() + 10
    while _heartbeat(run) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _heartbeat(run) is not None
    form = _ready_form(fresh_fake, DISCOVERY_TYPES[3], "Stored while stopping")
    locker = _hold_keeper(run, 3)
    try:
        submit = fresh_fake.button(form.message, "report:submit")
        fresh_fake.wait_response(submit)
        began = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        number, _ = form.confirmation(submit, timeout=10)
        code = run.stop(timeout=12)
        took = time.monotonic() - began
    finally:
        locker.join()
    assert code == 0, run.output()
    assert took < 10
    assert fresh_fake.channel_messages(FakeDiscord.ARCHIVE_CHANNEL_ID)
    assert run.keeper_rows("SELECT description FROM discoveries WHERE id = ?", number) == [
        ("Stored while stopping",)
    ]
    fresh_fake.wait_disconnected(timeout=1)
    assert "The Keeper stopped." in run.output()
    assert _heartbeat(run) is None


def test_a_form_from_before_a_restart_is_answered(fresh_fake, tmp_path):
    """A member clicks a form opened before the bot restarted: instead of Discord's "This
    interaction failed", they are told the form is no longer active."""
    run = bot_start(fresh_fake, tmp_path)
    form = Form(fresh_fake)
    assert run.stop() == 0, run.output()
    fresh_fake.wait_disconnected(timeout=5)
    again = bot_start(fresh_fake, tmp_path)
    try:
        click = fresh_fake.select(form.message, "report:type", [DISCOVERY_TYPES[0].slug])
        reply = fresh_fake.wait_response(click, timeout=5)
        assert reply.status == 200 and reply.json["data"]["flags"] & 64
        assert "no longer active" in reply.json["data"]["content"]
    finally:
        assert again.stop() == 0, again.output()


def test_a_second_ctrl_c_does_not_cut_the_stop_short(fresh_fake, tmp_path):
    """Two SIGINTs in quick succession: one clean stop, exit code 0, no traceback."""
    run = bot_start(fresh_fake, tmp_path, "--with-worker")
    time.sleep(1)
    run.proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    run.proc.send_signal(signal.SIGINT)
    assert run.stop(timeout=12) == 0, run.output()
    assert "Traceback" not in run.output()


def _heartbeat(run: BotRun) -> dict | None:
    """The heartbeat as another process reads it from the bot's file cache."""
    from django.core.cache.backends.filebased import FileBasedCache

    from syncq.selectors import bot_heartbeat_key

    key = bot_heartbeat_key(database={"ENGINE": "sqlite3", "NAME": str(run.keeper)})
    return FileBasedCache(str(run.cache_dir), {}).get(key)


def test_after_the_gateway_drops_the_bot_resumes_and_says_so(fresh_fake, tmp_path):
    """The gateway closes under the bot: it resumes its session, records a fresh heartbeat that
    says connected and ready, and a form works afterwards."""
    from datetime import UTC, datetime

    fresh_fake.resumable = True
    run = bot_start(fresh_fake, tmp_path)
    try:
        deadline = time.monotonic() + 10
        while not (_heartbeat(run) or {}).get("ready") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _heartbeat(run)["connected"] is True
        dropped = datetime.now(UTC)
        fresh_fake.drop_gateway()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            beat = _heartbeat(run) or {}
            if beat.get("connected") and beat["at"] > dropped:
                break
            time.sleep(0.1)
        assert beat["connected"] is True and beat["ready"] is True and beat["at"] > dropped
        assert any(event == "RESUMED" for event, _ in fresh_fake.events)
        number = report(fresh_fake, DISCOVERY_TYPES[1], "Demo Beta", "🪐 Beta Rock")
        assert run.keeper_rows("SELECT COUNT(*) FROM discoveries WHERE id = ?", number) == [(1,)]
    finally:
        assert run.stop() == 0, run.output()


def test_with_worker_the_bot_syncs_into_vh_and_stops_both(fresh_fake, tmp_path):
    """`runbot --with-worker`: a report reaches VH without sync_now, and SIGTERM stops the bot
    and its worker within 10 seconds, leaving no process behind."""
    run = bot_start(fresh_fake, tmp_path, "--with-worker")
    try:
        number = report(fresh_fake, DISCOVERY_TYPES[8], "Demo Alpha", "🪐 Alpha Prime")
        deadline = time.monotonic() + 30
        state = None
        while time.monotonic() < deadline:
            state = run.keeper_rows(
                "SELECT sync_status FROM sync_queue WHERE discovery_id = ?", number
            )
            if state == [("synced",)]:
                break
            time.sleep(0.3)
        assert state == [("synced",)], run.output()
    finally:
        began = time.monotonic()
        code = run.stop(timeout=12)
        took = time.monotonic() - began
    assert code == 0, run.output()
    assert took < 10
    leftover = subprocess.run(
        ["pgrep", "-f", f"KEEPER_DB_PATH={run.keeper}"], capture_output=True, text=True
    )
    assert leftover.stdout == ""
    alive = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _runs_in(p, run.keeper)]
    assert not alive, "a worker process outlived runbot"


def _runs_in(proc: Path, keeper: Path) -> bool:
    try:
        return f"KEEPER_DB_PATH={keeper}".encode() in (proc / "environ").read_bytes()
    except OSError:
        return False


def test_runbot_waits_for_an_unreachable_discord_and_still_stops_at_once(tmp_path):
    """DISCORD_API_BASE refuses connections: runbot keeps trying with growing pauses, saying
    so in one line each time, and SIGTERM still stops it at once with exit code 0."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = manage_env(
        keeper=tmp_path / "keeper.db",
        haven=tmp_path / "VH-Database.db",
        BOT_TOKEN="any",
        DISCORD_API_BASE=f"http://127.0.0.1:{port}/api/v10",
        DISCORD_GATEWAY_URL=f"ws://127.0.0.1:{port}/gateway",
        CACHE_URL=f"filecache://{tmp_path / 'cache'}",
    )
    log = tmp_path / "runbot.log"
    proc = runbot_spawn(env, log)
    run = BotRun(None, proc, env, tmp_path / "keeper.db", tmp_path / "VH.db", tmp_path, log)
    deadline = time.monotonic() + 20
    while run.output().count("cannot reach Discord") < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, run.output()
        time.sleep(0.2)
    assert "trying again in 1 s" in run.output() and "trying again in 2 s" in run.output()
    began = time.monotonic()
    assert run.stop(timeout=10) == 0, run.output()
    assert time.monotonic() - began < 5
    assert "Traceback" not in run.output()


def test_runbot_waits_for_an_unreachable_gateway_too(fresh_fake, tmp_path):
    """REST answers but the gateway refuses connections: runbot says so and tries again
    instead of crashing, and still stops at once."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    haven = haven_file_create(tmp_path / "VH-Database.db", with_demo_data=True)
    env = bot_env(fresh_fake, tmp_path, haven, DISCORD_GATEWAY_URL=f"ws://127.0.0.1:{port}/gw")
    log = tmp_path / "runbot.log"
    proc = runbot_spawn(env, log)
    run = BotRun(fresh_fake, proc, env, tmp_path / "keeper.db", haven, tmp_path, log)
    deadline = time.monotonic() + 25
    while run.output().count("cannot reach Discord") < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, run.output()
        time.sleep(0.2)
    assert run.output().count("cannot reach Discord") >= 2, run.output()
    assert run.stop(timeout=10) == 0, run.output()
    assert "AttributeError" not in run.output()


def test_runbot_without_a_token_names_the_variable(tmp_path):
    """No BOT_TOKEN: exit code 2 and one line naming it, no traceback."""
    env = manage_env(keeper=tmp_path / "keeper.db", haven=tmp_path / "VH-Database.db")
    done = run_manage("runbot", env=env, timeout=60)
    assert done.returncode == 2
    assert "BOT_TOKEN is not set" in done.stderr and "Traceback" not in done.stderr


def test_runbot_with_a_refused_token_says_so(fresh_fake, tmp_path):
    """A token Discord refuses (401): exit code 2 and a line saying so, no traceback."""
    haven = haven_file_create(tmp_path / "VH-Database.db", with_demo_data=True)
    env = bot_env(fresh_fake, tmp_path, haven, BOT_TOKEN="not-the-token")
    done = run_manage("runbot", env=env, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Discord refused BOT_TOKEN" in done.stderr and "Traceback" not in done.stderr
