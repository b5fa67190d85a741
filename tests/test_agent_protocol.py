"""The cloud server and the desktop Control Room agent, end to end in one process: the agent
(:class:`syncq.agent_client.HavenAgent`) writes the server's queue into its VH copy and reports
over ``/agent/`` (:mod:`syncq.agent_api`), answered in process by the server's WSGI
application under the server's settings (:mod:`tests.agent_support`)."""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
import time
from datetime import timedelta
from io import StringIO

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connections
from django.db.backends.signals import connection_created
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from discoveries.catalog import catalog_location_check, catalog_places, catalog_systems
from discoveries.haven.catalog import catalog_canonical, catalog_content_hash
from discoveries.haven.writer import HavenBatch
from discoveries.models import CatalogCopy, Discovery
from syncq import services
from syncq.agent_client import HavenAgent, RoundReport
from syncq.models import LeaseHolder, SyncAttempt, SyncQueueItem, SyncStatus
from syncq.selectors import agents_presence
from syncq.services import discovery_delete, discovery_update, sync_batch
from tests.agent_support import (
    ServerTransport,
    agent_make,
    agent_token,
    api,
    lease_take,
    leased_write,
    server_side,
)
from tests.conftest import (
    SAMPLE_VH_CONTROL_ROOM_SCHEMA,
    haven_at,
    manage_env,
    run_manage,
    writable_copy,
)
from tests.factories import NO_PLACE, discovery_make, user_make
from tests.vh_support import BOTH_FILES, PLACED, WITH_HAVEN, vh_count, vh_query, vh_row

SERVER_DB = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server():
    """The cloud server, reached in process (:class:`ServerTransport`); it never opens VH."""
    transport = ServerTransport()
    yield transport
    transport.shutdown()
    assert transport.haven_opened == [], "the server opened VH-Database.db"


@pytest.fixture
def state(tmp_path):
    """Where the desktop agent keeps its state file."""
    return tmp_path / "desk" / "haven-agent.json"


def _submit(**fields) -> Discovery:
    with server_side():
        return discovery_make(**{**PLACED, **fields})


def _item(discovery: Discovery) -> SyncQueueItem:
    return SyncQueueItem.objects.get(discovery_id=discovery.pk)


def _ledger(path) -> dict[int, int]:
    return dict(
        vh_query(path, "SELECT keeper_discovery_id, haven_discovery_id FROM keeper_sync_ledger")
    )


def _hows(exchange) -> dict[int, str]:
    return {r["id"]: r["outcome"]["how"] for r in exchange.body["results"]}


def _vh_add_place(path, system: str, planet: str) -> None:
    """The Control Room adds a system (id ``SYS_<NAME>``) with one planet to its map."""
    system_id = "SYS_" + system.upper().replace(" ", "_")
    vh_query(
        path,
        "INSERT INTO systems (id, name, x, y, z, region) VALUES (?, ?, 0, 0, 0, 'Added')",
        [system_id, system],
    )
    vh_query(path, "INSERT INTO planets (system_id, name) VALUES (?, ?)", [system_id, planet])


# --- writing the queue into VH -------------------------------------------------------------


@WITH_HAVEN
@BOTH_FILES
def test_submitted_discoveries_reach_vh_once_through_the_agent(
    vh_fixture, request, server, state, django_assert_num_queries
):
    """Discoveries submitted in the cloud are written into the desktop's VH by one agent round,
    one row each with its ledger row; their items are synced with the VH ids; the agent makes
    no query of keeper.db; further rounds, and a new run, write nothing more."""
    path = request.getfixturevalue(vh_fixture)
    before = vh_count(path)
    made = [_submit(description=f"through the agent {n}") for n in range(3)]
    agent = agent_make(server, state)

    with django_assert_num_queries(0, connection=connections["default"]):
        agent.run(once=True)

    assert vh_count(path) == before + 3
    ledger = _ledger(path)
    assert set(ledger) == {d.id for d in made}
    for discovery in made:
        item = _item(discovery)
        assert item.sync_status == SyncStatus.SYNCED, item.sync_error
        assert item.haven_discovery_id == ledger[discovery.id]
        discovery.refresh_from_db()
        assert discovery.haven_discovery_id == ledger[discovery.id]
        assert vh_row(path, ledger[discovery.id])["description"] == discovery.description
    (ack,) = server.calls("/agent/ack")
    assert ack.status == 200 and set(_hows(ack).values()) == {"written"}
    assert SyncAttempt.objects.filter(outcome="synced").count() == 3

    agent.run(once=True)
    agent_make(server, state).run(once=True)
    assert vh_count(path) == before + 3
    assert len(server.calls("/agent/ack")) == 1
    assert all(not e.answer["items"] for e in server.calls("/agent/lease")[1:])
    assert LeaseHolder.objects.count() == 0


@WITH_HAVEN
def test_the_heartbeat_tells_the_server_what_the_desktop_finds(
    control_room_schema_haven_db, server, state
):
    """A heartbeat records the agent's run, version and what it found of VH; the server
    reports it online, with the catalog it uploaded."""
    agent = agent_make(server, state)
    agent.run(once=True)
    with server_side():
        (presence,) = agents_presence()
    assert presence["name"] == "desktop"
    assert presence["online"] is True
    assert presence["vh_state"] == "ok"
    assert presence["agent_id"] == agent.state.agent_id
    assert presence["catalog_age_seconds"] is not None


@WITH_HAVEN
def test_a_run_killed_between_vh_commit_and_ack_is_recorded_once_by_the_next_run(
    control_room_schema_haven_db, server, state
):
    """A run that wrote into VH and died before acknowledging leaves its items leased; the next
    run's heartbeat takes them back at once, and its write finds them in the ledger: one VH row,
    the item synced on its second attempt."""
    path = control_room_schema_haven_db
    before = vh_count(path)
    discovery = _submit(description="killed before the ack")
    killed = agent_make(server, state)
    lease = lease_take(killed)
    attempted = leased_write(lease["items"])
    assert [a.outcome.how for a in attempted] == ["written"]
    assert vh_count(path) == before + 1
    assert _item(discovery).sync_status == SyncStatus.SYNCING
    killed.close()  # no ack: the process is gone

    restarted = agent_make(server, state)
    restarted.run(once=True)

    (beat,) = server.calls("/agent/heartbeat")[1:]
    assert beat.answer["released"] == 1
    (ack,) = server.calls("/agent/ack")
    assert _hows(ack) == {_item(discovery).id: "ledger"}
    assert vh_count(path) == before + 1
    item = _item(discovery)
    assert item.sync_status == SyncStatus.SYNCED
    assert item.sync_attempts == 2
    assert item.haven_discovery_id == _ledger(path)[discovery.id]


@WITH_HAVEN
def test_a_run_killed_after_deleting_the_vh_row_is_finished_by_the_next_run(
    control_room_schema_haven_db, server, state
):
    """A run that deleted a VH row and died before reporting it: the next run finds the row gone
    in the ledger and the server deletes the discovery; nothing else in VH is touched."""
    path = control_room_schema_haven_db
    before = vh_count(path)
    discovery = _submit(description="deleted, then killed")
    agent_make(server, state).run(once=True)
    with server_side():
        assert discovery_delete(discovery_id=discovery.id) == "queued"
    killed = agent_make(server, state)
    lease = lease_take(killed)
    assert [a.outcome.how for a in leased_write(lease["items"])] == ["deleted"]
    assert vh_count(path) == before

    agent_make(server, state).run(once=True)

    assert set(_hows(server.calls("/agent/ack")[-1]).values()) <= {"deleted", "absent"}
    assert not Discovery.objects.filter(id=discovery.id).exists()
    assert vh_count(path) == before


