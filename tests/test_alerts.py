"""Alerts to a Discord webhook, against a real HTTP receiver on 127.0.0.1: what it gets (one
message listing the items, pinging no one, within Discord's limits), the one-message-a-minute
rule and outages on a clock the test controls, a scan run twice, a webhook down or refusing,
the daily summary, ALERT_ON_SYNC, and the settings."""

from __future__ import annotations

import collections
import contextlib
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connections
from django.test import override_settings
from django_q.conf import Conf
from django_q.models import Schedule, Task
from django_q.tasks import async_task

from discoveries.haven.files import haven_file_create
from syncq import alerts
from syncq.alert_services import (
    DELIVERY_TRIES,
    alert_deliver,
    alerts_scan,
)
from syncq.errors import AlertDeliveryFailed
from syncq.models import AlertEvent, AlertMessage, AlertState, AlertStatus, SyncStatus
from syncq.schedules import ALERT_FUNC, ALERT_NAME, schedules_register
from syncq.services import queue_item_retry, sync_batch
from tests.conftest import haven_at, manage_env, run_manage
from tests.factories import NO_PLACE, SAMPLE_PLACE, discovery_make

HAVEN = pytest.mark.django_db(transaction=True, databases=["default", "haven"])
#: A member's text that would ping everyone, a user and a role if echoed as typed.
PINGS = "@everyone <@123456789012345678> <@&223456789012345678> @here"


class Receiver:
    """A Discord webhook stand-in on 127.0.0.1: records each request's JSON body, answers
    with the replies queued in :attr:`replies` (``(status, headers, body)``) and then 204.
    While :attr:`hold` is set to an event, each request waits for it (:attr:`holding` says a
    request is waiting)."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.raw: list[bytes] = []
        self.replies: collections.deque = collections.deque()
        self.hold: threading.Event | None = None
        self.holding = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.raw.append(raw)
                receiver.bodies.append(json.loads(raw))
                if receiver.hold is not None:
                    receiver.holding.set()
                    receiver.hold.wait(30)
                status, headers, body = (
                    receiver.replies.popleft() if receiver.replies else (204, {}, b"")
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/api/webhooks/1/alert-token"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    """A running :class:`Receiver`, and ``ALERT_WEBHOOK_URL`` pointing at it."""
    with Receiver() as running:
        settings.ALERT_WEBHOOK_URL = running.url
        yield running


@contextlib.contextmanager
def tasks_run_at_once():
    """For the block, django-q2 runs each queued task at once, in this process (its ``sync``
    mode), as a worker would; outside it, a submission's sync request stays queued."""
    before = Conf.SYNC
    Conf.SYNC = True
    try:
        yield
    finally:
        Conf.SYNC = before


@pytest.fixture
def vh_missing(tmp_path, settings):
    """``HAVEN_DB_PATH`` names a file that does not exist: every attempt fails."""
    with haven_at(tmp_path / "gone" / "VH-Database.db", settings) as path:
        yield path


def fail_rounds(rounds: int) -> None:
    """Run ``rounds`` real sync batches with no backoff: each due item fails once a batch
    while VH-Database.db is missing."""
    with override_settings(SYNC_BASE_DELAY_SECONDS=0):
        for _ in range(rounds):
            sync_batch()


#: A clock the tests move by hand: in the past, so a task django-q2 runs at once (on the
#: real clock) finds the messages due.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def deliver_due(report, now: datetime) -> list[str]:
    """Deliver each message the scan queued, at ``now``, as the task would; their states."""
    return [alert_deliver(message_id=message_id, now=now) for message_id in report.queued]


def embed_titled(body: dict, start: str) -> dict:
    found = [e for e in body["embeds"] if e["title"].startswith(start)]
    assert len(found) == 1, [e["title"] for e in body["embeds"]]
    return found[0]


def assert_within_discord_limits(body: dict) -> None:
    """Every limit of a webhook message (Discord's documentation, "Embed Limits")."""
    length = alerts.text_length
    assert length(body["content"]) <= 2000
    assert len(body["embeds"]) <= 10
    for embed in body["embeds"]:
        assert length(embed["title"]) <= 256
        assert length(embed.get("description", "")) <= 4096
        assert len(embed.get("fields", [])) <= 25
        for f in embed.get("fields", []):
            assert length(f["name"]) <= 256 and length(f["value"]) <= 1024
        assert length(embed.get("footer", {}).get("text", "")) <= 2048
    assert alerts.embeds_length(body["embeds"]) <= 6000
    assert body["allowed_mentions"] == {"parse": []}


