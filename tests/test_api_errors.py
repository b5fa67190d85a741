"""Hostile and malformed requests to the Control Room API (issue 13): every one gets a 4xx in
JSON, never a 500 and never Django's HTML page, on the API's paths (``/health``, ``/sync/…``,
``/api/…``), while the admin keeps Django's HTML pages; and no cache keeps an answer of the API
(``Cache-Control: no-store``)."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from django.core.exceptions import (
    DisallowedHost,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
)
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from syncq.api import bad_request, permission_denied
from syncq.models import SyncQueueItem, SyncStatus
from syncq.parsers import JSONBodyParser
from tests.api_support import API, token_client
from tests.factories import (
    queue_item_exceeded,
    queue_item_pending,
    queue_item_synced,
    user_make,
)

#: Every path and method of the API, with a body where the operation takes one.
API_CALLS = [
    ("get", "/health"),
    ("get", "/sync/status"),
    ("get", "/sync/statistics"),
    ("get", "/sync/failed"),
    ("get", "/sync/waiting"),
    ("get", "/sync/conflicts"),
    ("get", "/sync/items/"),
    ("get", "/sync/items/1/"),
    ("post", "/sync/retry/1"),
    ("post", "/sync/retry"),
]
#: Methods no operation of the API takes, sent to each of its paths.
OTHER_METHODS = ("put", "patch", "delete")
DEEP = "[" * 10_000 + "]" * 10_000


def _client(*, raise_errors: bool = False) -> APIClient:
    """A superuser's token client that answers a server error as a response, so a test can
    say it got a 500 rather than die of the exception."""
    client = token_client(user_make("root", superuser=True))
    client.raise_request_exception = raise_errors
    return client


def _assert_json_4xx(response, *expected: int) -> None:
    assert response.status_code in expected, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    response.json()


# --- bodies: one parser for the whole API ------------------------------------------------------


def _api_views():
    """``(route, view class, parser classes)`` of every DRF view routed under /health and
    /sync, each action of the viewset with its own ``@action`` options."""

    def walk(patterns, prefix=""):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                yield from walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                yield prefix + str(entry.pattern), entry.callback

    for route, callback in walk(get_resolver().url_patterns):
        cls = getattr(callback, "cls", None)
        if cls is None or not route.startswith(("health", "sync")):
            continue
        initkwargs = getattr(callback, "initkwargs", {})
        yield route, cls, initkwargs.get("parser_classes", cls.parser_classes)


def test_every_view_of_the_api_parses_bodies_with_the_one_json_parser():
    """Each route under /health and /sync (each retry action too) reads bodies only with
    JSONBodyParser, whatever DRF's default parsers are."""
    views = list(_api_views())
    assert len(views) >= 10, views
    assert [route for route, _, parsers in views if list(parsers) != [JSONBodyParser]] == []


@API
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"status":"\\ud83d"}', id="value"),
        pytest.param(b'{"\\ud83d":"pending"}', id="key"),
        pytest.param(b'{"ids":[1],"x":{"y":["\\udfff"]}}', id="nested-value"),
        pytest.param(b'{"status":"pending\\ud800"}', id="inside-a-value"),
        pytest.param(b'{"status":"\\ude00\\ud83d"}', id="reversed-pair"),
    ],
)
def test_a_lone_surrogate_anywhere_in_the_body_is_a_400_parse_error(body):
    """A bulk retry whose JSON names a lone surrogate (\\ud83d), in a key or a value at any
    depth, is a 400 JSON parse error (it was a 500 when the answer quoted it), and nothing is
    retried."""
    item = queue_item_exceeded()
    response = _client().post("/sync/retry", data=body, content_type="application/json")
    _assert_json_4xx(response, 400)
    assert "lone surrogate" in response.json()["detail"]
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED


@API
def test_a_surrogate_pair_is_a_character_not_an_error():
    """A proper surrogate pair (\\ud83d\\ude00, an emoji) decodes to one character: the body
    is read as usual (here: a status that is not one, a 400 naming status)."""
    response = _client().post(
        "/sync/retry", data=b'{"status":"\\ud83d\\ude00"}', content_type="application/json"
    )
    _assert_json_4xx(response, 400)
    assert "status" in response.json()