@WITH_HAVEN
def test_the_agent_writes_the_very_rows_the_local_worker_writes(server, state, tmp_path, settings):
    """The same discoveries (types with their fields, a name typed in another case, a moon,
    markup to neutralise, an old bot's metadata that is a JSON string) written by the server's own
    worker into one VH copy and by the agent into another give the same rows."""
    local = writable_copy(SAMPLE_VH_CONTROL_ROOM_SCHEMA, tmp_path / "local.db")
    desk = writable_copy(SAMPLE_VH_CONTROL_ROOM_SCHEMA, tmp_path / "desk.db")
    made = [
        _submit(description="plain words"),
        _submit(
            discovery_type="🦴",
            type_fields={"species_type": "Grazer", "estimated_age": "old"},
            description="bones on a moon",
            system_name="tenex[vh]",
            location="mikeen",
            location_type="moon",
        ),
        _submit(description="**bold** @everyone <@123456789012345678> [x](https://x.example)"),
        _submit(description="an old bot's row", location_type=None),
    ]
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "UPDATE discoveries SET metadata = %s WHERE id = %s",
            [json.dumps("Structure type: tower"), made[-1].id],
        )
    with haven_at(local, settings):
        report = sync_batch()
    assert report.synced == len(made), report.errors
    SyncQueueItem.objects.update(
        sync_status=SyncStatus.PENDING, sync_attempts=0, haven_discovery_id=None
    )
    Discovery.objects.update(haven_discovery_id=None)
    with haven_at(desk, settings):
        agent_make(server, state).run(once=True)
    assert SyncQueueItem.objects.exclude(sync_status=SyncStatus.SYNCED).count() == 0

    def rows(path) -> dict[int, dict]:
        found = {}
        for keeper_id, haven_id in _ledger(path).items():
            row = vh_row(path, haven_id)
            row.pop("id")
            found[keeper_id] = row
        return found

    written = rows(local)
    assert len(written) == len(made)
    assert rows(desk) == written


@WITH_HAVEN
def test_a_second_desktop_sharing_the_token_does_not_take_the_first_ones_leases(
    control_room_schema_haven_db, server, state, tmp_path
):
    """Two desktops running with one token (two state files): the second one's start takes
    back nothing of the first one's lease, which the first then acknowledges."""
    discovery = _submit(description="the first desktop's")
    first = agent_make(server, state)
    lease = lease_take(first)
    attempted = leased_write(lease["items"])
    second = agent_make(server, tmp_path / "second-desk.json")
    assert second.state.agent_id != first.state.agent_id
    assert second.heartbeat()["released"] == 0
    assert _item(discovery).sync_status == SyncStatus.SYNCING
    assert first._report(lease["lease"], "/agent/ack", attempted) == (1, 0)
    assert _item(discovery).sync_status == SyncStatus.SYNCED


# --- stale and foreign leases --------------------------------------------------------------


def _columns(item_id: int) -> dict:
    return SyncQueueItem.objects.filter(id=item_id).values().get()


@WITH_HAVEN
def test_an_ack_after_a_restart_took_the_lease_back_is_refused_and_changes_nothing(
    control_room_schema_haven_db, server, state
):
    """An ack under a lease that a new run's heartbeat took back is a 409 naming no item as
    held; the item, its history and the lease are as the release left them; the new run
    records the row from the ledger."""
    discovery = _submit(description="stale ack")
    old = agent_make(server, state)
    lease = lease_take(old)
    attempted = leased_write(lease["items"])
    new = agent_make(server, state)
    new.heartbeat()
    item_id = _item(discovery).id
    released = _columns(item_id)
    assert released["sync_status"] == SyncStatus.PENDING
    attempts_before = SyncAttempt.objects.count()

    recorded, dropped = old._report(lease["lease"], "/agent/ack", attempted)

    assert (recorded, dropped) == (0, 1)
    (ack,) = server.calls("/agent/ack")
    assert ack.status == 409
    assert ack.answer["held"] == [] and "not held" in ack.answer["detail"]
    assert _columns(item_id) == released
    assert SyncAttempt.objects.count() == attempts_before
    new.run(once=True)
    assert _hows(server.calls("/agent/ack")[-1]) == {item_id: "ledger"}
    assert _item(discovery).sync_status == SyncStatus.SYNCED


@WITH_HAVEN
def test_an_ack_naming_an_item_another_agent_took_again_is_refused_then_sent_for_the_rest(
    control_room_schema_haven_db, server, state, tmp_path
):
    """Of two items leased together, one whose lease lapsed and which another agent then
    leased: the first ack is a 409 holding only the other, and records nothing; the agent sends
    the other alone, which is synced; the lapsed one stays the other agent's, who records it
    from the ledger."""
    path = control_room_schema_haven_db
    before = vh_count(path)
    lapsed, kept = _submit(description="lapsed"), _submit(description="kept")
    desktop = agent_make(server, state)
    lease = lease_take(desktop)
    attempted = leased_write(lease["items"])
    SyncQueueItem.objects.filter(discovery=lapsed).update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )
    laptop = agent_make(server, tmp_path / "laptop.json", token=agent_token("laptop"))
    laptop_lease = lease_take(laptop)
    assert [i["discovery_id"] for i in laptop_lease["items"]] == [lapsed.id]
    lapsed_columns = _columns(_item(lapsed).id)

    recorded, dropped = desktop._report(lease["lease"], "/agent/ack", attempted)

    assert (recorded, dropped) == (1, 1)
    refused, accepted = server.calls("/agent/ack")
    assert refused.status == 409 and refused.answer["held"] == [_item(kept).id]
    assert accepted.status == 200 and set(_hows(accepted)) == {_item(kept).id}
    assert _columns(_item(lapsed).id) == lapsed_columns
    assert _item(kept).sync_status == SyncStatus.SYNCED
    laptop.items_write(laptop_lease["lease"], laptop_lease["items"], RoundReport())
    assert _hows(server.calls("/agent/ack")[-1]) == {_item(lapsed).id: "ledger"}
    assert _item(lapsed).sync_status == SyncStatus.SYNCED
    assert vh_count(path) == before + 2


@WITH_HAVEN
def test_an_agent_cannot_report_on_another_agents_lease(
    control_room_schema_haven_db, server, state
):
    """Agent laptop acknowledging (or failing) agent desktop's lease gets a 409 and changes
    nothing; desktop's own ack then records the item."""
    discovery = _submit(description="not yours")
    desktop = agent_make(server, state)
    lease = lease_take(desktop)
    attempted = leased_write(lease["items"])
    row = desktop._result(attempted[0])
    item_id = _item(discovery).id
    held = _columns(item_id)
    laptop = api(server, agent_token("laptop"))
    for path, result in (
        ("/agent/ack", row),
        ("/agent/fail", {**{k: v for k, v in row.items() if k != "outcome"}, "error": "no"}),
    ):
        answer = laptop.post(
            path, json={"instance": "laptop1", "lease": lease["lease"], "results": [result]}
        )
        assert answer.status_code == 409, answer.text
        assert "another agent" in answer.json()["detail"]
        assert _columns(item_id) == held
    assert desktop._report(lease["lease"], "/agent/ack", attempted) == (1, 0)
    assert _item(discovery).sync_status == SyncStatus.SYNCED


@WITH_HAVEN
def test_a_silent_agents_lease_is_taken_back_by_the_servers_housekeeping(
    control_room_schema_haven_db, server, state
):
    """An agent whose heartbeat has been silent past HOLDER_STALE_SECONDS loses its leases at
    the server's next housekeeping (its scheduled batch), and its late ack is a 409."""
    discovery = _submit(description="silent agent")
    desktop = agent_make(server, state)
    lease = lease_take(desktop)
    attempted = leased_write(lease["items"])
    LeaseHolder.objects.filter(token=lease["lease"]).update(
        heartbeat_at=timezone.now() - timedelta(seconds=services.HOLDER_STALE_SECONDS + 5)
    )
    with server_side():
        report = sync_batch()
    assert report.released == 1
    assert _item(discovery).sync_status == SyncStatus.PENDING
    assert desktop._report(lease["lease"], "/agent/ack", attempted) == (0, 1)
    assert server.calls("/agent/ack")[-1].status == 409


