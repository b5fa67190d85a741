"""The submit path: the submit services and ``manage.py submit_discovery``."""

from __future__ import annotations

import io
import json
import re
import shutil
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django_q.models import OrmQ

from discoveries.models import Discovery
from discoveries.rules import DiscoveryInvalid
from syncq.models import SyncQueueItem, SyncStatus
from syncq.services import discovery_submit, discovery_submit_payload
from tests.conftest import ROOT
from tests.factories import discovery_make
from tests.test_types import REFERENCE_TYPES

pytestmark = pytest.mark.django_db

RUINS = "\U0001f3db\ufe0f"
LOGS = "\U0001f4dc"
SAMPLE_FILE = ROOT / "examples" / "discoveries-sample.json"

VALID = {
    "user_id": "123456789012345678",
    "username": "Tester",
    "guild_id": "987654321098765432",
    "discovery_type": RUINS,
    "system_name": "Oculi",
    "location": "Krospen L49",
    "location_type": "planet",
    "description": "A broken tower.",
}


def submit(**overrides) -> Discovery:
    return discovery_submit(**{**VALID, **overrides})


def refused(**overrides) -> dict[str, list[str]]:
    """Submit, expect refusal, check nothing was written, and return the errors by field."""
    with pytest.raises(DiscoveryInvalid) as caught:
        submit(**overrides)
    assert_nothing_written()
    return caught.value.errors


def assert_nothing_written() -> None:
    assert Discovery.objects.count() == 0
    assert SyncQueueItem.objects.count() == 0


# --- storing ------------------------------------------------------------------------------------


def test_type_given_by_name_is_stored_as_its_emoji():
    """A type given by name is stored as the emoji, as keeper.db and VH expect."""
    discovery = submit(discovery_type="ruins & STRUCTURES")
    stored = Discovery.objects.get(pk=discovery.pk)
    assert stored.discovery_type == RUINS
    assert (stored.user_id, stored.username, stored.guild_id) == (
        "123456789012345678",
        "Tester",
        "987654321098765432",
    )
    assert (stored.system_name, stored.location, stored.location_type) == (
        "Oculi",
        "Krospen L49",
        "planet",
    )
    assert stored.description == "A broken tower."


def test_type_fields_are_stored_in_metadata():
    """The type's own fields are stored, trimmed, in metadata under their keys."""
    discovery = submit(type_fields={"structure_type": "  Tower ", "purpose_function": "Shrine"})
    stored = Discovery.objects.get(pk=discovery.pk)
    assert stored.metadata == {"structure_type": "Tower", "purpose_function": "Shrine"}


def test_submission_time_is_stored_in_utc_whole_seconds():
    """A submission time in any zone is stored as UTC 'YYYY-MM-DD HH:MM:SS', whole seconds."""
    when = datetime(2024, 3, 1, 0, 30, 15, 987654, tzinfo=timezone(timedelta(hours=1)))
    discovery = submit(submitted_at=when)
    stored = Discovery.objects.get(pk=discovery.pk)
    assert stored.submission_timestamp == datetime(2024, 2, 29, 23, 30, 15, tzinfo=UTC)
    assert stored.submission_timestamp.utcoffset() == timedelta(0)
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT CAST(submission_timestamp AS TEXT) FROM discoveries WHERE id = %s",
                [stored.pk],
            )
            assert cursor.fetchone()[0] == "2024-02-29 23:30:15"


def test_default_submission_time_is_now_to_the_second(monkeypatch):
    """Without a submission time, the current UTC time is stored with its microseconds dropped."""
    from django.utils import timezone as dj_timezone

    now = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    monkeypatch.setattr(dj_timezone, "now", lambda: now)
    discovery = submit()
    stored = Discovery.objects.get(pk=discovery.pk)
    assert stored.submission_timestamp == now.replace(microsecond=0)