@API
@pytest.mark.parametrize(("method", "url"), API_CALLS)
def test_a_body_nested_10000_deep_never_gets_past_a_4xx(method, url):
    """JSON nested 10,000 deep, sent to every operation of the API, is refused with a 400
    where the operation reads a body (the bulk retry) and ignored where it takes none; never a
    500."""
    queue_item_exceeded()
    response = _client().generic(method.upper(), url, DEEP, content_type="application/json")
    assert response.status_code < 500
    if url == "/sync/retry":
        _assert_json_4xx(response, 400)
        assert "nested too deeply" in response.json()["detail"]


@API
@pytest.mark.parametrize("method", OTHER_METHODS)
@pytest.mark.parametrize("url", sorted({url for _, url in API_CALLS}))
@pytest.mark.parametrize(
    "body", [DEEP.encode(), b'{"\\ud83d":1}', b"\xff\xfe"], ids=["deep", "surrogate", "not-utf8"]
)
def test_other_methods_with_hostile_bodies_answer_405_in_json(method, url, body):
    """PUT, PATCH and DELETE with a deep, surrogate or undecodable body answer 405 in JSON
    on every path of the API, with the methods it takes in Allow."""
    response = _client().generic(method.upper(), url, body, content_type="application/json")
    _assert_json_4xx(response, 405)
    assert response["Allow"]


@API
@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"\xff\xfe\x00", "application/json", 400),
        (b'{"ids": [1e400]}', "application/json", 400),
        (b'{"ids": [NaN]}', "application/json", 400),
        (b'{"ids": [' + b"9" * 5000 + b"]}", "application/json", 400),
        (b'["max_retries_exceeded"]', "application/json", 400),
        (b'"pending"', "application/json", 400),
        (b"null", "application/json", 400),
        (b"status=pending", "application/x-www-form-urlencoded", 415),
        (b"<x/>", "text/xml", 415),
    ],
    ids=["not-utf8", "huge-float", "nan", "5000-digits", "list", "string", "null", "form", "xml"],
)
def test_malformed_bulk_retry_bodies_are_refused_in_json(body, content_type, status):
    """Bodies that are not UTF-8, hold numbers no id can be, are not an object, or are not
    JSON at all are refused with a JSON 400 or 415, and nothing is retried."""
    item = queue_item_exceeded()
    response = _client().post("/sync/retry", data=body, content_type=content_type)
    _assert_json_4xx(response, status)
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED


@API
@pytest.mark.parametrize(
    "ids",
    [["1"], [1.0], [True], [None], [[1]], [{"id": 1}], [0], [2**63], []],
    ids=["string", "float", "bool", "null", "list", "object", "zero", "too-big", "empty"],
)
def test_bulk_retry_ids_are_json_integers_only(ids):
    """``ids`` holds JSON integers of 1 to 2**63-1, as the schema says: a string or a float
    that reads as one, a boolean, or anything else is a 400 naming ``ids``."""
    item = queue_item_exceeded()
    ids = [item.id if type(value) is int and value == 1 else value for value in ids]
    response = _client().post("/sync/retry", {"ids": ids}, format="json")
    _assert_json_4xx(response, 400)
    assert "ids" in response.json()
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED


@API
@pytest.mark.parametrize("body", [{}, {"ids": [1], "status": "pending"}, {"other": 1}])
def test_bulk_retry_wants_exactly_one_of_its_keys(body):
    """Neither or both of ``ids`` and ``status`` is a 400, as the schema's oneOf says."""
    response = _client().post("/sync/retry", body, format="json")
    _assert_json_4xx(response, 400)


@API
def test_a_bulk_retry_without_a_body_is_a_400():
    """No body at all (the schema marks it required) is a 400, not a retry of nothing."""
    _assert_json_4xx(_client().post("/sync/retry"), 400)


# --- what Django refuses before the API's views: JSON on the API's paths -------------------

TEN_MB = b'{"ids": [' + b"1," * (5 * 1024 * 1024) + b"1]}"


@API
@pytest.mark.parametrize("method", ["post", "put", "get"])
@pytest.mark.parametrize("url", ["/sync/retry", "/sync/retry/1", "/sync/status", "/health"])
def test_a_body_past_data_upload_max_memory_size_is_a_json_413(method, url, settings):
    """A 10 MB body (past DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB) on an API path answers 413 in
    the API's error shape, not Django's HTML 400, whether or not the operation reads a body;
    nothing is retried."""
    assert len(TEN_MB) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    item = queue_item_exceeded()
    response = _client().generic(method.upper(), url, TEN_MB, content_type="application/json")
    _assert_json_4xx(response, 413)
    assert response.json()["status"] == "error"
    assert response.json()["detail"]
    assert "no-store" in response["Cache-Control"]
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED


@pytest.mark.parametrize(
    ("exception", "status"),
    [
        (RequestDataTooBig("body"), 413),
        (TooManyFieldsSent("fields"), 400),
        (DisallowedHost("host"), 400),
        (SuspiciousOperation("other"), 400),
    ],
    ids=["too-big", "too-many-fields", "host", "other"],
)
@pytest.mark.parametrize("path", ["/sync/retry", "/health", "/api/schema/", "/admin/"])
def test_the_400_handler_answers_json_on_api_paths_and_html_elsewhere(exception, status, path):
    """Whatever Django refuses as a bad request (a body it read past the limit, too many
    fields, a forged Host, any other suspicious request) answers in the API's JSON on its
    paths, a too large body as 413, and Django's own HTML 400 elsewhere."""
    response = bad_request(RequestFactory().post(path), exception)
    if path == "/admin/":
        assert response.status_code == 400
        assert response["Content-Type"].startswith("text/html")
        return
    assert (response.status_code, response["Content-Type"]) == (status, "application/json")
    assert set(json.loads(response.content)) == {"status", "message", "detail"}
    assert "no-store" in response["Cache-Control"]


@API
def test_a_body_past_the_limit_on_an_admin_page_keeps_djangos_html_400(settings):
    """Off the API (the admin), the same body keeps Django's own HTML 400 page."""
    client = Client(raise_request_exception=False)
    client.force_login(user_make("root", superuser=True))
    response = client.post(
        "/admin/syncq/syncqueueitem/",
        data=TEN_MB,
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


@API
@pytest.mark.parametrize(
    "url", ["/health", "/sync/status", "/sync/items/", "/sync/retry", "/api/schema/", "/api/x"]
)
def test_a_forged_host_header_is_a_json_400_on_api_paths(url):
    """A Host header not in ALLOWED_HOSTS answers 400 in the API's error shape on its paths,
    without echoing the forged name."""
    response = _client().get(url, HTTP_HOST="evil.example")
    _assert_json_4xx(response, 400)
    assert response.json()["status"] == "error"
    assert "evil" not in response.content.decode()
    assert "no-store" in response["Cache-Control"]


def test_a_forged_host_header_on_the_admin_keeps_djangos_html_400():
    """Off the API, a forged Host keeps Django's own HTML 400 page."""
    response = Client(raise_request_exception=False).get("/admin/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


@API
@pytest.mark.parametrize(
    "url", ["/api/nothing", "/api/", "/api", "/api/schema/x", "/sync/items/1/x", "/healthz"]
)
def test_unknown_paths_under_the_api_answer_json_404(url):
    """Paths under /api and /sync that match nothing answer a JSON 404; /healthz is not the
    API's and keeps Django's page."""
    response = _client().get(url)
    assert response.status_code == 404
    expected = "text/html" if url == "/healthz" else "application/json"
    assert response["Content-Type"].startswith(expected)


@API
@pytest.mark.parametrize("url", ["/sync/status", "/api/schema/"])
def test_a_crash_on_an_api_path_answers_json_500(url, monkeypatch):
    """An unexpected exception under an API path answers 500 in the API's error shape, with
    nothing of the exception in it."""
    from drf_spectacular.views import SpectacularAPIView

    from syncq import api

    def crash(*args, **kwargs):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(api, "queue_status", crash)
    monkeypatch.setattr(SpectacularAPIView, "get", crash)
    response = _client().get(url)
    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["status"] == "error"
    assert "secret" not in response.content.decode()


def test_the_error_handlers_are_the_apis():
    """Django's 400, 403, 404 and 500 handlers are the API's, which answer JSON on its paths
    and Django's pages elsewhere."""
    from keeper_site import urls

    assert (urls.handler400, urls.handler403, urls.handler404, urls.handler500) == (
        "syncq.api.bad_request",
        "syncq.api.permission_denied",
        "syncq.api.not_found",
        "syncq.api.server_error",
    )


def test_a_permission_denied_outside_drf_is_json_on_api_paths_and_html_elsewhere():
    """Django's PermissionDenied raised outside DRF answers the API's JSON 403 on its paths
    and Django's page elsewhere."""
    from django.core.exceptions import PermissionDenied

    factory = RequestFactory()
    api = permission_denied(factory.get("/sync/status"), PermissionDenied())
    page = permission_denied(factory.get("/admin/"), PermissionDenied())
    assert (api.status_code, api["Content-Type"]) == (403, "application/json")
    assert page.status_code == 403 and page["Content-Type"].startswith("text/html")


# --- the schema and docs: any method, no credentials ------------------------------------------

DOC_URLS = ["/api/docs/", "/api/docs/?script=", "/api/schema/", "/api/schema/?format=json"]


@API
@pytest.mark.parametrize("method", ["options", "head", "get", "post", "put", "patch", "delete"])
@pytest.mark.parametrize("url", DOC_URLS)
@pytest.mark.parametrize("accept", [None, "application/json", "text/html", "image/png"])
def test_the_schema_and_docs_answer_any_method_without_a_500(method, url, accept):
    """/api/docs/ and /api/schema/, without credentials, answer every method and Accept with
    a 2xx or 4xx (OPTIONS /api/docs/ was a 500)."""
    client = Client(raise_request_exception=False)
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = getattr(client, method)(url, **headers)
    assert response.status_code < 500, (response.status_code, response.content[:300])


@API
def test_options_of_the_docs_page_names_its_methods():
    """OPTIONS /api/docs/ answers 200 with the methods the page takes and no body."""
    response = Client().options("/api/docs/")
    assert response.status_code == 200
    assert {m.strip() for m in response["Allow"].split(",")} >= {"GET", "OPTIONS"}
    assert response.content == b""


# --- Cache-Control: no-store ------------------------------------------------------------------


@API
def test_every_answer_of_the_api_says_no_store(settings):
    """Answers of /health and /sync/* (200s, and 400, 401, 403, 404, 405, 409 and 415 errors)
    carry ``Cache-Control: no-store``: no proxy or browser keeps the queue's data."""
    settings.SYNC_API_PUBLIC_READ = True
    exceeded = queue_item_exceeded()
    synced = queue_item_synced()
    pending = queue_item_pending()
    root = _client()
    anonymous = APIClient()
    weak = token_client(user_make("weak"))
    answers = {
        "health": anonymous.get("/health"),
        "status": root.get("/sync/status"),
        "public status": anonymous.get("/sync/status"),
        "statistics": root.get("/sync/statistics"),
        "failed": root.get("/sync/failed"),
        "waiting": root.get("/sync/waiting"),
        "conflicts": root.get("/sync/conflicts"),
        "items": root.get("/sync/items/"),
        "item": root.get(f"/sync/items/{exceeded.id}/"),
        "retry one": root.post(f"/sync/retry/{exceeded.id}"),
        "retry many": root.post("/sync/retry", {"ids": [pending.id]}, format="json"),
        "options": root.options("/sync/status"),
        "head": root.head("/sync/status"),
        "400": root.get("/sync/failed", {"limit": "abc"}),
        "401": anonymous.get("/sync/items/"),
        "403": weak.get("/sync/items/"),
        "404 item": root.get("/sync/items/987654/"),
        "404 path": root.get("/sync/nothing"),
        "404 retry": root.post("/sync/retry/987654"),
        "405": root.delete("/sync/status"),
        "409": root.post(f"/sync/retry/{synced.id}"),
        "415": root.post("/sync/retry", data="x", content_type="text/plain"),
    }
    missing = {
        name: (answer.status_code, answer.get("Cache-Control"))
        for name, answer in answers.items()
        if "no-store" not in answer.get("Cache-Control", "")
    }
    assert missing == {}
    assert answers["409"].status_code == 409
    assert SyncQueueItem.objects.get(id=exceeded.id).sync_status == SyncStatus.PENDING


# --- the schema's ?version=, Accept and errors; the docs page whatever Accept says -------------

#: ``?version=`` values drf-spectacular copied into the ``Content-Disposition`` filename and the
#: schema's ``info.version``: a second ``filename*`` (the browser saved keeper-update.bat), a NUL
#: and a CR LF (invalid headers: a 500).
HOSTILE_VERSIONS = [
    "x\"; filename*=UTF-8''keeper-update.bat; a=\"",
    "\x00",
    "\r\nX-Evil:1",
    "2.0.0",
    "",
]


def _assert_safe_headers(response) -> None:
    for name, value in response.items():
        assert not any(c in value for c in "\x00\r\n"), (name, value)


@API
@pytest.mark.parametrize("version", HOSTILE_VERSIONS)
@pytest.mark.parametrize("fmt", [None, "json", "yaml"])
def test_a_schema_version_other_than_the_apis_is_a_json_400(version, fmt):
    """/api/schema/?version= other than the API's one answers 400 in JSON, with no
    ``Content-Disposition`` and nothing of the value in a header."""
    query = {"version": version, **({"format": fmt} if fmt else {})}
    response = Client(raise_request_exception=False).get("/api/schema/", query)
    _assert_json_4xx(response, 400)
    _assert_safe_headers(response)
    assert "Content-Disposition" not in response
    body = json.loads(response.content)
    assert (body["status"], body["message"]) == ("error", "unknown version")
    assert "keeper-update" not in response.content.decode()


@API
@pytest.mark.parametrize("query", [{}, {"version": "1.0.0"}, {"lang": "\x00\r\n"}, {"lang": "de"}])
@pytest.mark.parametrize(
    ("accept", "suffix"),
    [
        (None, "yaml"),
        ("application/json", "json"),
        ("application/vnd.oai.openapi+json", "json"),
        ("application/yaml", "yaml"),
    ],
)
def test_the_schemas_download_name_is_fixed(query, accept, suffix):
    """The schema's filename is ``keeper-sync-api.json`` or ``.yaml``, whatever the query; its
    own version (or none) and any ``?lang=`` serve it."""
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = Client().get("/api/schema/", query, **headers)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Disposition"] == f'inline; filename="keeper-sync-api.{suffix}"'
    _assert_safe_headers(response)
    # YAML reads the JSON schema too.
    assert yaml.safe_load(response.content)["info"]["version"] == "1.0.0"


@API
@pytest.mark.parametrize("accept", ["text/html", "application/xml", "image/png", ""])
def test_the_schema_ignores_an_accept_naming_none_of_its_formats(accept):
    """``Accept`` naming neither YAML nor JSON (a 406 in YAML before) serves the YAML schema."""
    response = Client().get("/api/schema/", HTTP_ACCEPT=accept)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert response.content.startswith(b"openapi: 3.")


@API
@pytest.mark.parametrize("url", ["/api/schema/", "/api/docs/", "/api/docs/?script="])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize("accept", [None, "text/html", "application/vnd.oai.openapi"])
def test_other_methods_on_the_schema_and_docs_are_a_json_405(url, method, accept):
    """POST, PUT, PATCH and DELETE on the schema and the docs answer 405 in JSON (YAML and an
    HTML page before), kept by no cache."""
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = getattr(Client(), method)(url, **headers)
    _assert_json_4xx(response, 405)
    assert "detail" in json.loads(response.content)
    assert "no-store" in response["Cache-Control"]


@API
@pytest.mark.parametrize("accept", [None, "text/html", "application/json"])
def test_an_unknown_schema_format_is_a_json_404(accept):
    """``/api/schema/?format=xml`` answers 404 in JSON (YAML before)."""
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = Client().get("/api/schema/", {"format": "xml"}, **headers)
    _assert_json_4xx(response, 404)
    assert json.loads(response.content) == {"detail": "Not found."}


@API
@pytest.mark.parametrize("accept", [None, "", "application/json", "application/xml", "text/html"])
@pytest.mark.parametrize("query", [{}, {"format": "json"}])
def test_the_docs_page_is_served_whatever_accept_says(accept, query):
    """/api/docs/ is the HTML page for any ``Accept`` (``application/json`` and an empty one got
    a 406 page); its start script stays JavaScript."""
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    page = Client().get("/api/docs/", query, **headers)
    assert page.status_code == 200, page.content[:300]
    assert page["Content-Type"].startswith("text/html")
    assert b"swagger-ui" in page.content
    script = Client().get("/api/docs/", {"script": ""}, **headers)
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")


@API
def test_the_docs_page_does_not_pass_a_version_to_the_schema():
    """The docs' start script fetches the schema without the page's ``?version=``, which the
    schema would refuse (``?lang=`` it keeps)."""
    script = Client().get("/api/docs/", {"script": "", "version": "x\"'<>", "lang": "de"})
    assert script.status_code == 200
    urls = re.findall(rb'url: "(/api/schema/[^"]*)"', script.content)
    assert urls == [b"/api/schema/?lang\\u003Dde"], urls


# --- a retry of one item refuses a body that is not JSON, whatever the credentials -------------


def _session_client(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


NOT_JSON_BODIES = [
    ("text/plain", b"x"),
    ("application/x-www-form-urlencoded", b"a=1"),
    (
        "multipart/form-data; boundary=B",
        b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--B--\r\n',
    ),
    ("", b"{}"),
]


@API
@pytest.mark.parametrize(("content_type", "body"), NOT_JSON_BODIES)
@pytest.mark.parametrize("auth", ["token", "session"])
def test_a_retry_of_one_with_a_body_not_json_is_a_415(content_type, body, auth):
    """POST /sync/retry/{id} with a body that is not JSON answers 415 (as the schema says),
    by token as by session (a token's request answered 200), and retries nothing."""
    root = user_make("root", superuser=True)
    client = token_client(root) if auth == "token" else _session_client(root)
    item = queue_item_exceeded()
    response = client.generic("POST", f"/sync/retry/{item.id}", body, content_type=content_type)
    _assert_json_4xx(response, 415)
    assert "no-store" in response["Cache-Control"]
    assert SyncQueueItem.objects.get(id=item.id).sync_status == SyncStatus.MAX_RETRIES_EXCEEDED


@API
def test_a_chunked_retry_of_one_not_json_is_a_415():
    """A body sent with ``Transfer-Encoding`` (no ``Content-Length``) is a body too."""
    client = _client()
    item = queue_item_exceeded()
    response = client.generic(
        "POST",
        f"/sync/retry/{item.id}",
        b"x",
        content_type="text/plain",
        HTTP_TRANSFER_ENCODING="chunked",
        CONTENT_LENGTH="",
    )
    _assert_json_4xx(response, 415)


@API
@pytest.mark.parametrize(
    ("content_type", "body"),
    [(None, b""), ("text/plain", b""), ("application/json", b"{}"), ("application/json", b"")],
)
def test_a_retry_of_one_without_a_body_or_with_json_still_retries(content_type, body):
    """No body (whatever its Content-Type says), or a JSON one, retries as before."""
    client = _client()
    item = queue_item_exceeded()
    if content_type is None:
        response = client.post(f"/sync/retry/{item.id}")
    else:
        response = client.generic("POST", f"/sync/retry/{item.id}", body, content_type=content_type)
    assert response.status_code == 200, response.content[:300]
    assert SyncQueueItem.objects.get(id=item.id).sync_status == SyncStatus.PENDING


# --- APPEND_SLASH's redirects on the API's paths ------------------------------------------------

REDIRECTS = "syncq.middleware.APIRedirectMiddleware"


@pytest.fixture
def api_redirects(settings):
    """The site lists :class:`syncq.middleware.APIRedirectMiddleware` just before (outside)
    CommonMiddleware, whose redirects it rewrites."""
    middleware = list(settings.MIDDLEWARE)
    assert middleware.index(REDIRECTS) + 1 == middleware.index(
        "django.middleware.common.CommonMiddleware"
    )


@API
@pytest.mark.usefixtures("api_redirects")
@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("/sync/items", "/sync/items/"),
        ("/sync/items/1", "/sync/items/1/"),
        ("/api/docs", "/api/docs/"),
    ],
)
def test_append_slash_redirects_on_api_paths_are_json_and_no_store(url, location):
    """``GET /sync/items`` redirects (301) to ``/sync/items/`` in JSON, ``no-store``."""
    response = _client().get(url)
    assert response.status_code == 301
    assert response["Location"] == location
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    assert json.loads(response.content)["location"] == location


@API
@pytest.mark.usefixtures("api_redirects")
def test_redirects_off_the_api_are_left_alone():
    """The admin's redirects stay Django's."""
    response = Client().get("/admin")
    assert response.status_code == 301
    assert not response["Content-Type"].startswith("application/json")
    assert "no-store" not in response.get("Cache-Control", "")