@SERVER_DB
def test_two_agents_leasing_at_once_never_share_an_item(settings):
    """Two agents asking for leases at the same time, again and again, get disjoint items,
    which together are every due item."""
    settings.USE_HAVEN_AGENT, settings.USE_HAVEN_DATABASE = True, False
    ids = {_item(discovery_make(**PLACED, description=f"shared {n}")).id for n in range(24)}
    start = threading.Barrier(2)
    got: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def lease_all(name: str) -> None:
        # The settings are the test's, for both: override_settings is not per thread.
        transport = ServerTransport(overrides={})
        try:
            client = api(transport, agent_token(name))
            start.wait()
            for n in itertools.count():
                # Each request as a desktop of its own: a run's next lease request gives back
                # what the run still holds unreported, and these keep every lease.
                body = {"instance": "1", "agent_id": f"{name}{n}", "limit": 3, "wait_seconds": 0}
                answer = client.post("/agent/lease", json=body).json()
                if not answer["items"]:
                    return
                got[name].extend(item["id"] for item in answer["items"])
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)
        finally:
            transport.shutdown()

    threads = [threading.Thread(target=lease_all, args=(name,)) for name in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert not set(got["a"]) & set(got["b"])
    assert sorted(got["a"] + got["b"]) == sorted(ids)
    for name, leased in got.items():
        for item in SyncQueueItem.objects.filter(id__in=leased):
            holder = LeaseHolder.objects.get(token=item.lease_token)
            assert holder.host_key.startswith(f"agent:{name}:"), (name, item.id)


@SERVER_DB
def test_a_long_poll_answers_with_an_item_submitted_while_it_waits(settings):
    """A lease asked to wait gets a discovery submitted meanwhile, well before its wait ends."""
    settings.USE_HAVEN_AGENT, settings.USE_HAVEN_DATABASE = True, False
    transport = ServerTransport(overrides={})
    client = api(transport, agent_token())
    answers = []
    polling = threading.Thread(
        target=lambda: answers.append(
            client.post(
                "/agent/lease", json={"instance": "poll", "wait_seconds": 30}, timeout=60
            ).json()
        )
    )
    try:
        polling.start()
        discovery = discovery_make(**PLACED, description="while it waits")
        polling.join(timeout=25)
        assert not polling.is_alive(), "the long poll did not answer the new item"
    finally:
        polling.join()
        transport.shutdown()
    assert [item["discovery_id"] for item in answers[0]["items"]] == [discovery.id]


# --- failures ------------------------------------------------------------------------------


@WITH_HAVEN
def test_vh_missing_on_the_desktop_fails_the_items_with_backoff(
    control_room_schema_haven_db, server, state
):
    """With VH gone from the desktop the agent reports its leased items as failures: pending,
    one attempt counted, due after the backoff, the error saying VH is missing; the heartbeat
    says so too."""
    made = [_submit(description=f"no VH {n}") for n in range(2)]
    control_room_schema_haven_db.unlink()
    agent = agent_make(server, state)
    started = timezone.now()
    agent.run(once=True)

    assert server.calls("/agent/heartbeat")[0].body["vh_state"] == "missing"
    (fail,) = server.calls("/agent/fail")
    assert fail.status == 200 and not server.calls("/agent/ack")
    for discovery in made:
        item = _item(discovery)
        assert item.sync_status == SyncStatus.PENDING
        assert item.sync_attempts == 1
        assert "missing" in item.sync_error
        assert item.next_retry_after >= started + timedelta(seconds=25)
    assert SyncAttempt.objects.filter(outcome="retrying").count() == 2
    assert LeaseHolder.objects.count() == 0


@WITH_HAVEN
def test_vh_locked_on_the_desktop_fails_the_items_then_they_sync_once(
    control_room_schema_haven_db, server, state, monkeypatch
):
    """While the Control Room holds VH's write lock the agent's write waits its busy timeout
    and reports the items as failures; once free, the next due round writes each once."""
    path = control_room_schema_haven_db
    monkeypatch.setitem(connections["haven"].settings_dict["OPTIONS"], "timeout", 0.2)
    connections["haven"].close()
    before = vh_count(path)
    discovery = _submit(description="locked out")
    control_room = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        control_room.execute("BEGIN IMMEDIATE")
        agent_make(server, state).run(once=True)
    finally:
        control_room.execute("ROLLBACK")
        control_room.close()
    item = _item(discovery)
    assert (item.sync_status, item.sync_attempts) == (SyncStatus.PENDING, 1)
    assert "locked" in item.sync_error
    assert item.next_retry_after > timezone.now()
    assert server.calls("/agent/fail")[0].status == 200

    SyncQueueItem.objects.filter(id=item.id).update(next_retry_after=timezone.now())
    agent_make(server, state).run(once=True)
    assert _item(discovery).sync_status == SyncStatus.SYNCED
    assert vh_count(path) == before + 1


@WITH_HAVEN
def test_an_item_failing_its_last_attempt_through_the_agent_is_max_retries_exceeded(
    control_room_schema_haven_db, server, state
):
    """Each failure the agent reports counts one attempt; the last allowed one leaves the item
    max_retries_exceeded, with no due time."""
    with override_settings(SYNC_MAX_ATTEMPTS=2):
        discovery = _submit(description="gives up")
    control_room_schema_haven_db.unlink()
    agent = agent_make(server, state)
    agent.run(once=True)
    item = _item(discovery)
    assert (item.sync_status, item.sync_attempts) == (SyncStatus.PENDING, 1)
    SyncQueueItem.objects.filter(id=item.id).update(next_retry_after=timezone.now())
    agent.run(once=True)
    item = _item(discovery)
    assert (item.sync_status, item.sync_attempts) == (SyncStatus.MAX_RETRIES_EXCEEDED, 2)
    assert item.next_retry_after is None
    assert server.calls("/agent/fail")[-1].answer["states"] == {
        str(item.id): SyncStatus.MAX_RETRIES_EXCEEDED
    }


# --- waiting and the catalog ---------------------------------------------------------------


@WITH_HAVEN
def test_a_waiting_discovery_is_written_once_its_system_reaches_the_uploaded_catalog(
    control_room_schema_haven_db, server, state, django_assert_num_queries
):
    """A discovery whose system VH lacks waits (no row, no attempt spent); the Control Room
    adds the system; the agent's next round uploads a diff of the catalog, which wakes the item,
    and writes it."""
    path = control_room_schema_haven_db
    before = vh_count(path)
    discovery = _submit(**NO_PLACE, description="waits for its system")
    agent = agent_make(server, state)
    with django_assert_num_queries(0, connection=connections["default"]):
        agent.run(once=True)
    item = _item(discovery)
    assert item.sync_status == SyncStatus.WAITING, item.sync_error
    assert item.sync_attempts == 0
    assert item.waiting_on == CatalogCopy.objects.get().version
    assert vh_count(path) == before

    _vh_add_place(path, NO_PLACE["system_name"], NO_PLACE["location"])
    with django_assert_num_queries(0, connection=connections["default"]):
        agent.run(once=True)

    first, second = server.calls("/agent/catalog")
    assert "full" in first.body and "diff" in second.body and "full" not in second.body
    assert second.body["diff"]["systems"]["upsert"][0][1] == NO_PLACE["system_name"]
    assert second.answer["woken"] == 1
    item = _item(discovery)
    assert item.sync_status == SyncStatus.SYNCED, item.sync_error
    assert vh_count(path) == before + 1
    row = vh_row(path, item.haven_discovery_id)
    assert row["system_id"] == "SYS_ORACLE_ZETA"


@WITH_HAVEN
def test_a_waiting_item_is_not_taken_again_before_the_map_changes_on_the_server(
    control_room_schema_haven_db, server, state, settings
):
    """A waiting item waits for the map to change as the server knows it: its ``waiting_on`` is
    the uploaded catalog's version, not the one the agent's writer read in VH, so a map the
    Control Room changed since the last upload does not make every lease wake it again."""
    settings.HAVEN_AGENT_POLL_SECONDS = 0.2  # the server's long poll, when nothing is due
    path = control_room_schema_haven_db
    agent = agent_make(server, state)
    agent.run(once=True)  # the catalog uploaded
    _vh_add_place(path, "Unrelated", "Unrelated I")  # the map changes, not uploaded yet
    discovery = _submit(**NO_PLACE, description="waits, and waits")

    def round_without_catalog() -> RoundReport:
        agent._beat_at = agent._catalog_at = time.monotonic()  # neither is due this round
        return agent.run_round(wait=True)

    assert round_without_catalog().leased == 1
    item = _item(discovery)
    assert item.sync_status == SyncStatus.WAITING
    again = round_without_catalog()
    assert again.leased == 0, "the waiting item was taken again with no new catalog"
    assert item.attempts.count() == 1


@WITH_HAVEN
def test_the_catalog_goes_whole_first_then_as_diffs_and_not_at_all_when_unchanged(
    sample_haven_db, server, state
):
    """The first upload is the whole catalog; an unchanged VH uploads nothing (also after a
    restart, from the state file); a change goes as a diff whose result the server keeps."""
    agent = agent_make(server, state)
    agent.run(once=True)
    (first,) = server.calls("/agent/catalog")
    assert "full" in first.body and first.status == 200
    agent.run(once=True)
    agent = agent_make(server, state)
    agent.run(once=True)
    assert len(server.calls("/agent/catalog")) == 1

    vh_query(sample_haven_db, "UPDATE systems SET name = 'Oculi Prime' WHERE name = 'Oculi'")
    agent.run(once=True)
    second = server.calls("/agent/catalog")[-1]
    assert second.status == 200 and "diff" in second.body
    assert second.body["base_hash"] == first.body["content_hash"]
    copy = CatalogCopy.objects.get()
    assert copy.content_hash == second.body["content_hash"]
    assert "Oculi Prime" in [name for _, name in copy.systems]
    assert "Oculi" not in [name for _, name in copy.systems]


@WITH_HAVEN
def test_a_diff_against_a_catalog_the_server_no_longer_keeps_falls_back_to_the_whole(
    sample_haven_db, server, state, tmp_path
):
    """When the server's catalog changed between the heartbeat and the upload (another agent
    uploaded its own), the diff is a 409 and the agent sends the whole catalog, which the
    server then keeps."""
    agent = agent_make(server, state)
    agent.run(once=True)
    _vh_add_place(sample_haven_db, "Fallback", "Fallback I")
    agent.heartbeat()
    other = {"systems": [["SYS_ELSEWHERE", "Elsewhere"]], "planets": [], "moons": []}
    laptop = api(server, agent_token("laptop"))
    put = laptop.put(
        "/agent/catalog",
        json={"content_hash": catalog_content_hash(other), "version": "laptop", "full": other},
    )
    assert put.status_code == 200, put.text

    assert agent.catalog_sync() is True

    diff, full = server.calls("/agent/catalog")[-2:]
    assert ("diff" in diff.body, diff.status) == (True, 409)
    assert ("full" in full.body, full.status) == (True, 200)
    copy = CatalogCopy.objects.get()
    assert copy.content_hash == full.body["content_hash"]
    assert "Fallback" in [name for _, name in copy.systems]


@WITH_HAVEN
def test_a_diff_whose_result_does_not_hash_to_content_hash_is_refused(
    sample_haven_db, server, state
):
    """A diff that does not give the catalog it claims is a 400; the server keeps its catalog."""
    agent = agent_make(server, state)
    agent.run(once=True)
    kept = CatalogCopy.objects.get()
    client = api(server, agent_token())
    answer = client.put(
        "/agent/catalog",
        json={
            "content_hash": "0" * 64,
            "version": "v2",
            "base_hash": kept.content_hash,
            "diff": {"systems": {"upsert": [["SYS_NEW", "New"]], "delete": []}},
        },
    )
    assert answer.status_code == 400
    assert "hash" in answer.json()["detail"]
    assert CatalogCopy.objects.get().content_hash == kept.content_hash


@WITH_HAVEN
def test_the_bots_pickers_read_the_uploaded_catalog_even_with_the_desktop_gone(
    sample_haven_db, server, state
):
    """With USE_HAVEN_AGENT the bot's pickers and place checks read the catalog the agent
    uploaded: a system the Control Room adds appears after the next upload, and they keep
    answering once VH is gone from the desktop."""
    with server_side():
        assert catalog_systems() is None  # nothing uploaded yet
    agent = agent_make(server, state)
    agent.run(once=True)
    with server_side():
        names = [s.name for s in catalog_systems()]
    assert "Oculi" in names and "Added Later" not in names

    _vh_add_place(sample_haven_db, "Added Later", "Later Prime")
    agent.run(once=True)
    sample_haven_db.unlink()
    agent.run(once=True)  # the desktop is gone: the server keeps the last catalog
    assert len(server.calls("/agent/catalog")) == 2
    assert server.calls("/agent/heartbeat")[-1].body["vh_state"] == "missing"

    with server_side():
        systems = {s.name: s for s in catalog_systems()}
        places = catalog_places(systems["Added Later"].id)
        found = catalog_location_check(
            system_name="added later", location="Later Prime", location_type="planet"
        )
        lost = catalog_location_check(
            system_name="Nowhere At All", location="X", location_type="planet"
        )
    assert "Added Later" in systems and "Oculi" in systems
    assert [(p.kind, p.name) for p in places] == [("planet", "Later Prime"), ("space", None)]
    assert found is not None and found.unresolved is None
    assert lost is not None and lost.unresolved


# --- edits and deletes ---------------------------------------------------------------------


@WITH_HAVEN
def test_an_edit_made_while_the_agent_holds_the_item_is_written_by_the_next_round(
    control_room_schema_haven_db, server, state
):
    """An edit between the lease and the ack leaves the item pending again (the ack's write
    was of the old values); the next round updates the same VH row, never adding one."""
    path = control_room_schema_haven_db
    before = vh_count(path)
    discovery = _submit(description="before the edit")
    agent = agent_make(server, state)
    lease = lease_take(agent)
    with server_side():
        discovery_update(discovery_id=discovery.id, changes={"description": "after the edit"})
    agent.items_write(lease["lease"], lease["items"], RoundReport())
    item = _item(discovery)
    assert (item.sync_status, item.sync_attempts) == (SyncStatus.PENDING, 0)
    haven_id = _ledger(path)[discovery.id]
    assert vh_row(path, haven_id)["description"] == "before the edit"

    agent.run(once=True)

    assert _hows(server.calls("/agent/ack")[-1]) == {item.id: "updated"}
    item = _item(discovery)
    assert item.sync_status == SyncStatus.SYNCED and item.haven_discovery_id == haven_id
    assert vh_row(path, haven_id)["description"] == "after the edit"
    assert vh_count(path) == before + 1


@WITH_HAVEN
def test_an_edit_made_while_the_agent_fails_the_item_makes_it_due_at_once(
    control_room_schema_haven_db, server, state
):
    """An item edited while the agent held it, whose write then failed (VH gone), is not
    backed off: pending, attempts 0, due now, as the edit would have left it."""
    discovery = _submit(description="edited, then failed")
    agent = agent_make(server, state)
    lease = lease_take(agent)
    with server_side():
        discovery_update(discovery_id=discovery.id, changes={"description": "edited"})
    control_room_schema_haven_db.unlink()
    agent.items_write(lease["lease"], lease["items"], RoundReport())
    assert server.calls("/agent/fail")[-1].status == 200
    item = _item(discovery)
    assert (item.sync_status, item.sync_attempts) == (SyncStatus.PENDING, 0)
    assert item.next_retry_after is None


@WITH_HAVEN
def test_an_edit_of_a_synced_discovery_updates_its_vh_row_through_the_agent(
    sample_haven_db, server, state
):
    """Editing a discovery the agent synced makes it pending; the agent rewrites its one row."""
    path = sample_haven_db
    before = vh_count(path)
    discovery = _submit(description="first words")
    agent = agent_make(server, state)
    agent.run(once=True)
    with server_side():
        discovery_update(discovery_id=discovery.id, changes={"description": "second words"})
    agent.run(once=True)
    item = _item(discovery)
    assert item.sync_status == SyncStatus.SYNCED
    assert vh_row(path, item.haven_discovery_id)["description"] == "second words"
    assert vh_count(path) == before + 1


@WITH_HAVEN
@BOTH_FILES
def test_a_delete_goes_through_the_agent_then_the_discovery_goes(
    vh_fixture, request, server, state
):
    """Deleting a discovery the agent synced queues a delete; the agent removes the VH row and
    reports it, and the server then deletes the discovery and its item."""
    path = request.getfixturevalue(vh_fixture)
    before = vh_count(path)
    discovery = _submit(description="to be deleted")
    agent = agent_make(server, state)
    agent.run(once=True)
    item = _item(discovery)
    with server_side():
        assert discovery_delete(discovery_id=discovery.id) == "queued"
    agent.run(once=True)
    ack = server.calls("/agent/ack")[-1]
    assert _hows(ack) == {item.id: "deleted"}
    assert ack.answer["states"] == {str(item.id): "deleted"}
    assert vh_row(path, item.haven_discovery_id) is None
    assert vh_count(path) == before
    assert not Discovery.objects.filter(id=discovery.id).exists()
    assert not SyncQueueItem.objects.filter(id=item.id).exists()


@WITH_HAVEN
def test_a_delete_asked_while_the_agent_writes_is_applied_by_the_next_round(
    control_room_schema_haven_db, server, state
):
    """A delete asked between the lease and the ack of a write: the written row is recorded,
    the item stays pending as a delete, and the next round removes the row."""
    path = control_room_schema_haven_db
    before = vh_count(path)
    discovery = _submit(description="deleted mid-write")
    agent = agent_make(server, state)
    lease = lease_take(agent)
    with server_side():
        assert discovery_delete(discovery_id=discovery.id) == "queued"
    agent.items_write(lease["lease"], lease["items"], RoundReport())
    item = _item(discovery)
    assert (item.sync_status, item.operation) == (SyncStatus.PENDING, "delete")
    assert vh_count(path) == before + 1
    agent.run(once=True)
    assert vh_count(path) == before
    assert not Discovery.objects.filter(id=discovery.id).exists()


@WITH_HAVEN
@pytest.mark.parametrize(
    ("keep", "how", "kept"),
    [("keeper", "updated", "Ours."), ("control_room", "kept", "Curated by the Control Room.")],
)
def test_a_conflict_found_by_the_agent_is_settled_by_the_operators_choice(
    control_room_schema_haven_db, server, state, keep, how, kept
):
    """An edit of a row the Control Room changed since the agent wrote it is a conflict (both
    versions kept on the item); the operator's choice travels with the next lease, and the
    agent applies it: our version written over theirs, or theirs kept."""
    path = control_room_schema_haven_db
    discovery = _submit(description="Written first.")
    agent = agent_make(server, state)
    agent.run(once=True)
    haven_id = _item(discovery).haven_discovery_id
    vh_query(
        path,
        "UPDATE discoveries SET description = 'Curated by the Control Room.' WHERE id = ?",
        [haven_id],
    )
    with server_side():
        discovery_update(discovery_id=discovery.id, changes={"description": "Ours."})
    agent.run(once=True)
    item = _item(discovery)
    assert item.sync_status == SyncStatus.CONFLICT, item.sync_error
    assert item.metadata["conflict"]["theirs"]["description"] == "Curated by the Control Room."
    assert item.metadata["conflict"]["ours"]["description"] == "Ours."

    with server_side():
        services.queue_item_conflict_resolve(item_id=item.id, keep=keep)
    agent.run(once=True)

    assert _hows(server.calls("/agent/ack")[-1]) == {item.id: how}
    assert _item(discovery).sync_status == SyncStatus.SYNCED
    assert vh_row(path, haven_id)["description"] == kept


# --- who may call what ---------------------------------------------------------------------


def _client(key: str | None = None) -> APIClient:
    client = APIClient(raise_request_exception=False)
    if key:
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.mark.django_db
def test_an_agent_token_opens_only_the_agent_endpoints(settings):
    """The agent's token is refused (403) by the queue's API, reads and retries alike, and the
    agent's user cannot use the admin; it is taken by /agent/heartbeat."""
    settings.USE_HAVEN_AGENT, settings.USE_HAVEN_DATABASE = True, False
    key = agent_token()
    client = _client(key)
    for path in ("/sync/status", "/sync/failed", "/sync/items/", "/sync/waiting"):
        assert client.get(path).status_code == 403, path
    for path in ("/sync/retry", "/sync/retry/1"):
        answer = client.post(path, {"status": "pending"}, format="json")
        assert answer.status_code == 403, path
    assert client.post("/agent/heartbeat", {"instance": "one"}, format="json").status_code == 200

    assert client.get("/admin/").status_code == 302  # to the sign-in: a token is no session
    admin = APIClient()
    form = admin.post("/admin/login/", {"username": "agent:desktop", "password": key})
    assert form.status_code == 200 and "_auth_user_id" not in admin.session
    admin.force_login(get_user_model().objects.get(username="agent:desktop"))
    answer = admin.get("/admin/")
    assert answer.status_code == 302 and "/admin/login/" in answer["Location"]


@pytest.mark.django_db
def test_the_agent_endpoints_refuse_other_tokens_and_none(settings):
    """A staff member's API token holding view_syncqueueitem gets 403 from the agent's
    endpoints; no token or an unknown one gets 401."""
    settings.USE_HAVEN_AGENT, settings.USE_HAVEN_DATABASE = True, False
    viewer = user_make("viewer", staff=True, perms=["syncq.view_syncqueueitem"])
    from rest_framework.authtoken.models import Token

    viewer_key = Token.objects.create(user=viewer).key
    body = {"instance": "one", "wait_seconds": 0}
    assert _client(viewer_key).get("/sync/status").status_code == 200
    assert _client(viewer_key).post("/agent/lease", body, format="json").status_code == 403
    assert _client().post("/agent/lease", body, format="json").status_code == 401
    assert _client("f" * 40).post("/agent/lease", body, format="json").status_code == 401
    assert _client().put("/agent/catalog", {}, format="json").status_code == 401


_LEASE = "0123456789abcdef0123456789abcdef"
_DIGEST = "ab" * 32
_RESULT = {"id": 1, "operation": "write", "digest": _DIGEST, "started_at": None}
_OUTCOME = {"how": "written", "haven_discovery_id": 7}
_ACK = {"instance": "one", "lease": _LEASE, "results": [{**_RESULT, "outcome": _OUTCOME}]}
_FAIL = {"instance": "one", "lease": _LEASE, "results": [{**_RESULT, "error": "VH is gone"}]}
_FULL = {"systems": [["S1", "One"]], "planets": [[1, "S1", "P"]], "moons": []}
_HASH = catalog_content_hash(catalog_canonical(_FULL))
_CATALOG = {"content_hash": _HASH, "version": "v1", "full": _FULL}
#: An upload of another version than the kept one, so its body is read (not only "checked").
_UPLOAD = {**_CATALOG, "version": "v2"}


def _ack_with(**changes) -> dict:
    return {**_ACK, "results": [{**_ACK["results"][0], **changes}]}


def _outcome_with(**changes) -> dict:
    return _ack_with(outcome={**_OUTCOME, **changes})


MALFORMED = {
    "heartbeat: not JSON": ("post", "/agent/heartbeat", b"{instance: one"),
    "heartbeat: a list": ("post", "/agent/heartbeat", []),
    "heartbeat: no instance": ("post", "/agent/heartbeat", {}),
    "heartbeat: instance with a slash": ("post", "/agent/heartbeat", {"instance": "a/b"}),
    "heartbeat: instance too long": ("post", "/agent/heartbeat", {"instance": "a" * 65}),
    "heartbeat: instance a list": ("post", "/agent/heartbeat", {"instance": ["a"]}),
    "heartbeat: unknown vh_state": (
        "post",
        "/agent/heartbeat",
        {"instance": "a", "vh_state": "on fire"},
    ),
    "heartbeat: protocol text": ("post", "/agent/heartbeat", {"instance": "a", "protocol": "x"}),
    "lease: limit text": ("post", "/agent/lease", {"instance": "a", "limit": "many"}),
    "lease: limit 0": ("post", "/agent/lease", {"instance": "a", "limit": 0}),
    "lease: limit huge": ("post", "/agent/lease", {"instance": "a", "limit": 10**30}),
    "lease: limit past Python's digits": (
        "post",
        "/agent/lease",
        b'{"instance": "a", "limit": ' + b"9" * 5000 + b"}",
    ),
    "lease: wait negative": ("post", "/agent/lease", {"instance": "a", "wait_seconds": -1}),
    "lease: wait overflowing": (
        "post",
        "/agent/lease",
        b'{"instance": "a", "wait_seconds": 1e999}',
    ),
    "lease: wait a list": ("post", "/agent/lease", {"instance": "a", "wait_seconds": [1]}),
    "ack: lease not hex": ("post", "/agent/ack", {**_ACK, "lease": "z" * 32}),
    "ack: lease too short": ("post", "/agent/ack", {**_ACK, "lease": "ab"}),
    "ack: results an object": ("post", "/agent/ack", {**_ACK, "results": {"id": 1}}),
    "ack: results missing": ("post", "/agent/ack", {"instance": "a", "lease": _LEASE}),
    "ack: id huge": ("post", "/agent/ack", _ack_with(id=2**63)),
    "ack: id text": ("post", "/agent/ack", _ack_with(id="one")),
    "ack: id a fraction": ("post", "/agent/ack", _ack_with(id=1.5)),
    "ack: id twice": ("post", "/agent/ack", {**_ACK, "results": _ACK["results"] * 2}),
    "ack: digest not hex": ("post", "/agent/ack", _ack_with(digest="g" * 64)),
    "ack: digest upper case": ("post", "/agent/ack", _ack_with(digest="AB" * 32)),
    "ack: unknown operation": ("post", "/agent/ack", _ack_with(operation="drop")),
    "ack: started_at garbage": ("post", "/agent/ack", _ack_with(started_at="yesterday")),
    "ack: no outcome": ("post", "/agent/ack", {**_FAIL, "results": [_RESULT]}),
    "ack: unknown how": ("post", "/agent/ack", _outcome_with(how="teleported")),
    "ack: written without its row": ("post", "/agent/ack", _outcome_with(haven_discovery_id=None)),
    "ack: row id huge": ("post", "/agent/ack", _outcome_with(haven_discovery_id=10**20)),
    "ack: conflict without the conflict": ("post", "/agent/ack", _outcome_with(how="conflict")),
    "ack: waiting without a reason": (
        "post",
        "/agent/ack",
        _outcome_with(how="waiting", haven_discovery_id=None),
    ),
    "ack: neutralised not a list": ("post", "/agent/ack", _outcome_with(neutralised="x")),
    "ack: conflict of the wrong shape": (
        "post",
        "/agent/ack",
        _outcome_with(how="conflict", conflict={"haven_discovery_id": "x"}),
    ),
    "fail: no error": ("post", "/agent/fail", {**_FAIL, "results": [_RESULT]}),
    "fail: error an object": (
        "post",
        "/agent/fail",
        {**_FAIL, "results": [{**_RESULT, "error": {"text": "x"}}]},
    ),
    "fail: error too long": (
        "post",
        "/agent/fail",
        {**_FAIL, "results": [{**_RESULT, "error": "x" * 10_001}]},
    ),
    "catalog: not JSON": ("put", "/agent/catalog", b"\xff\xfe"),
    "catalog: content_hash missing": ("put", "/agent/catalog", {"version": "v", "full": _FULL}),
    "catalog: content_hash not hex": ("put", "/agent/catalog", {**_UPLOAD, "content_hash": "x"}),
    "catalog: version missing": ("put", "/agent/catalog", {"content_hash": _HASH, "full": _FULL}),
    "catalog: version too long": ("put", "/agent/catalog", {**_UPLOAD, "version": "v" * 65}),
    "catalog: neither full nor diff": (
        "put",
        "/agent/catalog",
        {"content_hash": _HASH, "version": "v"},
    ),
    "catalog: full and diff": (
        "put",
        "/agent/catalog",
        {**_UPLOAD, "diff": {}, "base_hash": _HASH},
    ),
    "catalog: full is text": ("put", "/agent/catalog", {**_UPLOAD, "full": "everything"}),
    "catalog: full is a list": ("put", "/agent/catalog", {**_UPLOAD, "full": [[1, "a"]]}),
    "catalog: a table missing": ("put", "/agent/catalog", {**_UPLOAD, "full": {"systems": []}}),
    "catalog: a table too many": (
        "put",
        "/agent/catalog",
        {**_UPLOAD, "full": {**_FULL, "galaxies": []}},
    ),
    "catalog: a table not a list": (
        "put",
        "/agent/catalog",
        {**_UPLOAD, "full": {**_FULL, "moons": {}}},
    ),
    "catalog: a row not a list": (
        "put",
        "/agent/catalog",
        {**_UPLOAD, "full": {**_FULL, "systems": [{"id": "S1"}]}},
    ),
    "catalog: a row too short": (
        "put",
        "/agent/catalog",
        {**_UPLOAD, "full": {**_FULL, "systems": [["S1"]]}},
    ),
    "catalog: a row holding a list": (
        "put",
        "/agent/catalog",
        {**_UPLOAD, "full": {**_FULL, "systems": [["S1", ["x"]]]}},
    ),
    "catalog: a null id": (
        "put",
        "/agent/catalog",
        {**_UPLOAD, "full": {**_FULL, "systems": [[None, "x"]]}},
    ),
    "catalog: an id twice": (
        "put",
        "/agent/catalog",
        {**_UPLOAD, "full": {**_FULL, "systems": [["S1", "a"], ["S1", "b"]]}},
    ),
    "catalog: an overflowing number": (
        "put",
        "/agent/catalog",
        json.dumps({**_UPLOAD, "full": {**_FULL, "systems": [["__INF__", "x"]]}})
        .replace('"__INF__"', "1e999")
        .encode(),
    ),
    "catalog: the wrong hash": ("put", "/agent/catalog", {**_UPLOAD, "content_hash": "0" * 64}),
    "catalog: base_hash not hex": (
        "put",
        "/agent/catalog",
        {"content_hash": _HASH, "version": "v", "diff": {}, "base_hash": "nope"},
    ),
}

#: Diffs against the catalog the server keeps (:data:`_CATALOG`), each of a wrong shape.
MALFORMED_DIFFS = {
    "diff: text": "everything",
    "diff: a list": [],
    "diff: an unknown table": {"galaxies": {"upsert": [], "delete": []}},
    "diff: no delete": {"systems": {"upsert": []}},
    "diff: an extra key": {"systems": {"upsert": [], "delete": [], "rename": []}},
    "diff: upsert not a list": {"systems": {"upsert": "x", "delete": []}},
    "diff: delete not a list": {"systems": {"upsert": [], "delete": 5}},
    "diff: a row too short": {"planets": {"upsert": [[2]], "delete": []}},
    "diff: a row holding an object": {"planets": {"upsert": [[2, "S1", {"n": 1}]], "delete": []}},
    "diff: a null id": {"moons": {"upsert": [[None, 1, "m"]], "delete": []}},
    "diff: a table not an object": {"moons": [[1, 1, "m"]]},
}


@pytest.mark.django_db
def test_malformed_agent_bodies_are_400_never_500(settings):
    """Bodies of the wrong shape, on every agent endpoint (wrong types, huge numbers, bad hex,
    unknown outcomes, missing fields, text that is not JSON, catalogs and diffs of the wrong
    shape), are each a 400 that changes nothing."""
    settings.USE_HAVEN_AGENT, settings.USE_HAVEN_DATABASE = True, False
    client = _client(agent_token())
    seed = client.put("/agent/catalog", _CATALOG, format="json")
    assert seed.status_code == 200, seed.content
    cases = dict(MALFORMED)
    for name, diff in MALFORMED_DIFFS.items():
        body = {"content_hash": "1" * 64, "version": "v2", "diff": diff, "base_hash": _HASH}
        cases[name] = ("put", "/agent/catalog", body)
    answers = {}
    for name, (method, path, body) in cases.items():
        if isinstance(body, bytes):
            answer = getattr(client, method)(path, body, content_type="application/json")
        else:
            answer = getattr(client, method)(
                path, json.dumps(body), content_type="application/json"
            )
        answers[name] = answer.status_code
    assert {name: code for name, code in answers.items() if code != 400} == {}
    copy = CatalogCopy.objects.get()
    assert (copy.content_hash, copy.version) == (_HASH, "v1")
    assert not LeaseHolder.objects.exists()


@SERVER_DB
def test_values_json_cannot_hold_in_an_outcome_are_400(settings):
    """The free-form parts of an outcome (``kept_base``, a conflict's ``ours``, ``theirs``,
    ``base``) must hold only what JSON can store again: ``1e999`` (read as infinity) is a 400
    that records nothing, rather than a 503 the agent would retry for ever."""
    settings.USE_HAVEN_AGENT, settings.USE_HAVEN_DATABASE = True, False
    discovery = discovery_make(**PLACED, description="odd outcome")
    client = _client(agent_token())
    lease = client.post("/agent/lease", {"instance": "one"}, format="json").json()
    (item,) = lease["items"]
    result = {"id": item["id"], "operation": "write", "digest": item["digest"]}
    for outcome in (
        '{"how": "written", "haven_discovery_id": 7, "kept_base": {"x": 1e999}}',
        '{"how": "conflict", "haven_discovery_id": null, "conflict": {"haven_discovery_id": 7,'
        ' "ours": {"x": 1e999}, "theirs": {}, "theirs_hash": "h"}}',
    ):
        body = json.dumps({"instance": "one", "lease": lease["lease"], "results": [result]})
        body = body[:-3] + ', "outcome": ' + outcome + "}]}"
        answer = client.post("/agent/ack", body, content_type="application/json")
        assert answer.status_code == 400, (outcome, answer.status_code, answer.content[:300])
        assert _item(discovery).sync_status == SyncStatus.SYNCING


# --- the server's side alone ---------------------------------------------------------------


@SERVER_DB
def test_the_servers_batch_never_opens_vh_and_leaves_the_items_to_the_agent(
    settings, tmp_path, monkeypatch
):
    """With USE_HAVEN_AGENT the server's scheduled batch does its housekeeping only: it opens
    no VH connection (here VH is a path that cannot exist), writes nothing and leaves the item
    pending, untried."""
    settings.USE_HAVEN_AGENT, settings.USE_HAVEN_DATABASE = True, False
    opened = []

    def watch(sender, connection, **kwargs):
        if connection.alias == "haven":
            opened.append(connection.settings_dict["NAME"])

    def refuse(*args, **kwargs):
        raise AssertionError("the server tried to write VH")

    monkeypatch.setattr(HavenBatch, "__enter__", refuse)
    monkeypatch.setattr(services, "haven_write_some", refuse)
    connection_created.connect(watch, weak=False)
    try:
        with haven_at(tmp_path / "no such folder" / "VH-Database.db", settings):
            discovery = discovery_make(**PLACED, description="left to the agent")
            report = sync_batch()
            services.sync_until_idle(max_seconds=5)
    finally:
        connection_created.disconnect(watch)
    assert report.claimed == 0
    assert opened == []
    item = _item(discovery)
    assert (item.sync_status, item.sync_attempts) == (SyncStatus.PENDING, 0)


def test_settings_refuse_the_agent_and_vh_together(tmp_path):
    """USE_HAVEN_AGENT=true with USE_HAVEN_DATABASE=true stops the server at start (exit 2),
    saying why."""
    env = manage_env(
        keeper=tmp_path / "keeper.db",
        haven=tmp_path / "VH-Database.db",
        USE_HAVEN_AGENT="true",
        USE_HAVEN_DATABASE="true",
    )
    done = run_manage("check", env=env)
    assert done.returncode == 2, done.stderr
    assert "USE_HAVEN_AGENT=true needs USE_HAVEN_DATABASE=false" in done.stderr


# --- the commands --------------------------------------------------------------------------


def _desktop_env(tmp_path, **extra: str) -> dict[str, str]:
    """A desktop's environment: a copied server .env (agent on, VH off), no secret, and manage.py
    left to pick the agent's settings."""
    env = manage_env(
        keeper=tmp_path / "keeper.db",
        haven=tmp_path / "VH-Database.db",
        USE_HAVEN_AGENT="true",
        USE_HAVEN_DATABASE="false",
        **extra,
    )
    env.pop("DJANGO_SETTINGS_MODULE")
    env.pop("SECRET_KEY")
    return env


def test_haven_agent_without_a_server_or_a_token_says_what_is_missing(tmp_path):
    """``manage.py haven_agent`` without a server address, or without a token, stops with a
    message naming the setting (and no traceback), even from a copy of the server's .env."""
    done = run_manage("haven_agent", "--once", env=_desktop_env(tmp_path))
    assert done.returncode == 1
    assert "no server" in done.stderr and "AGENT_SERVER_URL" in done.stderr
    assert "Traceback" not in done.stderr
    env = _desktop_env(tmp_path, AGENT_SERVER_URL="https://keeper.example.org")
    done = run_manage("haven_agent", "--once", env=env)
    assert done.returncode == 1
    assert "no token" in done.stderr and "agent_token" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "keeper.db").exists(), "the agent made a keeper.db"


