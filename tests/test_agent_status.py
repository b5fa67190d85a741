"""The Control Room agent where operators look: ``/health``, ``/sync/status``, the queue
dashboard, the bot's ``/sync-status`` and the admin. Online means seen within
``HAVEN_AGENT_ONLINE_SECONDS``; the catalog's age is counted from the agent's last
confirmation of it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
import schemathesis
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient
from schemathesis.config import SchemathesisConfig
from schemathesis.core.transport import Response

from botrunner import limits
from botrunner.cogs.sync_admin import AGENTS_SHOWN, summary_text
from discoveries.haven.catalog import catalog_canonical, catalog_content_hash
from discoveries.models import CatalogCopy
from syncq.agent_services import Heartbeat, agent_catalog_upload, agent_for, agent_heartbeat
from syncq.models import HavenAgent
from syncq.selectors import agents_presence, catalog_copy_state, queue_summary
from tests.api_support import HEALTH_KEYS
from tests.factories import queue_item_pending, user_make
from tests.test_dashboard import DASHBOARD_QUERY_BOUND

DASHBOARD = "/admin/dashboard/"
DETAIL = "VH-Database.db is locked at /home/ops/ControlRoom/VH-Database.db"
#: An agent's keys in /health (public: nothing naming the desktop or its files);
#: /sync/status adds ``PRIVATE_KEYS``.
PRIVATE_KEYS = {"vh_detail", "host", "agent_id"}
AGENT_KEYS = {
    "name",
    "online",
    "last_seen_at",
    "seconds_since_seen",
    "version",
    "vh_state",
    "started_at",
    "catalog_age_seconds",
}
CATALOG_KEYS = {
    "content_hash",
    "systems",
    "planets",
    "moons",
    "uploaded_at",
    "checked_at",
    "age_seconds",
    "changed_seconds",
    "uploaded_by",
}
AGENT_TABLES = ("sync_haven_agent", "haven_catalog_copy")


@pytest.fixture
def agent_mode(settings):
    """The cloud server's settings: VH-Database.db is the agent's, never opened here."""
    settings.USE_HAVEN_AGENT = True
    settings.USE_HAVEN_DATABASE = False
    settings.HAVEN_AGENT_ONLINE_SECONDS = 60
    return settings


def agent_make(name: str = "desk", *, seen_ago: float | None = 5.0, now=None, **fields):
    """A HavenAgent row as heartbeats leave it, last seen ``seen_ago`` seconds before ``now``
    (None: never)."""
    now = now or timezone.now()
    defaults = {
        "agent_id": "a" * 32,
        "instance": "run-1",
        "version": "1.4.0",
        "host": "control-room-pc",
        "vh_state": "ok",
        "started_at": now - timedelta(hours=3),
    }
    seen = None if seen_ago is None else now - timedelta(seconds=seen_ago)
    return HavenAgent.objects.create(name=name, last_seen_at=seen, **{**defaults, **fields})


def catalog_make(*, now=None, checked_ago: float = 30.0, changed_ago: float = 7200.0, by="desk"):
    """The kept VH catalog: 3 systems, 2 planets, 1 moon, changed ``changed_ago`` and
    confirmed ``checked_ago`` seconds before ``now``."""
    now = now or timezone.now()
    return CatalogCopy.objects.create(
        systems=[["S1", "Alpha"], ["S2", "Beta"], ["S3", "Gamma"]],
        planets=[[1, "S1", "Alpha Prime"], [2, "S2", "Beta Rock"]],
        moons=[[1, 1, "Alpha Prime I"]],
        content_hash="c" * 64,
        version="v1",
        uploaded_at=now - timedelta(seconds=changed_ago),
        checked_at=now - timedelta(seconds=checked_ago),
        uploaded_by=by,
    )


def _agent_queries(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if any(t in q["sql"] for t in AGENT_TABLES)]


def _conforms(path: str, response) -> None:
    """``response`` (of ``GET path``) is what the served OpenAPI schema declares, checked by
    schemathesis as the fuzzing test checks it."""
    served = Client(HTTP_HOST="localhost").get("/api/schema/", HTTP_ACCEPT="application/json")
    schema = schemathesis.openapi.from_dict(served.json(), config=SchemathesisConfig())
    answer = Response(
        status_code=response.status_code,
        headers={key.lower(): [value] for key, value in response.headers.items()},
        content=response.content,
        request=requests.Request("GET", f"http://localhost{path}").prepare(),
        elapsed=0.0,
        verify=True,
    )
    schema[path]["GET"].validate_response(answer)


# --- the selectors ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_agent_is_online_while_seen_within_the_online_seconds(agent_mode):
    """Seen 60 s ago or less is online, 61 s ago offline, never seen offline; by name."""
    now = timezone.now()
    agent_make("c-never", seen_ago=None, now=now)
    agent_make("b-stale", seen_ago=61, now=now)
    agent_make("a-fresh", seen_ago=60, now=now)
    presence = agents_presence(now=now)
    assert [(a["name"], a["online"], a["seconds_since_seen"]) for a in presence] == [
        ("a-fresh", True, 60.0),
        ("b-stale", False, 61.0),
        ("c-never", False, None),
    ]
    assert presence[0]["last_seen_at"] == now - timedelta(seconds=60)
    assert presence[0]["last_seen_at"].tzinfo is not None
    agent_mode.HAVEN_AGENT_ONLINE_SECONDS = 120
    assert [a["online"] for a in agents_presence(now=now)] == [True, True, False]


@pytest.mark.django_db
def test_the_catalog_state_counts_its_lists_and_ages_from_the_last_confirmation():
    """Counts of systems, planets and moons; age from checked_at, changed from uploaded_at;
    None before any upload."""
    now = timezone.now()
    assert catalog_copy_state(now=now) is None
    catalog_make(now=now, checked_ago=30, changed_ago=7200)
    state = catalog_copy_state(now=now)
    assert set(state) == CATALOG_KEYS
    assert (state["systems"], state["planets"], state["moons"]) == (3, 2, 1)
    assert (state["age_seconds"], state["changed_seconds"]) == (30.0, 7200.0)
    assert state["checked_at"] == now - timedelta(seconds=30)
    assert state["uploaded_by"] == "desk"


@pytest.mark.django_db
def test_an_agent_has_a_catalog_age_only_for_the_catalog_it_uploaded():
    """The agent whose catalog hash is the kept one gets its age; another agent none."""
    now = timezone.now()
    catalog_make(now=now, checked_ago=45)
    agent_make("desk", catalog_hash="c" * 64, now=now)
    agent_make("laptop", catalog_hash="d" * 64, now=now)
    ages = {a["name"]: a["catalog_age_seconds"] for a in agents_presence(now=now)}
    assert ages == {"desk": 45.0, "laptop": None}


@pytest.mark.django_db
def test_an_agents_own_heartbeat_and_upload_show_it_online_with_a_fresh_catalog(agent_mode):
    """Through the agent's services: after a heartbeat and a catalog upload the agent is
    online, its version and VH state shown, and the catalog it sent counted and just
    confirmed."""
    agent = agent_for(user_make("agent:desk"))
    agent_heartbeat(
        agent=agent,
        beat=Heartbeat(
            instance="run-9", agent_id="b" * 32, version="2.0.1", host="pc", vh_state="ok"
        ),
    )
    snapshot = catalog_canonical(
        {"systems": [["S1", "Alpha"], ["S2", "Beta"]], "planets": [[1, "S1", "A I"]], "moons": []}
    )
    agent_catalog_upload(
        agent=agent,
        content_hash=catalog_content_hash(snapshot),
        version="v7",
        full=snapshot,
    )
    body = APIClient().get("/health").json()
    (shown,) = body["agent"]["agents"]
    assert body["agent"]["online"] is True
    assert (shown["name"], shown["version"], shown["vh_state"]) == ("desk", "2.0.1", "ok")
    assert "host" not in shown and "pc" not in json.dumps(body["agent"])
    assert 0 <= shown["catalog_age_seconds"] < 30
    catalog = body["agent"]["catalog"]
    assert (catalog["systems"], catalog["planets"], catalog["moons"]) == (2, 1, 0)
    assert catalog["uploaded_by"] == "desk" and catalog["age_seconds"] < 30


# --- /health --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_health_in_agent_mode_shows_the_agent_but_not_its_detail(agent_mode):
    """/health (no credentials) reads haven_database "agent" and shows the agent online, its
    times in UTC, and the catalog; never vh_detail, which names a path on the desktop."""
    catalog_make(checked_ago=30)
    agent_make("desk", seen_ago=5, vh_state="locked", vh_detail=DETAIL, catalog_hash="c" * 64)
    response = APIClient().get("/health")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == HEALTH_KEYS | {"agent"}
    assert body["status"] == "healthy"
    assert body["haven_database"] == "agent"
    agent = body["agent"]
    assert agent["online"] is True
    (shown,) = agent["agents"]
    assert set(shown) == AGENT_KEYS
    assert shown["vh_state"] == "locked" and shown["version"] == "1.4.0"
    assert shown["last_seen_at"].endswith("Z")
    assert parse_datetime(shown["last_seen_at"]).tzinfo is not None
    assert 5 <= shown["seconds_since_seen"] < 35
    assert set(agent["catalog"]) == CATALOG_KEYS
    assert agent["catalog"]["systems"] == 3
    assert 30 <= agent["catalog"]["age_seconds"] < 60
    assert agent["catalog"]["checked_at"].endswith("Z")
    text = response.content.decode()
    assert "/home/ops" not in text and "is locked at" not in text
    _conforms("/health", response)


@pytest.mark.django_db
def test_health_in_agent_mode_before_any_agent_called(agent_mode):
    """No agent row and no catalog yet: offline, no agents, no catalog; still healthy."""
    response = APIClient().get("/health")
    body = response.json()
    assert body["status"] == "healthy" and body["haven_database"] == "agent"
    assert body["agent"] == {"online": False, "agents": [], "catalog": None}
    _conforms("/health", response)


@pytest.mark.django_db
def test_health_shows_an_agent_gone_quiet_as_offline(agent_mode):
    """An agent last seen two minutes ago is offline, and so is the whole agent."""
    agent_make("desk", seen_ago=120)
    agent = APIClient().get("/health").json()["agent"]
    assert agent["online"] is False
    assert agent["agents"][0]["online"] is False
    assert agent["agents"][0]["seconds_since_seen"] >= 120


@pytest.mark.django_db
def test_outside_agent_mode_health_and_status_read_no_agent_table(settings, viewer):
    """USE_HAVEN_AGENT off: agent is null in /health and /sync/status, even with an agent
    row left from before, and neither reads the agent's tables; haven_database keeps its
    old values."""
    settings.USE_HAVEN_AGENT = False
    settings.USE_HAVEN_DATABASE = False
    agent_make("desk")
    with CaptureQueriesContext(connection) as captured:
        health = APIClient().get("/health").json()
        status = viewer.get("/sync/status").json()
    assert health["agent"] is None and status["agent"] is None
    assert health["haven_database"] == "disabled"
    assert _agent_queries(captured) == []


# --- /sync/status ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_status_in_agent_mode_keeps_the_old_keys_and_adds_the_agent(agent_mode, viewer):
    """/sync/status keeps every key old clients read and adds agent, with vh_detail for an
    authenticated reader, in two queries of the agent's tables."""
    queue_item_pending()
    catalog_make(checked_ago=90)
    agent_make("desk", vh_state="locked", vh_detail=DETAIL, catalog_hash="c" * 64)
    agent_make("laptop", seen_ago=600, vh_state="missing")
    with CaptureQueriesContext(connection) as captured:
        response = viewer.get("/sync/status")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "sync_worker", "queue", "totals", "agent"}
    assert body["queue"]["pending"] == 1
    assert body["totals"] == {"total_synced": 0, "total_failed": 0}
    agent = body["agent"]
    assert agent["online"] is True
    desk, laptop = agent["agents"]
    assert set(desk) == AGENT_KEYS | PRIVATE_KEYS
    assert (desk["name"], desk["online"], desk["vh_detail"]) == ("desk", True, DETAIL)
    assert 90 <= desk["catalog_age_seconds"] < 120
    assert (laptop["name"], laptop["online"], laptop["catalog_age_seconds"]) == (
        "laptop",
        False,
        None,
    )
    assert agent["catalog"]["moons"] == 1
    assert len(_agent_queries(captured)) == 2
    _conforms("/sync/status", response)


