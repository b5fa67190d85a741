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
from syncq.admin import AsciiIdsAdmin, ChangelistGuardAdmin, lookup_refusal
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


def _assert_incorrect_lookup(response) -> None:
    """The changelist refused its query as Django's incorrect lookup: a redirect to ``?e=1``."""
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


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
@pytest.mark.parametrize("button", ["keep/keeper", "write-unplaced", "retry", "reset-attempts"])
def test_the_queue_items_buttons_of_an_id_that_is_not_ascii_digits_are_404(browser, button, bad):
    """The change page's buttons (keep a version, write without a place, retry, reset
    attempts) posted to a bad id answer 404 and change nothing."""
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
    _assert_incorrect_lookup(browser.get(f"{_changelist(model)}?{query}"))


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


#: Query strings Django's changelist would take as field lookups and answer with a server
#: error (issue: crafted changelist filters): numbers past 2**63-1, ranges, date parts out of
#: bounds, regular expressions, lookups into JSON, dates that are no dates.
NASTY_FILTERS = [
    ("queue", "id__in=9223372036854775808"),
    ("queue", "id__in=1,9223372036854775808"),
    ("queue", "id__in=-9223372036854775809"),
    ("queue", "id=9223372036854775808"),
    ("queue", "id__gt=99999999999999999999"),
    ("queue", "discovery_id__in=9223372036854775808"),
    ("queue", "discovery__in=9223372036854775808"),
    ("queue", "discovery=99999999999999999999"),
    ("queue", "haven_discovery_id__in=9223372036854775808"),
    ("queue", "sync_attempts__in=9223372036854775808"),
    ("queue", "sync_attempts__lte=9223372036854775808"),
    ("queue", "id__range=0"),
    ("queue", "id__range=0,1,2"),
    ("queue", "sync_error__range=abc"),
    ("queue", "created_at__year=0"),
    ("queue", "created_at__year=99999"),
    ("queue", "created_at__year__gte=0"),
    ("queue", "created_at__iso_year=0"),
    ("queue", "created_at__month=99999999999999999999"),
    ("queue", "created_at__date__year=0"),
    ("queue", "created_at__gte=garbage"),
    ("queue", "created_at__date=2026-13-45"),
    ("queue", "created_at__lt=99999-01-01"),
    ("queue", "sync_error__regex=("),
    ("queue", "sync_error__iregex=(a"),
    ("queue", "metadata__contains=x"),
    ("queue", "metadata__waiting__reason=x"),
    ("queue", "metadata=x"),
    ("discoveries", "id__in=9223372036854775808"),
    ("discoveries", "queue_item__id__in=9223372036854775808"),
    ("discoveries", "queue_item__in=9223372036854775808"),
    ("discoveries", "submission_timestamp__year=0"),
    ("discoveries", "submission_timestamp__year=99999"),
    ("discoveries", "description__regex=(a"),
    ("discoveries", "username__regex=*"),
    ("discoveries", "username__iregex=(a+)+$"),
    ("discoveries", "metadata__contains=x"),
]


def _snapshot():
    return (
        list(SyncQueueItem.objects.order_by("pk").values()),
        list(Discovery.objects.order_by("pk").values()),
        OperatorAction.objects.count(),
    )


@pytest.mark.parametrize(("model", "query"), NASTY_FILTERS)
def test_a_crafted_list_filter_is_an_incorrect_lookup_not_a_server_error(browser, model, query):
    """Every list filter that Django would take and SQLite or Django's SQL answer with an
    error (OverflowError, IndexError, ValueError, a bad regular expression, no JSON
    ``contains``) is Django's incorrect lookup, ``?e=1``, or another answer below 500, and
    changes nothing."""
    queue_item_exceeded()
    before = _snapshot()
    response = browser.get(f"{_changelist(model)}?{query}")
    assert response.status_code < 500, response.status_code
    if response.status_code == 302:
        assert response["Location"].endswith("?e=1")
    assert _snapshot() == before


@pytest.mark.parametrize(
    ("model", "query"),
    [
        ("queue", "id__in=9223372036854775808"),
        ("queue", "created_at__year=0"),
        ("queue", "sync_error__regex=("),
        ("queue", "metadata__contains=x"),
        ("queue", "id__range=0"),
        ("discoveries", "description__regex=(a"),
    ],
)
def test_the_worst_filters_are_refused_before_any_query(browser, model, query):
    """The filters that were 500s are refused by the admin's own check: ``?e=1``."""
    queue_item_exceeded()
    _assert_incorrect_lookup(browser.get(f"{_changelist(model)}?{query}"))