@WITH_HAVEN
def test_the_haven_agent_command_runs_one_round_and_stops_on_a_refused_token(
    sample_haven_db, server, state, monkeypatch
):
    """``manage.py haven_agent --once`` writes the queue into VH and returns; a token the
    server refuses stops it with a message saying so."""
    from syncq.management.commands import haven_agent

    def through_the_test_server(**kwargs):
        return HavenAgent(**kwargs, transport=server)

    monkeypatch.setattr(haven_agent, "HavenAgent", through_the_test_server)
    monkeypatch.setattr(haven_agent.signal, "signal", lambda *args: None)
    before = vh_count(sample_haven_db)
    discovery = _submit(description="by the command")
    out = StringIO()
    call_command(
        "haven_agent",
        "--server=http://testserver",
        f"--token={agent_token()}",
        f"--state={state}",
        "--once",
        stdout=out,
        stderr=StringIO(),
    )
    assert "stopped" in out.getvalue()
    assert _item(discovery).sync_status == SyncStatus.SYNCED
    assert vh_count(sample_haven_db) == before + 1
    with pytest.raises(CommandError, match="refused the agent.*401"):
        call_command(
            "haven_agent",
            "--server=http://testserver",
            "--token=" + "0" * 40,
            f"--state={state}",
            "--once",
            stdout=StringIO(),
            stderr=StringIO(),
        )


