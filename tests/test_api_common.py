"""Cross-cutting rules of the Control Room API (README, "The Control Room API"): who may call
what (tokens, sessions, permissions, SYNC_API_PUBLIC_READ), ids in paths, error shapes and the
JSON 404 and 503 answers, and the OpenAPI schema and docs, pinned to what old clients call."""

from __future__ import annotations

import json
import re

import pytest
from django.conf import settings as django_settings
from django.contrib.staticfiles import finders
from rest_framework.test import APIClient

from syncq.models import SyncStatus
from tests.api_support import (
    API,
    CONFLICT_ITEM_KEYS,
    DISCOVERY_SUMMARY_KEYS,
    FAILED_ITEM_KEYS,
    HEALTH_KEYS,
    ITEM_KEYS,
    WAITING_ITEM_KEYS,
    token_client,
)
from tests.factories import CHANGE, queue_item_exceeded, queue_item_pending, user_make

# --- authentication and permissions -----------------------------------------------------------

READ_URLS = [
    "/sync/status",
    "/sync/statistics",
    "/sync/failed",
    "/sync/waiting",
    "/sync/conflicts",
    "/sync/items/",
]


@API
@pytest.mark.parametrize("url", READ_URLS)
def test_reads_without_credentials_answer_401_with_www_authenticate(url):
    """Every /sync read without credentials is 401 and says how to authenticate."""
    response = APIClient().get(url)
    assert response.status_code == 401
    assert response.headers.get("WWW-Authenticate")


@API
@pytest.mark.parametrize("url", READ_URLS)
def test_reads_with_an_unknown_token_answer_401(url):
    """A token that names no user is refused with 401, not treated as anonymous."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert client.get(url).status_code == 401


@API
@pytest.mark.parametrize("url", READ_URLS)
def test_reads_by_a_user_without_permission_answer_403(url):
    """An authenticated user lacking view_syncqueueitem gets 403 on every read."""
    assert token_client(user_make("nobody")).get(url).status_code == 403


@API
@pytest.mark.parametrize("url", READ_URLS)
def test_view_permission_is_enough_to_read(url, viewer):
    """view_syncqueueitem alone lets a user read every /sync endpoint."""
    assert viewer.get(url).status_code == 200


@API
def test_item_detail_needs_credentials_and_view_permission(viewer):
    """/sync/items/{id}/ is 401 anonymous, 403 without permission and 200 with it."""
    item = queue_item_pending()
    url = f"/sync/items/{item.id}/"
    assert APIClient().get(url).status_code == 401
    assert token_client(user_make("nobody")).get(url).status_code == 403
    assert viewer.get(url).status_code == 200


@API
def test_view_only_user_cannot_retry_and_nothing_changes(viewer):
    """A view-only user's retries (single and bulk) are 403 and leave the item as it was."""
    item = queue_item_exceeded()
    assert viewer.post(f"/sync/retry/{item.id}").status_code == 403
    assert viewer.post("/sync/retry", {"ids": [item.id]}, format="json").status_code == 403
    assert (
        viewer.post("/sync/retry", {"status": "max_retries_exceeded"}, format="json").status_code
        == 403
    )
    item.refresh_from_db()
    assert (item.sync_status, item.sync_attempts) == (SyncStatus.MAX_RETRIES_EXCEEDED, 1)


@API
def test_retries_without_credentials_answer_401():
    """Anonymous retries are 401 and change nothing."""
    item = queue_item_exceeded()
    client = APIClient()
    assert client.post(f"/sync/retry/{item.id}").status_code == 401
    assert client.post("/sync/retry", {"ids": [item.id]}, format="json").status_code == 401
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED


@API
def test_change_permission_lets_a_user_retry():
    """change_syncqueueitem is what a retry needs (no superuser required)."""
    item = queue_item_exceeded()
    client = token_client(user_make("operator", perms=CHANGE))
    assert client.post(f"/sync/retry/{item.id}").status_code == 200
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.PENDING


@API
def test_session_authentication_is_accepted():
    """A logged-in Django session (the browsable API) authenticates like a token."""
    client = APIClient()
    client.force_login(user_make("session-viewer", perms=["syncq.view_syncqueueitem"]))
    assert client.get("/sync/status").status_code == 200


# --- SYNC_API_PUBLIC_READ ---------------------------------------------------------------------


