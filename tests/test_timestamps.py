"""Legacy submission times are read, never guessed: the pure reader (which never raises), the
raw column behind an ORM ``None``, the old bot's VH rows found by the instant they name,
migrate on a keeper.db holding an instant no datetime holds, and legacy metadata that is JSON
but no object told apart from text that is no JSON."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from types import SimpleNamespace

import pytest
from django.db import connection, connections

from discoveries.haven.ledger import ledger_ensure, legacy_match
from discoveries.haven.mapping import _type_fields
from discoveries.models import Discovery, discovery_timestamp_problem
from discoveries.timestamps import timestamp_read
from tests.conftest import LEGACY_KEEPER, SAMPLE_VH, manage_env, run_manage, writable_copy
from tests.factories import discovery_make

WITH_HAVEN = pytest.mark.django_db(transaction=True, databases=["default", "haven"])
METADATA = Discovery._meta.get_field("metadata")

#: REFERENCE.md's legacy row 9 / VH row 25: submitted 2025-11-12 01:53:35 UTC.
SECOND = datetime(2025, 11, 12, 1, 53, 35, tzinfo=UTC)


# --- timestamp_read ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1762912415, SECOND),
        (1762912415000, SECOND),
        ("1762912415", SECOND),
        ("1762912415000", SECOND),
        (1762912415.5, SECOND.replace(microsecond=500000)),
        ("1762912415123", SECOND.replace(microsecond=123000)),
        ("2025-11-12 01:53:35", SECOND),
        ("2025-11-12T01:53:35Z", SECOND),
        ("2025-11-12t01:53:35z", SECOND),
        ("2025-11-12 01:53:35.123+00:00", SECOND.replace(microsecond=123000)),
        ("2025-11-12T03:53:35+02:00", SECOND),
        ("2025-11-12T03:53:35+0200", SECOND),
        ("2025-11-11T20:23:35-05:30", SECOND),
        ("2025-11-12 01:53:35.000", SECOND),
        ("2025-11-12 01:53:35,1234567", SECOND.replace(microsecond=123456)),
        ("  2025-11-12 01:53:35\n", SECOND),
        ("2025-11-12 01:53", SECOND.replace(second=0)),
        (datetime(2025, 11, 12, 1, 53, 35), SECOND),
        (datetime.fromisoformat("2025-11-12T03:53:35+02:00"), SECOND),
    ],
    ids=repr,
)
def test_every_legacy_form_reads_as_the_same_utc_instant(raw, expected):
    """Epoch seconds and milliseconds (numbers or digits) and ISO 8601 with T or a space, Z, an
    offset or none (UTC) all read as the instant they name, aware and in UTC."""
    value = timestamp_read(raw)
    assert value == expected
    assert value.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "last tuesday",
        "2025-11-12",  # a day, not a time
        "2024-02-30 10:00:00",  # no such day
        "2025-11-12 24:00:00",
        "2025-11-12T01:53:35+24:00",
        "2025-11-12T01:53:35 UTC",
        "20251112",
        20251112,  # a date written as a number: 1970 if read as seconds
        123456789012,  # 12 digits: neither seconds nor milliseconds of our time
        10**14,
        -1762912415,
        "-1762912415",
        "1.7629e9",
        float("nan"),
        float("inf"),
        True,
        b"1762912415",
        "\u0661\u0667\u0666\u0662\u0669\u0661\u0662\u0664\u0661\u0665",  # Arabic-Indic digits
    ],
    ids=repr,
)
def test_anything_else_is_none_never_a_guess(raw):
    """A value naming no instant in one of the documented forms reads as None."""
    assert timestamp_read(raw) is None


#: Instants a legacy file may hold that no ``datetime`` holds once in UTC.
OUT_OF_RANGE = ("9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00")


class _NoOffset(tzinfo):
    """A tzinfo that gives no offset: Python takes a datetime holding it as naive."""

    def utcoffset(self, dt):
        return None


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(OUT_OF_RANGE[0], id="year-9999-behind-utc"),
        pytest.param(OUT_OF_RANGE[1], id="year-1-ahead-of-utc"),
        pytest.param("9999-12-31 23:00:00-23:59", id="year-9999-far-behind"),
        pytest.param("0001-01-01t00:00+0001", id="year-1-a-minute-ahead"),
        pytest.param("9999-12-31 00:00:00", id="year-9999-last-day"),
        pytest.param("9999-12-31T23:59:59+01:00", id="year-9999-last-day-ahead"),
        pytest.param("0001-01-01T23:59:59.999999Z", id="year-1-first-day"),
        pytest.param(datetime.max.replace(tzinfo=timezone(-timedelta(hours=1))), id="dt-max"),
        pytest.param(datetime.min.replace(tzinfo=timezone(timedelta(hours=1))), id="dt-min"),
        pytest.param(10**5000, id="int-of-5001-digits"),
        pytest.param(-(10**5000), id="negative-int-of-5001-digits"),
        pytest.param(10**1_000_000, id="int-of-a-million-digits"),
        pytest.param(2**63, id="int-2**63"),
        pytest.param("9" * 5000, id="5000-digits"),
        pytest.param("1" * 100 + "." + "5" * 100, id="100-digits-point-100"),
        pytest.param(1e300, id="float-1e300"),
        pytest.param(-1e300, id="float-minus-1e300"),
        pytest.param(float(10**14), id="float-1e14"),
    ],
)
def test_an_instant_out_of_range_is_none_never_an_error(raw):
    """An ISO time that leaves datetime's years 1 to 9999 once its offset is applied, or lies
    in their first or last day (no date in some time zones), and an epoch value of any size,
    read as None: timestamp_read raises for nothing a legacy file
    can hold (migrate and the old bot's row matching read every value through it)."""
    assert timestamp_read(raw) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("9999-12-31T00:59:59+01:00", datetime(9999, 12, 30, 23, 59, 59, tzinfo=UTC)),
        ("0001-01-01T23:00:00-01:00", datetime(1, 1, 2, 0, 0, 0, tzinfo=UTC)),
        ("9999-12-30 23:59:59.999999", datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)),
        ("1762912415.9999999999999999999999", SECOND.replace(microsecond=999999)),
        ("1762912415999.9999999999", SECOND.replace(microsecond=999999)),
        (datetime(2025, 11, 12, 1, 53, 35, tzinfo=_NoOffset()), SECOND),
    ],
    ids=repr,
)
def test_the_edges_of_the_range_still_read(raw, expected):
    """Instants at the very ends of the range are read; digits past the microsecond of an
    epoch value are dropped, never rounded into the next second; a tzinfo with no offset is
    UTC, as for a naive datetime, not this machine's local time."""
    assert timestamp_read(raw) == expected