@pytest.mark.django_db
def test_agent_token_prints_the_token_and_rotate_replaces_it(settings):
    """``manage.py agent_token NAME`` prints a token that the agent endpoints take; asked again
    it prints the same; --rotate prints a new one, and the old one stops working at once. A
    name that is not an agent's is refused."""
    settings.USE_HAVEN_AGENT, settings.USE_HAVEN_DATABASE = True, False

    def token(*args) -> str:
        out = StringIO()
        call_command("agent_token", *args, stdout=out, stderr=StringIO())
        return out.getvalue().strip()

    first = token("desk-1")
    assert len(first) == 40
    assert token("desk-1") == first
    rotated = token("desk-1", "--rotate")
    assert rotated != first
    heartbeat = {"instance": "one"}
    assert _client(first).post("/agent/heartbeat", heartbeat, format="json").status_code == 401
    assert _client(rotated).post("/agent/heartbeat", heartbeat, format="json").status_code == 200
    user_make("agent:boss", staff=True)
    with pytest.raises(CommandError, match="staff"):
        token("boss")
    with pytest.raises(CommandError):
        token("not a name!")


# --- faults the protocol should survive ----------------------------------------------------


@WITH_HAVEN
def test_a_control_room_map_the_catalog_refuses_does_not_stop_the_writes(
    control_room_schema_haven_db, server, state
):
    """A Control Room map the catalog refuses (SQLite lets ``systems.id TEXT PRIMARY KEY`` hold
    NULL) is skipped, logged and said in the heartbeat's ``vh_detail``; the discoveries are
    still written."""
    path = control_room_schema_haven_db
    vh_query(
        path,
        "INSERT INTO systems (id, name, x, y, z, region) VALUES (NULL, 'No Id', 0, 0, 0, 'Odd')",
    )
    before = vh_count(path)
    discovery = _submit(description="written whatever the map holds")
    agent_make(server, state).run(once=True)
    assert _item(discovery).sync_status == SyncStatus.SYNCED
    assert vh_count(path) == before + 1


