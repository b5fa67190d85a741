"""Ids, numbers and dates the admin reads from URLs and forms (issue 13), in the queue's,
operator actions' and discoveries' admins: ASCII digits only, as in the API; a malformed id or
selection gets Django's "doesn't exist" or an error message, never a 500, and acts on nothing."""

from __future__ import annotations

import pytest
from django.contrib.admin import site
from django.db import models
from django.test import Client
from django.urls import reverse

from discoveries.models import Discovery
from syncq.admin import AsciiIdsAdmin
from syncq.models import OperatorAction, SyncQueueItem, SyncStatus
from tests.factories import queue_item_exceeded

pytestmark = pytest.mark.django_db

#: Ids that name no row: not digits, other scripts' digits, zero, past 2**63-1.
BAD_IDS = {
    "letters": "abc",
    "arabic-indic": "١",
    "fullwidth": "１",
    "superscript": "¹",
    "zero": "0",
    "past-2-63": str(2**63),
    "10-30": str(10**30),
    "negative": "-1",
}
MODELS = {
    "queue": ("syncq", "syncqueueitem"),
    "discoveries": ("discoveries", "discovery"),
}
#: Every action of the two admins that acts on the ticked rows, by model ("Retry all exceeded"
#: takes every exceeded item under the filters, whatever is ticked).
ACTIONS = [
    ("queue", "retry_selected"),
    ("queue", "reset_attempts"),
    ("queue", "write_unplaced"),
    ("discoveries", "retry_sync"),
    ("discoveries", "delete_selected"),
]


@pytest.fixture
def browser(root):
    """A superuser's admin session whose server errors come back as responses."""
    client = Client(raise_request_exception=False)
    client.force_login(root)
    return client


def _changelist(model: str) -> str:
    app, name = MODELS[model]
    return reverse(f"admin:{app}_{name}_changelist")


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_our_admins_read_ids_as_ascii_digits():
    """The queue, operator action and discovery admins all check ids as the API does."""
    for model in (SyncQueueItem, OperatorAction, Discovery):
        assert isinstance(site._registry[model], AsciiIdsAdmin), model