@API
def test_public_read_opens_only_status_and_statistics(settings):
    """SYNC_API_PUBLIC_READ lets anonymous GETs read the counts, never items or retries."""
    settings.SYNC_API_PUBLIC_READ = True
    item = queue_item_exceeded()
    anonymous = APIClient()

    status = anonymous.get("/sync/status")
    assert status.status_code == 200
    assert status.json()["queue"]["failed"] == 1
    statistics = anonymous.get("/sync/statistics")
    assert statistics.status_code == 200
    assert statistics.json()["statistics"]["counts"]["max_retries_exceeded"] == 1
    assert statistics.json()["statistics"]["top_errors"] == [], "no error texts for anonymous"

    assert anonymous.get("/sync/items/").status_code == 401
    assert anonymous.get(f"/sync/items/{item.id}/").status_code == 401
    assert anonymous.get("/sync/failed").status_code == 401
    assert anonymous.get("/sync/waiting").status_code == 401
    assert anonymous.get("/sync/conflicts").status_code == 401
    assert anonymous.post(f"/sync/retry/{item.id}").status_code == 401
    assert anonymous.post("/sync/retry", {"ids": [item.id]}, format="json").status_code == 401
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED


@API
def test_public_read_is_off_by_default():
    """Without the setting, anonymous /sync/status and /sync/statistics are 401."""
    assert django_settings.SYNC_API_PUBLIC_READ is False
    assert APIClient().get("/sync/status").status_code == 401
    assert APIClient().get("/sync/statistics").status_code == 401


@API
def test_public_read_still_refuses_users_without_permission(settings):
    """Opening the counts to anonymous reads does not open the item list to weak users."""
    settings.SYNC_API_PUBLIC_READ = True
    client = token_client(user_make("nobody"))
    assert client.get("/sync/items/").status_code == 403
    assert client.get("/sync/failed").status_code == 403
    assert client.get("/sync/waiting").status_code == 403
    assert client.get("/sync/conflicts").status_code == 403


@API
def test_public_read_gives_error_texts_only_to_readers_with_the_permission(settings):
    """With SYNC_API_PUBLIC_READ, a signed-in user without "Can view queue item" reads the
    statistics as anonymous readers do, without error texts; a viewer gets them."""
    settings.SYNC_API_PUBLIC_READ = True
    queue_item_exceeded(error="VH said no")
    weak = token_client(user_make("weak", perms=["syncq.change_syncqueueitem"]))
    figures = weak.get("/sync/statistics").json()["statistics"]
    assert figures["counts"]["max_retries_exceeded"] == 1
    assert figures["top_errors"] == []
    reader = token_client(user_make("reader", perms=["syncq.view_syncqueueitem"]))
    assert reader.get("/sync/statistics").json()["statistics"]["top_errors"] == [
        {"error": "VH said no", "count": 1}
    ]


@API
def test_options_name_each_endpoint_as_before_and_retries_list_no_fields(admin):
    """OPTIONS answers carry the names old clients and the browsable API showed, and a retry,
    which takes no queue item, lists no fields to post."""
    names = {
        "/sync/items/": "Queue Item List",
        "/sync/status": "Status",
        "/sync/statistics": "Statistics",
        "/sync/failed": "Failed",
        "/sync/waiting": "Waiting",
        "/sync/conflicts": "Conflicts",
        "/sync/retry": "Retry Many",
        "/sync/retry/1": "Retry One",
    }
    for path, name in names.items():
        answer = admin.options(path)
        assert answer.status_code == 200, path
        assert answer.json()["name"] == name, path
        assert "actions" not in answer.json(), path
    described = admin.options("/sync/items/").json()["description"]
    assert described.startswith("The queue, newest first, filterable by")


# --- OpenAPI schema and docs ------------------------------------------------------------------

EXPECTED_OPERATIONS = {
    ("/health", "get"): {"200", "503"},
    ("/sync/status", "get"): {"200", "401", "403", "429"},
    ("/sync/statistics", "get"): {"200", "401", "403", "429"},
    ("/sync/failed", "get"): {"200", "400", "401", "403", "429"},
    ("/sync/waiting", "get"): {"200", "400", "401", "403", "429"},
    ("/sync/conflicts", "get"): {"200", "400", "401", "403", "429"},
    ("/sync/items/", "get"): {"200", "400", "401", "403", "429"},
    ("/sync/items/{}/", "get"): {"200", "401", "403", "404", "429"},
    ("/sync/retry/{}", "post"): {"200", "401", "403", "404", "409", "429"},
    ("/sync/retry", "post"): {"200", "400", "401", "403", "429"},
}