@pytest.mark.django_db
def test_status_read_by_the_public_hides_the_detail(agent_mode):
    """With SYNC_API_PUBLIC_READ, an anonymous reader sees the agent but vh_detail is null."""
    agent_mode.SYNC_API_PUBLIC_READ = True
    agent_make("desk", vh_state="locked", vh_detail=DETAIL)
    response = APIClient().get("/sync/status")
    assert response.status_code == 200
    (shown,) = response.json()["agent"]["agents"]
    assert shown["vh_state"] == "locked" and shown["vh_detail"] is None
    assert "/home/ops" not in response.content.decode()


# --- the dashboard ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_dashboard_shows_the_agent_online_with_its_version_host_and_catalog(
    agent_mode, client, root
):
    """The dashboard's agent box: online, seen seconds ago, version, host, VH state and its
    detail, and the catalog's counts and age."""
    catalog_make(checked_ago=150)
    agent_make("desk", seen_ago=5, vh_state="locked", vh_detail=DETAIL)
    client.force_login(root)
    html = client.get(DASHBOARD).content.decode()
    assert 'id="agent"' in html
    assert '<span class="keeper-state-alive" id="agent-state">online</span>' in html
    assert "Not in agent mode" not in html
    assert 'data-agent-version="desk">1.4.0<' in html
    assert 'data-agent-host="desk">control-room-pc<' in html
    assert f"locked: {DETAIL}" in html
    assert "3 systems, 2 planets, 1 moon;" in html
    assert 'id="agent-catalog-age">2 min ago<' in html
    seen = html.split('data-agent-seen="desk">', 1)[1].split("<", 1)[0]
    assert seen.endswith(" s ago")