def test_submit_queues_exactly_one_pending_item():
    """Each stored discovery gets one pending queue item, due at once, with 10 attempts allowed."""
    discovery = discovery_make()
    item = SyncQueueItem.objects.get()
    assert item.discovery_id == discovery.pk
    assert item.sync_status == SyncStatus.PENDING
    assert item.sync_attempts == 0
    assert item.max_attempts == 10
    assert item.next_retry_after is None
    assert Discovery.objects.count() == 1


def test_discovery_is_not_kept_when_its_queue_item_fails(monkeypatch):
    """Discovery and queue item are one transaction: if queuing fails, no discovery is kept."""
    import syncq.services

    def broken(**kwargs):
        raise RuntimeError("queue unavailable")

    monkeypatch.setattr(syncq.services, "queue_item_create", broken)
    with pytest.raises(RuntimeError, match="queue unavailable"):
        discovery_make()
    assert_nothing_written()


# --- refusing -----------------------------------------------------------------------------------


def test_every_bad_field_is_reported_at_once_and_nothing_written():
    """One refusal names every bad field (not just the first), and nothing is written."""
    with pytest.raises(DiscoveryInvalid) as caught:
        submit(
            description="",
            discovery_type="dragons",
            evidence_url="ftp://x",
            condition="c" * 201,
            user_id="not-a-snowflake",
        )
    errors = caught.value.errors
    assert set(errors) == {"description", "discovery_type", "evidence_url", "condition", "user_id"}
    assert errors["description"] == ["is required"]
    assert "dragons" in errors["discovery_type"][0]
    assert "200" in errors["condition"][0]
    message = str(caught.value)
    for field in errors:
        assert field in message
    assert_nothing_written()


def test_missing_required_fields_are_all_named():
    """A submission missing everything names each required field."""
    with pytest.raises(DiscoveryInvalid) as caught:
        discovery_submit(user_id=None, username=None, discovery_type=None, description=None)
    assert {
        "user_id",
        "username",
        "discovery_type",
        "description",
        "system_name",
        "location",
    } <= set(caught.value.errors)
    assert_nothing_written()


LIMIT_CASES = [
    pytest.param("description", None, 1000, id="description-1000"),
    pytest.param("structure_type", RUINS, 200, id="ruins-type-field-200"),
    pytest.param("key_excerpt", LOGS, 500, id="key-excerpt-500"),
    pytest.param("language_status", LOGS, 200, id="logs-other-field-200"),
]


def _with_length(field: str, dtype: str | None, length: int) -> dict[str, object]:
    if dtype is None:
        return {field: "d" * length}
    return {"discovery_type": dtype, "type_fields": {field: "t" * length}}


@pytest.mark.parametrize(("field", "dtype", "limit"), LIMIT_CASES)
def test_field_at_its_limit_is_accepted(field, dtype, limit):
    """A field exactly at its REFERENCE.md limit is stored whole."""
    discovery = submit(**_with_length(field, dtype, limit))
    stored = Discovery.objects.get(pk=discovery.pk)
    value = stored.description if dtype is None else stored.metadata[field]
    assert len(value) == limit


@pytest.mark.parametrize(("field", "dtype", "limit"), LIMIT_CASES)
def test_field_one_over_its_limit_is_refused(field, dtype, limit):
    """A field one character over its limit is refused, naming the field and the limit."""
    errors = refused(**_with_length(field, dtype, limit + 1))
    assert set(errors) == {field}
    assert str(limit) in errors[field][0]


def test_field_of_another_type_is_refused():
    """A value for another type's field (a species on ruins) is refused rather than lost."""
    errors = refused(type_fields={"structure_type": "Tower", "species_type": "Raptor"})
    assert set(errors) == {"species_type"}
    assert "Ruins & structures" in errors["species_type"][0]


def test_unknown_type_field_is_refused():
    """A key that is no type's field is refused and named."""
    errors = refused(type_fields={"colour": "red"})
    assert set(errors) == {"colour"}