@WITH_HAVEN
def test_a_long_nearest_name_in_vh_does_not_stop_the_agent(
    control_room_schema_haven_db, server, state
):
    """A waiting outcome whose nearest names in VH are longer than a typed name may be is still
    taken (the agent cuts them to :data:`syncq.agent_protocol.SUGGESTION_MAX_CHARACTERS`),
    and the item waits, as the local worker records it."""
    path = control_room_schema_haven_db
    vh_name = ("Long Reach " * 25).strip()
    vh_query(
        path,
        "INSERT INTO systems (id, name, x, y, z, region) VALUES ('SYS_LONG', ?, 0, 0, 0, 'Far')",
        [vh_name],
    )
    discovery = _submit(system_name=vh_name[:190] + "Q", location="Far Prime")
    agent_make(server, state).run(once=True)
    item = _item(discovery)
    assert item.sync_status == SyncStatus.WAITING, (item.sync_status, item.sync_error)
    assert vh_name in item.sync_error


@WITH_HAVEN
def test_a_catalog_larger_than_one_request_does_not_stop_the_writes(
    sample_haven_db, server, state, settings
):
    """A map larger than the server's usual body limit is taken by ``/agent/catalog`` (its own,
    larger limit), and a catalog the server refused would not stop the writes either."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 16_384
    conn = sqlite3.connect(sample_haven_db)
    with conn:
        conn.executemany(
            "INSERT INTO systems (id, name, x, y, z, region) VALUES (?, ?, 0, 0, 0, 'Big')",
            [(f"SYS_BIG_{n:05d}", f"Big Map System Number {n:05d}") for n in range(600)],
        )
    conn.close()
    discovery = _submit(description="on a big map")
    agent_make(server, state).run(once=True)
    assert server.calls("/agent/catalog")[0].status == 200
    assert len(CatalogCopy.objects.get().systems) > 600
    assert _item(discovery).sync_status == SyncStatus.SYNCED


@WITH_HAVEN
def test_a_catalog_the_server_refuses_does_not_stop_the_writes_nor_go_again_unchanged(
    sample_haven_db, server, state, monkeypatch
):
    """A catalog past even ``/agent/catalog``'s own limit is a 413: the discoveries are still
    written, the refusal is said in the heartbeat's detail, and the same map is not sent again
    until it changes."""
    from syncq.agent_api import AgentCatalogView

    monkeypatch.setattr(AgentCatalogView, "body_limit", 1024)
    discovery = _submit(description="catalog refused")
    agent = agent_make(server, state)
    agent.run(once=True)
    agent.run(once=True)
    assert [call.status for call in server.calls("/agent/catalog")] == [413]
    assert _item(discovery).sync_status == SyncStatus.SYNCED
    assert agent.catalog_detail == "catalog upload refused: HTTP 413"


@WITH_HAVEN
def test_a_lease_answer_lost_on_the_way_does_not_strand_its_items(
    control_room_schema_haven_db, server, state
):
    """When a lease's answer is lost on the way back (the connection reset after the server
    committed the claim), the run's next lease request takes those items back and leases them
    again at once, rather than leaving them ``syncing`` until SYNC_LEASE_SECONDS; the ledger
    keeps the writes single."""
    lost = []

    def lose_first_lease(request, response):
        if request.url.path == "/agent/lease" and response.json().get("items") and not lost:
            lost.append(response.json()["lease"])
            raise httpx.ReadError("connection reset by peer")

    server.after = lose_first_lease
    discovery = _submit(description="lost in transit")
    agent = agent_make(server, state)
    agent.run(once=True)
    agent.run(once=True)
    assert lost, "the lease answer was not lost"
    item = _item(discovery)
    assert item.sync_status == SyncStatus.SYNCED, (item.sync_status, item.sync_error)


@SERVER_DB
def test_an_outcome_its_operation_cannot_have_is_refused_and_changes_nothing(settings):
    """A report that cannot be true of the item it names is a 400 that records nothing: a
    write cannot end ``deleted`` (which would delete the keeper discovery), a delete cannot end
    ``written``, and an item leased to write cannot be reported as a delete."""
    settings.USE_HAVEN_AGENT, settings.USE_HAVEN_DATABASE = True, False
    item = _item(discovery_make(**PLACED, description="operation check"))
    transport = ServerTransport(overrides={})
    try:
        client = api(transport, agent_token("ops"))
        lease = client.post(
            "/agent/lease", json={"instance": "1", "limit": 1, "wait_seconds": 0}
        ).json()
        [leased] = lease["items"]
        base = {"id": leased["id"], "digest": leased["digest"], "started_at": None}
        deleted = {"how": "deleted", "haven_discovery_id": None}
        written = {"how": "written", "haven_discovery_id": 5}
        for result in (
            {**base, "operation": "write", "outcome": deleted},
            {**base, "operation": "delete", "outcome": written},
            {**base, "operation": "delete", "outcome": deleted},
        ):
            answer = client.post(
                "/agent/ack", json={"instance": "1", "lease": lease["lease"], "results": [result]}
            )
            assert answer.status_code == 400, answer.content
    finally:
        transport.shutdown()
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.SYNCING and item.lease_token == lease["lease"]
    assert Discovery.objects.filter(id=item.discovery_id).exists()


@WITH_HAVEN
def test_an_unchanged_catalog_is_confirmed_by_each_heartbeat(sample_haven_db, server, state):
    """While the desktop's map stays as uploaded, each heartbeat marks the server's copy
    confirmed (``checked_at``), so its age says how old the server's knowledge is, not how
    long ago the map last changed; ``uploaded_at`` stays."""
    agent = agent_make(server, state)
    agent.run(once=True)
    uploaded = CatalogCopy.objects.get()
    old = uploaded.checked_at - timedelta(hours=1)
    CatalogCopy.objects.update(checked_at=old)
    agent.run(once=True)
    assert len(server.calls("/agent/catalog")) == 1
    copy = CatalogCopy.objects.get()
    assert copy.checked_at > old + timedelta(minutes=59)
    assert copy.uploaded_at == uploaded.uploaded_at


def test_the_daily_verify_is_skipped_with_vh_on_the_agents_desktop(settings):
    """``sync_verify`` reads VH itself: with ``USE_HAVEN_AGENT`` its daily run says why it did
    not run instead of recording a failed check."""
    from syncq.tasks import verify_daily

    settings.USE_HAVEN_AGENT, settings.USE_HAVEN_DATABASE = True, False
    assert verify_daily() == {"skipped": "VH-Database.db is on the Control Room agent's desktop"}


def test_a_retry_after_longer_than_the_cap_is_waited_only_up_to_the_cap(monkeypatch):
    """A 429 whose ``Retry-After`` is a lockout of minutes makes the agent ask again after at
    most ``RETRY_AFTER_MAX_SECONDS``: a call refused meanwhile does not extend the lockout,
    and an operator's ``axes_reset`` is noticed soon."""
    from syncq import agent_client

    answers = iter([httpx.Response(429, headers={"Retry-After": "298"}), httpx.Response(200)])
    waits = []

    class Stop:
        def is_set(self):
            return False

        def wait(self, seconds):
            waits.append(seconds)
            return False

    connection = agent_client.AgentConnection(
        "http://server", "t", stop=Stop(), transport=httpx.MockTransport(lambda _: next(answers))
    )
    assert connection.call("POST", "/agent/heartbeat", {}).status_code == 200
    assert waits and waits[0] <= agent_client.RETRY_AFTER_MAX_SECONDS
    assert waits[0] >= agent_client.RETRY_AFTER_MAX_SECONDS / 2