@pytest.mark.django_db
def test_dashboard_shows_an_agent_that_stopped_calling_as_offline(agent_mode, client, root):
    """An agent last seen an hour ago is offline; without a catalog the box says none came."""
    agent_make("desk", seen_ago=3600)
    client.force_login(root)
    html = client.get(DASHBOARD).content.decode()
    assert '<span class="keeper-state-dead" id="agent-state">offline</span>' in html
    assert 'data-agent-seen="desk">1 h 0 min ago<' in html
    assert "none uploaded yet: the bot's form asks for places as text" in html


@pytest.mark.django_db
def test_dashboard_with_agents_stays_within_its_query_bound(
    agent_mode, client, root, django_assert_max_num_queries
):
    """Agents and a catalog add their two queries, whatever the number of agents: the page
    keeps the dashboard's fixed bound."""
    catalog_make()
    for n in range(5):
        agent_make(f"desk-{n}")
    client.force_login(root)
    with django_assert_max_num_queries(DASHBOARD_QUERY_BOUND):
        response = client.get(DASHBOARD)
    assert response.content.decode().count("data-agent-version=") == 5


@pytest.mark.django_db
def test_dashboard_has_no_agent_box_outside_agent_mode_without_agents(settings, client, root):
    """USE_HAVEN_AGENT off and no agent ever seen: no agent box at all; an agent row from
    before shows the box, saying it is not in agent mode."""
    settings.USE_HAVEN_AGENT = False
    client.force_login(root)
    html = client.get(DASHBOARD).content.decode()
    assert 'id="agent"' not in html and "<caption>Control Room agent</caption>" not in html
    agent_make("old-desk", seen_ago=86_400)
    html = client.get(DASHBOARD).content.decode()
    assert 'id="agent"' in html and 'id="agent-mode-off"' in html


