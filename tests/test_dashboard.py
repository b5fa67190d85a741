"""The operator console's queue dashboard (``/admin/dashboard/``), the counts on the admin index,
and the first-run admin account of ``make run``."""

from __future__ import annotations

import re
from datetime import UTC, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from discoveries.models import Discovery
from syncq.management.commands.runservice import CREATE_ADMIN_HINT, admin_first_run
from syncq.models import SyncQueueItem, SyncStatus
from syncq.selectors import throughput_by_hour
from tests.factories import (
    queue_item_backing_off,
    queue_item_exceeded,
    queue_item_pending,
    queue_item_synced,
    queue_item_syncing,
    user_make,
)

DASHBOARD = "/admin/dashboard/"
ERROR = "VH-Database.db is locked"


def queue_rows(states: dict[str, int], *, error: str | None = None) -> list[SyncQueueItem]:
    """Store ``{state: n}`` queue items, each with its own discovery, in bulk and by hand: the
    query-bound tests need thousands of rows, which the services (a transaction or more a row)
    would take most of a minute to make. Synced ones are synced an hour ago; the others carry
    ``error`` (when given)."""
    now = timezone.now()
    total = sum(states.values())
    discoveries = Discovery.objects.bulk_create(
        Discovery(
            user_id="1",
            username=f"user{i}",
            discovery_type="🏛️",
            location="Alpha Prime",
            system_name="Demo Alpha",
            description=f"discovery {i}",
        )
        for i in range(total)
    )
    items, owners = [], iter(discoveries)
    for state, n in states.items():
        synced = state == SyncStatus.SYNCED
        for _ in range(n):
            items.append(
                SyncQueueItem(
                    discovery=next(owners),
                    sync_status=state,
                    created_at=now - timedelta(hours=3),
                    synced_at=now - timedelta(hours=1) if synced else None,
                    sync_error=None if synced else error,
                )
            )
    return SyncQueueItem.objects.bulk_create(items)


def cell(html: str, state: str) -> str:
    """The number shown for ``state`` (or ``total``) on the page."""
    match = re.search(rf'data-state="{state}">(\d+)<', html)
    assert match, f"no cell for {state}"
    return match.group(1)


@pytest.mark.django_db
def test_dashboard_shows_counts_age_errors_worker_and_links(client, root):
    """A superuser sees each state's count, the oldest pending age, the top error, a dead
    worker and links to django-q2's schedules and failed tasks."""
    for _ in range(3):
        queue_item_exceeded(error=ERROR)
    for _ in range(5):
        queue_item_synced()
    for _ in range(2):
        queue_item_syncing(attempts=2, error=ERROR)
    for _ in range(4):
        queue_item_backing_off(error=ERROR)
    SyncQueueItem.objects.filter(sync_status=SyncStatus.PENDING).update(
        created_at=timezone.now() - timedelta(hours=2, minutes=5)
    )
    client.force_login(root)
    response = client.get(DASHBOARD)
    html = response.content.decode()
    assert response.status_code == 200
    assert [cell(html, s) for s in ("pending", "syncing", "synced", "max_retries_exceeded")] == [
        "4",
        "2",
        "5",
        "3",
    ]
    assert cell(html, "total") == "14"
    assert re.search(r'id="oldest-pending"[^>]*>2 h 5 min<', html)
    assert re.search(rf"{ERROR}</td><td class=\"num\">9<", html)
    assert 'id="worker-state">not running<' in html
    assert reverse("admin:django_q_schedule_changelist") in html
    assert reverse("admin:django_q_failure_changelist") in html


@pytest.mark.django_db
def test_admin_index_shows_queue_counts_and_links_to_the_dashboard(client, root):
    """The admin index lists the queue's counts and links to the dashboard and django-q2."""
    queue_item_exceeded()
    queue_item_pending()
    queue_item_pending()
    client.force_login(root)
    html = client.get(reverse("admin:index")).content.decode()
    assert cell(html, "pending") == "2" and cell(html, "max_retries_exceeded") == "1"
    assert f'href="{DASHBOARD}"' in html
    assert reverse("admin:django_q_failure_changelist") in html