# --- the raw column behind the ORM's None -----------------------------------------------------


def _store_raw(discovery_id: int, column: str, value: object) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE discoveries SET {column} = %s WHERE id = %s", [value, discovery_id])


@pytest.mark.django_db
def test_an_unreadable_time_is_named_by_the_problem_it_causes():
    """A discovery whose stored time the ORM reads as None is reported with the text that is
    there; the ORM value alone would say nothing."""
    discovery = discovery_make()
    _store_raw(discovery.id, "submission_timestamp", "last tuesday")

    stored = Discovery.objects.get(id=discovery.id)

    assert stored.submission_timestamp is None
    assert stored.submission_timestamp_raw() == "last tuesday"
    assert discovery_timestamp_problem(stored) == (
        "submission_timestamp 'last tuesday' cannot be read as a time "
        "(epoch seconds/ms or ISO 8601)"
    )


@pytest.mark.django_db
def test_a_readable_time_is_no_problem():
    """A discovery the ORM reads a time for has no timestamp problem, and its raw text is the
    stored form."""
    discovery = discovery_make(submitted_at=SECOND)
    stored = Discovery.objects.get(id=discovery.id)
    assert discovery_timestamp_problem(stored) is None
    assert stored.submission_timestamp_raw() == "2025-11-12 01:53:35"