# --- the bot's /sync-status ---------------------------------------------------------------------


@pytest.mark.django_db
def test_sync_status_names_the_agent_with_discord_timestamps(agent_mode):
    """/sync-status in agent mode: the agent online, last seen and the catalog's
    confirmation as Discord relative timestamps, its version and VH state, and the catalog's
    counts and age; never vh_detail."""
    now = timezone.now()
    catalog_make(now=now, checked_ago=300)
    agent = agent_make("desk", seen_ago=10, now=now, vh_state="locked", vh_detail=DETAIL)
    text = summary_text(queue_summary(now=now))
    seen = int(agent.last_seen_at.timestamp())
    checked = int((now - timedelta(seconds=300)).timestamp())
    assert "**Control Room agent**: online" in text
    assert f"- desk: online, last seen <t:{seen}:R>, version 1.4.0, VH-Database.db locked" in text
    catalog = f"VH catalog: 3 systems · 2 planets · 1 moons, confirmed <t:{checked}:R> (5 min old)"
    assert catalog in text
    assert "/home/ops" not in text
    assert limits.text_length(text) <= limits.MESSAGE_CONTENT_MAX


@pytest.mark.django_db
def test_sync_status_says_when_the_agent_is_offline_or_never_called(agent_mode):
    """An agent gone quiet is offline; before any agent called, the reply says how to start
    one; no catalog is "none uploaded yet"."""
    text = summary_text(queue_summary())
    assert "**Control Room agent**: offline: no agent has called yet" in text
    assert "VH catalog: none uploaded yet" in text
    agent_make("desk", seen_ago=600)
    text = summary_text(queue_summary())
    assert "**Control Room agent**: offline" in text
    assert "- desk: offline, last seen <t:" in text