# --- what the receiver gets ------------------------------------------------------------------


@HAVEN
def test_receiver_got_one_message_listing_the_items_failed_five_times(receiver, vh_missing):
    """Three items fail five times through real sync batches: the scan queues one delivery,
    django-q2 runs it, and the receiver gets exactly one message naming the three items,
    with mentions off and a member's @everyone and <@id> not written as mentions."""
    alerts_scan(now=at(0), probe=False)
    items = [
        discovery_make(username=f"{PINGS} member {n}", system_name="Demo *Alpha*").queue_item
        for n in range(3)
    ]
    fail_rounds(5)
    with tasks_run_at_once():
        report = alerts_scan(now=at(1), probe=False)
    assert report.events == 3 and report.message is not None
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    print("the receiver got:\n" + json.dumps(body, ensure_ascii=False, indent=2))
    failing = embed_titled(body, "Failing: 3 reached 5 failed attempts")
    for item in items:
        assert f"Queue {item.id} · #{item.discovery_id} " in failing["description"]
    assert failing["description"].count("attempt 5, HavenUnavailable") == 3
    assert body["allowed_mentions"] == {"parse": []}
    text = receiver.raw[0].decode()
    for ping in ("@everyone", "@here", "<@123456789012345678>", "<@&223456789012345678>"):
        assert ping not in json.loads(text)["embeds"][0]["description"]
        assert ping not in json.dumps(body, ensure_ascii=False)
    assert "Demo \\*Alpha\\*" in failing["description"]
    assert AlertMessage.objects.get().status == AlertStatus.SENT
    assert_within_discord_limits(body)


@HAVEN
def test_two_hundred_items_fit_in_one_message_within_discords_limits(receiver, vh_missing):
    """200 items failing at once give one message within every embed limit, listing as many
    as fit and counting the rest as "… and N more"."""
    alerts_scan(now=at(0), probe=False)
    for n in range(200):
        discovery_make(username=f"{PINGS} {n}", description=f"Find {n}")
    fail_rounds(5)
    report = alerts_scan(now=at(1), probe=False)
    assert report.events == 200
    assert deliver_due(report, at(1)) == ["sent"]
    (body,) = receiver.bodies
    assert_within_discord_limits(body)
    failing = embed_titled(body, "Failing: 200 reached 5 failed attempts")
    # One line an item listed, then "… and N more".
    listed = failing["description"].count("\n")
    more = int(failing["description"].rsplit("… and ", 1)[1].split(" ")[0])
    assert listed + more == 200 and more > 0
    assert body["content"] == "**Keeper Sync**: 200 failing."


@HAVEN
def test_an_item_out_of_attempts_and_one_starting_to_wait_are_told(
    receiver, settings, sample_haven_db, tmp_path
):
    """An item's last failure and an item that finds no place in VH each make their embed;
    the waiting item, taken again by an operator's retry and still without a place, is not
    told a second time."""
    alerts_scan(now=at(0), probe=False)
    with haven_at(tmp_path / "gone.db", settings), override_settings(SYNC_MAX_ATTEMPTS=1):
        doomed = discovery_make(username="unlucky").queue_item
        sync_batch()
    settings.HAVEN_DB_PATH = sample_haven_db
    waiting = discovery_make(**NO_PLACE).queue_item
    sync_batch()
    waiting.refresh_from_db()
    assert waiting.sync_status == SyncStatus.WAITING
    report = alerts_scan(now=at(1), probe=False)
    assert deliver_due(report, at(1)) == ["sent"]
    body = receiver.bodies[0]
    exceeded = embed_titled(body, "Out of attempts: 1")
    assert f"Queue {doomed.id} " in exceeded["description"]
    told = embed_titled(body, "Waiting for their place in the Control Room: 1")
    assert f"Queue {waiting.id} " in told["description"]
    assert "ORACLE ZETA" in told["description"]
    queue_item_retry(item_id=waiting.id, actor_name="ops")
    sync_batch()
    waiting.refresh_from_db()
    assert waiting.sync_status == SyncStatus.WAITING
    assert alerts_scan(now=at(3), probe=False).events == 0


