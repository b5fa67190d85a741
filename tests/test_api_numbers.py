"""Numbers and dates the Control Room API reads from text (issue 13): ids, limits and page sizes
are ASCII digits only (``^[0-9]+$``: no sign, space, fraction, superscript or other script's
digits, all of which Python's ``int()`` would read), dates are ISO 8601 in ASCII digits, an
empty parameter is an error naming it, and the OpenAPI schema states exactly this."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from syncq.models import SyncQueueItem
from tests.api_support import API
from tests.factories import queue_item_exceeded, queue_item_pending

MAX_ID = 2**63 - 1

#: Texts ``int()`` reads as a number (or Django's parsers would), which the API refuses.
NOT_ASCII_DIGITS = {
    "arabic-indic": "٣",
    "fullwidth": "３",
    "devanagari": "३",
    "superscript": "³",
    "plus": "+3",
    "minus-zero": "-0",
    "leading-space": " 3",
    "trailing-space": "3 ",
    "trailing-newline": "3\n",
    "underscore": "1_0",
    "fraction": "3.0",
    "exponent": "3e0",
    "hex": "0x3",
    "empty": "",
}
LISTINGS = ["/sync/failed", "/sync/waiting", "/sync/conflicts"]


@API
@pytest.mark.parametrize("text", NOT_ASCII_DIGITS.values(), ids=NOT_ASCII_DIGITS.keys())
@pytest.mark.parametrize("url", LISTINGS)
def test_a_limit_that_is_not_ascii_digits_is_a_400_naming_limit(admin, url, text):
    """?limit= of every listing is refused unless it is ASCII digits: other scripts' and
    superscript digits, a sign, spaces, a fraction and an empty value are each a 400 whose
    body names ``limit``."""
    queue_item_exceeded()
    response = admin.get(url, {"limit": text})
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["limit"]


@API
@pytest.mark.parametrize(
    ("text", "served"), [("1", 1), ("003", 3), ("200", 200), ("201", 200), (str(MAX_ID), 200)]
)
def test_a_limit_in_ascii_digits_up_to_2_63_is_served_capped_at_200(admin, text, served):
    """ASCII digits from 1 to 2**63-1 are a limit (leading zeros allowed); above 200 the
    answer holds 200."""
    for n in range(201):
        queue_item_exceeded(description=f"failed {n}")
    response = admin.get("/sync/failed", {"limit": text})
    assert response.status_code == 200
    assert response.json()["count"] == served


@API
@pytest.mark.parametrize("text", ["0", str(MAX_ID + 1), str(10**30), "9" * 1001])
def test_a_limit_outside_1_to_2_63_is_a_400(admin, text):
    """Zero, 2**63, 10**30 and a thousand-digit number are refused, naming ``limit``."""
    response = admin.get("/sync/failed", {"limit": text})
    assert response.status_code == 400
    assert list(response.json()) == ["limit"]


@API
@pytest.mark.parametrize("text", NOT_ASCII_DIGITS.values(), ids=NOT_ASCII_DIGITS.keys())
@pytest.mark.parametrize("name", ["discovery_id", "page_size"])
def test_item_filters_and_page_size_take_ascii_digits_only(admin, name, text):
    """?discovery_id= and ?page_size= of /sync/items/ refuse what is not ASCII digits with a
    400 naming the parameter (DRF's pagination quietly ignored a bad page size, and read
    "٣" as 3)."""
    queue_item_pending()
    response = admin.get("/sync/items/", {name: text})
    assert response.status_code == 400, response.content
    assert list(response.json()) == [name]


@API
def test_page_size_in_ascii_digits_sets_the_page_capped_at_200(admin):
    """?page_size=2 pages by two; one past 200 is served as 200, and 0 or 2**63 are 400."""
    for n in range(3):
        queue_item_pending(description=f"p{n}")
    assert len(admin.get("/sync/items/", {"page_size": "2"}).json()["results"]) == 2
    assert len(admin.get("/sync/items/", {"page_size": "201"}).json()["results"]) == 3
    for text in ("0", str(MAX_ID + 1)):
        assert admin.get("/sync/items/", {"page_size": text}).status_code == 400


@API
@pytest.mark.parametrize("name", ["limit"])
@pytest.mark.parametrize("url", LISTINGS)
def test_an_empty_limit_is_a_400_naming_it(admin, url, name):
    """``?limit=`` given empty is an error naming it, not the default (it was served as 20)."""
    response = admin.get(f"{url}?{name}=")
    assert response.status_code == 400
    assert "empty" in response.json()[name][0]


@API
@pytest.mark.parametrize("name", ["since", "until", "discovery_id", "status", "page_size"])
def test_an_empty_item_filter_is_a_400_naming_it(admin, name):
    """Each filter of /sync/items/ given empty (``?until=``) is a 400 naming it, not an absent
    filter (``?until=`` listed every item)."""
    queue_item_pending()
    response = admin.get(f"/sync/items/?{name}=")
    assert response.status_code == 400
    assert list(response.json()) == [name]


@API
@pytest.mark.parametrize("path", ["/sync/items/{}/", "/sync/retry/{}"])
@pytest.mark.parametrize(
    "written",
    ["０１", "٠١", "¹", "+1", "1.0", "%201", "1%20", "-1", "0"],
    ids=["fullwidth", "arabic", "superscript", "plus", "fraction", "space", "space2", "neg", "0"],
)
def test_an_id_in_a_path_is_ascii_digits_naming_1_to_2_63(admin, path, written):
    """An item id in a path written in anything but ASCII digits, or 0, names no item: a JSON
    404 (for the detail and the retry alike), and nothing is retried."""
    item = queue_item_exceeded()
    assert item.id == 1
    method = admin.post if "retry" in path else admin.get
    response = method(path.format(written))
    assert response.status_code == 404, response.content
    assert response["Content-Type"].startswith("application/json")
    item.refresh_from_db()
    assert item.sync_attempts == 1


@API
def test_an_id_with_leading_zeros_names_the_item(admin):
    """``/sync/items/001/`` is item 1: leading zeros are ASCII digits too."""
    item = queue_item_exceeded()
    assert admin.get(f"/sync/items/00{item.id}/").json()["id"] == item.id


# --- dates -------------------------------------------------------------------------------------

#: Date-times ``?since=`` and ``?until=`` take, and the instant (UTC) each means.
ACCEPTED_TIMES = {
    "2026-01-02": "2026-01-02T00:00:00+00:00",
    "2026-01-02T03:04": "2026-01-02T03:04:00+00:00",
    "2026-01-02 03:04:05": "2026-01-02T03:04:05+00:00",
    "2026-01-02T03:04:05Z": "2026-01-02T03:04:05+00:00",
    "2026-01-02T03:04:05.123456Z": "2026-01-02T03:04:05.123456+00:00",
    "2026-01-02T03:04:05.123456789Z": "2026-01-02T03:04:05.123456+00:00",
    "2026-01-02T05:34:05+02:30": "2026-01-02T03:04:05+00:00",
    "2026-01-02 02:04:05-01:00": "2026-01-02T03:04:05+00:00",
}
#: Texts Python's or Django's ISO parsers read, or that look like dates, which they refuse.
REFUSED_TIMES = {
    "arabic-indic": "٢٠٢٦-01-02T03:04",
    "fullwidth": "２０２６-01-02",
    "offset-without-colon": "2026-01-02T03:04:05+0230",
    "offset-hours-only": "2026-01-02T03:04:05+02",
    "basic-format": "20260102",
    "week-date": "2026-W01-5",
    "hour-only": "2026-01-02T03",
    "lowercase": "2026-01-02t03:04:05z",
    "comma-fraction": "2026-01-02T03:04:05,5",
    "ten-digit-fraction": "2026-01-02T03:04:05.1234567891Z",
    "no-such-day": "2026-02-30",
    "hour-24": "2026-01-02T24:00",
    "leading-space": " 2026-01-02",
    "trailing-newline": "2026-01-02\n",
    "words": "yesterday",
    "epoch": "1767312000",
}


@API
@pytest.mark.parametrize(("text", "instant"), ACCEPTED_TIMES.items())
def test_since_and_until_take_iso_8601_and_read_it_as_utc_without_an_offset(admin, text, instant):
    """A date alone, or with T or a space and hh:mm, optional seconds and fraction (up to 9
    digits), and Z, ±hh:mm or nothing (UTC), bound created_at at that instant: an item made
    then is found by since= and until= both."""
    item = queue_item_pending()
    SyncQueueItem.objects.filter(id=item.id).update(created_at=instant)
    for name in ("since", "until"):
        response = admin.get("/sync/items/", {name: text})
        assert response.status_code == 200, (name, response.content)
        assert [row["id"] for row in response.json()["results"]] == [item.id], name


@API
@pytest.mark.parametrize("text", REFUSED_TIMES.values(), ids=REFUSED_TIMES.keys())
@pytest.mark.parametrize("name", ["since", "until"])
def test_other_date_forms_and_other_digits_are_a_400_naming_the_filter(admin, name, text):
    """What is not that form of ISO 8601, or writes it in other digits, is a 400 naming the
    filter (Django's parser read "٢٠٢٦-01-02T03:04" as 2026)."""
    response = admin.get("/sync/items/", {name: text})
    assert response.status_code == 400, response.content
    assert list(response.json()) == [name]


@API
def test_a_time_utc_cannot_hold_means_the_earliest_or_latest_time(admin):
    """Year 1 at +01:00 and year 9999 at -01:00 are valid ISO 8601 but fall outside what UTC
    holds: they bound nothing (every item is in the window) rather than answer 400."""
    item = queue_item_pending()
    SyncQueueItem.objects.filter(id=item.id).update(created_at=timezone.now() - timedelta(days=1))
    response = admin.get(
        "/sync/items/",
        {"since": "0001-01-01T00:00:00+01:00", "until": "9999-12-31T23:59:59-01:00"},
    )
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [item.id]


# --- cursors -----------------------------------------------------------------------------------


def _cursor(querystring: str) -> str:
    return base64.b64encode(querystring.encode()).decode()


@API
@pytest.mark.parametrize(
    "querystring",
    ["o=%D9%A3&p=5", "p=%EF%BC%95", "r=%D9%A1&p=5", "r=2&p=5", "o=-1", f"p={MAX_ID + 1}"],
    ids=["offset-arabic", "position-fullwidth", "reverse-arabic", "reverse-2", "neg", "big"],
)
def test_a_cursor_whose_numbers_are_not_ascii_digits_is_invalid(admin, querystring):
    """A cursor whose offset, direction or position is written in other digits (DRF reads
    them with int()) or is out of range answers 404 Invalid cursor."""
    response = admin.get("/sync/items/", {"cursor": _cursor(querystring)})
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid cursor"}


@API
def test_the_cursors_the_api_hands_out_still_work(admin):
    """The next link of a page (offset, position in ASCII digits) leads to the next page."""
    for n in range(3):
        queue_item_pending(description=f"p{n}")
    first = admin.get("/sync/items/", {"page_size": "2"}).json()
    second = admin.get(first["next"])
    assert second.status_code == 200
    assert len(second.json()["results"]) == 1


# --- the schema says the same ------------------------------------------------------------------


def _parameters() -> dict[tuple[str, str], dict]:
    schema = json.loads(APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").content)
    return {
        (path, parameter["name"]): parameter["schema"]
        for path, methods in schema["paths"].items()
        for operation in methods.values()
        for parameter in operation.get("parameters", [])
    }


@API
def test_the_schema_states_what_the_numbers_and_dates_accept():
    """Every id, limit and page size is documented as an integer of ``^[0-9]+$`` with its
    bounds; since and until as date-times of the accepted ISO 8601 pattern."""
    parameters = _parameters()
    digits = {"type": "integer", "pattern": "^[0-9]+$", "minimum": 1, "maximum": MAX_ID}
    for key in [
        ("/sync/items/{id}/", "id"),
        ("/sync/retry/{queue_id}", "queue_id"),
        ("/sync/items/", "discovery_id"),
        ("/sync/items/", "page_size"),
        *((url, "limit") for url in LISTINGS),
    ]:
        schema = parameters[key]
        assert {k: schema[k] for k in digits} == digits, key
    for name in ("since", "until"):
        schema = parameters[("/sync/items/", name)]
        assert (schema["type"], schema["format"]) == ("string", "date-time")
        pattern = re.compile(schema["pattern"])
        assert all(pattern.fullmatch(text) for text in ACCEPTED_TIMES)
        assert not any(
            pattern.fullmatch(text)
            for key, text in REFUSED_TIMES.items()
            if key not in ("no-such-day", "hour-24")
        )
    assert parameters[("/sync/failed", "limit")]["default"] == 20
