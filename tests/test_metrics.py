"""``GET /metrics`` (:mod:`syncq.metrics`): Prometheus' text format read from keeper.db at each
scrape, for a token holding the view permission or an address in ``METRICS_ALLOWED_IPS``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from syncq import metrics
from syncq.metrics import failure_kind
from syncq.models import HavenAgent
from tests.api_support import API, WITH_HAVEN, token_client
from tests.factories import (
    queue_item_backing_off,
    queue_item_exceeded,
    queue_item_in_conflict,
    queue_item_pending,
    queue_item_synced,
    queue_item_syncing,
    queue_item_waiting,
    user_make,
)

URL = "/metrics"


def scrape(client) -> dict[str, dict[tuple, float]]:
    """``/metrics`` as ``{sample name: {sorted label pairs: value}}``, checking the answer."""
    response = client.get(URL)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "no-store" in response["Cache-Control"]
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        assert family.documentation, family.name
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def one(samples, name: str, **labels) -> float:
    return samples[name][tuple(sorted(labels.items()))]


@WITH_HAVEN
def test_queue_items_count_every_state(admin, sample_haven_db):
    """Each state's gauge counts its items, zero states included."""
    queue_item_in_conflict(sample_haven_db)
    queue_item_waiting()
    queue_item_synced()
    queue_item_exceeded()
    queue_item_backing_off(retry_in=timedelta(hours=1))
    queue_item_syncing()
    queue_item_pending()
    queue_item_pending()
    samples = scrape(admin)
    expected = {
        "pending": 3,
        "syncing": 1,
        "synced": 1,
        "max_retries_exceeded": 1,
        "waiting": 1,
        "conflict": 1,
    }
    for state, count in expected.items():
        assert one(samples, "keeper_sync_queue_items", state=state) == count, state
    assert one(samples, "keeper_sync_haven_up") == 1
    assert one(samples, "keeper_sync_haven_state", state="ok") == 1
    assert one(samples, "keeper_sync_haven_state", state="missing") == 0


@API
def test_one_failing_item_shows_its_attempts_and_failure_kind(admin):
    """An item whose two attempts failed with ``OperationalError: …`` counts two failures of
    kind OperationalError and two attempts, one retrying and one exceeded."""
    queue_item_exceeded(attempts=2, error="OperationalError: database is locked")
    samples = scrape(admin)
    assert one(samples, "keeper_sync_failures_total", kind="OperationalError") == 2
    assert one(samples, "keeper_sync_failures_total", kind="other") == 0
    assert one(samples, "keeper_sync_attempts_total", outcome="retrying") == 1
    assert one(samples, "keeper_sync_attempts_total", outcome="exceeded") == 1
    assert one(samples, "keeper_sync_attempts_total", outcome="synced") == 0
    assert one(samples, "keeper_sync_queue_items", state="max_retries_exceeded") == 1


@API
def test_failure_kinds_are_bounded_to_the_top_twenty_and_other(admin):
    """Past 20 kinds, the least frequent are summed under other; the total is kept."""
    for n in range(22):
        queue_item_exceeded(error=f"Error{n:02d}: boom")
    queue_item_exceeded(error="Error00: again")
    kinds = scrape(admin)["keeper_sync_failures_total"]
    assert len(kinds) == 21
    assert one({"f": kinds}, "f", kind="Error00") == 2
    assert one({"f": kinds}, "f", kind="other") == 2
    assert sum(kinds.values()) == 23


def test_failure_kind_is_the_text_before_the_first_colon():
    """The kind is the class name a sync error starts with, or a short text without one."""
    assert failure_kind("OperationalError: database is locked") == "OperationalError"
    assert failure_kind("VH said no") == "VH said no"
    assert failure_kind("x" * 200) == "x" * 60
    assert failure_kind(None) == "unknown"


@API
def test_latency_histogram_is_cumulative_and_counts_recent_synced_items(admin):
    """Buckets never decrease, +Inf equals the count, and the count is the items synced in the
    last 24 h (an older one is left out)."""
    old = queue_item_synced(haven_id=40)
    type(old).objects.filter(id=old.id).update(synced_at=timezone.now() - timedelta(days=2))
    queue_item_synced(haven_id=41)
    queue_item_synced(haven_id=42)
    samples = scrape(admin)
    buckets = samples["keeper_sync_submit_to_synced_seconds_bucket"]
    ordered = sorted(buckets.items(), key=lambda kv: float(dict(kv[0])["le"]))
    values = [value for _, value in ordered]
    assert values == sorted(values)
    assert dict(ordered[-1][0])["le"] == "+Inf"
    assert values[-1] == one(samples, "keeper_sync_submit_to_synced_seconds_count") == 2
    assert one(samples, "keeper_sync_submit_to_synced_seconds_sum") >= 0


