"""The operator console explains itself (issue 16): its name on every page, one "Sync queue"
section on the index, the dashboard's first row (VH-Database.db and since when, the bot, the
worker), the queue list's discovery columns and search, an item's Retry and Reset attempts
buttons and no Save or Delete on records, times to the second with their age, attempts
numbered on across retries, states by their labels, operator actions' items, and the latency
as a median and 95th percentile over the last hour and day."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from syncq.dashboard import throughput_chart
from syncq.display import when_text
from syncq.models import OperatorAction, SyncAttempt, SyncQueueItem, SyncStatus
from syncq.selectors import bot_heartbeat_key, latency_figures, queue_statistics
from syncq.services import queue_item_fail, queue_items_claim, queue_items_retry, sync_batch
from tests.conftest import haven_at
from tests.factories import (
    CHANGE,
    discovery_make,
    queue_item_exceeded,
    queue_item_pending,
    queue_item_synced,
    user_make,
)

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:syncq_syncqueueitem_changelist")
DASHBOARD = "/admin/dashboard/"
#: A time as the console shows it: UTC to the second, then its age.
TIME_SHOWN = re.compile(r"\d{4}-\d\d-\d\d</span> <span>\d\d:\d\d:\d\d UTC</span> <span>\(")


def item_page(item_id: int) -> str:
    return reverse("admin:syncq_syncqueueitem_change", args=[item_id])


def button_url(item_id: int, button: str) -> str:
    return reverse(f"admin:syncq_syncqueueitem_{button}", args=[item_id])


def claim_fail(item_id: int, error: str = "HavenError: VH-Database.db is locked") -> str:
    """Claim the one due item, ``item_id``, and record its attempt failing."""
    token, claimed = queue_items_claim(limit=1000)
    assert [c.id for c in claimed] == [item_id]
    with override_settings(SYNC_BASE_DELAY_SECONDS=0):
        return queue_item_fail(item=claimed[0], token=token, error=error)


# --- the console's name and the index -------------------------------------------------------


def test_every_page_says_keeper_sync_never_django_administration(client, root):
    """The login page, the index and a list are headed "Keeper Sync", titled with it, and
    never say "Django administration" or "Django site admin"."""
    login = client.get(reverse("admin:login")).content.decode()
    client.force_login(root)
    index = client.get(reverse("admin:index")).content.decode()
    listing = client.get(CHANGELIST).content.decode()
    for html in (login, index, listing):
        assert '<div id="site-name"><a href="/admin/">Keeper Sync</a></div>' in html
        assert "| Keeper Sync</title>" in html
        assert "Django administration" not in html and "Django site admin" not in html
    assert "<h1>Operator console</h1>" in index


def test_the_index_has_one_sync_queue_section_with_its_counts_and_lists(client, root):
    """One section is headed "Sync queue": the counts per state and the app's own lists;
    Django's app list no longer repeats it."""
    queue_item_pending()
    client.force_login(root)
    html = client.get(reverse("admin:index")).content.decode()
    assert len(re.findall(r">\s*Sync queue\s*</a>\s*</caption>", html)) == 1
    section = html[html.index('id="queue-glance"') :]
    section = section[: section.index("</table>")]
    assert 'data-state="pending">1<' in section
    for name in ("Queue items", "Operator actions", "Control Room agents"):
        assert name in section
    assert "app-syncq module" not in html


def test_staff_without_the_queue_keep_djangos_app_list(client):
    """Staff who may not view queue items see no counts and the app list as Django gives it."""
    client.force_login(
        user_make("discoveries-only", staff=True, perms=["discoveries.view_discovery"])
    )
    html = client.get(reverse("admin:index")).content.decode()
    assert 'id="queue-glance"' not in html
    assert "Discoveries" in html


# --- the queue list ---------------------------------------------------------------------------


def test_the_list_shows_type_system_place_submitter_and_times_to_the_second(admin_client):
    """Each row shows the discovery's emoji, system, place and submitter, and when it was
    queued to the second with its age; a name past 24 characters is cut, whole in its
    tooltip, escaped."""
    queue_item_pending(
        system_name="Oculi",
        location="Erren",
        location_type="planet",
        username="Sneaky & Co, a submitter with a long name",
    )
    html = admin_client.get(CHANGELIST).content.decode()
    assert "🏛️&nbsp;#" in html
    assert "Oculi" in html and "Erren" in html
    assert 'title="Sneaky &amp; Co, a submitter with a long name">Sneaky &amp; Co, a' in html
    assert TIME_SHOWN.search(html)


