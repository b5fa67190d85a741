"""Every page of the operator console in a real browser (Debian's Chromium, driven by Playwright,
as in ``tests/test_browser.py``) at a 1280 px wide window, on a queue like a working day's:
failing, waiting, conflicting and exceeded items, items synced over several hours, operator
actions, a Control Room agent and django-q2's runs. Each page is saved whole under
``test-artifacts/<page>.png``; each must fit the window (nothing clipped or scrolled sideways)
and say what it should: the console's name, the buttons a record has or lacks, times to the
second with their age, attempts numbered on across retries, states by their labels."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from django_q.models import Task

from syncq.models import HavenAgent, OperatorAction, SyncQueueItem, SyncStatus
from syncq.selectors import bot_heartbeat_key
from syncq.services import queue_item_fail, queue_items_claim, queue_items_retry
from tests.factories import (
    NO_PLACE,
    queue_item_backing_off,
    queue_item_exceeded,
    queue_item_in_conflict,
    queue_item_pending,
    queue_item_synced,
    queue_item_waiting,
    user_make,
)
from tests.test_browser import ARTIFACTS, browser_page  # noqa: F401 - the fixture, and its skip

WIDTH = 1280
PASSWORD = "a-long-test-password"
#: A time as the console shows it: UTC to the second, then its age.
TIME_SHOWN = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \((just now|[^)]* ago|in [^)]*)\)")

#: What a page measures of itself: the document's width, each table's against its box's, and
#: every element of #content that reaches past the window's right edge.
MEASURE = """
(width) => {
  const tables = [...document.querySelectorAll("#content table")]
    .filter((t) => t.offsetParent !== null)
    .map((t) => ({
      id: t.id || t.className || t.parentElement.className,
      scroll: t.scrollWidth,
      box: t.parentElement.clientWidth,
    }));
  const wide = [...document.querySelectorAll("#content *")]
    .filter((e) => e.getClientRects().length && e.getBoundingClientRect().right > width + 1)
    .map((e) => `${e.tagName}#${e.id} ${Math.round(e.getBoundingClientRect().right)}`);
  return {page: document.documentElement.scrollWidth, tables, wide: wide.slice(0, 10)};
}
"""


def _claim_fail(item_id: int, error: str) -> str:
    """Claim the one due item, ``item_id``, and record its attempt failing with ``error``."""
    token, claimed = queue_items_claim(limit=1000)
    assert [c.id for c in claimed] == [item_id]
    return queue_item_fail(item=claimed[0], token=token, error=error)


def _working_day(vh_path, root) -> dict[str, int]:
    """A queue as an operator finds it after a day, made through the services; returns the ids
    the test visits."""
    now = timezone.now()
    conflict = queue_item_in_conflict(vh_path, description="Fossil ledge, edited twice")
    waiting = queue_item_waiting(description="A ruin on a world VH does not know")
    for minutes in (10, 70, 130, 250, 250, 250, 430, 670):
        item = queue_item_synced(
            description=f"Synced {minutes} min ago",
            system_name="Oculi",
            location="Erren",
            location_type="planet",
        )
        SyncQueueItem.objects.filter(id=item.id).update(
            created_at=now - timedelta(minutes=minutes, seconds=40),
            synced_at=now - timedelta(minutes=minutes),
        )
    long_error = "HavenError: cannot open " + "/very/long/path/without/spaces" * 6
    for n in range(3):
        queue_item_exceeded(
            attempts=2,
            error=long_error if n == 0 else "OperationalError: database is locked",
            description=f"stuck {n}",
            system_name="The Extraordinarily Long-Named System of Endless Spires",
            username="a_submitter_with_a_very_long_discord_name",
        )
    # Exceeded on its first attempt, then retried twice by an operator, failing each time:
    # its three attempts are numbered 1, 2 and 3.
    retried = queue_item_exceeded(attempts=1, error="HavenError: VH-Database.db is locked")
    with override_settings(SYNC_BASE_DELAY_SECONDS=0):
        for _ in range(2):
            queue_items_retry(ids=[retried.id], actor=root, source="admin")
            state = _claim_fail(retried.id, "HavenError: VH-Database.db is locked")
            assert state == SyncStatus.MAX_RETRIES_EXCEEDED
    queue_item_backing_off(attempts=2, error="MappingError: no planet Zeta", **NO_PLACE)
    queue_item_pending(description="just submitted")
    exceeded = list(
        SyncQueueItem.objects.filter(sync_status=SyncStatus.MAX_RETRIES_EXCEEDED)
        .exclude(id=retried.id)
        .values_list("id", flat=True)
    )
    queue_items_retry(ids=exceeded, actor=root, source="admin")
    OperatorAction.objects.create(
        actor_name="ops",
        source="api",
        action="retry",
        items_changed=14,
        detail={"ids": list(range(1000, 1014))},
    )
    OperatorAction.objects.create(
        actor_name="ops",
        source="bot",
        action="retry",
        items_changed=3,
        detail={"status": SyncStatus.MAX_RETRIES_EXCEEDED},
    )
    HavenAgent.objects.create(
        name="control-room-desktop",
        agent_id=uuid.uuid4().hex,
        version="1.4.2",
        host="DESKTOP-CONTROLROOM-WITH-A-LONG-HOSTNAME",
        vh_state="ok",
        vh_detail="C:\\Users\\keeper\\AppData\\Roaming\\HavenControlRoom\\VH-Database.db",
        started_at=now - timedelta(hours=5),
        last_seen_at=now - timedelta(seconds=5),
    )
    for n, success in enumerate((True, False)):
        Task.objects.create(
            id=uuid.uuid4().hex,
            name=f"sync-run-{n}",
            func="syncq.tasks.sync_due",
            started=now - timedelta(minutes=5 - n),
            stopped=now - timedelta(minutes=5 - n, seconds=-2),
            success=success,
            result={"synced": 3} if success else "Traceback: " + "x" * 300,
            attempt_count=1,
        )
    return {"retried": retried.id, "conflict": conflict.id, "waiting": waiting.id}


def _fits(page, name: str) -> None:
    """The page fits the window: no sideways scroll, no table wider than its box, nothing of
    #content past the right edge."""
    measured = page.evaluate(MEASURE, WIDTH)
    assert measured["page"] <= WIDTH, (name, measured)
    for table in measured["tables"]:
        assert table["scroll"] <= table["box"] + 1, (name, table)
    assert measured["wide"] == [], (name, measured["wide"])