@API
def test_oldest_pending_age_and_heartbeats_without_worker_or_bot(admin):
    """The oldest pending item's age is counted from its queueing; a worker and a bot never
    seen give no sample."""
    item = queue_item_pending()
    type(item).objects.filter(id=item.id).update(created_at=timezone.now() - timedelta(hours=1))
    samples = scrape(admin)
    assert 3590 <= one(samples, "keeper_sync_oldest_pending_seconds") <= 3700
    assert "keeper_sync_worker_heartbeat_age_seconds" not in samples
    assert "keeper_sync_bot_heartbeat_age_seconds" not in samples


@API
def test_agent_mode_reports_each_agents_age_and_haven_through_them(admin, settings):
    """With USE_HAVEN_AGENT, each agent's age is served by name and VH counts as up while one
    is online; VH-Database.db is not opened."""
    settings.USE_HAVEN_AGENT = True
    settings.USE_HAVEN_DATABASE = False
    settings.HAVEN_AGENT_ONLINE_SECONDS = 60
    now = timezone.now()
    HavenAgent.objects.create(name="desk", last_seen_at=now - timedelta(seconds=30))
    HavenAgent.objects.create(name="laptop", agent_id="b" * 32, last_seen_at=None)
    samples = scrape(admin)
    assert 29 <= one(samples, "keeper_sync_agent_heartbeat_age_seconds", agent="desk") <= 40
    assert len(samples["keeper_sync_agent_heartbeat_age_seconds"]) == 1
    assert one(samples, "keeper_sync_haven_state", state="agent") == 1
    assert one(samples, "keeper_sync_haven_state", state="ok") == 0
    assert one(samples, "keeper_sync_haven_up") == 1
    HavenAgent.objects.filter(name="desk").update(last_seen_at=now - timedelta(minutes=5))
    assert one(scrape(admin), "keeper_sync_haven_up") == 0


# --- who may read it ----------------------------------------------------------------------------


@API
def test_anonymous_clients_get_401_in_json():
    """No credentials, from an address not allowed: 401 JSON with WWW-Authenticate."""
    response = APIClient().get(URL, HTTP_ACCEPT="text/plain")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()
    assert response["WWW-Authenticate"].startswith("Token")
    assert "no-store" in response["Cache-Control"]


@API
def test_a_user_without_the_view_permission_gets_403():
    """A valid token of a user without syncq.view_syncqueueitem: 403 JSON."""
    response = token_client(user_make("nobody")).get(URL)
    assert response.status_code == 403
    assert "detail" in response.json()


@API
def test_a_user_with_the_view_permission_reads_it(viewer):
    """The permission /sync/status needs is enough."""
    assert "keeper_sync_queue_items" in scrape(viewer)


@API
def test_an_allowed_address_reads_without_a_token(settings):
    """A client in METRICS_ALLOWED_IPS reads without credentials; one outside does not."""
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "2001:db8:1:2::7/128"]
    assert "keeper_sync_queue_items" in scrape(APIClient(REMOTE_ADDR="10.1.2.3"))
    assert "keeper_sync_queue_items" in scrape(APIClient(REMOTE_ADDR="2001:db8:1:2::9"))
    assert APIClient(REMOTE_ADDR="192.0.2.1").get(URL).status_code == 401
    assert APIClient(REMOTE_ADDR="2001:db8:1:3::7").get(URL).status_code == 401


@API
def test_the_allow_list_reads_the_address_through_trusted_proxies(settings):
    """Behind a trusted proxy the client's address is X-Forwarded-For's, never the proxy's,
    and a forged header without a trusted proxy is ignored."""
    settings.METRICS_ALLOWED_IPS = ["203.0.113.7"]
    forwarded = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.7"}
    assert APIClient().get(URL, **forwarded).status_code == 401
    settings.TRUSTED_PROXY_COUNT = 1
    assert APIClient().get(URL, **forwarded).status_code == 200


@API
@pytest.mark.parametrize(
    "query", ["?format=json", "?format=%ff", "?name[]=x&name[]=y", "?%00=%00", "?" + "a=1&" * 500]
)
def test_junk_query_strings_never_break_it(admin, query):
    """Query strings are ignored: the answer is the metrics."""
    response = admin.get(URL + query)
    assert response.status_code == 200
    assert b"keeper_sync_queue_items" in response.content


@API
def test_keeper_db_failing_answers_503_json(admin, monkeypatch):
    """keeper.db failing during a scrape answers 503 in JSON, not a 500."""

    def broken():
        raise DatabaseError("database is locked")

    monkeypatch.setattr(metrics, "queue_counts", broken)
    response = admin.get(URL)
    assert response.status_code == 503
    assert response.json()["status"] == "error"
    assert "no-store" in response["Cache-Control"]