# --- the one-message-a-minute rule, twice-run scans --------------------------------------------


@HAVEN
def test_at_most_one_message_a_minute_on_a_controlled_clock(receiver, vh_missing):
    """Failures found 30 s after a message wait; the scan a minute after it tells them in a
    second message; nothing is lost or told twice."""
    alerts_scan(now=at(0), probe=False)
    first = discovery_make().queue_item
    fail_rounds(5)
    report = alerts_scan(now=at(1), probe=False)
    assert deliver_due(report, at(1)) == ["sent"]
    second = discovery_make(username="later").queue_item
    fail_rounds(5)
    early = alerts_scan(now=at(1.5), probe=False)
    # The second item's fifth failure, and the first item's tenth: out of attempts.
    assert (early.events, early.message, early.queued) == (2, None, [])
    assert len(receiver.bodies) == 1
    due = alerts_scan(now=at(2.01), probe=False)
    assert due.events == 0 and due.message is not None
    assert deliver_due(due, at(2.01)) == ["sent"]
    assert len(receiver.bodies) == 2
    assert f"Queue {first.id} " in embed_titled(receiver.bodies[0], "Failing")["description"]
    later = embed_titled(receiver.bodies[1], "Failing: 1")["description"]
    assert f"Queue {second.id} " in later and f"Queue {first.id} " not in later
    gone = embed_titled(receiver.bodies[1], "Out of attempts: 1")["description"]
    assert f"Queue {first.id} " in gone
    assert alerts_scan(now=at(5), probe=False).message is None


@HAVEN
def test_a_scan_run_twice_at_once_tells_each_event_once(receiver, vh_missing):
    """Two scans started together (two workers) find the failures once between them: one
    message, one event per item."""
    alerts_scan(now=at(0), probe=False)
    for n in range(4):
        discovery_make(username=f"member {n}")
    fail_rounds(5)
    start = threading.Barrier(2)
    reports = []

    def scan():
        start.wait()
        try:
            reports.append(alerts_scan(now=at(1), probe=False))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=scan) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(r.events for r in reports) == [0, 4]
    assert AlertEvent.objects.count() == 4
    assert AlertMessage.objects.count() == 1
    again = alerts_scan(now=at(3), probe=False)
    assert again.events == 0 and again.message is None


# --- the webhook down --------------------------------------------------------------------------


@HAVEN
def test_a_webhook_down_retries_with_backoff_and_honours_retry_after(receiver, vh_missing):
    """A 500 waits 30 s, then a 429 waits its Retry-After, then the same body is posted and
    the message is sent; no second message is composed meanwhile."""
    receiver.replies.extend(
        [(500, {}, b"oops"), (429, {"Retry-After": "7"}, b'{"retry_after": 7}')]
    )
    alerts_scan(now=at(0), probe=False)
    discovery_make()
    fail_rounds(5)
    report = alerts_scan(now=at(1), probe=False)
    assert deliver_due(report, at(1)) == ["pending"]
    message = AlertMessage.objects.get()
    assert message.next_try_at == at(1) + timedelta(seconds=30) and message.tries == 1
    assert "HTTP 500" in message.last_error
    assert alerts_scan(now=at(1.25), probe=False).queued == []
    retry = alerts_scan(now=at(1.5), probe=False)
    assert retry.message is None and retry.queued == [message.id]
    assert deliver_due(retry, at(1.5)) == ["pending"]
    message.refresh_from_db()
    assert message.next_try_at == at(1.5) + timedelta(seconds=7)
    last = alerts_scan(now=at(1.5) + timedelta(seconds=8), probe=False)
    assert deliver_due(last, at(1.5) + timedelta(seconds=8)) == ["sent"]
    assert len(receiver.bodies) == 3
    assert receiver.bodies[0] == receiver.bodies[1] == receiver.bodies[2]
    assert AlertMessage.objects.get().status == AlertStatus.SENT