def _visit(page, url: str, name: str) -> str:
    """Open ``url``, wait for it to load, save it whole as ``test-artifacts/<name>.png``, check
    it fits and says Keeper Sync; returns its text."""
    response = page.goto(url)
    assert response.status == 200, (name, response.status)
    page.wait_for_load_state("load")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    _fits(page, name)
    assert page.locator("#site-name").inner_text() == "Keeper Sync", name
    assert "Keeper Sync" in page.title(), name
    assert "Django administration" not in page.content(), name
    return page.locator("#content").inner_text()


def _buttons(page) -> set[str]:
    """The values and texts of the page's buttons and button links in #content."""
    found = page.eval_on_selector_all(
        "#content input[type=submit], #content button, #content a.deletelink",
        "(els) => els.map((e) => (e.value || e.textContent).trim())",
    )
    return set(found)


@pytest.mark.django_db(transaction=True, databases=["default", "haven"])
def test_every_console_page_fits_1280_px_and_says_what_it_should(
    live_server,
    browser_page,  # noqa: F811
    sample_haven_db,
    settings,
    monkeypatch,
):
    """Signed in as a superuser, each console page at 1280 px fits the window and shows the
    console's name, times to the second with their age, states by their labels, attempts
    numbered on across retries, and the right buttons for a record."""
    root = user_make("ops", superuser=True, password=PASSWORD)
    ids = _working_day(sample_haven_db, root)
    from django.core.cache import cache

    cache.set(
        bot_heartbeat_key(),
        {
            "at": timezone.now(),
            "ready": True,
            "connected": True,
            "last_event_at": timezone.now(),
            "user": "Keeper#0001",
            "guilds": 1,
            "latency_ms": 42.0,
        },
        300,
    )

    class Cluster:
        host, status, workers, tob = "keeper-vm", "Idle", [101, 102], timezone.now()

        def uptime(self) -> float:
            return 7260.0

    monkeypatch.setattr("syncq.dashboard.worker_clusters", lambda: [Cluster()])
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser_page
    base = live_server.url

    page.goto(f"{base}/admin/login/")
    page.screenshot(path=str(ARTIFACTS / "login.png"), full_page=True)
    assert page.locator("#site-name").inner_text() == "Keeper Sync"
    assert "Django" not in page.title()
    page.fill("#id_username", "ops")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")

    text = _visit(page, f"{base}/admin/", "admin-index")
    captions = page.eval_on_selector_all(
        "#content caption", "(els) => els.map((e) => e.textContent.trim().toUpperCase())"
    )
    assert captions.count("SYNC QUEUE") == 1, captions
    assert "Operator console" in page.locator("#content h1").inner_text()
    assert "Queue items" in text and "Operator actions" in text

    text = _visit(page, f"{base}/admin/dashboard/", "dashboard")
    assert page.locator("#haven-state").inner_text() == "OK"
    assert TIME_SHOWN.search(page.locator("#haven-since").inner_text())
    assert page.locator("#bot-state").inner_text() == "online"
    assert TIME_SHOWN.search(page.locator("#bot-seen").inner_text())
    assert page.locator("#worker-hosts").inner_text() == "2 worker processes on keeper-vm"
    assert TIME_SHOWN.search(page.locator("#worker-last-run").inner_text())
    assert page.locator("#latency-day").inner_text() == "median 40.0 s, p95 40.0 s (8 items)"
    assert page.locator("#latency-hour").inner_text() == "median 40.0 s, p95 40.0 s (1 item)"
    bars = page.eval_on_selector_all(
        "svg rect.bar", "(els) => els.filter((e) => e.getBBox().height > 0).length"
    )
    assert bars >= 5
    labels = page.eval_on_selector_all(
        "svg text.hour-label", "(els) => els.map((e) => e.textContent)"
    )
    assert len(labels) == 8 and all(int(label) % 3 == 0 for label in labels), labels
    assert "UTC" in page.locator("#chart-range").inner_text()
    top_errors = page.locator("#top-errors table").bounding_box()
    assert top_errors["width"] > WIDTH / 2

    settings.USE_HAVEN_AGENT = True
    _visit(page, f"{base}/admin/dashboard/", "dashboard-agent")
    assert page.locator("#haven-state").inner_text() == "Through the agent: OK"
    assert page.locator("#glance-agent-state").inner_text() == "online"
    settings.USE_HAVEN_AGENT = False

    text = _visit(page, f"{base}/admin/syncq/syncqueueitem/", "queue-items")
    assert "Max retries exceeded" in text and "max_retries_exceeded" not in text
    assert "Conflict with the Control Room" in text
    assert "Oculi" in text and "Erren" in text
    assert "a_submitter_with_a_very" in text
    assert TIME_SHOWN.search(text)

    text = _visit(page, f"{base}/admin/syncq/syncqueueitem/?q=Oculi", "queue-items-search")
    assert page.locator("#result_list tbody tr").count() == 9

    url = f"{base}/admin/syncq/syncqueueitem/{ids['retried']}/change/"
    text = _visit(page, url, "queue-item")
    assert f"Queue item {ids['retried']}" in page.title()
    assert "Max retries exceeded" in page.title()
    assert "max_retries_exceeded" not in page.title() + text
    numbers = page.eval_on_selector_all(
        ".inline-group tbody tr td.field-number",
        "(els) => els.map((e) => e.textContent.trim())",
    )
    assert sorted(numbers) == ["1", "2", "3"], numbers
    assert len(TIME_SHOWN.findall(text)) >= 5
    buttons = _buttons(page)
    assert {"Retry", "Reset attempts"} <= buttons, buttons
    assert not {"Save", "Save and continue editing", "Delete"} & buttons, buttons

    text = _visit(
        page, f"{base}/admin/syncq/syncqueueitem/{ids['conflict']}/change/", "queue-item-conflict"
    )
    buttons = _buttons(page)
    assert "Keep the keeper version" in buttons
    assert not {"Retry", "Reset attempts", "Save", "Delete"} & buttons, buttons

    text = _visit(page, f"{base}/admin/discoveries/discovery/", "discoveries")
    assert "Max retries exceeded" in text
    discovery_id = SyncQueueItem.objects.get(id=ids["waiting"]).discovery_id
    _visit(page, f"{base}/admin/discoveries/discovery/{discovery_id}/change/", "discovery")
    assert "Save" in _buttons(page)

    text = _visit(page, f"{base}/admin/syncq/operatoraction/", "operator-actions")
    assert "1000, 1001" in text and "and 6 more" in text
    assert "every item Max retries exceeded" in text
    assert page.locator(
        f'#result_list a[href$="/syncq/syncqueueitem/{ids["retried"]}/change/"]'
    ).count()
    assert TIME_SHOWN.search(text)
    action = OperatorAction.objects.order_by("id").first()
    _visit(page, f"{base}/admin/syncq/operatoraction/{action.id}/change/", "operator-action")
    assert not {"Save", "Save and continue editing", "Delete"} & _buttons(page)

    text = _visit(page, f"{base}/admin/syncq/havenagent/", "agents")
    assert "control-room-desktop" in text and TIME_SHOWN.search(text)
    agent = HavenAgent.objects.get()
    _visit(page, f"{base}/admin/syncq/havenagent/{agent.id}/change/", "agent")
    assert not {"Save", "Save and continue editing", "Delete"} & _buttons(page)

    _visit(page, f"{base}/admin/django_q/schedule/", "schedules")
    _visit(page, f"{base}/admin/django_q/failure/", "failed-tasks")
    _visit(page, f"{base}/admin/django_q/success/", "successful-tasks")
    _visit(page, f"{base}/admin/auth/user/", "users")