@API
def test_schema_is_public_openapi_listing_every_endpoint_and_its_errors():
    """/api/schema/ serves OpenAPI 3 JSON without credentials, with every endpoint and the
    error responses each can give."""
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    paths = {re.sub(r"\{[^}]+\}", "{}", path): ops for path, ops in schema["paths"].items()}
    problems = []
    for (path, method), codes in EXPECTED_OPERATIONS.items():
        operation = paths.get(path, {}).get(method)
        if operation is None:
            problems.append(f"{method.upper()} {path} missing")
        elif not codes <= set(operation["responses"]):
            missing = sorted(codes - set(operation["responses"]))
            problems.append(f"{method.upper()} {path} does not document {missing}")
    assert problems == []


@API
def test_docs_page_uses_only_local_static_files():
    """/api/docs/ is an HTML page whose scripts and styles are this site's static files."""
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    sources = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    scripts = re.findall(r"""<script[^>]*\ssrc\s*=\s*["']([^"']+)["']""", html)
    assert scripts, "the page loads no script"
    for url in sources:
        assert not re.match(r"(?i)(https?:)?//", url), f"external reference {url}"
    static = "/" + django_settings.STATIC_URL.strip("/") + "/"
    for url in scripts:
        if url.startswith(static):
            assert finders.find(url[len(static) :].split("?")[0]), f"{url} is not a static file"


# What the Control Room's scripts call, as the schema names it (README, "The Control Room API"):
# for each path and method, the operationId, the parameters as (name, in), and the component of
# each answer's JSON (None: an inline object).
DENIED = {"401": "ErrorDetail", "403": "ErrorDetail", "429": "ErrorDetail"}
RETRY_REFUSED = {**DENIED, "415": "ErrorDetail"}
ITEM_FILTERS = {"cursor", "discovery_id", "page_size", "since", "status", "until"}
OLD_CLIENT_OPERATIONS = {
    ("/health", "get"): ("health_retrieve", set(), {"200": "Health", "503": "Health"}),
    ("/sync/status", "get"): ("sync_status_retrieve", set(), {"200": "Status", **DENIED}),
    ("/sync/statistics", "get"): (
        "sync_statistics_retrieve",
        set(),
        {"200": "Statistics", **DENIED},
    ),
    ("/sync/failed", "get"): (
        "sync_failed_retrieve",
        {("limit", "query")},
        {"200": "Failed", "400": None, **DENIED},
    ),
    ("/sync/items/", "get"): (
        "sync_items_list",
        {(name, "query") for name in ITEM_FILTERS},
        {"200": "PaginatedQueueItemList", "400": None, "404": "ErrorDetail", **DENIED},
    ),
    ("/sync/items/{id}/", "get"): (
        "sync_items_retrieve",
        {("id", "path")},
        {"200": "QueueItem", "404": "ErrorDetail", **DENIED},
    ),
    ("/sync/retry/{queue_id}", "post"): (
        "sync_retry_one",
        {("queue_id", "path")},
        {"200": "Message", "404": "Message", "409": "Message", **RETRY_REFUSED},
    ),
    ("/sync/retry", "post"): (
        "sync_retry_many",
        set(),
        {"200": "BulkRetryResult", "400": None, "413": "ErrorDetail", **RETRY_REFUSED},
    ),
}


#: Operations added since, for operators rather than old clients: the items held back from VH,
#: in /sync/failed's shape and with its ``limit``.
HELD_OPERATIONS = {
    ("/sync/waiting", "get"): (
        "sync_waiting_retrieve",
        {("limit", "query")},
        {"200": "Waiting", "400": None, **DENIED},
    ),
    ("/sync/conflicts", "get"): (
        "sync_conflicts_retrieve",
        {("limit", "query")},
        {"200": "Conflicts", "400": None, **DENIED},
    ),
}
#: The Control Room agent's operations (syncq.agent_api): JSON bodies, an agent's token only.
AGENT_DENIED = {"400": None, **DENIED}
AGENT_OPERATIONS = {
    ("/agent/heartbeat", "post"): (
        "agent_heartbeat",
        set(),
        {"200": "AgentHeartbeatResponse", **AGENT_DENIED},
    ),
    ("/agent/lease", "post"): ("agent_lease", set(), {"200": "AgentLeaseResponse", **AGENT_DENIED}),
    ("/agent/ack", "post"): (
        "agent_ack",
        set(),
        {"200": "AgentResultsResponse", "409": "AgentLeaseConflictResponse", **AGENT_DENIED},
    ),
    ("/agent/fail", "post"): (
        "agent_fail",
        set(),
        {"200": "AgentResultsResponse", "409": "AgentLeaseConflictResponse", **AGENT_DENIED},
    ),
    ("/agent/catalog", "put"): (
        "agent_catalog_upload",
        set(),
        {"200": "AgentCatalogResponse", "409": "ErrorDetail", **AGENT_DENIED},
    ),
}
ALL_OPERATIONS = {**OLD_CLIENT_OPERATIONS, **HELD_OPERATIONS, **AGENT_OPERATIONS}