@WITH_HAVEN
def test_a_run_killed_on_the_items_last_attempt_leaves_it_exceeded_saying_why(
    control_room_schema_haven_db, server, state
):
    """An item taken back from a run that never reported, on its last attempt, is
    ``max_retries_exceeded`` with the reason, not ``pending`` with "due again at once"."""
    discovery = _submit(description="last attempt lost")
    SyncQueueItem.objects.filter(discovery_id=discovery.pk).update(max_attempts=1)
    killed = agent_make(server, state)
    lease_take(killed)
    killed.close()
    agent_make(server, state).heartbeat()
    item = _item(discovery)
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED
    assert "did not report its last attempt" in item.sync_error


@WITH_HAVEN
def test_an_ack_too_large_for_the_server_goes_in_halves_and_an_item_too_large_fails(
    sample_haven_db, server, state, settings, monkeypatch
):
    """A report past the server's body limit (413) is sent again in halves; an item whose
    outcome alone is too large is reported as a failure saying so, and the agent goes on."""
    from syncq import agent_client

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_800
    small = [_submit(description=f"small {n}") for n in range(6)]
    big = _submit(description="big")
    wire = agent_client.outcome_to_wire

    def inflated(outcome):
        data = wire(outcome)
        if outcome.haven_discovery_id == max(_ledger(sample_haven_db).values()):
            data["unresolved"] = "u" * 1_900  # the last written: the big one
        return data

    monkeypatch.setattr(agent_client, "outcome_to_wire", inflated)
    agent_make(server, state).run(once=True)
    statuses = {d.pk: _item(d).sync_status for d in [*small, big]}
    assert {statuses[d.pk] for d in small} == {SyncStatus.SYNCED}
    assert statuses[big.pk] == SyncStatus.PENDING
    assert "too large to send" in _item(big).sync_error
    assert 413 in [call.status for call in server.calls("/agent/ack")]