@pytest.mark.django_db
def test_an_epoch_integer_is_shown_as_its_digits():
    """An epoch integer (which the ORM reads as None) is read raw as its digits, unconverted."""
    discovery = discovery_make()
    _store_raw(discovery.id, "submission_timestamp", 1762912415)
    stored = Discovery.objects.get(id=discovery.id)
    assert stored.submission_timestamp is None
    assert stored.submission_timestamp_raw() == "1762912415"
    assert "'1762912415' cannot be read" in discovery_timestamp_problem(stored)


# --- legacy_match: the old bot's VH rows, by instant ------------------------------------------

OLD_USER = "930484704533555958"


def _vh_rows(path, rows) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        ids = [
            conn.execute(
                "INSERT INTO discoveries (discovery_type, location_type, description,"
                " discord_user_id, submission_timestamp) VALUES ('🏛️', 'space', ?, ?, ?)",
                (description, OLD_USER, stamp),
            ).lastrowid
            for description, stamp in rows
        ]
        conn.commit()
    finally:
        conn.close()
    return ids


def _match(discovery) -> int | None:
    with connections["haven"].cursor() as cursor:
        ledger_ensure(cursor)
        return legacy_match(cursor, discovery)


def _old(description: str, stamp) -> SimpleNamespace:
    return SimpleNamespace(
        id=9, user_id=OLD_USER, description=description, submission_timestamp=stamp
    )


@WITH_HAVEN
@pytest.mark.parametrize(
    "vh_stamp",
    [
        "2025-11-12 01:53:35",
        1762912415,
        1762912415000,
        "1762912415",
        "2025-11-12T01:53:35Z",
        "2025-11-12T03:53:35+02:00",
        "2025-11-12 01:53:35.000",
    ],
    ids=repr,
)
def test_the_old_bots_row_is_found_by_the_instant_it_names(haven_db, vh_stamp):
    """A VH row holding the submission time in any legacy form (epoch int, ms, ISO with T, Z or
    an offset) is the old bot's row of the discovery of that second, text and submitter."""
    other, old = _vh_rows(haven_db, [("The ruins", "2025-11-12 01:53:36"), ("The ruins", vh_stamp)])
    assert _match(_old("The ruins", SECOND.replace(microsecond=400000))) == old
    assert _match(_old("The ruins", SECOND.replace(second=36))) == other


@WITH_HAVEN
def test_no_time_or_no_readable_time_links_nothing(haven_db):
    """A discovery without a time never links, and a VH row whose time cannot be read is
    linked to nothing; nor is another text, or a row already in the ledger."""
    _vh_rows(haven_db, [("The ruins", "last tuesday"), ("Other ruins", "2025-11-12 01:53:35")])
    assert _match(_old("The ruins", None)) is None
    assert _match(_old("The ruins", SECOND)) is None

    (linked,) = _vh_rows(haven_db, [("The ruins", 1762912415)])
    assert _match(_old("The ruins", SECOND)) == linked
    conn = sqlite3.connect(haven_db)
    conn.execute(
        "INSERT INTO keeper_sync_ledger (keeper_discovery_id, discord_user_id,"
        " submission_timestamp, haven_discovery_id, how, location_resolved, recorded_at)"
        " VALUES (1, ?, '2025-11-12 01:53:35', ?, 'linked', 1, '2025-12-01 00:00:00')",
        (OLD_USER, linked),
    )
    conn.commit()
    conn.close()
    assert _match(_old("The ruins", SECOND)) is None


@WITH_HAVEN
def test_a_vh_row_out_of_range_is_linked_to_nothing_and_stops_no_match(haven_db):
    """VH rows holding an instant no datetime holds are passed over, and the old bot's row
    after them is still found; a discovery whose own time is such an instant links nothing."""
    _vh_rows(haven_db, [("The ruins", stamp) for stamp in OUT_OF_RANGE])
    (old,) = _vh_rows(haven_db, [("The ruins", "2025-11-12T01:53:35Z")])

    assert _match(_old("The ruins", SECOND)) == old
    assert _match(_old("The ruins", OUT_OF_RANGE[0])) is None
    assert _match(_old("The ruins", datetime.fromisoformat(OUT_OF_RANGE[1]))) is None