@pytest.mark.parametrize(
    "bad",
    [pytest.param("before\x00after", id="nul"), pytest.param("before\ud800after", id="surrogate")],
)
@pytest.mark.parametrize("where", ["description", "username", "type_field"])
def test_nul_and_lone_surrogate_are_refused(bad, where):
    """Text with a NUL byte or a lone surrogate is refused cleanly, not stored or crashed on."""
    if where == "type_field":
        errors = refused(type_fields={"structure_type": bad})
        assert set(errors) == {"structure_type"}
    else:
        errors = refused(**{where: bad})
        assert set(errors) == {where}


CONTROL_CASES = [
    pytest.param("\x01", "U+0001", id="soh"),
    pytest.param("\x0b", "U+000B", id="vertical-tab"),
    pytest.param("\x1b", "U+001B", id="escape"),
    pytest.param("\x1f", "U+001F", id="unit-separator"),
    pytest.param("\x7f", "U+007F", id="delete"),
    pytest.param("\x85", "U+0085", id="next-line"),
    pytest.param("\x9f", "U+009F", id="c1-last"),
]

TEXT_FIELDS = [
    "description",
    "username",
    "system_name",
    "location",
    "evidence_url",
    "condition",
    "type_field",
]


@pytest.mark.parametrize(("char", "code"), CONTROL_CASES)
@pytest.mark.parametrize("where", TEXT_FIELDS)
def test_control_characters_are_refused_naming_the_field(char, code, where):
    """A C0 or C1 control character (or DEL) in any text field, even at its end where
    stripping would hide it, is refused with a message naming the field and the character."""
    bad = f"https://example.org/a{char}" if where == "evidence_url" else f"Tower{char}"
    if where == "type_field":
        where, overrides = "structure_type", {"type_fields": {"structure_type": bad}}
    else:
        overrides = {where: bad}
    with pytest.raises(DiscoveryInvalid) as caught:
        submit(**overrides)
    assert caught.value.errors == {
        where: [
            f"contains the control character {code} "
            "(only tab, newline and carriage return are allowed)"
        ]
    }
    assert str(caught.value).startswith(f"{where}: contains the control character {code}")
    assert_nothing_written()


@pytest.mark.parametrize(
    ("field", "value"),
    [("discovery_type", "ruins\x1f"), ("location_type", "planet\x85")],
)
def test_control_characters_in_type_and_location_type_are_refused(field, value):
    """The type and the location type, though looked up rather than stored, refuse a control
    character too instead of matching with it stripped away."""
    errors = refused(**{field: value})
    assert set(errors) == {field}
    assert "control character" in errors[field][0]


def test_tab_newline_and_carriage_return_are_kept():
    """Tab, newline and carriage return are ordinary text inside a description."""
    text = "First line\r\nsecond\tcolumn\nthird"
    discovery = submit(description=text)
    assert Discovery.objects.get(pk=discovery.pk).description == text


@pytest.mark.parametrize(
    "url",
    ["ftp://x", "javascript:alert(1)", "example.org/a.png", "https://", "data:image/png;base64,AA"],
)
def test_evidence_must_be_an_http_link(url):
    """An evidence link that is not http(s) is refused."""
    errors = refused(evidence_url=url)
    assert set(errors) == {"evidence_url"}


@pytest.mark.parametrize("url", ["https://example.org/a.png", "http://example.org/a.png"])
def test_http_evidence_is_stored(url):
    """An http(s) evidence link is stored as given."""
    discovery = submit(evidence_url=url)
    assert Discovery.objects.get(pk=discovery.pk).evidence_url == url


@pytest.mark.parametrize("user_id", ["abc", "12a4", "-5", "12 34", "1" * 21, 1.5, True])
def test_user_id_must_be_digits(user_id):
    """A submitter id that is not a Discord snowflake (digits only) is refused."""
    errors = refused(user_id=user_id)
    assert set(errors) == {"user_id"}


def test_numeric_user_id_is_stored_as_text():
    """A snowflake given as a number is stored as its digits."""
    discovery = submit(user_id=123456789012345678)
    assert Discovery.objects.get(pk=discovery.pk).user_id == "123456789012345678"


def test_guild_id_must_be_digits():
    """A guild id that is not digits is refused."""
    assert set(refused(guild_id="guild")) == {"guild_id"}


