"""Nothing we write may start markup in the Control Room's map, which shows descriptions and type
fields as HTML, embeds every discovery in a ``<script>`` block and puts the evidence link in
``<img src="…">`` (REFERENCE.md): markup in free text and unsafe links are refused at every door
(the submit services, ``manage.py submit_discovery``, the admin's change form, the bot's forms),
and rows stored before that rule are neutralised as they are written to VH."""

from __future__ import annotations

import io
import json
import re
import sqlite3
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from discoveries.haven.mapping import (
    ResolvedLocation,
    discovery_to_haven_row,
    haven_row_neutralised,
)
from discoveries.models import Discovery
from discoveries.rules import (
    DiscoveryInvalid,
    evidence_url_problem,
    text_markup,
    text_markup_neutralise,
)
from discoveries.types import DISCOVERY_TYPES
from syncq.models import SyncQueueItem, SyncStatus
from syncq.services import discovery_submit, discovery_submit_payload, sync_batch
from tests.bot_driver import BotRun, Form, bot_start, values_for
from tests.factories import DISCOVERY_FIELDS, discovery_make
from tests.fake_discord import FakeDiscord

WITH_HAVEN = pytest.mark.django_db(transaction=True, databases=["default", "haven"])

#: The test's own statement of what starts markup to an HTML parser: "<" then an ASCII letter,
#: "/", "!" or "?".
STARTS_MARKUP = re.compile(r"<[A-Za-z/!?]")
MARKUP_REFUSED = "must not contain HTML markup"
SCRIPT = "</script><script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
RUINS = DISCOVERY_TYPES[2]

#: Markup in each free-text field a submission sets: (field, value); ``structure_type`` is a
#: field of the ruins type the submissions are of.
MARKUP_TEXT = [
    ("description", SCRIPT),
    ("structure_type", IMG),
    ("username", "<b>Tester</b>"),
    ("system_name", "Demo Alpha<!--"),
    ("location", "<svg onload=alert(1)>"),
    ("condition", "<?xml?>"),
    ("time_period", "</title>"),
    ("significance", SCRIPT),
    ("coordinates", IMG),
    ("tags", "<a href=x>tag</a>"),
    ("planet_name", "<i>Prime"),
    ("galaxy_name", "Euclid<Z"),
    ("related_discoveries", "<!-- #12 -->"),
]

#: Evidence links refused, each with a piece of the reason.
BAD_LINKS = [
    ('https://example.org/x.png"onerror="alert(1)', "must not contain '\"'"),
    ("https://example.org/x.png'onerror='alert(1)", 'must not contain "\'"'),
    ("https://example.org/x.png`", "must not contain '`'"),
    ("javascript:alert(1)", "http:// or https://"),
    ("https://user:pw@example.org/", "user name or password"),
    ("https://example.org\\@evil.example/x.png", "must not contain '\\\\'"),
    ("https://example.org/a b.png", "must not contain U+0020"),
    ("https://example.org/a\tb.png", "must not contain U+0009"),
    ("https://example.org/<x.png", "must not contain '<'"),
    ("https://example.org/x.png>", "must not contain '>'"),
]
BAD_LINK_IDS = ["quote", "apostrophe", "backtick", "javascript", "credentials", "backslash",
                "space", "tab", "lt", "gt"]  # fmt: skip

#: Text that holds "<" but starts no markup, as members write it.
NOT_MARKUP = ["I <3 these ruins", "5 < 6, and 7 <= 8", "a<", "<<", "<é", "<@123> <#456>"]


def _submission(field: str, value: str) -> dict[str, object]:
    """The submit service's arguments for the valid ruins discovery with ``field`` set."""
    if field == "structure_type":
        return {**DISCOVERY_FIELDS, "type_fields": {"structure_type": value}}
    return {**DISCOVERY_FIELDS, field: value}


def _payload(field: str, value: str) -> dict[str, object]:
    """The JSON object of the valid ruins discovery, its type fields at the top, ``field`` set."""
    base = {k: v for k, v in DISCOVERY_FIELDS.items() if k != "type_fields"}
    return {**base, **DISCOVERY_FIELDS["type_fields"], field: value}


def _assert_nothing_stored() -> None:
    assert Discovery.objects.count() == 0
    assert SyncQueueItem.objects.count() == 0


def _markup_free(values: dict[str, object]) -> None:
    """Every text value of ``values`` starts no markup."""
    for column, value in values.items():
        if isinstance(value, str):
            assert not STARTS_MARKUP.search(value), (column, value)