# --- migrate on a legacy keeper.db holding an instant out of range ---------------------------


def test_migrate_logs_an_instant_out_of_range_and_finishes(tmp_path):
    """migrate on a copy of the legacy keeper.db whose discoveries hold times no datetime
    holds in UTC finishes, leaves those values as they are, names each in a warning, and
    still rewrites a readable ISO time of another row into Django's UTC text."""
    keeper = writable_copy(LEGACY_KEEPER, tmp_path / "keeper.db")
    haven = writable_copy(SAMPLE_VH, tmp_path / "VH-Database.db")
    conn = sqlite3.connect(keeper)
    conn.executemany(
        "UPDATE discoveries SET submission_timestamp = ? WHERE id = ?",
        [(OUT_OF_RANGE[0], 1), (OUT_OF_RANGE[1], 2), ("2025-11-12T03:53:35+02:00", 9)],
    )
    conn.commit()
    conn.close()

    result = run_manage("migrate", "--no-input", env=manage_env(keeper=keeper, haven=haven))

    assert result.returncode == 0, result.stderr
    for discovery_id, raw in ((1, OUT_OF_RANGE[0]), (2, OUT_OF_RANGE[1])):
        assert (
            f"keeper discovery {discovery_id}: submission_timestamp {raw!r} cannot be read as a"
            " time (epoch seconds/ms or ISO 8601)"
        ) in result.stderr
    conn = sqlite3.connect(keeper)
    try:
        stored = dict(
            conn.execute("SELECT id, submission_timestamp FROM discoveries WHERE id IN (1, 2, 9)")
        )
    finally:
        conn.close()
    assert stored == {1: OUT_OF_RANGE[0], 2: OUT_OF_RANGE[1], 9: "2025-11-12 01:53:35"}


# --- legacy metadata: JSON but no object, or no JSON ----------------------------------------


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ('"abc"', "metadata is valid JSON but not a JSON object (a JSON string)"),
        (
            json.dumps(json.dumps({"structure_type": "Tower"})),
            "metadata is valid JSON but not a JSON object (a JSON string, itself holding JSON:"
            " encoded twice)",
        ),
        ("[1, 2]", "metadata is valid JSON but not a JSON object (a JSON array)"),
        ("3.5", "metadata is valid JSON but not a JSON object (a JSON number)"),
        ("true", "metadata is valid JSON but not a JSON object (JSON true)"),
        ("abc", "metadata is not valid JSON (Expecting value: line 1 column 1 (char 0))"),
        ("{structure_type: Tower", "metadata is not valid JSON (Expecting property name"),
    ],
    ids=["string", "encoded-twice", "array", "number", "bool", "text", "broken"],
)
def test_legacy_metadata_is_reported_as_what_it_is(stored, message):
    """Stored metadata that is JSON but not an object is reported as that kind of JSON, and
    text that is not JSON as such, whichever Django's JSONField gives back (the decoded value,
    or the text itself): the stored text settles it."""
    # As the ORM reads the column (a legacy table has no JSON_VALID check, so "abc" is there).
    orm_value = METADATA.from_db_value(stored, None, connection)

    values, problem = _type_fields(orm_value, stored=stored)

    assert values == {}
    assert problem.startswith(message), problem


@pytest.mark.django_db
def test_without_the_stored_text_an_ambiguous_value_names_both_readings():
    """The JSONField gives 'abc' for the JSON string "abc" and for the text abc: the stored
    text (metadata_raw) tells them apart, and without it the message says it is one or the
    other, never only "not valid JSON"."""
    discovery = discovery_make()
    _store_raw(discovery.id, "metadata", '"abc"')
    loaded = Discovery.objects.get(id=discovery.id)

    assert loaded.metadata == "abc"
    assert loaded.metadata_raw() == '"abc"'
    assert _type_fields(loaded.metadata, stored=loaded.metadata_raw())[1] == (
        "metadata is valid JSON but not a JSON object (a JSON string)"
    )
    assert _type_fields(loaded.metadata) == (
        {},
        "metadata is not a JSON object: its text 'abc' is either not valid JSON (Expecting "
        "value: line 1 column 1 (char 0)) or the content of a JSON string",
    )