def test_space_discovery_needs_no_location():
    """A discovery in space may leave the location empty."""
    discovery = submit(location_type="space", location="")
    stored = Discovery.objects.get(pk=discovery.pk)
    assert stored.location_type == "space"
    assert stored.location == "Space"


@pytest.mark.parametrize("location_type", ["planet", "moon", None])
def test_planet_or_moon_discovery_needs_a_location(location_type):
    """A discovery on a planet or moon (or of unstated kind) must name its location."""
    assert set(refused(location_type=location_type, location="  ")) == {"location"}


def test_unknown_location_type_is_refused():
    """A location type other than planet, moon or space is refused."""
    assert set(refused(location_type="ocean")) == {"location_type"}


@pytest.mark.parametrize(
    ("given", "stored"), [("Planet", "planet"), ("MOON", "moon"), (" Space ", "space")]
)
def test_location_type_is_read_in_any_case_and_stored_lower_case(given, stored):
    """'Planet', 'MOON' or ' Space ' are accepted and stored as planet, moon, space."""
    discovery = submit(location_type=given)
    assert Discovery.objects.get(pk=discovery.pk).location_type == stored


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"], ids=["empty", "spaces", "tab-newline"])
def test_blank_field_of_another_type_is_ignored(blank):
    """A blank value for another type's field (as a form sends for fields left empty) is
    ignored like an empty one: the discovery is stored without it."""
    discovery = submit(type_fields={"structure_type": "Tower", "species_type": blank})
    assert Discovery.objects.get(pk=discovery.pk).metadata == {"structure_type": "Tower"}


def test_blank_discovery_type_is_reported_as_missing():
    """A type of nothing but spaces is reported as missing, like an empty one."""
    assert refused(discovery_type="   ") == {"discovery_type": ["is required"]}


# --- the kick after commit ----------------------------------------------------------------------


def test_sync_is_kicked_after_commit(monkeypatch, django_capture_on_commit_callbacks):
    """A stored discovery asks for a sync once, and only after its transaction commits."""
    import syncq.services

    kicks = []
    monkeypatch.setattr(syncq.services, "sync_kick", lambda: kicks.append("kick"))
    with django_capture_on_commit_callbacks(execute=True):
        discovery_make()
        assert kicks == []
    assert kicks == ["kick"]


def test_refused_submission_kicks_nothing(monkeypatch, django_capture_on_commit_callbacks):
    """A refused submission schedules no sync."""
    import syncq.services

    kicks = []
    monkeypatch.setattr(syncq.services, "sync_kick", lambda: kicks.append("kick"))
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(DiscoveryInvalid),
    ):
        submit(description="")
    assert callbacks == []
    assert kicks == []


def test_kick_enqueues_a_django_q_task(settings, django_capture_on_commit_callbacks):
    """With VH switched on, a submission puts one sync task on django-q2's queue."""
    settings.USE_HAVEN_DATABASE = True
    with django_capture_on_commit_callbacks(execute=True):
        discovery_make()
    task = OrmQ.objects.get()
    assert task.func() == "syncq.tasks.sync_due"


def test_no_kick_when_haven_is_switched_off(settings, django_capture_on_commit_callbacks):
    """With USE_HAVEN_DATABASE false, a submission is stored and queued but no task is sent."""
    settings.USE_HAVEN_DATABASE = False
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        discovery_make()
    assert len(callbacks) == 1
    assert OrmQ.objects.count() == 0
    assert SyncQueueItem.objects.count() == 1


# --- discovery_submit_payload -------------------------------------------------------------------


def payload(**overrides) -> dict[str, object]:
    return {**VALID, "structure_type": "Tower", **overrides}


@pytest.mark.parametrize(
    ("value", "kind"),
    [([], "an array"), ("ruins", "a string"), (None, "null"), (3, "a number"), (2.5, "a number")],
    ids=["list", "string", "null", "int", "float"],
)
def test_payload_that_is_not_an_object_is_refused(value, kind):
    """A JSON payload that is not an object is refused, saying what it is instead."""
    with pytest.raises(DiscoveryInvalid) as caught:
        discovery_submit_payload(value)
    assert caught.value.errors == {"discovery": [f"must be a JSON object, not {kind}"]}
    assert_nothing_written()