@HAVEN
def test_a_message_given_up_fails_its_django_q_task(receiver, vh_missing, caplog):
    """A webhook answering 500 every time: each try waits longer (30 s, 60 s, … at most
    15 min); after the last the message is given up, logged as an error, and the delivery
    task raises (django-q2's cluster keeps such a task among its failed ones; its ``sync``
    mode, used here, raises it to the caller instead)."""
    receiver.replies.extend([(500, {}, b"down")] * DELIVERY_TRIES)
    alerts_scan(now=at(0), probe=False)
    discovery_make()
    fail_rounds(5)
    now = at(1)
    assert deliver_due(alerts_scan(now=now, probe=False), now) == ["pending"]
    waits = []
    for _ in range(DELIVERY_TRIES - 2):
        due = AlertMessage.objects.get().next_try_at
        waits.append((due - now).total_seconds())
        now = due
        assert deliver_due(alerts_scan(now=now, probe=False), now) == ["pending"]
    assert waits == [30, 60, 120, 240, 480, 900]
    # The last try as django-q2 runs it (the test's clock is hours behind the real one).
    with tasks_run_at_once(), pytest.raises(AlertDeliveryFailed, match="given up after 8 tries"):
        alerts_scan(now=AlertMessage.objects.get().next_try_at, probe=False)
    message = AlertMessage.objects.get()
    assert message.status == AlertStatus.FAILED and message.tries == DELIVERY_TRIES
    assert len(receiver.bodies) == DELIVERY_TRIES
    assert f"alert message {message.id} given up after 8 tries: HTTP 500" in caplog.text
    assert alerts_scan(now=now + timedelta(hours=1), probe=False).queued == []


@HAVEN
def test_a_refused_message_is_given_up_at_once(receiver, vh_missing):
    """A 404 (the webhook was deleted) gives the message up after one try, raising."""
    receiver.replies.append((404, {}, b'{"message": "Unknown Webhook", "code": 10015}'))
    alerts_scan(now=at(0), probe=False)
    discovery_make()
    fail_rounds(5)
    report = alerts_scan(now=at(1), probe=False)
    with pytest.raises(AlertDeliveryFailed, match="HTTP 404"):
        deliver_due(report, at(1))
    assert AlertMessage.objects.get().status == AlertStatus.FAILED


@HAVEN
def test_a_hung_webhook_never_holds_the_sync_up(receiver, haven_db):
    """While a delivery waits on a webhook that does not answer, sync batches run and
    write every due item: the sync never waits for the webhook."""
    alerts_scan(now=at(0), probe=False, down="VH-Database.db (missing)")
    alerts_scan(now=at(11), probe=False, down="VH-Database.db (missing)")
    message = AlertMessage.objects.get()
    receiver.hold = threading.Event()
    delivering = threading.Thread(
        target=lambda: (alert_deliver(message_id=message.id, now=at(11)), connections.close_all())
    )
    delivering.start()
    assert receiver.holding.wait(10)
    items = [discovery_make(description=f"During the hang {n}").queue_item for n in range(5)]
    report = sync_batch()
    assert report.synced == 5
    assert delivering.is_alive(), "the sync finished while the webhook still had the post"
    receiver.hold.set()
    delivering.join(15)
    for item in items:
        item.refresh_from_db()
        assert item.sync_status == SyncStatus.SYNCED
    assert AlertMessage.objects.get().status == AlertStatus.SENT


# --- outages -----------------------------------------------------------------------------------


@HAVEN
def test_vh_missing_for_the_outage_minutes_is_told_once_and_its_recovery_once(
    receiver, tmp_path, settings
):
    """With VH-Database.db missing (as /health sees it), nothing is told for 9 minutes, one
    message at 10, nothing more while it stays missing, and one when it is back; a shorter
    outage is told neither way."""
    path = tmp_path / "VH-Database.db"
    with haven_at(path, settings):
        for minute in (0, 5, 9):
            assert alerts_scan(now=at(minute)).events == 0
        down = alerts_scan(now=at(10))
        assert down.events == 1
        deliver_due(down, at(10))
        assert alerts_scan(now=at(11)).events == 0
        haven_file_create(path, with_demo_data=True)
        back = alerts_scan(now=at(12))
        assert back.events == 1
        deliver_due(back, at(12))
        assert [b["embeds"][0]["title"] for b in receiver.bodies] == [
            "Unreachable: VH-Database.db (missing)",
            "Reachable again: VH-Database.db (missing)",
        ]
        assert receiver.bodies[1]["embeds"][0]["description"] == (
            f"Unreachable from {at(0):%Y-%m-%d %H:%M} UTC to {at(12):%Y-%m-%d %H:%M} UTC."
        )
        path.unlink()
        assert alerts_scan(now=at(20)).events == 0
        haven_file_create(path, with_demo_data=True)
        assert alerts_scan(now=at(25)).events == 0
    assert len(receiver.bodies) == 2