def _served_schema() -> dict:
    """/api/schema/ as the site serves it, without credentials (it is public)."""
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return json.loads(response.content)


def _component(content: dict) -> str | None:
    """The name of the component a JSON body's schema refers to; None for an inline schema."""
    assert set(content) == {"application/json"}
    reference = content["application/json"]["schema"].get("$ref")
    return reference.rsplit("/", 1)[1] if reference else None


@API
def test_schema_lists_exactly_the_paths_and_methods_old_clients_call():
    """The schema has the eight operations the Control Room's scripts call, at their paths
    (no trailing slash on the old ones), the two listings of held items, and no other."""
    schema = _served_schema()
    operations = {(path, method) for path, methods in schema["paths"].items() for method in methods}
    assert operations == set(ALL_OPERATIONS)


@API
def test_schema_keeps_the_operation_ids_and_parameters():
    """Each operation keeps its operationId (sync_retry_one and sync_retry_many for the
    retries, which generated clients call by name) and its parameters; path ids are integers
    of 1 to 2**63-1 written in ASCII digits."""
    paths = _served_schema()["paths"]
    assert paths["/sync/retry/{queue_id}"]["post"]["operationId"] == "sync_retry_one"
    assert paths["/sync/retry"]["post"]["operationId"] == "sync_retry_many"
    for (path, method), (operation_id, parameters, _) in ALL_OPERATIONS.items():
        operation = paths[path][method]
        assert operation["operationId"] == operation_id, (path, method)
        given = operation.get("parameters", [])
        assert {(p["name"], p["in"]) for p in given} == parameters, (path, method)
        for parameter in given:
            if parameter["in"] == "path":
                assert parameter["schema"] == {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 2**63 - 1,
                    "pattern": "^[0-9]+$",
                }, (path, parameter)
                assert parameter["required"] is True


@API
def test_schema_keeps_each_old_endpoints_answers_and_bodies():
    """Each operation documents the same answers with the same components, and only the bulk
    retry takes a body: a JSON BulkRetryRequest."""
    paths = _served_schema()["paths"]
    for (path, method), (_, _, answers) in ALL_OPERATIONS.items():
        operation = paths[path][method]
        documented = {
            code: _component(answer["content"]) for code, answer in operation["responses"].items()
        }
        assert documented == answers, (path, method)
        if (path, method) == ("/sync/retry", "post"):
            assert _component(operation["requestBody"]["content"]) == "BulkRetryRequest"
        elif path.startswith("/agent/"):
            assert _component(operation["requestBody"]["content"]).startswith("Agent")
        else:
            assert "requestBody" not in operation, (path, method)