def test_an_outcomes_row_values_are_flat_and_bounded(settings):
    """A conflict's versions and a kept base are a VH row's columns: nested values, too many
    columns or a column's text past its bound are a 400 that records nothing."""
    from syncq.agent_api import ROW_VALUE_MAX, AgentConflictSerializer

    good = {"haven_discovery_id": 1, "ours": {"description": "a"}, "theirs": None}
    for bad in (
        {"description": {"nested": 1}},
        {"description": ["a"]},
        {f"c{n}": 1 for n in range(201)},
        {"description": "x" * (ROW_VALUE_MAX + 1)},
    ):
        serializer = AgentConflictSerializer(data={**good, "ours": bad, "theirs_hash": "h"})
        assert not serializer.is_valid()
    assert AgentConflictSerializer(data={**good, "theirs_hash": "h"}).is_valid()


@pytest.mark.django_db
def test_a_superusers_token_is_no_agents(settings):
    """Only an agent's token (``agent:…``, no superuser) opens ``/agent/``: a superuser holds
    every permission, yet is refused (403)."""
    settings.USE_HAVEN_AGENT, settings.USE_HAVEN_DATABASE = True, False
    user_make("root", superuser=True)
    client = APIClient()
    client.force_authenticate(get_user_model().objects.get(username="root"))
    answer = client.post("/agent/heartbeat", {"instance": "1"}, format="json")
    assert answer.status_code == 403


def test_a_damaged_state_file_starts_afresh_and_an_unwritable_one_is_a_clear_error(tmp_path):
    """The agent's state: an ``agent_id`` that is not one, or a catalog without its snapshot
    or whose snapshot does not hash to its ``content_hash``, start afresh (the next upload is
    whole); a path that cannot be written is a ``CommandError`` naming it."""
    from syncq.agent_client import AgentState

    path = tmp_path / "state.json"
    for catalog in ({"content_hash": "0" * 64}, {"content_hash": "0" * 64, "snapshot": {}}):
        path.write_text(json.dumps({"agent_id": "a:b" * 30, "catalog": catalog}))
        state = AgentState.load(path)
        assert state.catalog is None
        assert state.agent_id != "a:b" * 30 and len(state.agent_id) == 32
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(CommandError, match="cannot be written"):
        call_command(
            "haven_agent", "--server", "http://x", "--token", "t", "--state", str(folder), "--once"
        )