@pytest.mark.django_db
def test_view_only_staff_sees_the_dashboard(client):
    """Staff with only "Can view queue item" get the page with the counts."""
    for _ in range(3):
        queue_item_pending()
    client.force_login(user_make("viewer", staff=True, perms=["syncq.view_syncqueueitem"]))
    response = client.get(DASHBOARD)
    assert response.status_code == 200
    assert cell(response.content.decode(), "pending") == "3"


@pytest.mark.django_db
def test_staff_without_view_permission_is_refused(client):
    """Staff lacking "Can view queue item" get 403, and the index shows no counts."""
    client.force_login(user_make("nobody", staff=True))
    assert client.get(DASHBOARD).status_code == 403
    assert 'data-state="pending"' not in client.get(reverse("admin:index")).content.decode()


@pytest.mark.django_db
def test_anonymous_is_sent_to_the_login(client):
    """Without a session the dashboard redirects to the admin login, coming back after."""
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={DASHBOARD}"


@pytest.mark.django_db
def test_non_staff_user_is_refused(client):
    """A signed-in user who is not staff, even with the view permission, gets the login page
    back, never the figures."""
    for _ in range(3):
        queue_item_pending()
    client.force_login(user_make("member", perms=["syncq.view_syncqueueitem"]))
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def _dashboard_queries(client, django_assert_max_num_queries, rows: int) -> None:
    per_state = rows // 4
    queue_rows(
        {
            "pending": per_state,
            "syncing": per_state,
            "synced": per_state,
            "max_retries_exceeded": rows - 3 * per_state,
        },
        error=ERROR,
    )
    client.force_login(user_make("root", superuser=True))
    with django_assert_max_num_queries(DASHBOARD_QUERY_BOUND):
        response = client.get(DASHBOARD)
    assert response.status_code == 200
    assert cell(response.content.decode(), "total") == str(rows)


# session, user, then queue_statistics (8, the last verify run and the day's latencies
# included), the hourly throughput (1), the Control Room agents and their catalog (2 at most),
# the last sync run django-q2 kept (1) and the last attempt (2 on SQLite).
DASHBOARD_QUERY_BOUND = 16


@pytest.mark.django_db
def test_dashboard_query_count_with_10_rows(client, django_assert_max_num_queries):
    """Ten queue rows: the page stays within the fixed query bound."""
    _dashboard_queries(client, django_assert_max_num_queries, 10)


@pytest.mark.django_db
def test_dashboard_query_count_with_2000_rows(client, django_assert_max_num_queries):
    """Two thousand queue rows: the same bound as with ten (no query per row)."""
    _dashboard_queries(client, django_assert_max_num_queries, 2000)


