"""Schemathesis against the live OpenAPI schema: every operation,
called over HTTP on pytest-django's ``live_server`` with a superuser's token (an agent's on
``/agent/*``), on a queue holding
one item of each state (waiting and conflict ones made by real batches over the sample VH file),
under every check schemathesis has (its CLI's ``--checks all``: no 5xx; status codes, content
types, headers and bodies as declared; schema-valid data accepted and invalid data refused;
undeclared methods 405 with ``Allow``; missing credentials refused; …) and one of our own
(``Cache-Control: no-store`` on every answer). Its coverage phase (boundary values, every
undeclared method) and fuzzing phase, positive and negative, run for each operation, bounded
(``max_examples``) and derandomized for CI: about 730 cases over the 10 operations (plus the
requests some checks send again without credentials), under a minute here.

The schema is the one the site serves at /api/schema/, read through Django's test client when
this module is collected, because schemathesis' lazy loader (``schemathesis.pytest.
from_fixture``, which would read it from ``live_server``) fails on pytest 9.2 (it sets
``Function._nodeid``, which pytest 9.2 no longer has). The test checks that ``live_server``
serves that same schema.
"""

from __future__ import annotations

import json

import pytest
import requests
import schemathesis
from django.core.cache import cache
from django.test import Client
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from syncq.management.commands.agent_token import agent_token_issue
from syncq.models import SyncQueueItem, SyncStatus
from tests.factories import (
    queue_item_exceeded,
    queue_item_in_conflict,
    queue_item_pending,
    queue_item_synced,
    queue_item_syncing,
    queue_item_waiting,
    user_make,
)

# The waiting and conflict items are made by sync batches, which write to the VH file.
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "haven"])

load_all_checks()
#: Every check schemathesis has (what its CLI runs for ``--checks all``).
ALL_CHECKS = CHECKS.get_all()
#: Schemathesis 4.32's checks, which ``ALL_CHECKS`` must hold at least: a newer schemathesis
#: may add some, never silently drop one.
EXPECTED_CHECKS = {
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "ignored_auth",
    "object_level_authorization",
}


#: Operations whose bodies carry rules an OpenAPI 3.0 schema cannot state, so that data the
#: schema allows is still refused (400) and schemathesis' "schema-valid data is accepted" check
#: cannot hold: an outcome that leaves a discovery in VH names its row, and each item is
#: reported once (/agent/ack, /agent/fail); a catalog hashes to its ``content_hash``, and its
#: ids are unique (/agent/catalog). Every other check runs on them, and
#: tests/test_agent_protocol.py checks those rules.
UNSTATABLE = {
    ("POST", "/agent/ack"): [CHECKS.get_by_names(["positive_data_acceptance"])[0]],
    ("POST", "/agent/fail"): [CHECKS.get_by_names(["positive_data_acceptance"])[0]],
    ("PUT", "/agent/catalog"): [CHECKS.get_by_names(["positive_data_acceptance"])[0]],
}


def no_store(ctx, response, case) -> None:
    """Every answer of the API, errors included, says ``Cache-Control: no-store``."""
    values = ", ".join(response.headers.get("cache-control", []))
    assert "no-store" in values, f"Cache-Control: {values!r} on {case.method} {case.path}"


def _served_schema() -> dict:
    """/api/schema/ as the site serves it, without credentials (it is public)."""
    response = Client(HTTP_HOST="localhost").get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content[:500]
    return json.loads(response.content)


SERVED_SCHEMA = _served_schema()
# Schemathesis' defaults, stated: no schemathesis.toml found on the way may change the run.
schema = schemathesis.openapi.from_dict(SERVED_SCHEMA, config=SchemathesisConfig())


def test_the_run_uses_every_check_schemathesis_has():
    """The fuzzing below runs all of schemathesis' checks, not a chosen few."""
    assert {check.__name__ for check in ALL_CHECKS} >= EXPECTED_CHECKS


@pytest.fixture
def base_url(live_server):
    """The live server's address, once it is checked to serve the schema being fuzzed."""
    response = requests.get(
        live_server.url + "/api/schema/", headers={"Accept": "application/json"}, timeout=30
    )
    assert response.status_code == 200
    assert response.json() == SERVED_SCHEMA
    return live_server.url


@pytest.fixture
def auth_header(live_server, sample_haven_db):
    """A superuser's DRF token header (``staff``) and an agent's (``agent``), and a queue with
    an item in every state."""
    user = user_make("fuzz", superuser=True)
    # First: their batches take every due item.
    queue_item_in_conflict(sample_haven_db, description="conflict")
    queue_item_waiting(description="waiting")
    queue_item_synced(description="synced", haven_id=1)
    queue_item_exceeded(description="exceeded")
    queue_item_syncing(description="syncing")
    queue_item_pending(description="pending")
    assert {s for s in SyncQueueItem.objects.values_list("sync_status", flat=True)} == set(
        SyncStatus.values
    )
    key, _ = agent_token_issue("fuzz")
    return {
        "staff": {"Authorization": f"Token {Token.objects.create(user=user).key}"},
        # The agent's endpoints open to an agent's token only.
        "agent": {"Authorization": f"Token {key}"},
    }


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_its_schema_says(case, base_url, auth_header):
    """No operation answers 5xx, or anything its schema does not declare, under every check of
    schemathesis; every answer says no-store."""
    cache.clear()  # the retry throttle must not turn the run into a stream of 429s
    case.call_and_validate(
        base_url=base_url,
        headers=auth_header["agent" if case.path.startswith("/agent/") else "staff"],
        checks=ALL_CHECKS,
        excluded_checks=UNSTATABLE.get((case.method, case.path), []),
        additional_checks=[no_store],
        timeout=30,
    )
