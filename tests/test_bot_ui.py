"""The bot's forms and messages against every Discord limit, built with discord.py's own
``to_dict()``/``to_components()``: selects, buttons, modals, embeds and replies."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from botrunner import limits
from botrunner.cogs.discovery_report.draft import ReportDraft, invalid_text
from botrunner.cogs.discovery_report.embed import discovery_embed
from botrunner.cogs.discovery_report.modals import EvidenceModal, LocationModal, TypeModal
from botrunner.cogs.discovery_report.view import ReportView, Step
from botrunner.cogs.sync_admin import summary_text
from discoveries.haven.catalog import HavenPlace, HavenSystem
from discoveries.models import Discovery
from discoveries.rules import DiscoveryInvalid, discovery_validate
from discoveries.types import DISCOVERY_TYPES

ORIGIN = SimpleNamespace(id=1_180_000_000_000_000_001)


async def _noop(discovery):
    return None


def build(factory):
    """Run ``factory()`` inside an event loop (discord.py's views need one) and return it."""

    async def inside():
        return factory()

    return asyncio.run(inside())


def view_at(step: Step, *, systems=None, places=None, page=0, dtype=DISCOVERY_TYPES[2]):
    def make():
        view = ReportView(
            draft=ReportDraft(user_id=42, username="Explorer", guild_id=7, discovery_type=dtype),
            origin=ORIGIN,
            timeout=600,
            on_stored=_noop,
        )
        view.systems, view.places, view.page, view.step = systems, places, page, step
        view.draft.system_name = "Demo Alpha"
        content = view.render()
        return view, content

    return build(make)


def leaves(rows: list[dict]) -> list[dict]:
    return [c for row in rows for c in row.get("components", [row])]


def assert_component_limits(rows: list[dict]) -> None:
    """Every Discord limit on a message's components."""
    assert len(rows) <= limits.ACTION_ROWS_MAX
    for component in leaves(rows):
        assert len(component["custom_id"]) <= limits.CUSTOM_ID_MAX
        if component["type"] == 2:
            assert limits.text_length(component["label"]) <= limits.BUTTON_LABEL_MAX
        if component["type"] == 3:
            options = component["options"]
            assert 1 <= len(options) <= limits.SELECT_OPTIONS_MAX
            assert limits.text_length(component["placeholder"]) <= limits.SELECT_PLACEHOLDER_MAX
            for option in options:
                assert 1 <= limits.text_length(option["label"]) <= limits.SELECT_OPTION_LABEL_MAX
                assert limits.text_length(option["value"]) <= limits.SELECT_OPTION_VALUE_MAX
            assert len({o["value"] for o in options}) == len(options)


def selects(rows):
    return [c for c in leaves(rows) if c["type"] == 3]


def buttons(rows):
    return {c["label"]: c for c in leaves(rows) if c["type"] == 2}


def test_type_select_offers_the_ten_types_by_emoji_and_name():
    """Step 1 lists the 10 types of the reference as "emoji name", within every limit."""
    view, content = view_at(Step.TYPE)
    rows = view.to_components()
    assert_component_limits(rows)
    (select,) = selects(rows)
    assert [o["label"] for o in select["options"]] == [
        f"{t.emoji} {t.name}" for t in DISCOVERY_TYPES
    ]
    assert "step 1 of 5" in content


def test_thirty_systems_come_in_pages_of_twenty_five_with_working_pager():
    """30 systems: page 1 holds 25 with Next enabled; page 2 the last 5 with Previous enabled."""
    systems = [HavenSystem(id=f"SYS_{i}", name=f"System {i:02d}") for i in range(30)]
    view, content = view_at(Step.SYSTEM, systems=systems)
    rows = view.to_components()
    assert_component_limits(rows)
    (select,) = selects(rows)
    assert [o["label"] for o in select["options"]] == [f"System {i:02d}" for i in range(25)]
    assert "1–25 of 30" in select["placeholder"] and "page 1 of 2" in content
    pager = buttons(rows)
    assert pager["◀ Previous"].get("disabled") is True
    assert not pager["Next ▶"].get("disabled")
    view, content = view_at(Step.SYSTEM, systems=systems, page=1)
    (select,) = selects(view.to_components())
    assert [o["label"] for o in select["options"]] == [f"System {i:02d}" for i in range(25, 30)]
    assert [o["value"] for o in select["options"]] == [str(i) for i in range(25, 30)]
    assert buttons(view.to_components())["Next ▶"].get("disabled") is True


def test_long_system_and_place_names_are_cut_to_the_option_limit():
    """Names of 300 characters, astral emoji included, become labels of at most 100 UTF-16
    units that end in an ellipsis."""
    long_name = "🪐" * 30 + "x" * 270
    view, _ = view_at(Step.SYSTEM, systems=[HavenSystem(id="S" * 150, name=long_name)])
    rows = view.to_components()
    assert_component_limits(rows)
    label = selects(rows)[0]["options"][0]["label"]
    assert label.endswith(limits.ELLIPSIS) and limits.text_length(label) <= 100
    places = [HavenPlace("planet", "P" * 300)] + [
        HavenPlace("moon", f"Moon {i}", planet="Q" * 300) for i in range(40)
    ]
    view, _ = view_at(Step.PLACE, places=places + [HavenPlace("space", None)])
    rows = view.to_components()
    assert_component_limits(rows)
    assert len(selects(rows)[0]["options"]) == 25


def test_without_the_map_the_system_step_offers_free_text():
    """VH unreadable (systems None): no select, one button that opens the text form."""
    view, content = view_at(Step.SYSTEM, systems=None)
    rows = view.to_components()
    assert not selects(rows)
    assert "Enter the system and place" in buttons(rows)
    assert "cannot be read" in content


@pytest.mark.parametrize("dtype", DISCOVERY_TYPES, ids=[t.slug for t in DISCOVERY_TYPES])
def test_type_modal_holds_description_and_the_four_fields_within_limits(dtype):
    """Each type's modal: title ≤ 45, 5 text inputs with labels ≤ 45, the description required
    (≤ 1000) and the type's fields optional with their own limits (200; key excerpt 500)."""
    view, _ = view_at(Step.DESCRIBE, dtype=dtype)
    modal = build(lambda: TypeModal(view)).to_dict()
    assert limits.text_length(modal["title"]) <= limits.MODAL_TITLE_MAX
    assert modal["title"].startswith(dtype.emoji)
    inputs = leaves(modal["components"])
    assert len(inputs) == limits.MODAL_TEXT_INPUTS_MAX
    assert [i["custom_id"] for i in inputs] == ["description", *dtype.field_keys]
    for text_input in inputs:
        assert text_input["type"] == 4
        assert limits.text_length(text_input["label"]) <= limits.TEXT_INPUT_LABEL_MAX
        assert text_input["max_length"] <= limits.TEXT_INPUT_VALUE_MAX
    assert inputs[0]["required"] is True and inputs[0]["max_length"] == 1000
    assert [i["max_length"] for i in inputs[1:]] == [f.max_length for f in dtype.fields]
    assert all(i["required"] is False for i in inputs[1:])


def test_type_modal_is_prefilled_with_what_was_typed():
    """Reopening the form after a refusal shows the member's text again."""
    view, _ = view_at(Step.DESCRIBE)
    view.draft.description = "A tower"
    view.draft.type_fields = {"structure_type": "Spire"}
    inputs = leaves(build(lambda: TypeModal(view)).to_dict()["components"])
    assert inputs[0]["value"] == "A tower" and inputs[1]["value"] == "Spire"


def test_location_and_evidence_modals_within_limits():
    """The free-text place form and the evidence form respect the modal limits."""
    view, _ = view_at(Step.SYSTEM)
    for modal in (
        build(lambda: LocationModal(view, system_name="Demo Alpha")).to_dict(),
        build(lambda: EvidenceModal(view)).to_dict(),
    ):
        assert limits.text_length(modal["title"]) <= limits.MODAL_TITLE_MAX
        inputs = leaves(modal["components"])
        assert 1 <= len(inputs) <= limits.MODAL_TEXT_INPUTS_MAX
        for text_input in inputs:
            assert limits.text_length(text_input["label"]) <= limits.TEXT_INPUT_LABEL_MAX
            assert text_input["max_length"] <= limits.TEXT_INPUT_VALUE_MAX


def test_every_step_stays_within_the_message_limits():
    """Each step's text fits a message; its components fit the rows."""
    systems = [HavenSystem(id=str(i), name="N" * 120) for i in range(60)]
    places = [HavenPlace("planet", "P" * 200) for _ in range(60)]
    for step in Step:
        view, content = view_at(step, systems=systems, places=places)
        view.draft.description = "D" * 1000
        content = build(view.render)
        assert limits.text_length(content) <= limits.MESSAGE_CONTENT_MAX
        assert_component_limits(view.to_components())


def _stored(description: str, **extra) -> Discovery:
    dtype = DISCOVERY_TYPES[1]
    return Discovery(
        id=123,
        user_id="1",
        username="U" * 100,
        discovery_type=dtype.emoji,
        system_name="S" * 200,
        location="L" * 200,
        location_type="moon",
        planet_name="P" * 200,
        description=description,
        evidence_url="https://example.org/" + "e" * 1980,
        metadata={f.key: "v" * 1500 for f in dtype.fields},
        submission_timestamp=datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
        **extra,
    )


def test_a_4000_character_description_gives_an_embed_within_every_limit():
    """The archive embed of the longest texts: title ≤ 256, description ≤ 4096, field values
    ≤ 1024, ≤ 25 fields and ≤ 6000 in all, and it still shows the discovery's number."""
    embed = discovery_embed(_stored("@everyone " + "d" * 3990)).to_dict()
    assert limits.text_length(embed["title"]) <= limits.EMBED_TITLE_MAX
    assert limits.text_length(embed["description"]) <= limits.EMBED_DESCRIPTION_MAX
    assert len(embed["fields"]) <= limits.EMBED_FIELDS_MAX
    for f in embed["fields"]:
        assert limits.text_length(f["name"]) <= limits.EMBED_FIELD_NAME_MAX
        assert limits.text_length(f["value"]) <= limits.EMBED_FIELD_VALUE_MAX
    assert limits.embed_length(embed) <= limits.EMBED_TOTAL_MAX
    assert "#123" in embed["footer"]["text"]
    assert embed["description"].startswith("@everyone d")


def test_a_short_discovery_embed_is_shown_whole():
    """Nothing is cut when everything fits: the description and each type field read in full."""
    discovery = _stored("A broken tower.")
    discovery.metadata = {"key_excerpt": "Beware", "completeness": "Partial"}
    discovery.system_name, discovery.evidence_url = "Demo Alpha", "https://example.org/a.png"
    embed = discovery_embed(discovery).to_dict()
    assert embed["description"] == "A broken tower."
    shown = {f["name"]: f["value"] for f in embed["fields"]}
    assert shown["Key excerpt"] == "Beware" and shown["Completeness"] == "Partial"
    assert shown["Evidence"] == "https://example.org/a.png"
    assert "Demo Alpha" in embed["title"]


def test_cut_counts_as_discord_does():
    """UTF-16 units: an astral emoji counts 2, is never split, and the result fits exactly."""
    assert limits.cut("abc", 3) == "abc"
    assert limits.cut("abcd", 3) == "ab…"
    cut = limits.cut("🦴" * 10, 6)
    assert cut == "🦴🦴…" and limits.text_length(cut) == 5
    assert limits.text_length(limits.cut("🦴" * 100, 100)) <= 100


def test_refusal_names_fields_by_their_labels():
    """A refused report lists each field as the member saw it, in at most 2,000 characters."""
    text = invalid_text(
        DiscoveryInvalid(
            {
                "description": ["is 4000 characters long; the limit is 1000"],
                "key_excerpt": ["contains the control character U+0000"],
                "evidence_url": ["must be an http:// or https:// link" * 200],
            }
        )
    )
    assert text.startswith("Nothing was stored")
    assert "**Description**: is 4000 characters long" in text
    assert "**Key excerpt**" in text and "**Evidence link**" in text
    assert limits.text_length(text) <= limits.MESSAGE_CONTENT_MAX


def test_sync_status_text_shows_counts_oldest_and_last_error():
    """/sync-status: counts by state (failed = max_retries_exceeded), the oldest pending age
    and the newest error with its item."""
    text = summary_text(
        {
            "counts": {"pending": 3, "syncing": 1, "synced": 1200, "max_retries_exceeded": 2},
            "oldest_pending_age_seconds": 7500.0,
            "last_error": {
                "queue_id": 9,
                "discovery_id": 40,
                "error": "VH-Database.db is locked",
                "at": datetime.now(UTC) - timedelta(minutes=3),
            },
        }
    )
    assert "pending 3 · syncing 1 · synced 1,200 · failed 2 · waiting 0 · conflict 0" in text
    assert "Oldest pending: 2 h 5 min ago" in text
    assert "queue item 9, discovery 40): VH-Database.db is locked" in text
    assert "First waiting" not in text and "Conflicts" not in text
    quiet = summary_text(
        {
            "counts": {"pending": 0, "syncing": 0, "synced": 0, "max_retries_exceeded": 0},
            "oldest_pending_age_seconds": None,
            "last_error": None,
        }
    )
    assert "Oldest pending: none" in quiet and "Last error: none" in quiet
    long = summary_text(
        {
            "counts": {"waiting": 1},
            "oldest_pending_age_seconds": None,
            "last_error": None,
            "first_waiting": {
                "queue_id": 5,
                "discovery_id": 6,
                "reason": "system '" + "@everyone " * 400 + "' is not in the Control Room",
                "suggestions": ["Oculi"] * 100,
            },
        }
    )
    assert "First waiting (queue item 5, discovery 6): system '@everyone" in long
    assert limits.text_length(long) <= limits.MESSAGE_CONTENT_MAX


def test_prefill_fits_the_input_and_drops_refused_characters():
    """A refused text comes back in the form without control characters, bidirectional
    overrides or lone surrogates, and cut to the input's limit (Discord refuses a longer
    default)."""
    from botrunner.cogs.discovery_report.modals import prefill

    assert prefill("ab\x00c\u202e" + "x" * 2000, 1000) == "abc" + "x" * 997
    assert prefill("\ud800ok", 10) == "ok"
    assert prefill("\x00", 10) is None and prefill(None, 10) is None and prefill("", 5) is None


def test_embed_shows_member_markdown_literally_and_links_the_evidence():
    """Masked links and formatting in member text are escaped in the archive embed; the
    evidence link is the title's link."""
    discovery = _stored("[click](https://evil.example) **loud**")
    discovery.evidence_url = "https://example.org/a_b.png"
    embed = discovery_embed(discovery).to_dict()
    assert embed["description"] == "\\[click](https://evil.example) \\*\\*loud\\*\\*"
    assert embed["url"] == "https://example.org/a_b.png"


def test_thousands_of_systems_can_be_reached_by_jumping_pages():
    """5,000 systems: besides Previous/Next, a select jumps to any of 25 pages around the
    current one, each labelled by its first and last system; all within the limits."""
    systems = [HavenSystem(id=str(i), name=f"System {i:04d}") for i in range(5000)]
    view, content = view_at(Step.SYSTEM, systems=systems, page=100)
    rows = view.to_components()
    assert_component_limits(rows)
    jump = find_select(rows, "report:system:jump")
    values = [int(o["value"]) for o in jump["options"]]
    assert values == list(range(88, 113)) and "page 101 of 200" in content
    assert jump["options"][12]["label"] == "101: System 2500 – System 2524"
    view, _ = view_at(Step.SYSTEM, systems=systems, page=0)
    jump = find_select(view.to_components(), "report:system:jump")
    assert [int(o["value"]) for o in jump["options"]] == list(range(25))


def find_select(rows, custom_id):
    (found,) = [c for c in selects(rows) if c["custom_id"] == custom_id]
    return found


@pytest.mark.parametrize(
    ("display_name", "account_name", "stored"),
    [
        ("Explorer", "explorer", "Explorer"),
        ("\u3164", "traveller", "traveller"),  # Hangul filler
        ("\u2800", "traveller", "traveller"),  # blank braille pattern
        ("\u200b\u200b", "traveller", "traveller"),  # zero-width spaces
        ("\u3164Zed\u2800 \u200b", "zed", "Zed"),
        ("\u202eZed", "zed", "Zed"),  # right-to-left override
        ("\u2067\u0645\u0631\u062d\u0628\u0627\u2069", "marhaba", "\u0645\u0631\u062d\u0628\u0627"),
        ("\u202e", "\u200b", "member 42"),
        ("<Zed>", "zed", "\u2039Zed>"),
        ("\U0001f468\u200d\U0001f469\u200d\U0001f467 \u2764\ufe0f", "kin", None),
        ("Zed \u2764\ufe0f\u200b\u3164", "zed", "Zed \u2764\ufe0f"),
        ("\u3164" + "Z" * 150, "zed", "Z" * 99 + "\u2026"),
    ],
    ids=repr,
)
def test_a_members_discord_name_is_made_one_the_rules_accept(display_name, account_name, stored):
    """The member's Discord name, which they cannot change in the form, is stored as a name
    the rules accept: bidirectional controls dropped, what shows nothing trimmed from its ends,
    markup made harmless, cut to 100; a name with nothing visible left gives way to the
    account's name, then to "member <id>". An emoji's joiners and variation selectors stay."""
    draft = ReportDraft(
        user_id=42,
        username=display_name,
        account_name=account_name,
        guild_id=7,
        discovery_type=DISCOVERY_TYPES[0],
        system_name="Demo Alpha",
        location_type="space",
        description="A find",
    )
    values = discovery_validate(**draft.submit_kwargs())
    assert values["username"] == (display_name if stored is None else stored)