def test_payload_unknown_keys_are_refused_and_named():
    """Unknown keys are refused by name, together with any other bad field."""
    with pytest.raises(DiscoveryInvalid) as caught:
        discovery_submit_payload(payload(colour="red", planet="Krospen", description=""))
    errors = caught.value.errors
    assert set(errors) == {"colour", "planet", "description"}
    assert "colour" in str(caught.value)
    assert_nothing_written()


def test_payload_empty_object_names_required_fields():
    """An empty object is refused naming each required field."""
    with pytest.raises(DiscoveryInvalid) as caught:
        discovery_submit_payload({})
    assert {"user_id", "username", "discovery_type", "description"} <= set(caught.value.errors)
    assert_nothing_written()


@pytest.mark.parametrize(
    "body",
    [
        payload(),
        {**VALID, "metadata": {"structure_type": "Tower"}},
    ],
    ids=["top-level", "under-metadata"],
)
def test_payload_type_fields_top_level_or_under_metadata(body):
    """Type fields may be given as top-level keys or inside 'metadata'; both are stored alike."""
    discovery = discovery_submit_payload(body)
    stored = Discovery.objects.get(pk=discovery.pk)
    assert stored.metadata == {"structure_type": "Tower"}
    assert stored.discovery_type == RUINS
    assert SyncQueueItem.objects.filter(discovery=stored).count() == 1


@pytest.mark.parametrize("metadata", [["structure_type"], "Tower", 3], ids=repr)
def test_payload_metadata_must_be_an_object(metadata):
    """A 'metadata' that is not a JSON object is refused by name."""
    with pytest.raises(DiscoveryInvalid) as caught:
        discovery_submit_payload({**VALID, "metadata": metadata})
    assert set(caught.value.errors) == {"metadata"}
    assert_nothing_written()


@pytest.mark.parametrize("where", ["top-level", "under-metadata"])
def test_payload_blank_field_of_another_type_is_ignored(where):
    """In a JSON payload too, a blank field of another type is ignored, top-level or inside
    'metadata', and a blank 'metadata' is ignored as an empty one."""
    blank = {"ship_class": "  "}
    body = payload(**blank) if where == "top-level" else payload(metadata={**blank})
    discovery = discovery_submit_payload(body)
    assert Discovery.objects.get(pk=discovery.pk).metadata == {"structure_type": "Tower"}
    assert discovery_submit_payload(payload(metadata=" ")).pk != discovery.pk


def test_payload_type_field_of_another_type_under_metadata_is_refused():
    """A field of another type is refused whether top-level or inside 'metadata'."""
    with pytest.raises(DiscoveryInvalid) as caught:
        discovery_submit_payload({**VALID, "metadata": {"ship_class": "Hauler"}})
    assert set(caught.value.errors) == {"ship_class"}
    assert_nothing_written()


# --- manage.py submit_discovery -----------------------------------------------------------------

ENTRY_LINE = re.compile(r"^entry (\d+): discovery (\d+) queued", re.MULTILINE)