@pytest.mark.parametrize(
    ("decoded", "kind"),
    [([1], "a JSON array"), (7, "a JSON number"), (False, "JSON false"), ('"x"', "a JSON string")],
    ids=repr,
)
def test_decoded_json_that_is_no_object_names_its_kind(decoded, kind):
    """A value the JSONField decoded (a list, number, bool) or text holding a JSON string is
    reported as valid JSON of that kind."""
    assert _type_fields(decoded) == ({}, f"metadata is valid JSON but not a JSON object ({kind})")


@pytest.mark.parametrize(
    ("metadata", "stored"),
    [({"structure_type": "Tower"}, '{"structure_type": "Tower"}'), (None, "null"), ({}, "{}")],
    ids=["object", "null", "empty"],
)
def test_an_object_or_nothing_is_no_problem(metadata, stored):
    """A JSON object gives its values, and {} or JSON null none, with or without the stored
    text, and no message."""
    assert _type_fields(metadata) == (metadata or {}, None)
    assert _type_fields(metadata, stored=stored) == (metadata or {}, None)


@pytest.mark.django_db
def test_a_time_with_no_utc_date_is_held_not_written():
    """A stored time that Django reads but that has no UTC date (year 9999 at -01:00) is named
    as unreadable, so the sync holds it, and VH's text for it is None rather than an error."""
    from datetime import datetime, timedelta
    from datetime import timezone as dt_timezone

    from django.db import connection

    from discoveries.haven.mapping import haven_timestamp
    from discoveries.models import discovery_timestamp_problem
    from tests.factories import discovery_make

    discovery = discovery_make()
    late = datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt_timezone(timedelta(hours=-1)))
    assert haven_timestamp(late) is None
    discovery.submission_timestamp = late
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE discoveries SET submission_timestamp = %s WHERE id = %s",
            ["9999-12-31T23:59:59-01:00", discovery.id],
        )
    problem = discovery_timestamp_problem(discovery)
    assert problem and "9999-12-31T23:59:59-01:00" in problem


@pytest.mark.django_db
@pytest.mark.parametrize("stored", ["9999-12-31 23:00:00", "0001-01-01 01:00:00"])
def test_a_time_in_the_last_or_first_day_reads_as_missing_in_every_page(
    stored, settings, client, root, admin
):
    """A stored time in year 9999's last day (or year 1's first) is no date east (or west) of
    UTC: keeper.db's reader reads it as missing, so the admin's list and page and the API's
    item answer in Tokyo and in Honolulu, and the sync holds the discovery naming the text."""
    discovery = discovery_make()
    item = discovery.queue_item
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE discoveries SET submission_timestamp = %s WHERE id = %s",
            [stored, discovery.id],
        )
    reread = Discovery.objects.get(pk=discovery.pk)
    assert reread.submission_timestamp is None
    assert stored in discovery_timestamp_problem(reread)
    client.force_login(root)
    for zone in ("Asia/Tokyo", "Pacific/Honolulu"):
        settings.TIME_ZONE = zone
        pages = [
            "/admin/discoveries/discovery/",
            f"/admin/discoveries/discovery/{discovery.id}/change/",
            "/admin/syncq/syncqueueitem/",
            f"/admin/syncq/syncqueueitem/{item.id}/change/",
        ]
        for page in pages:
            assert client.get(page).status_code == 200, (zone, page)
        answer = admin.get(f"/sync/items/{item.id}/")
        assert answer.status_code == 200, answer.content
        assert answer.json()["discovery"]["submission_timestamp"] is None