# --- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "snippet"),
    [
        (SCRIPT, "</script"),
        (IMG, "<img"),
        ("x <!-- y", "<!--"),
        ("<?php", "<?php"),
        ("a <Z", "<Z"),
        ("</", "</"),
    ],
)
def test_markup_is_found_and_neutralised(text, snippet):
    """Each "<" followed by an ASCII letter, "/", "!" or "?" is markup, reported by the snippet
    that starts it; neutralised, it becomes "‹" and starts none, the rest kept."""
    assert text_markup(text) == snippet
    neutral = text_markup_neutralise(text)
    assert text_markup(neutral) is None and not STARTS_MARKUP.search(neutral)
    assert neutral.replace("\u2039", "<") == text


@pytest.mark.parametrize("text", NOT_MARKUP)
def test_a_less_than_that_starts_no_markup_is_text(text):
    """ "<3", "5 < 6", "<é" (not ASCII), "<@123>" are no markup, and neutralising keeps them."""
    assert text_markup(text) is None
    assert text_markup_neutralise(text) == text


# --- the submit service and the JSON payload ---------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value"), MARKUP_TEXT, ids=[f for f, _ in MARKUP_TEXT])
def test_the_submit_service_refuses_markup_in_any_text_field(field, value):
    """Markup in any free-text field is refused, naming the field, the snippet and why;
    nothing is stored."""
    with pytest.raises(DiscoveryInvalid) as refused:
        discovery_submit(**_submission(field, value))
    (message,) = refused.value.errors[field]
    assert message == (
        f"{MARKUP_REFUSED} ({text_markup(value)!r}): the Control Room's map shows this text as HTML"
    )
    assert set(refused.value.errors) == {field}
    _assert_nothing_stored()


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value"), MARKUP_TEXT, ids=[f for f, _ in MARKUP_TEXT])
def test_the_payload_path_refuses_markup_in_any_text_field(field, value):
    """A JSON payload with markup in any free-text field is refused the same way."""
    with pytest.raises(DiscoveryInvalid) as refused:
        discovery_submit_payload(_payload(field, value))
    assert set(refused.value.errors) == {field}
    assert MARKUP_REFUSED in refused.value.errors[field][0]
    _assert_nothing_stored()


@pytest.mark.django_db
@pytest.mark.parametrize(("url", "reason"), BAD_LINKS, ids=BAD_LINK_IDS)
def test_unsafe_evidence_links_are_refused_by_both_services(url, reason):
    """A link that could leave the map's image tag (a quote, a backtick, an angle bracket, a
    backslash, whitespace), run script, or hide its host behind credentials is refused by the
    submit service and the payload path, with the reason; nothing is stored."""
    for submit in (
        lambda: discovery_submit(**_submission("evidence_url", url)),
        lambda: discovery_submit_payload(_payload("evidence_url", url)),
    ):
        with pytest.raises(DiscoveryInvalid) as refused:
            submit()
        assert set(refused.value.errors) == {"evidence_url"}
        assert reason in refused.value.errors["evidence_url"][0]
    _assert_nothing_stored()


@pytest.mark.django_db
@pytest.mark.parametrize("text", NOT_MARKUP[:2])
def test_less_than_signs_that_start_no_markup_still_submit(text):
    """ "I <3 these ruins" and "5 < 6" are stored as typed, as a description and as a type
    field, through the service and the payload path."""
    one = discovery_submit(
        **{**DISCOVERY_FIELDS, "description": text, "type_fields": {"structure_type": text}}
    )
    two = discovery_submit_payload({**_payload("description", text), "structure_type": text})
    for discovery in (one, two):
        stored = Discovery.objects.get(pk=discovery.pk)
        assert stored.description == text
        assert stored.metadata == {"structure_type": text}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("HTTPS://example.org/a.png", "https://example.org/a.png"),
        ("https://example.org/a.png?", "https://example.org/a.png"),
        ("https://example.org/a.png?s=1&t=2#top", "https://example.org/a.png?s=1&t=2#top"),
    ],
)
def test_evidence_links_are_stored_as_urllib_serialises_them(url, stored):
    """A link is stored as ``urllib.parse`` re-serialises it: what the parser read."""
    assert discovery_submit(**_submission("evidence_url", url)).evidence_url == stored