def run_command(path) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("submit_discovery", file=str(path), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_command_on_stdin(data: bytes) -> tuple[str, str]:
    """Run the command with ``--file -`` and ``data`` as the bytes on standard input."""
    out, err = io.StringIO(), io.StringIO()
    stdin = io.TextIOWrapper(io.BytesIO(data), encoding="latin-1")
    call_command("submit_discovery", file="-", stdin=stdin, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_command_submits_the_sample_file(tmp_path):
    """The sample file's ten discoveries, one per type, are stored and each new id printed."""
    path = shutil.copyfile(SAMPLE_FILE, tmp_path / "sample.json")
    out, err = run_command(path)
    printed = ENTRY_LINE.findall(out)
    assert [int(entry) for entry, _ in printed] == list(range(1, 11))
    ids = {int(pk) for _, pk in printed}
    assert ids == set(Discovery.objects.values_list("pk", flat=True))
    assert len(ids) == 10
    assert "10 submitted, 0 refused" in out
    assert err == ""
    stored_types = set(Discovery.objects.values_list("discovery_type", flat=True))
    assert stored_types == {emoji for emoji, _, _ in REFERENCE_TYPES}
    assert SyncQueueItem.objects.filter(sync_status=SyncStatus.PENDING).count() == 10


def test_command_accepts_a_single_object(tmp_path):
    """A file holding one JSON object (not a list) submits that one discovery."""
    path = tmp_path / "one.json"
    path.write_text(json.dumps(payload()), encoding="utf-8")
    out, _ = run_command(path)
    (entry, pk), *rest = ENTRY_LINE.findall(out)
    assert rest == []
    assert Discovery.objects.get().pk == int(pk)


def test_command_stores_good_entries_and_reports_bad_ones(tmp_path):
    """Good entries are stored; each bad one is reported by entry number and field; exit 1."""
    sample = json.loads(SAMPLE_FILE.read_text(encoding="utf-8"))
    entries = [
        sample[0],
        {**sample[1], "description": ""},
        sample[2],
        {**sample[3], "evidence_url": "javascript:alert(1)", "colour": "red"},
        ["not", "an", "object"],
    ]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as caught:
        call_command("submit_discovery", file=str(path), stdout=out, stderr=err)
    assert caught.value.code == 1
    printed = ENTRY_LINE.findall(out.getvalue())
    assert [int(entry) for entry, _ in printed] == [1, 3]
    assert {int(pk) for _, pk in printed} == set(Discovery.objects.values_list("pk", flat=True))
    assert SyncQueueItem.objects.count() == 2
    assert "2 submitted, 3 refused" in out.getvalue()
    report = {line.split(":", 1)[0]: line for line in err.getvalue().splitlines()}
    assert set(report) == {"entry 2", "entry 4", "entry 5"}
    assert "description" in report["entry 2"]
    assert "evidence_url" in report["entry 4"]
    assert "colour" in report["entry 4"]
    assert "JSON object" in report["entry 5"]


def test_command_refuses_a_file_that_is_not_json(tmp_path):
    """A file that is not JSON stops the command with a CommandError and writes nothing."""
    path = tmp_path / "broken.json"
    path.write_text('[{"user_id": "1",', encoding="utf-8")
    with pytest.raises(CommandError, match="not valid JSON"):
        run_command(path)
    assert_nothing_written()


def test_command_refuses_a_missing_file(tmp_path):
    """A file that does not exist stops the command with a CommandError naming it."""
    path = tmp_path / "absent.json"
    with pytest.raises(CommandError, match="absent.json"):
        run_command(path)
    assert_nothing_written()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("[" * 100_000 + "]" * 100_000, "nested too deeply", id="deep"),
        pytest.param('[{"user_id": ' + "7" * 5000 + "}]", "more than 4300 digits", id="huge-int"),
    ],
)
def test_command_refuses_json_python_cannot_take(tmp_path, content, message):
    """JSON nested 100000 deep, or holding a 5000-digit integer, stops the command with a
    CommandError saying why, not a traceback, and writes nothing."""
    path = tmp_path / "hostile.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CommandError, match=message):
        run_command(path)
    assert_nothing_written()


def test_command_reads_utf8_stdin_with_a_byte_order_mark():
    """'--file -' reads standard input as UTF-8 bytes, a leading byte-order mark (as
    PowerShell sends) included, whatever the terminal's own encoding."""
    data = "\ufeff".encode() + json.dumps([payload(username="Zoë 🦊")], ensure_ascii=False).encode()
    out, err = run_command_on_stdin(data)
    assert err == ""
    assert "1 submitted" in out
    assert Discovery.objects.get().username == "Zoë 🦊"


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_command_refuses_input_that_is_not_utf8(tmp_path, source):
    """A file or standard input that is not UTF-8 (here Latin-1) stops the command with a
    CommandError saying so, and writes nothing."""
    body = payload(username="Zoë", discovery_type="ruins")
    data = json.dumps([body], ensure_ascii=False).encode("latin-1")
    with pytest.raises(CommandError, match="is not UTF-8"):
        if source == "stdin":
            run_command_on_stdin(data)
        else:
            path = tmp_path / "latin1.json"
            path.write_bytes(data)
            run_command(path)
    assert_nothing_written()