@pytest.mark.parametrize("bad", BAD_IDS.values(), ids=BAD_IDS.keys())
@pytest.mark.parametrize(("model", "action"), ACTIONS)
def test_an_action_on_a_selection_that_is_not_ids_says_so_and_changes_nothing(
    browser, model, action, bad
):
    """Every action of both admins, posted with ``_selected_action`` that is not an id
    (``abc`` and 10**30 were 500s, ``١`` acted on row 1), answers the list again with an
    error message, and no item or discovery changes."""
    item = queue_item_exceeded()
    response = browser.post(
        _changelist(model),
        {"action": action, "index": 0, "_selected_action": [bad, str(item.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert any("not a row id" in text for text in _messages(response)), _messages(response)
    item.refresh_from_db()
    assert (item.sync_status, item.sync_attempts) == (SyncStatus.MAX_RETRIES_EXCEEDED, 1)
    assert Discovery.objects.filter(pk=item.discovery_id).exists()
    assert not OperatorAction.objects.exists()


@pytest.mark.parametrize("model", MODELS)
def test_an_action_on_ascii_ids_still_works(browser, model):
    """The same action on the row's real id goes through (the check refuses only bad ids)."""
    item = queue_item_exceeded()
    action = "retry_selected" if model == "queue" else "retry_sync"
    ids = [str(item.pk if model == "queue" else item.discovery_id)]
    browser.post(
        _changelist(model), {"action": action, "index": 0, "_selected_action": ids}, follow=True
    )
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.PENDING


@pytest.mark.parametrize("ticked", [[], ["abc"], [str(10**30)]], ids=["none", "abc", "10-30"])
def test_retry_all_exceeded_ignores_the_ticks_and_asks_first(browser, ticked):
    """ "Retry all exceeded" takes every exceeded item under the filters whatever is ticked
    (Django's "select all"), so a bad tick does not stop it: it shows its confirmation, and
    nothing changes until the operator confirms."""
    item = queue_item_exceeded()
    response = browser.post(
        _changelist("queue"),
        {"action": "retry_all_exceeded", "index": 0, "_selected_action": ticked},
        follow=True,
    )
    assert response.status_code == 200
    assert "Are you sure?" in response.content.decode()
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED


@pytest.mark.parametrize("bad", BAD_IDS.values(), ids=BAD_IDS.keys())
@pytest.mark.parametrize("page", ["change", "history", "delete"])
@pytest.mark.parametrize(
    "model",
    [("syncq", "syncqueueitem"), ("discoveries", "discovery"), ("syncq", "operatoraction")],
    ids=["queue", "discoveries", "operator-actions"],
)
def test_a_page_of_an_id_that_is_not_ascii_digits_finds_nothing(browser, model, page, bad):
    """Change, history and delete pages of an id that is not ASCII digits naming 1 to 2**63-1
    answer Django's "doesn't exist" redirect (``١`` showed row 1), never a 500."""
    queue_item_exceeded()
    OperatorAction.objects.create(actor_name="x", source="admin", action="retry", items_changed=1)
    app, name = model
    url = reverse(f"admin:{app}_{name}_{page}", args=[bad])
    response = browser.get(url)
    if (name, page) == ("operatoraction", "delete"):
        assert response.status_code == 403  # a record nobody deletes
        return
    assert response.status_code == 302, response.status_code
    assert response["Location"] == reverse("admin:index")


@pytest.mark.parametrize("bad", ["abc", "١", str(10**30)])
@pytest.mark.parametrize("button", ["keep/keeper", "write-unplaced"])
def test_the_queue_items_buttons_of_an_id_that_is_not_ascii_digits_are_404(browser, button, bad):
    """The change page's buttons (keep a version, write without a place) posted to a bad id
    answer 404 and change nothing."""
    item = queue_item_exceeded()
    response = browser.post(f"/admin/syncq/syncqueueitem/{bad}/{button}/")
    assert response.status_code == 404
    item.refresh_from_db()
    assert item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED


@pytest.mark.parametrize(
    ("model", "query"),
    [
        ("queue", "id=١"),
        ("queue", "id__exact=１"),
        ("queue", "discovery__id__exact=١"),
        ("queue", "sync_attempts=١"),
        ("queue", "created_at__gte=٢٠٢٦-01-01"),
        ("queue", "p=٢"),
        ("queue", "o=١"),
        ("discoveries", "id=١"),
        ("discoveries", "submission_timestamp__gte=٢٠٢٠-01-01"),
    ],
)
def test_list_filters_on_numbers_and_dates_in_other_digits_are_incorrect(browser, model, query):
    """A list filter, page or ordering on a number, date or time written in other digits is
    Django's incorrect lookup (``?e=1``), not row 1 (Django's parsers read them)."""
    queue_item_exceeded()
    response = browser.get(f"{_changelist(model)}?{query}")
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


@pytest.mark.parametrize(
    ("model", "query", "rows"),
    [
        ("queue", "id=1", 1),
        ("queue", "discovery__id__exact=1", 1),
        ("queue", "created_at__gte=2000-01-01T00:00:00%2B00:00", 1),
        ("discoveries", "system_name=Demo%20Alpha%20١", 0),
    ],
)
def test_list_filters_in_ascii_and_text_filters_in_any_script_still_work(
    browser, model, query, rows
):
    """ASCII numbers filter as before, and a text filter may hold any script's digits."""
    queue_item_exceeded()
    response = browser.get(f"{_changelist(model)}?{query}")
    assert response.status_code == 200
    assert response.context["cl"].result_count == rows


def _every_admin() -> list:
    return sorted(site._registry.items(), key=lambda pair: pair[0]._meta.label)


def test_every_admin_of_an_integer_keyed_model_reads_ids_as_ascii_digits():
    """Django's users and groups, django-q2's and django-axes' admins check ids like ours;
    only models keyed by text (API tokens, django-q2's tasks) keep their own."""
    for model, model_admin in _every_admin():
        integer_key = isinstance(model._meta.pk, models.IntegerField)
        assert isinstance(model_admin, AsciiIdsAdmin) == integer_key, model._meta.label


@pytest.mark.parametrize("bad", ["abc", str(10**30), "١"], ids=["letters", "10-30", "arabic"])
def test_no_admin_answers_a_bad_selection_or_id_with_a_500(browser, root, bad):
    """Every registered admin's delete action with ``_selected_action`` that is no id, and
    every change page of such an id, answer without a server error and delete nothing."""
    users = type(root).objects.count()
    for model, _ in _every_admin():
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        posted = browser.post(
            changelist,
            {"action": "delete_selected", "index": 0, "_selected_action": [bad]},
            follow=True,
        )
        assert posted.status_code < 500, (opts.label, posted.status_code)
        change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[bad])
        answer = browser.get(change, follow=True)
        assert answer.status_code < 500, (opts.label, answer.status_code)
    assert type(root).objects.count() == users