@pytest.mark.django_db
def test_chart_has_24_bars_and_counts_other_tools_timestamps_in_their_hour(client, settings, root):
    """Three items synced in one hour, stored as 'T…Z', '… +00:00' and by Django, make that
    UTC hour's bar 3 whatever the display time zone; an item from 25 hours ago is in no bar."""
    settings.TIME_ZONE = "Asia/Kolkata"
    items = [queue_item_synced() for _ in range(5)]
    hour = (timezone.now() - timedelta(hours=2)).astimezone(UTC).replace(minute=0, second=0)
    stamp = hour + timedelta(minutes=17)
    forms = [
        stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        stamp.strftime("%Y-%m-%d %H:%M:%S.123456+00:00"),
        stamp.strftime("%Y-%m-%d %H:%M:%S"),
        (stamp - timedelta(hours=25)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        (stamp - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S+00:00"),
    ]
    with connection.cursor() as cursor:
        for item, text in zip(items, forms, strict=True):
            cursor.execute("UPDATE sync_queue SET synced_at = %s WHERE id = %s", [text, item.id])
    client.force_login(root)
    html = client.get(DASHBOARD).content.decode()
    bars = re.findall(r'<rect class="bar"[^>]*data-hour="([^"]+)" data-count="(\d+)"', html)
    assert len(bars) == 24
    by_hour = dict(bars)
    assert by_hour[hour.strftime("%Y-%m-%d %H")] == "3"
    assert by_hour[(hour - timedelta(hours=1)).strftime("%Y-%m-%d %H")] == "1"
    assert sum(int(n) for _, n in bars) == 4


@pytest.mark.django_db
def test_throughput_window_is_the_last_24_whole_hours(django_assert_num_queries):
    """With a fixed clock, the series runs from 23 hours before the current hour to it, in
    one query, and leaves out items synced before or after it."""
    now = timezone.now().replace(hour=12, minute=30, second=0, microsecond=0)
    items = [queue_item_synced() for _ in range(4)]
    for item, synced_at in zip(
        items,
        [
            now,
            now.replace(minute=0) - timedelta(hours=23),
            now.replace(minute=0) - timedelta(hours=23, seconds=1),
            now + timedelta(hours=1),
        ],
        strict=True,
    ):
        SyncQueueItem.objects.filter(id=item.id).update(synced_at=synced_at)
    with django_assert_num_queries(1):
        series = throughput_by_hour(now=now)
    assert [s["hour"].hour for s in (series[0], series[-1])] == [13, 12]
    assert [s["count"] for s in series] == [1] + [0] * 22 + [1]


@pytest.mark.django_db
def test_first_run_creates_the_superuser_from_env_once(monkeypatch):
    """DJANGO_SUPERUSER_* creates that superuser, and a second run leaves it (and its new
    password) alone."""
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "operator")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "first-password")
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "op@example.org")
    assert "created superuser operator" in admin_first_run()
    user = get_user_model().objects.get(username="operator")
    assert user.is_superuser and user.is_staff and user.email == "op@example.org"
    assert user.check_password("first-password")

    user.set_password("changed-by-operator")
    user.save()
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "first-password")
    assert "existing account" in admin_first_run()
    user.refresh_from_db()
    assert user.check_password("changed-by-operator")
    assert get_user_model().objects.filter(username="operator").count() == 1


@pytest.mark.django_db
def test_first_run_needs_no_email(monkeypatch):
    """DJANGO_SUPERUSER_EMAIL is optional: without it the superuser is made with no email."""
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "operator")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "pw-first")
    monkeypatch.delenv("DJANGO_SUPERUSER_EMAIL", raising=False)
    admin_first_run()
    user = get_user_model().objects.get(username="operator")
    assert user.is_superuser and user.email == "" and user.check_password("pw-first")


@pytest.mark.django_db
def test_first_run_never_touches_an_existing_non_superuser(monkeypatch):
    """A plain user already holding the name keeps its password and gains no rights."""
    user_make("operator", password="theirs")
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "operator")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "other")
    admin_first_run()
    user = get_user_model().objects.get(username="operator")
    assert user.check_password("theirs") and not user.is_superuser


@pytest.mark.django_db
def test_first_run_without_env_names_the_command_until_a_superuser_exists(monkeypatch):
    """With no DJANGO_SUPERUSER_* and no superuser, the line names createsuperuser; once
    one exists it does not."""
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    assert CREATE_ADMIN_HINT in admin_first_run()
    assert not get_user_model().objects.exists()
    user_make("root", superuser=True)
    assert CREATE_ADMIN_HINT not in admin_first_run()


@pytest.mark.django_db
def test_first_run_refuses_a_username_without_a_password(monkeypatch):
    """Half the variables is a mistake reported at start, not a silent skip."""
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "operator")
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="DJANGO_SUPERUSER_PASSWORD"):
        admin_first_run()
    assert not get_user_model().objects.exists()


@pytest.mark.django_db
def test_dashboard_shows_a_live_worker(client, monkeypatch, root):
    """A django-q2 cluster that reported in is shown alive, with its host and workers."""

    class Cluster:
        host, status, workers, tob = "keeper-host", "Idle", [11, 12], timezone.now()

        def uptime(self):
            return 3700.0

    monkeypatch.setattr("syncq.dashboard.worker_clusters", lambda: [Cluster()])
    client.force_login(root)
    html = client.get(DASHBOARD).content.decode()
    assert 'id="worker-state">alive<' in html
    assert "keeper-host</th><td>Idle, 2 workers, up 1 h 1 min" in html