@pytest.mark.django_db
def test_no_control_room_agent_online_counts_as_an_outage(receiver, settings):
    """With USE_HAVEN_AGENT and no agent heard from, the outage is the agent's."""
    settings.USE_HAVEN_DATABASE, settings.USE_HAVEN_AGENT = False, True
    settings.ALERT_OUTAGE_MINUTES = 3
    alerts_scan(now=at(0))
    report = alerts_scan(now=at(3))
    deliver_due(report, at(3))
    assert receiver.bodies[0]["embeds"][0]["title"] == (
        "Unreachable: the Control Room agent (none online)"
    )


# --- the daily summary, ALERT_ON_SYNC ----------------------------------------------------------


@HAVEN
def test_the_daily_summary_is_posted_once_a_day_at_its_time(receiver, settings, vh_missing):
    """ALERT_DAILY_AT 09:00: nothing before, one summary at the first scan after it with the
    last 24 hours' counts, none later that day, one the next day."""
    settings.ALERT_DAILY_AT = "09:00"
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
    alerts_scan(now=day + timedelta(hours=8, minutes=58), probe=False)
    assert alerts_scan(now=day + timedelta(hours=8, minutes=59), probe=False).events == 0
    report = alerts_scan(now=day + timedelta(hours=9, minutes=0, seconds=20), probe=False)
    assert report.events == 1
    deliver_due(report, day + timedelta(hours=9, minutes=1))
    assert alerts_scan(now=day + timedelta(hours=15), probe=False).events == 0
    assert alerts_scan(now=day + timedelta(hours=23, minutes=59), probe=False).events == 0
    next_day = alerts_scan(now=day + timedelta(days=1, hours=9, minutes=2), probe=False)
    assert next_day.events == 1
    deliver_due(next_day, day + timedelta(days=1, hours=9, minutes=2))
    titles = [b["embeds"][0]["title"] for b in receiver.bodies]
    assert titles == [
        f"Daily summary, {day.date().isoformat()}",
        f"Daily summary, {(day + timedelta(days=1)).date().isoformat()}",
    ]
    fields = {f["name"]: f["value"] for f in receiver.bodies[0]["embeds"][0]["fields"]}
    assert set(fields) >= {"Synced (24 h)", "Failed attempts (24 h)", "Oldest pending"}
    assert_within_discord_limits(receiver.bodies[0])


@HAVEN
def test_alert_on_sync_posts_each_discovery_that_reached_the_control_room(
    receiver, settings, sample_haven_db
):
    """With ALERT_ON_SYNC, the discoveries a batch writes into VH are listed in one message
    with their VH rows; without it, they are not told."""
    settings.ALERT_ON_SYNC = True
    alerts_scan(now=at(0), probe=False)
    made = [discovery_make(**SAMPLE_PLACE, username=f"finder {n}") for n in range(2)]
    assert sync_batch().synced == 2
    report = alerts_scan(now=at(1), probe=False)
    deliver_due(report, at(1))
    synced = embed_titled(receiver.bodies[0], "Reached the Control Room: 2")
    for discovery in made:
        item = discovery.queue_item.__class__.objects.get(discovery_id=discovery.id)
        assert f"#{discovery.id} " in synced["description"]
        assert f"VH row {item.haven_discovery_id}" in synced["description"]
    settings.ALERT_ON_SYNC = False
    discovery_make(**SAMPLE_PLACE)
    assert sync_batch().synced == 1
    assert alerts_scan(now=at(3), probe=False).events == 0


# --- off, schedules, settings, the test command ------------------------------------------------