def test_the_list_costs_the_same_queries_for_5_rows_as_for_40(
    admin_client, django_assert_max_num_queries
):
    """The discovery columns come with the items in one join, not a query per row."""
    for n in range(5):
        queue_item_pending(system_name=f"System {n}")
    with CaptureQueriesContext(connection) as five:
        assert admin_client.get(CHANGELIST).status_code == 200
    for n in range(35):
        queue_item_pending(system_name=f"System {n}")
    with django_assert_max_num_queries(len(five)):
        assert "40 queue items" in admin_client.get(CHANGELIST).content.decode()


@pytest.mark.parametrize(
    ("query", "expected"),
    [("Oculi", 1), ("erren", 1), ("wanderer_42", 1), ("Demo Alpha", 1), ("nothing-like-it", 0)],
)
def test_search_covers_system_place_and_submitter(admin_client, query, expected):
    """The list's search finds items by their discovery's system, place and submitter."""
    queue_item_synced(system_name="Oculi", location="Erren", username="wanderer_42")
    queue_item_pending()  # Demo Alpha, Alpha Prime, Tester
    response = admin_client.get(CHANGELIST, {"q": query})
    assert response.status_code == 200
    assert response.context["cl"].result_count == expected


def test_search_by_id_and_error_text_still_works_and_long_searches_are_refused(admin_client):
    """An id and an error's words still find their item; 51 words are refused with a
    message, never a 500."""
    item = queue_item_exceeded(error="OperationalError: database is locked")
    queue_item_pending()
    assert admin_client.get(CHANGELIST, {"q": str(item.id)}).context["cl"].result_count >= 1
    assert admin_client.get(CHANGELIST, {"q": "locked"}).context["cl"].result_count == 1
    response = admin_client.get(CHANGELIST, {"q": " ".join(["w"] * 51)}, follow=True)
    assert response.status_code == 200
    assert "Search for at most 50 words" in response.content.decode()


# --- an item's page ------------------------------------------------------------------------


def test_an_exceeded_items_page_has_retry_and_reset_and_no_save_or_delete(admin_client):
    """An exceeded item's page offers Retry and Reset attempts (POST forms with CSRF), names
    its state by its label in the title, and has no Save, Save and continue or Delete."""
    item = queue_item_exceeded(attempts=2)
    html = admin_client.get(item_page(item.id)).content.decode()
    assert 'value="Retry"' in html and 'value="Reset attempts"' in html
    assert f'action="{button_url(item.id, "retry")}"' in html
    assert f'action="{button_url(item.id, "reset_attempts")}"' in html
    assert html.count('name="csrfmiddlewaretoken"') >= 3
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert "deletelink" not in html
    title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
    assert "Max retries exceeded" in title and "max_retries_exceeded" not in title
    assert "max_retries_exceeded)" not in html  # the breadcrumb, too


def test_retry_from_the_items_page_makes_it_due_and_is_recorded(admin_client):
    """POST Retry: pending, attempts 0, error cleared, back to the page with a message, and an
    operator action of source admin naming the item."""
    item = queue_item_exceeded(attempts=2)
    response = admin_client.post(button_url(item.id, "retry"), follow=True)
    assert response.redirect_chain[-1][0] == item_page(item.id)
    assert f"Queue item {item.id} will be tried again now." in response.content.decode()
    item.refresh_from_db()
    assert (item.sync_status, item.sync_attempts, item.sync_error) == (SyncStatus.PENDING, 0, None)
    action = OperatorAction.objects.get()
    assert (action.source, action.action, action.detail) == ("admin", "retry", {"ids": [item.id]})


def test_reset_attempts_from_the_items_page_keeps_the_error(admin_client):
    """POST Reset attempts: pending, attempts 0, the last error kept; recorded."""
    item = queue_item_exceeded(attempts=2, error="HavenError: VH-Database.db is locked")
    admin_client.post(button_url(item.id, "reset_attempts"))
    item.refresh_from_db()
    assert (item.sync_status, item.sync_attempts) == (SyncStatus.PENDING, 0)
    assert item.sync_error == "HavenError: VH-Database.db is locked"
    assert OperatorAction.objects.get().action == "reset_attempts"