# --- manage.py submit_discovery ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_command_refuses_every_markup_entry_and_stores_none(tmp_path):
    """A file of only markup and unsafe links: each entry is reported by number and field,
    the command exits 1, and nothing is stored."""
    entries = [_payload(field, value) for field, value in MARKUP_TEXT]
    entries += [_payload("evidence_url", url) for url, _ in BAD_LINKS]
    path = tmp_path / "markup.json"
    path.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as caught:
        call_command("submit_discovery", file=str(path), stdout=out, stderr=err)
    assert caught.value.code == 1
    assert f"0 submitted, {len(entries)} refused" in out.getvalue()
    lines = err.getvalue().splitlines()
    fields = [field for field, _ in MARKUP_TEXT] + ["evidence_url"] * len(BAD_LINKS)
    assert len(lines) == len(entries)
    for number, (line, field) in enumerate(zip(lines, fields, strict=True), start=1):
        assert line.startswith(f"entry {number}: refused: {field}: "), line
    _assert_nothing_stored()


@pytest.mark.django_db
def test_the_command_stores_less_than_signs_that_start_no_markup(tmp_path):
    """Entries with "<3" and "5 < 6" are stored by the command as typed."""
    entries = [_payload("description", text) for text in NOT_MARKUP[:2]]
    path = tmp_path / "fine.json"
    path.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    out = io.StringIO()
    call_command("submit_discovery", file=str(path), stdout=out, stderr=io.StringIO())
    assert "2 submitted, 0 refused" in out.getvalue()
    assert sorted(Discovery.objects.values_list("description", flat=True)) == sorted(NOT_MARKUP[:2])


# --- the admin's change form ---------------------------------------------------------------------


@pytest.fixture
def no_haven(settings):
    """VH switched off: the change page's preview depends on no file."""
    settings.USE_HAVEN_DATABASE = False


def _admin_post(client: Client, discovery: Discovery, **changes: str):
    """POST the change form of ``discovery`` as shown, with ``changes``; returns the answer."""
    url = reverse("admin:discoveries_discovery_change", args=[discovery.pk])
    form = client.get(url).context["adminform"].form
    data = {
        name: "" if form[name].value() is None else str(form[name].value()) for name in form.fields
    }
    return client.post(url, {**data, **changes, "_continue": "1"})


ADMIN_EDITS = [
    ("description", SCRIPT),
    ("type__structure_type", IMG),
    ("location", "<svg onload=alert(1)>"),
    ("username", "<b>Tester</b>"),
    ("analysis_status", "<i>done"),
] + [("evidence_url", url) for url, _ in BAD_LINKS]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"), ADMIN_EDITS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(ADMIN_EDITS)]
)
def test_the_admin_refuses_markup_and_unsafe_links(root, no_haven, field, value):
    """An operator's edit putting markup in a text field or an unsafe evidence link is shown
    back with the error at that input; the discovery is left as it was."""
    discovery = discovery_make()
    before = Discovery.objects.filter(pk=discovery.pk).values().get()
    client = Client()
    client.force_login(root)
    response = _admin_post(client, discovery, **{field: value})
    assert response.status_code == 200, "the form is shown again with its errors"
    errors = response.context["adminform"].form.errors
    assert field in errors, errors
    if field != "evidence_url":
        assert MARKUP_REFUSED in errors[field][0]
    assert Discovery.objects.filter(pk=discovery.pk).values().get() == before


@pytest.mark.django_db
def test_the_admin_saves_less_than_signs_that_start_no_markup(root, no_haven):
    """ "I <3 these ruins" saved in the admin is stored as typed."""
    discovery = discovery_make()
    client = Client()
    client.force_login(root)
    response = _admin_post(client, discovery, description=NOT_MARKUP[0])
    assert response.status_code == 302
    assert Discovery.objects.get(pk=discovery.pk).description == NOT_MARKUP[0]


# --- the bot's forms ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bot(tmp_path_factory) -> Iterator[BotRun]:
    """One fake Discord and one bot (``manage.py runbot``) for this module's form tests."""
    with FakeDiscord() as fake:
        run = bot_start(fake, tmp_path_factory.mktemp("markup-bot"))
        yield run
        run.stop()


def _stored_count(bot: BotRun) -> int:
    return bot.keeper_rows("SELECT COUNT(*) FROM discoveries")[0][0]


def _placed_form(bot: BotRun) -> Form:
    form = Form(bot.fake)
    form.choose_type(RUINS)
    form.choose_system("Demo Alpha")
    form.choose_place("🪐 Alpha Prime")
    return form


def test_the_bot_refuses_markup_in_the_types_form(bot):
    """The type's form with a script in the description and an image tag in a type field gets
    an ephemeral refusal naming both fields; nothing is stored."""
    before = _stored_count(bot)
    form = _placed_form(bot)
    values = {**values_for(RUINS, SCRIPT), "structure_type": IMG}
    refused = form.describe(values)
    reply = bot.fake.wait_response(refused)
    assert reply.json["type"] == 4 and reply.json["data"]["flags"] & 64
    content = reply.json["data"]["content"]
    assert f"**Description**: {MARKUP_REFUSED} ('</script')" in content
    assert f"**Structure type**: {MARKUP_REFUSED} ('<img')" in content
    assert _stored_count(bot) == before