@pytest.mark.django_db
def test_without_a_webhook_url_nothing_is_scanned_and_no_schedule_runs(settings):
    """Alerts off: the scan does nothing, and registering removes the alert schedule that an
    earlier setting made."""
    settings.ALERT_WEBHOOK_URL = "https://discord.com/api/webhooks/1/x"
    assert ALERT_NAME in schedules_register()
    schedules_register()
    assert Schedule.objects.filter(func=ALERT_FUNC, minutes=1).count() == 1
    settings.ALERT_WEBHOOK_URL = ""
    assert ALERT_NAME not in schedules_register()
    assert not Schedule.objects.filter(func=ALERT_FUNC).exists()
    report = alerts_scan()
    assert (report.events, report.message) == (0, None)
    assert not AlertState.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_scheduled_scan_runs_as_a_django_q_task(receiver):
    """The schedule's function, run by django-q2, scans and delivers."""
    with tasks_run_at_once():
        async_task(ALERT_FUNC)
    assert AlertState.objects.get().attempt_cursor is not None
    assert Task.objects.filter(func=ALERT_FUNC, success=True).count() == 1


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"ALERT_WEBHOOK_URL": "http://discord.example/api/webhooks/1/x"}, "ALERT_WEBHOOK_URL"),
        ({"ALERT_WEBHOOK_URL": "discord.com/api/webhooks/1/x"}, "ALERT_WEBHOOK_URL"),
        ({"ALERT_ON_SYNC": "true"}, "ALERT_ON_SYNC=true needs ALERT_WEBHOOK_URL"),
        (
            {"ALERT_WEBHOOK_URL": "https://discord.com/api/webhooks/1/x", "ALERT_DAILY_AT": "9am"},
            "ALERT_DAILY_AT",
        ),
        (
            {"ALERT_WEBHOOK_URL": "https://d.example/w", "ALERT_FAILED_ATTEMPTS": "0"},
            "ALERT_FAILED_ATTEMPTS",
        ),
    ],
)
def test_alert_settings_that_cannot_work_stop_the_start(tmp_path, overrides, named):
    """A webhook URL that is not https (but for loopback), ALERT_ON_SYNC without a URL, or a
    bad time or count stops every command, naming the variable."""
    env = manage_env(keeper=tmp_path / "keeper.db", haven=tmp_path / "VH.db", **overrides)
    done = run_manage("check", env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert named in done.stderr


def test_alerts_test_posts_one_message_to_the_configured_webhook(tmp_path):
    """``manage.py alerts_test`` posts its test message to the URL and says Discord's answer."""
    with Receiver() as running:
        env = manage_env(
            keeper=tmp_path / "keeper.db", haven=tmp_path / "VH.db", ALERT_WEBHOOK_URL=running.url
        )
        done = run_manage("alerts_test", env=env)
    assert done.returncode == 0, done.stderr
    assert "answered HTTP 204" in done.stdout
    (body,) = running.bodies
    assert body["allowed_mentions"] == {"parse": []}
    assert body["embeds"][0]["title"] == "Alerts reach this channel"


# --- what an alert says, without a database ----------------------------------------------------


def test_member_text_is_shown_literally_and_pings_no_one():
    """Markdown and mentions in a member's text come out escaped: no bold, no masked link,
    no @everyone, no <@id>; the line stays one line."""
    shown = alerts.shown("**bold** [x](https://evil.example) @everyone <@1234567890123456>\nnext")
    assert "@everyone" not in shown and "<@1" not in shown
    assert "\\*\\*bold\\*\\*" in shown and "\\[x\\]\\(https" in shown
    assert "\n" not in shown


def test_any_number_of_events_and_huge_texts_fit_one_message():
    """Thousands of events of every kind, with texts far beyond any limit, still make one
    message within every limit, each listed kind counting what it left out."""
    item = {
        "queue_id": 1,
        "discovery_id": 2,
        "number": 5,
        "error": "E" * 10_000,
        "type": "🏛️",
        "system": "🪐" * 3000,
        "location": "L" * 5000,
        "username": PINGS * 100,
        "haven_discovery_id": 9,
    }
    events = [
        (kind, item) for kind in ("exceeded", "failing", "waiting", "synced") for _ in range(999)
    ]
    events += [("outage", {"what": "W" * 5000, "since": "2026-01-01T00:00:00Z"})]
    events += [("daily", {"day": "2026-01-01", "counts": {}, "oldest_pending_seconds": 90})]
    body = alerts.message_body(events, failed_attempts=5, footer="F" * 5000)
    assert_within_discord_limits(body)
    assert len(body["embeds"]) == 6
    for embed in body["embeds"][2:]:
        assert "… and " in embed["description"]