@pytest.mark.parametrize(
    ("model", "query", "rows"),
    [
        ("queue", "id__in=1,2", 1),
        ("queue", "id__in=-9223372036854775808,9223372036854775807", 0),
        ("queue", "id__gte=1&id__lt=9223372036854775807", 1),
        ("queue", "sync_attempts=1", 1),
        ("queue", "created_at__year=2000", 0),
        ("queue", "created_at__year__gte=2000", 1),
        ("queue", "created_at__month__lte=12", 1),
        ("queue", "created_at__date__gte=2000-01-01", 1),
        ("queue", "metadata__isnull=False", 1),
        ("queue", "sync_error__icontains=(", 0),
        ("queue", "error=x", 0),
        ("discoveries", "queue_item__id__in=1", 1),
        ("discoveries", "submission_timestamp__year__lte=9999", 1),
        ("discoveries", "username__icontains=*", 0),
    ],
)
def test_sound_lookups_still_filter(browser, model, query, rows):
    """Numbers in bounds, date parts in bounds, ``isnull`` on JSON, text lookups holding what
    a regular expression would choke on, and the admins' own filters work as before."""
    queue_item_exceeded()
    response = browser.get(f"{_changelist(model)}?{query}")
    assert response.status_code == 200, response.get("Location")
    assert response.context["cl"].result_count == rows


def test_the_dashboards_and_the_admins_own_filter_links_still_answer(browser):
    """The links to the queue's list by state (admin index, dashboard) and every filter link
    a changelist offers (Django's list filters, the admins' own) answer 200, not ``?e=1``."""
    queue_item_exceeded()
    for page in (reverse("admin:index"), reverse("keeper-dashboard")):
        response = browser.get(page)
        assert response.status_code == 200, page
    links = [f"{_changelist('queue')}?sync_status__exact={state}" for state in SyncStatus.values]
    for model in MODELS:
        response = browser.get(_changelist(model))
        for spec in response.context["cl"].filter_specs:
            for choice in spec.choices(response.context["cl"]):
                links.append(f"{_changelist(model)}{choice['query_string']}")
    assert len(links) > len(SyncStatus.values)
    for link in links:
        response = browser.get(link)
        assert response.status_code == 200, (link, response.status_code, response.get("Location"))


@pytest.mark.parametrize(
    "search",
    [
        "+".join(["1"] * 1000),
        "+".join(["a"] * 51),
        "a" * 1001,
        "x" * 60000,
        "%22" + "a+" * 600 + "%22+" + "b+" * 60,
    ],
    ids=["1000-terms", "51-terms", "1001-chars", "60000-chars", "quoted-then-many"],
)
@pytest.mark.parametrize("model", MODELS)
def test_a_search_too_long_says_so(browser, model, search):
    """A search of more than 50 words or 1000 characters (SQLite's "Expression tree is too
    large", its ``LIKE`` pattern limit) is refused with a message, never a 500."""
    queue_item_exceeded()
    response = browser.get(f"{_changelist(model)}?q={search}")
    _assert_incorrect_lookup(response)
    follow = browser.get(response["Location"])
    assert any("at most 50 words" in text for text in _messages(follow)), _messages(follow)


@pytest.mark.parametrize("model", MODELS)
def test_a_search_of_fifty_words_still_searches(browser, model):
    queue_item_exceeded()
    response = browser.get(f"{_changelist(model)}?q={'+'.join(['1'] * 50)}")
    assert response.status_code == 200
    assert "cl" in response.context


def test_every_admin_checks_its_lists_filters_and_search():
    """Text-keyed admins (API tokens, django-q2's tasks) keep their ids but check their
    lists' query strings like the others."""
    for model, model_admin in _every_admin():
        assert isinstance(model_admin, ChangelistGuardAdmin), model._meta.label


@pytest.mark.parametrize(
    ("key", "values", "refused"),
    [
        ("id__in", ["1,2", "3"], False),
        ("id__in", ["1", "2,x"], True),
        ("id", ["-9223372036854775808"], False),
        ("id", ["+1"], True),
        ("id", [" 1"], True),
        ("id__icontains", ["99999999999999999999"], False),
        ("id__isnull", ["whatever"], False),
        ("created_at__week_day", ["8"], True),
        ("created_at__hour", ["0"], False),
        ("created_at__date", ["2026-01-01"], False),
        ("metadata__isnull", ["1"], False),
        ("metadata__exact", ["{}"], True),
        ("discovery__username__regex", ["a"], True),
        ("not_a_field__regex", ["("], False),
    ],
)
def test_lookup_refusal_reads_the_lookup_path(key, values, refused):
    """The check follows relations and transforms to the field and lookup it compares."""
    assert (lookup_refusal(SyncQueueItem, key, values) is not None) == refused


@pytest.mark.parametrize(
    "query",
    [
        "id__in=9223372036854775808",
        "id__range=0",
        "pk__gt=99999999999999999999",
        "id__regex=(",
        "q=" + "+".join(["1"] * 1000),
        "q=" + "x" * 60000,
        "p=99999999999999999999",
        "o=99999999999999999999",
    ],
    ids=["in-2-63", "range", "pk-gt", "regex", "1000-terms", "60000-chars", "page", "order"],
)
def test_no_admin_answers_a_crafted_changelist_query_with_a_500(browser, root, query):
    """Every registered admin's changelist, with the nastiest filters and searches, answers
    below 500 and changes nothing."""
    queue_item_exceeded()
    before, users = _snapshot(), type(root).objects.count()
    for model, _ in _every_admin():
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        response = browser.get(f"{changelist}?{query}")
        assert response.status_code < 500, (opts.label, response.status_code)
    assert (_snapshot(), type(root).objects.count()) == (before, users)