def test_the_bot_refuses_markup_in_a_typed_system_name(bot):
    """A system name typed with markup is refused in the place form itself."""
    form = Form(bot.fake)
    form.choose_type(RUINS)
    opener = form.button("report:system:text")
    modal = bot.fake.modal_of(opener)
    sent = bot.fake.submit_modal(
        modal["custom_id"], {"system_name": "<b>Demo</b>", "location": "x"}
    )
    reply = bot.fake.wait_response(sent)
    assert reply.json["type"] == 4
    assert f"**Star system**: {MARKUP_REFUSED} ('<b')" in reply.json["data"]["content"]


def test_the_bot_refuses_every_unsafe_evidence_link(bot):
    """Each unsafe link sent through the evidence form is refused (ephemeral, naming the
    link and why); nothing is stored, and the form stays for the next try."""
    before = _stored_count(bot)
    form = _placed_form(bot)
    form.describe(values_for(RUINS, "A tower with a link"))
    for url, reason in BAD_LINKS:
        opener = form.button("report:evidence")
        modal = bot.fake.modal_of(opener)
        sent = bot.fake.submit_modal(modal["custom_id"], {"evidence_url": url})
        told = bot.fake.wait_response(sent, kind="followup", timeout=10)
        assert told.json["flags"] & 64
        assert told.json["content"].startswith("Nothing was stored"), url
        assert "**Evidence link**: " in told.json["content"], url
        assert reason in told.json["content"], (url, told.json["content"])
    assert _stored_count(bot) == before


def test_the_bot_stores_less_than_signs_that_start_no_markup(bot):
    """A description "I <3 these ruins, 5 < 6" is archived by the bot as typed."""
    form = _placed_form(bot)
    text = "I <3 these ruins, 5 < 6"
    form.describe(values_for(RUINS, text))
    number, _ = form.confirmation(form.submit())
    assert bot.keeper_rows("SELECT description FROM discoveries WHERE id = ?", number) == [(text,)]


# --- rows stored before the rule, written to VH ------------------------------------------------


def _legacy(**overrides) -> SimpleNamespace:
    """A keeper row as the mapping sees it, with markup in every text column and a type field."""
    values = {
        "discovery_type": RUINS.emoji,
        "metadata": {"structure_type": IMG, "architectural_style": "I <3 arches"},
        "evidence_url": 'https://example.org/x.png"onerror="alert(1)',
        "location": "<svg onload=alert(1)>",
        "system_name": "Demo Alpha",
        "location_type": "planet",
        "description": SCRIPT,
        "coordinates": "<b>0A2B</b>",
        "condition": "</textarea>",
        "time_period": "<!-- old -->",
        "significance": "<?x?>",
        "username": "<marquee>Tester",
        "user_id": "123",
        "guild_id": "<i>7",
        "submission_timestamp": "2024-01-01 00:00:00<br>",
        "pattern_matches": 0,
        "mystery_tier": 0,
        "analysis_status": "<u>pending",
        "tags": '["<script>"]',
    }
    return SimpleNamespace(**{**values, **overrides})


RESOLVED = ResolvedLocation("SYS_DEMO", 11, None, "planet", None)


def test_a_legacy_row_is_neutralised_in_every_text_column_and_its_marker_says_which():
    """A keeper row written before the rule, with markup everywhere and an unsafe link, maps to
    a VH row whose text starts no markup ("<" become "‹"), without the link, whose marker
    lists the neutralised keeper fields; "<3" is kept and not listed."""
    row = discovery_to_haven_row(_legacy(), location=RESOLVED, keeper_discovery_id=9)
    _markup_free(row)
    assert row["description"] == "\u2039/script>\u2039script>alert(1)\u2039/script>"
    assert row["structure_type"] == "\u2039img src=x onerror=alert(1)>"
    assert row["architectural_style"] == "I <3 arches"
    assert row["photo_url"] is None and row["evidence_urls"] is None
    assert (row["system_id"], row["planet_id"], row["discord_user_id"]) == ("SYS_DEMO", 11, "123")
    expected = (
        "location",
        "description",
        "coordinates",
        "condition",
        "time_period",
        "significance",
        "evidence_url",
        "username",
        "guild_id",
        "submission_timestamp",
        "analysis_status",
        "tags",
        "structure_type",
    )
    marker = json.loads(row["metadata"])
    assert marker["neutralised"] == list(expected)
    assert haven_row_neutralised(row) == expected
    assert "</script" not in json.dumps(row, ensure_ascii=False)


