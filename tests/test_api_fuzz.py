"""Schemathesis against the live OpenAPI schema: every operation,
called over HTTP on pytest-django's ``live_server`` with a superuser's token, on a queue holding
one item of each state (waiting and conflict ones made by real batches over the sample VH file),
must never answer 5xx and must answer only what the schema declares. Bounded and derandomized
for CI.

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
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

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

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _served_schema() -> dict:
    """/api/schema/ as the site serves it, without credentials (it is public)."""
    response = Client(HTTP_HOST="localhost").get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content[:500]
    return json.loads(response.content)


SERVED_SCHEMA = _served_schema()
schema = schemathesis.openapi.from_dict(SERVED_SCHEMA)


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
    """A superuser's DRF token header, and a queue with an item in every state."""
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
    return {"Authorization": f"Token {Token.objects.create(user=user).key}"}


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_its_schema_says(case, base_url, auth_header):
    """No operation answers 5xx or a status, content type or body its schema does not declare."""
    cache.clear()  # the retry throttle must not turn the run into a stream of 429s
    case.call_and_validate(base_url=base_url, headers=auth_header, checks=CHECKS, timeout=30)