@pytest.mark.django_db
def test_sync_status_has_no_agent_line_outside_agent_mode_without_agents(settings):
    """USE_HAVEN_AGENT off and no agent row: the reply is the queue's alone; an agent row
    from before is shown, saying agent mode is off."""
    settings.USE_HAVEN_AGENT = False
    summary = queue_summary()
    assert summary["agent"] is None
    assert "Control Room agent" not in summary_text(summary)
    agent_make("old-desk", seen_ago=86_400)
    text = summary_text(queue_summary())
    assert "**Control Room agent**: offline (USE_HAVEN_AGENT is off" in text
    assert "- old-desk: offline" in text


@pytest.mark.django_db
def test_sync_status_cuts_agent_text_and_escapes_its_markdown(agent_mode):
    """Agents' names and versions are their own text: markdown is escaped, mentions stay
    text (the reply is sent without mentions), only the first agents are named, and the
    reply fits Discord's 2,000 characters."""
    for n in range(AGENTS_SHOWN + 2):
        agent_make(f"desk_{n}", version="**9**@everyone" + "x" * 200)
    text = summary_text(queue_summary())
    assert "- desk\\_0: online" in text
    assert "\\*\\*9\\*\\*@everyone" in text
    assert f"- desk\\_{AGENTS_SHOWN - 1}:" in text and f"- desk\\_{AGENTS_SHOWN}:" not in text
    assert "- and 2 more" in text
    assert limits.text_length(text) <= limits.MESSAGE_CONTENT_MAX


# --- the admin ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_lists_agents_read_only(client, root):
    """The admin lists the Control Room agents with whether each is online, and shows one,
    but offers no add, change or delete."""
    agent = agent_make("desk", seen_ago=5, vh_detail=DETAIL)
    client.force_login(root)
    listing = client.get("/admin/syncq/havenagent/")
    assert listing.status_code == 200
    html = listing.content.decode()
    assert "desk" in html and "control-room-pc" in html and 'alt="True"' in html
    assert "/admin/syncq/havenagent/add/" not in html
    page = client.get(f"/admin/syncq/havenagent/{agent.pk}/change/")
    assert page.status_code == 200
    assert DETAIL in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    assert client.get("/admin/syncq/havenagent/add/").status_code == 403
    deleting = client.post(f"/admin/syncq/havenagent/{agent.pk}/delete/", {"post": "yes"})
    assert deleting.status_code == 403
    assert HavenAgent.objects.filter(pk=agent.pk).exists()