@pytest.mark.parametrize("button", ["retry", "reset_attempts"])
def test_the_buttons_are_post_only(admin_client, button):
    """A GET of either button is 405 and changes nothing."""
    item = queue_item_exceeded()
    assert admin_client.get(button_url(item.id, button)).status_code == 405
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED
    assert not OperatorAction.objects.exists()


@pytest.mark.parametrize("button", ["retry", "reset_attempts"])
def test_view_only_staff_see_no_buttons_and_get_403(client, staff_viewer, button):
    """Staff who may only view queue items see neither button, and a forged POST is 403."""
    item = queue_item_exceeded()
    client.force_login(staff_viewer)
    html = client.get(item_page(item.id)).content.decode()
    assert 'value="Retry"' not in html and 'value="Reset attempts"' not in html
    assert client.post(button_url(item.id, button)).status_code == 403
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED


def test_an_operator_who_may_change_items_gets_the_buttons(client):
    """Staff with "Can change queue item" (not superusers) get the buttons and may use them."""
    item = queue_item_exceeded()
    client.force_login(user_make("operator", staff=True, perms=CHANGE))
    assert 'value="Retry"' in client.get(item_page(item.id)).content.decode()
    client.post(button_url(item.id, "retry"))
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.PENDING


@pytest.mark.parametrize("button", ["retry", "reset_attempts"])
def test_a_synced_item_has_no_buttons_and_a_forged_post_is_refused(admin_client, button):
    """A synced item is not retryable: no buttons, and a POST changes nothing and says why."""
    item = queue_item_synced()
    assert 'value="Retry"' not in admin_client.get(item_page(item.id)).content.decode()
    response = admin_client.post(button_url(item.id, button), follow=True)
    assert "only pending, waiting or exceeded items can be retried" in response.content.decode()
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.SYNCED
    assert not OperatorAction.objects.exists()


def test_a_missing_item_is_404_for_the_buttons(admin_client):
    """A button of an item that does not exist is 404."""
    assert admin_client.post(button_url(999_999, "retry")).status_code == 404


def test_read_only_records_have_no_save_or_delete_but_discoveries_do(admin_client, root):
    """Operator actions and agents are records: no Save, no Delete; a discovery's page keeps
    Save."""
    item = queue_item_exceeded()
    queue_items_retry(ids=[item.id], actor=root, source="admin")
    action = OperatorAction.objects.get()
    html = admin_client.get(
        reverse("admin:syncq_operatoraction_change", args=[action.id])
    ).content.decode()
    assert 'name="_save"' not in html and "deletelink" not in html
    discovery = admin_client.get(
        reverse("admin:discoveries_discovery_change", args=[item.discovery_id])
    ).content.decode()
    assert 'name="_save"' in discovery


# --- attempts count on -----------------------------------------------------------------------


def test_attempt_numbers_count_on_across_operator_retries():
    """Exceeded after attempts 1 and 2, retried, failing again: the third attempt is numbered
    3, while the item's attempt counter (backoff, max) starts again at 1."""
    item = queue_item_exceeded(attempts=2)
    queue_items_retry(ids=[item.id], source="admin")
    claim_fail(item.id)
    item.refresh_from_db()
    numbers = list(item.attempts.order_by("started_at", "id").values_list("number", flat=True))
    assert numbers == [1, 2, 3]
    assert item.sync_attempts == 1


def test_the_items_page_shows_the_attempts_numbered_on_with_their_times(admin_client):
    """The attempts inline shows 3, 2, 1 after a retry, each started to the second with its
    age."""
    item = queue_item_exceeded(attempts=2)
    queue_items_retry(ids=[item.id], source="admin")
    claim_fail(item.id)
    html = admin_client.get(item_page(item.id)).content.decode()
    numbers = re.findall(r'<td class="field-number">\s*<p>(\d+)</p>', html)
    assert numbers == ["3", "2", "1"]
    assert len(TIME_SHOWN.findall(html)) >= 5