def test_command_reports_a_database_error_and_goes_on(tmp_path, monkeypatch):
    """When keeper.db fails one entry (locked past its busy timeout), that entry is reported
    as not stored, the next entries are still stored, and the command exits 1."""
    from django.db import OperationalError

    import syncq.services

    real_create = syncq.services.queue_item_create
    calls = []

    def locked_on_second(**kwargs):
        calls.append(kwargs)
        if len(calls) == 2:
            raise OperationalError("database is locked")
        return real_create(**kwargs)

    monkeypatch.setattr(syncq.services, "queue_item_create", locked_on_second)
    path = tmp_path / "three.json"
    path.write_text(json.dumps([payload(), payload(), payload()]), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as caught:
        call_command("submit_discovery", file=str(path), stdout=out, stderr=err)
    assert caught.value.code == 1
    assert [entry for entry, _ in ENTRY_LINE.findall(out.getvalue())] == ["1", "3"]
    assert err.getvalue() == "entry 2: not stored: database is locked\n"
    assert "2 submitted, 0 refused, 1 not stored" in out.getvalue()
    assert Discovery.objects.count() == 2
    assert SyncQueueItem.objects.count() == 2


# --- submitting once by key -------------------------------------------------------------------


def test_a_keyed_submission_is_stored_once_however_often_it_comes():
    """The same submission key twice stores one discovery and one queue item; the second call
    returns the first discovery with created False."""
    from syncq.services import discovery_submit_once

    first, created = discovery_submit_once(submission_key="discord:1", **VALID)
    again, created_again = discovery_submit_once(
        submission_key="discord:1", **{**VALID, "description": "Different text"}
    )
    assert created and not created_again
    assert again.id == first.id and again.description == "A broken tower."
    assert Discovery.objects.count() == 1 and SyncQueueItem.objects.count() == 1
    other, created_other = discovery_submit_once(submission_key="discord:2", **VALID)
    assert created_other and other.id != first.id
    assert Discovery.objects.get(id=first.id).submission_key == "discord:1"


def test_a_keyed_submission_is_still_validated_and_the_key_checked():
    """Bad fields are refused with the key as without it; the key itself must be 1–64
    characters; nothing is written either way."""
    from syncq.services import discovery_submit_once

    with pytest.raises(DiscoveryInvalid) as refused:
        discovery_submit_once(submission_key="discord:3", **{**VALID, "description": ""})
    assert "description" in refused.value.errors
    for key in ("", "k" * 65):
        with pytest.raises(ValueError, match="1 to 64"):
            discovery_submit_once(submission_key=key, **VALID)
    assert Discovery.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_keyed_submissions_racing_in_threads_store_one_discovery():
    """Eight threads submitting the same key at once: one discovery, one queue item, and every
    thread gets that discovery's id."""
    import threading

    from django.db import connections

    from syncq.services import discovery_submit_once

    results: list[tuple[int, bool]] = []
    start = threading.Barrier(8)

    def worker():
        start.wait()
        try:
            discovery, created = discovery_submit_once(submission_key="discord:race", **VALID)
            results.append((discovery.id, created))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 8
    assert len({i for i, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert Discovery.objects.count() == 1 and SyncQueueItem.objects.count() == 1


# --- look-alike text and evidence links ---------------------------------------------------------


@pytest.mark.parametrize(
    "invisible",
    [
        "\u200b\u200b",
        "\ufeff",
        " \u2060 \u200d ",
        "\u00ad",
        "\u3164",
        "\u115f\u1160\uffa0",
        "\u2800",
        "\u034f\ufe0f\u180b\u17b4",
        "\u206a\u206f\ufff9\U0001d173",
        "\U000e0020\U000e0041",
        "\u061c",
    ],
)
def test_text_of_only_invisible_characters_counts_as_empty(invisible):
    """A description that shows nothing (zero-width spaces, joiners, a byte order mark, a soft
    hyphen, format characters, tags, Hangul fillers, the blank braille pattern, variation
    selectors) is refused as missing, and nothing is written."""
    with pytest.raises(DiscoveryInvalid) as refused:
        submit(description=invisible)
    assert refused.value.errors["description"] == ["is required"]
    assert Discovery.objects.count() == 0


@pytest.mark.parametrize("control", ["\u202e", "\u202a", "\u2066", "\u2069"])
@pytest.mark.parametrize("field", ["description", "system_name", "evidence_url"])
def test_bidirectional_overrides_are_refused_everywhere(control, field):
    """U+202A–U+202E and U+2066–U+2069 reorder how text reads (look-alike names and links):
    refused, naming the character, in any field."""
    value = {"evidence_url": f"https://example.org/{control}gpj.exe"}.get(
        field, f"Tower {control}evil"
    )
    with pytest.raises(DiscoveryInvalid) as refused:
        submit(**{field: value})
    assert f"U+{ord(control):04X}" in " ".join(refused.value.errors[field])
    assert Discovery.objects.count() == 0


def test_text_with_joiners_inside_is_kept():
    """Zero-width joiners inside emoji sequences and right-to-left marks in real text stay."""
    text = "Family 👩\u200d👩\u200d👧 near \u200fשלום\u200f"
    assert submit(description=text).description == text


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://user:pass@example.org/a.png", "user name or password"),
        ("https://discord.com@evil.example/x", "user name or password"),
        ("http://localhost/x", "not this computer's"),
        ("http://app.localhost:8000/x", "not this computer's"),
        ("http://127.0.0.1:8000/admin", "local or private"),
        ("http://10.1.2.3/x", "local or private"),
        ("http://192.168.0.10/x", "local or private"),
        ("http://[::1]/x", "local or private"),
        ("http://169.254.169.254/latest", "local or private"),
        ("http://printer.local/scan.png", "local network"),
        ("https://wiki.corp/page", "local network"),
        ("javascript:alert(1)", "http:// or https://"),
        ("http://\uff11\uff10.\uff10.\uff10.\uff11\uff12/photo.png", "local or private"),
        ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff10\uff11/", "local or private"),
        ("http://nas.\uff4c\uff41\uff4e/", "local network"),
        ("http://printer.\uff4c\uff4f\uff43\uff41\uff4c/", "local network"),
        ("http://x.\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/", "this computer"),
        ("http://[::127.0.0.1]/", "local or private"),
        ("http://[::ffff:10.0.0.1]/", "local or private"),
        ("http://[2002:c0a8:1::]/", "local or private"),
        ("http://[64:ff9b::7f00:1]/", "local or private"),
        ("http://[64:ff9b:1::a00:1]/", "local or private"),
        ("https://exa\u200bmple.org/a.png", "invisible character U+200B"),
        ("https://example.org/a\u00ad.png", "invisible character U+00AD"),
        ("https://ex\u2060ample.org/", "invisible character U+2060"),
    ],
)
def test_evidence_must_be_a_public_link(url, problem):
    """An evidence link that hides its host behind a user name, or points at a local or
    private address (also when written in fullwidth characters, which a browser reads as
    ASCII, or carried inside an IPv6 address, NAT64 included), or holds an invisible
    character, is refused with the reason; nothing is written."""
    with pytest.raises(DiscoveryInvalid) as refused:
        submit(evidence_url=url)
    assert problem in " ".join(refused.value.errors["evidence_url"])
    assert Discovery.objects.count() == 0


@pytest.mark.parametrize(
    "url", ["https://example.org/a.png", "http://8.8.8.8/shot.jpg", "https://cdn.x.org/a?b=c#d"]
)
def test_public_evidence_links_are_kept(url):
    """Public http(s) links, by name or by a public address, are stored as given."""
    assert submit(evidence_url=url).evidence_url == url