@API
def test_schema_components_have_the_keys_old_clients_read():
    """The components of the old endpoints' answers have exactly the keys the clients read."""
    components = _served_schema()["components"]["schemas"]
    expected = {
        # agent: the Control Room agent, null outside agent mode (USE_HAVEN_AGENT).
        "Health": HEALTH_KEYS | {"agent"},
        "Status": {"status", "sync_worker", "queue", "totals", "agent"},
        "SyncWorker": {"is_running", "sync_interval", "uptime_seconds", "last_sync_time"},
        # waiting and conflict follow the reference's four; old clients read those by name.
        "QueueCounts": {"pending", "syncing", "synced", "failed", "waiting", "conflict"},
        "Totals": {"total_synced", "total_failed"},
        "Statistics": {"status", "statistics"},
        "Figures": {
            "counts",
            "oldest_pending_age_seconds",
            "synced_last_hour",
            "synced_last_day",
            "sync_seconds",
            "sync_seconds_last_hour",
            "sync_seconds_last_day",
            "top_errors",
            "verify",
        },
        "StateCounts": {
            "pending",
            "syncing",
            "synced",
            "max_retries_exceeded",
            "waiting",
            "conflict",
        },
        "Failed": {"status", "failed_items", "count"},
        "FailedItem": FAILED_ITEM_KEYS,
        "Waiting": {"status", "waiting_items", "count"},
        "WaitingItem": WAITING_ITEM_KEYS,
        "Conflicts": {"status", "conflict_items", "count"},
        "ConflictItem": CONFLICT_ITEM_KEYS,
        "Message": {"status", "message", "queue_id"},
        "BulkRetryRequest": {"ids", "status"},
        "BulkRetryResult": {"status", "reset", "reset_ids", "refused", "missing"},
        "QueueItem": ITEM_KEYS,
        "DiscoverySummary": DISCOVERY_SUMMARY_KEYS,
        "ErrorDetail": {"detail"},
    }
    keys = {name: set(components[name]["properties"]) for name in expected}
    assert keys == expected
    counts = ("QueueCounts", "Totals", "StateCounts")
    for name in counts:
        properties = components[name]["properties"].values()
        assert all(p == {"type": "integer"} for p in properties), name


# --- hostile requests and broken surroundings (found by probing the running server) -----------


@API
@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("post", "/sync/retry/9223372036854775808", None),
        ("post", "/sync/retry", {"ids": [99999999999999999999]}),
        ("get", "/sync/items/?discovery_id=9223372036854775808", None),
    ],
)
def test_ids_beyond_what_a_database_holds_are_refused_in_json(admin, method, url, body):
    """An id past 2^63−1 answers a JSON 404 or 400, never a server error."""
    response = (
        getattr(admin, method)(url, body, format="json") if body else getattr(admin, method)(url)
    )
    assert response.status_code in (400, 404)
    assert response["Content-Type"].startswith("application/json")


#: Digits other than ASCII's, which Python's int() reads as numbers all the same.
OTHER_DIGITS = {
    "arabic-indic": "٠١٢٣٤٥٦٧٨٩",
    "devanagari": "०१२३४५६७८९",
    "fullwidth": "０１２３４５６７８９",
}


@API
@pytest.mark.parametrize("digits", OTHER_DIGITS.values(), ids=OTHER_DIGITS.keys())
def test_an_id_in_other_digits_names_no_item(admin, digits):
    """An item's id written in non-ASCII digits is a JSON 404 on /sync/items/{id}/, the same
    answer as /sync/retry/{id} gives, and the item is neither shown nor retried."""
    item = queue_item_exceeded()
    written = "".join(digits[int(digit)] for digit in str(item.id))
    assert admin.get(f"/sync/items/{item.id}/").status_code == 200

    detail = admin.get(f"/sync/items/{written}/")
    retry = admin.post(f"/sync/retry/{written}")

    assert (detail.status_code, retry.status_code) == (404, 404)
    assert detail["Content-Type"].startswith("application/json")
    assert detail.json() == retry.json()
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED


@API
def test_a_keeper_db_failure_during_a_request_answers_503_json(admin, monkeypatch):
    """keeper.db failing under a request (locked past its busy timeout) answers 503 JSON."""
    from django.db import OperationalError

    from syncq import api

    def locked(**kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(api, "queue_item_retry", locked)
    response = admin.post("/sync/retry/1")
    assert response.status_code == 503
    assert response.json()["status"] == "error"


@API
def test_a_broken_cache_neither_breaks_health_nor_blocks_retries(admin, monkeypatch):
    """With the cache failing, /health still answers (bot offline) and retries go through."""
    from django.core.cache import cache

    def broken(*args, **kwargs):
        raise OSError("cache directory is gone")

    item = queue_item_exceeded(description="retry me while the cache is down")
    monkeypatch.setattr(cache, "get", broken)
    monkeypatch.setattr(cache, "set", broken)
    monkeypatch.setattr(cache, "add", broken)
    health = APIClient().get("/health")
    assert health.status_code == 200 and health.json()["bot_online"] is False
    assert admin.post(f"/sync/retry/{item.id}").status_code == 200


@API
@pytest.mark.parametrize("url", ["/health/", "/sync", "/sync/", "/sync/nothing/here"])
def test_unknown_api_paths_answer_json_404(admin, url):
    """Paths near the API's that match nothing answer JSON, not Django's HTML page."""
    response = admin.get(url)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