@pytest.mark.django_db(transaction=True, databases=["default", "haven"])
def test_a_batch_numbers_its_attempts_in_one_query(tmp_path, settings):
    """A sync batch of five failing items finds their attempt numbers in one grouped query,
    not one per item."""
    with haven_at(tmp_path / "absent.db", settings):
        for n in range(5):
            discovery_make(description=f"fails {n}")
        with CaptureQueriesContext(connection) as batch:
            assert sync_batch().retrying == 5
    highest = [q for q in batch.captured_queries if 'MAX("sync_attempt"."number")' in q["sql"]]
    assert len(highest) == 1
    assert set(SyncAttempt.objects.values_list("number", flat=True)) == {1}


# --- operator actions ------------------------------------------------------------------------


def test_operator_actions_list_their_items_linked_and_cut(admin_client):
    """An action's items: the first eight ids linked to their pages and how many more; every
    item of a state, linked to the list so filtered; a discovery, linked; a detail of other
    shapes reads "—", never a 500. The action reads by its label; the time to the second."""
    OperatorAction.objects.create(
        actor_name="ops",
        source="api",
        action="reset_attempts",
        items_changed=12,
        detail={"ids": list(range(101, 113))},
    )
    OperatorAction.objects.create(
        actor_name="ops",
        source="bot",
        action="retry",
        items_changed=3,
        detail={"status": "max_retries_exceeded"},
    )
    OperatorAction.objects.create(
        actor_name="ops",
        source="admin",
        action="edit",
        items_changed=1,
        detail={"discovery_id": 7, "fields": ["description"]},
    )
    OperatorAction.objects.create(
        actor_name="ops",
        source="admin",
        action="retry",
        items_changed=1,
        detail={"ids": ["<script>", True, None]},
    )
    OperatorAction.objects.create(
        actor_name="ops", source="admin", action="retry", items_changed=1, detail=["odd"]
    )
    response = admin_client.get(reverse("admin:syncq_operatoraction_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    for i in range(101, 109):
        assert f'<a href="{item_page(i)}">{i}</a>' in html
    assert item_page(109) not in html
    assert "… and 4 more" in html
    assert (
        f'href="{CHANGELIST}?sync_status__exact=max_retries_exceeded">Max retries exceeded' in html
    )
    assert reverse("admin:discoveries_discovery_change", args=[7]) in html
    assert "<script>" not in html
    assert "Reset attempts" in html
    assert TIME_SHOWN.search(html)


def test_operator_actions_filter_by_action_label(admin_client):
    """The action filter lists the actions by their labels and filters by one."""
    OperatorAction.objects.create(
        actor_name="a", source="api", action="write_unplaced", items_changed=1, detail={}
    )
    OperatorAction.objects.create(
        actor_name="b", source="api", action="retry", items_changed=1, detail={}
    )
    url = reverse("admin:syncq_operatoraction_changelist")
    html = admin_client.get(url).content.decode()
    assert "Write without a place" in html
    response = admin_client.get(url, {"action__exact": "write_unplaced"})
    assert response.context["cl"].result_count == 1


# --- times ------------------------------------------------------------------------------------


def test_when_text_reads_utc_to_the_second_with_its_age():
    """A time reads in UTC to the second with how long ago, or how soon, it is."""
    now = datetime(2026, 12, 8, 1, 25, 5, tzinfo=UTC)
    assert when_text(now - timedelta(minutes=3), now) == "2026-12-08 01:22:05 UTC (3 min ago)"
    assert when_text(now + timedelta(seconds=30), now) == "2026-12-08 01:25:35 UTC (in 30 s)"
    assert when_text(now, now) == "2026-12-08 01:25:05 UTC (just now)"
    assert when_text(None, now) == "—"


# --- the dashboard ----------------------------------------------------------------------------


def test_latency_figures_are_the_median_and_nearest_rank_p95():
    """Twenty durations 1..20 s: median 10.5, p95 19 (the 19th of 20); none: None."""
    assert latency_figures([float(n) for n in range(20, 0, -1)]) == {
        "median": 10.5,
        "p95": 19.0,
        "sample": 20,
    }
    assert latency_figures([]) is None


def test_statistics_give_the_last_hours_and_days_latency():
    """Items synced 10 min ago (queued 10, 20, 30 s before) and 5 h ago (queued 300 s
    before): the hour's median 20 s over 3 items, the day's median 25 s over 4."""
    now = timezone.now()
    for synced_ago, took in [(600, 10), (600, 20), (600, 30), (5 * 3600, 300)]:
        item = queue_item_synced()
        SyncQueueItem.objects.filter(id=item.id).update(
            synced_at=now - timedelta(seconds=synced_ago),
            created_at=now - timedelta(seconds=synced_ago + took),
        )
    stats = queue_statistics(now=now)
    assert stats["sync_seconds_last_hour"] == {"median": 20.0, "p95": 30.0, "sample": 3}
    assert stats["sync_seconds_last_day"] == {"median": 25.0, "p95": 300.0, "sample": 4}
    assert set(stats["sync_seconds"]) == {"mean", "p95", "sample"}


def test_the_dashboards_first_row_says_the_file_bot_and_worker(client, root, monkeypatch):
    """The first row: VH-Database.db's state and since when, the bot online with its last
    heartbeat, the worker's processes, hosts and last sync run."""
    from django.core.cache import cache

    monkeypatch.setattr("syncq.dashboard.haven_probe", lambda: "missing")
    cache.set(
        bot_heartbeat_key(),
        {"at": timezone.now(), "ready": True, "connected": True, "user": "Keeper#1"},
        300,
    )

    class Cluster:
        host, status, workers, tob = "keeper-vm", "Idle", [1, 2, 3], timezone.now()

        def uptime(self):
            return 60.0

    monkeypatch.setattr("syncq.dashboard.worker_clusters", lambda: [Cluster(), Cluster()])
    client.force_login(root)
    html = client.get(DASHBOARD).content.decode()
    assert 'id="haven-state">Missing<' in html
    assert re.search(r'id="haven-since">So since at least \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC', html)
    assert 'id="bot-state">online<' in html
    assert re.search(r'id="bot-seen">Last heard \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC', html)
    assert 'id="worker-hosts">6 worker processes on keeper-vm<' in html
    assert "Last sync run: none kept" in html


def test_the_file_states_since_is_the_change_once_one_was_seen(client, root, monkeypatch):
    """Found ok, then locked: "Since" the moment it was found locked (a change seen), not
    "since at least"."""
    client.force_login(root)
    monkeypatch.setattr("syncq.dashboard.haven_probe", lambda: "ok")
    assert "So since at least" in client.get(DASHBOARD).content.decode()
    monkeypatch.setattr("syncq.dashboard.haven_probe", lambda: "locked")
    html = client.get(DASHBOARD).content.decode()
    assert 'id="haven-state">Locked<' in html
    assert re.search(r'id="haven-since">Since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC', html)


def test_an_absent_bot_and_an_agent_owned_file_read_so(client, root, settings):
    """No heartbeat: the bot is offline and never heard from; with USE_HAVEN_AGENT the file
    is reached through the agent (offline here) and the agent has its own box."""
    settings.USE_HAVEN_AGENT = True
    client.force_login(root)
    html = client.get(DASHBOARD).content.decode()
    assert 'id="bot-state">offline<' in html and "Never heard from" in html
    assert 'id="haven-state">Through the agent, which is offline<' in html
    assert 'id="glance-agent-state">offline<' in html


def test_an_empty_top_errors_box_keeps_its_width(client, root):
    """With no errors the box says so across the page's width (its table is 100 % wide)."""
    client.force_login(root)
    html = client.get(DASHBOARD).content.decode()
    assert 'id="no-errors"' in html
    assert "#top-errors table, #throughput { width: 100%; }" in html


def test_the_chart_labels_every_third_utc_hour_and_shows_small_hours():
    """Bars are labelled 00, 03, … by their UTC hour, the range is captioned, and an hour of
    one item beside an hour of a thousand still has a visible bar."""
    first = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    series = [{"hour": first + timedelta(hours=i), "count": 0} for i in range(24)]
    series[5]["count"], series[6]["count"] = 1000, 1
    chart = throughput_chart(series)
    labels = [bar["label"] for bar in chart["bars"] if bar["label"]]
    assert labels == ["03", "06", "09", "12", "15", "18", "21", "00"]
    assert chart["range"] == "2026-12-07 02:00 – 2026-12-08 01:59 UTC"
    assert chart["bars"][6]["height"] >= 2
    assert chart["bars"][7]["height"] == 0