def test_a_clean_row_has_no_neutralised_marker_and_keeps_its_link():
    """A row without markup is written as it is: no "neutralised" key, the link kept."""
    clean = _legacy(
        metadata={"structure_type": "Tower"},
        evidence_url="https://example.org/tower.png",
        location="Alpha Prime",
        description="5 < 6 towers",
        coordinates="0A2B",
        condition="Crumbling",
        time_period="Old",
        significance="Big",
        username="Tester",
        guild_id="7",
        submission_timestamp="2024-01-01 00:00:00",
        analysis_status="pending",
        tags="[]",
    )
    row = discovery_to_haven_row(clean, location=RESOLVED, keeper_discovery_id=9)
    assert "neutralised" not in json.loads(row["metadata"])
    assert haven_row_neutralised(row) == ()
    assert row["description"] == "5 < 6 towers"
    assert row["photo_url"] == "https://example.org/tower.png"


@pytest.mark.parametrize(("url", "reason"), BAD_LINKS, ids=BAD_LINK_IDS)
def test_a_legacy_link_the_rule_refuses_is_not_written(url, reason):
    """Any stored link the evidence rule refuses is left out of VH (photo_url and
    evidence_urls NULL) and named in the marker."""
    assert evidence_url_problem(url)
    row = discovery_to_haven_row(
        _legacy(evidence_url=url, description="fine"), location=RESOLVED, keeper_discovery_id=9
    )
    assert row["photo_url"] is None and row["evidence_urls"] is None
    assert "evidence_url" in haven_row_neutralised(row)


def test_markup_in_a_system_name_quoted_by_the_unresolved_marker_is_neutralised():
    """An unresolved row's marker quotes the system's name: markup there is neutralised too,
    and ``system_name`` is named."""
    name = "<b>Nowhere</b>"
    location = ResolvedLocation(None, None, None, "planet", f"system {name!r} not found in VH")
    row = discovery_to_haven_row(
        _legacy(system_name=name), location=location, keeper_discovery_id=9
    )
    _markup_free(row)
    assert "system_name" in haven_row_neutralised(row)
    assert "Nowhere" in json.loads(row["metadata"])["location_unresolved"]


@pytest.mark.parametrize(
    "metadata",
    [None, "", "not json", "[1]", '{"neutralised": "description"}', {"neutralised": [1, "tags"]}],
    ids=repr,
)
def test_neutralised_fields_of_rows_we_did_not_mark_are_none_or_the_text_ones(metadata):
    """A VH row without a readable "neutralised" list (another program's, or ours without
    markup) names no field; non-text entries are skipped."""
    expected = ("tags",) if isinstance(metadata, dict) else ()
    assert haven_row_neutralised({"metadata": metadata}) == expected


@WITH_HAVEN
def test_a_stored_row_with_markup_reaches_vh_neutralised(haven_db):
    """A discovery already in keeper.db holding markup (stored before the rule) is synced into
    VH with no text that starts markup, without its unsafe link, and its VH marker names the
    neutralised fields; the keeper row itself is left as it was."""
    discovery = discovery_make()
    legacy = {
        "description": SCRIPT,
        "condition": "<b>Crumbling</b>",
        "username": "<marquee>Tester",
        "evidence_url": 'https://example.org/x.png"onerror="alert(1)',
        "metadata": {"structure_type": IMG},
    }
    Discovery.objects.filter(pk=discovery.pk).update(**legacy)
    assert sync_batch().synced == 1
    item = SyncQueueItem.objects.get(discovery=discovery)
    assert item.sync_status == SyncStatus.SYNCED
    with sqlite3.connect(haven_db) as vh:
        vh.row_factory = sqlite3.Row
        row = dict(
            vh.execute(
                "SELECT * FROM discoveries WHERE id = ?", [item.haven_discovery_id]
            ).fetchone()
        )
    _markup_free(row)
    assert "</script" not in json.dumps(row, ensure_ascii=False)
    assert row["description"] == text_markup_neutralise(SCRIPT)
    assert row["photo_url"] is None and row["evidence_urls"] is None
    assert row["discovered_by"] == "\u2039marquee>Tester"
    assert haven_row_neutralised(row) == (
        "description",
        "condition",
        "evidence_url",
        "username",
        "structure_type",
    )
    stored = Discovery.objects.filter(pk=discovery.pk).values(*legacy).get()
    assert stored == legacy
