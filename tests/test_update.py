"""Editing a stored discovery through discoveries.services.discovery_update: the submission's
own rules and messages, for the fields the edit changes, and nothing written when refused."""

from __future__ import annotations

import pytest

from discoveries.models import Discovery
from discoveries.rules import DiscoveryInvalid, discovery_validate
from syncq.services import discovery_update
from tests.factories import DISCOVERY_FIELDS, discovery_make

pytestmark = pytest.mark.django_db

#: The submission of the discovery the tests edit (``discovery_make()``).
SUBMISSION = DISCOVERY_FIELDS


def _submit_refusal(**changes) -> dict[str, list[str]]:
    """What the submit path says of a submission with ``changes``."""
    with pytest.raises(DiscoveryInvalid) as refused:
        discovery_validate(**{**SUBMISSION, **changes})
    return refused.value.errors


def _stored(discovery: Discovery) -> dict[str, object]:
    return Discovery.objects.filter(pk=discovery.pk).values().get()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"evidence_url": "javascript:alert(document.cookie)"}, "evidence_url"),
        ({"evidence_url": "http://192.168.1.10/x.png"}, "evidence_url"),
        ({"guild_id": "<b>x</b>"}, "guild_id"),
        ({"location": "\u200b"}, "location"),
        ({"system_name": "x" * 201}, "system_name"),
        ({"description": "tab\x00null"}, "description"),
        ({"username": "\u202eevil"}, "username"),
        ({"location_type": "orbit"}, "location_type"),
        ({"discovery_type": "🛸"}, "discovery_type"),
    ],
)
def test_an_edit_is_refused_with_the_submit_paths_own_message(changes, field):
    """Each value the submit path refuses is refused in an edit with the same message, and
    the stored discovery is left as it was."""
    discovery = discovery_make()
    before = _stored(discovery)
    with pytest.raises(DiscoveryInvalid) as refused:
        discovery_update(discovery_id=discovery.pk, changes=changes)
    assert refused.value.errors[field] == _submit_refusal(**changes)[field]
    assert _stored(discovery) == before


def test_a_type_field_over_its_limit_put_in_metadata_with_a_new_type_is_refused():
    """Changing the type and putting an over-long field of the new type in metadata (a
    10,000-character key excerpt, whose limit is 500) is refused as the submit path refuses it."""
    discovery = discovery_make()
    before = _stored(discovery)
    changes = {"discovery_type": "📜", "metadata": {"key_excerpt": "x" * 10_000}}
    with pytest.raises(DiscoveryInvalid) as refused:
        discovery_update(discovery_id=discovery.pk, changes=changes)
    submit = _submit_refusal(discovery_type="📜", type_fields={"key_excerpt": "x" * 10_000})
    assert refused.value.errors["key_excerpt"] == submit["key_excerpt"]
    assert submit["key_excerpt"] == ["is 10000 characters long; the limit is 500"]
    assert _stored(discovery) == before


def test_changing_the_type_keeps_no_field_of_the_old_type():
    """A new type with the old type's fields still in metadata is refused, naming the field;
    with the new type's fields instead, the edit is stored."""
    discovery = discovery_make(type_fields={"structure_type": "Tower"})
    with pytest.raises(DiscoveryInvalid) as refused:
        discovery_update(discovery_id=discovery.pk, changes={"discovery_type": "🦴"})
    assert refused.value.errors == {
        "structure_type": ["is not a field of 🦴 Ancient bones & fossils"]
    }
    saved = discovery_update(
        discovery_id=discovery.pk,
        changes={"discovery_type": "bones", "metadata": {"species_type": " Raptor "}},
    )
    assert (saved.discovery_type, saved.metadata) == ("🦴", {"species_type": "Raptor"})
    assert _stored(discovery)["metadata"] == {"species_type": "Raptor"}


def test_an_edit_stores_clean_values_of_the_changed_fields_only():
    """Changed text is stored stripped, an empty place in space becomes "Space", and the
    fields the edit leaves alone are neither checked nor written (a legacy value stays)."""
    discovery = discovery_make()
    Discovery.objects.filter(pk=discovery.pk).update(coordinates="\x07legacy")
    saved = discovery_update(
        discovery_id=discovery.pk,
        changes={
            "description": "  Taller than it looked.  ",
            "location_type": "Space",
            "location": "",
        },
    )
    stored = _stored(discovery)
    assert (stored["description"], stored["location_type"], stored["location"]) == (
        "Taller than it looked.",
        "space",
        "Space",
    )
    assert stored["coordinates"] == "\x07legacy"
    assert saved.description == "Taller than it looked."


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"user_id": "1"}, "user_id", "is not a field an edit may change"),
        ({"submission_key": "x"}, "submission_key", "is not a field an edit may change"),
        ({"pattern_matches": -1}, "pattern_matches", "must be a whole number from 0 to"),
        ({"mystery_tier": True}, "mystery_tier", "must be a whole number from 0 to"),
        ({"analysis_status": "x" * 33}, "analysis_status", "the limit is 32"),
        ({"metadata": ["legacy"]}, "metadata", "must be a JSON object"),
    ],
)
def test_fields_an_edit_may_not_set_or_may_not_hold_are_named(changes, field, message):
    """The submitter's id and our own columns cannot be edited; the operators' own fields
    (analysis status, counts) and metadata have rules too."""
    discovery = discovery_make()
    before = _stored(discovery)
    with pytest.raises(DiscoveryInvalid) as refused:
        discovery_update(discovery_id=discovery.pk, changes=changes)
    assert message in " ".join(refused.value.errors[field])
    assert _stored(discovery) == before


def test_metadata_keys_that_are_no_type_field_are_refused_not_dropped():
    """Metadata may hold only the type's fields, as in a submission: an edit putting another
    key there, or editing the type's fields of a row whose metadata holds one, is refused
    naming the key, and nothing is lost."""
    discovery = discovery_make()
    with pytest.raises(DiscoveryInvalid) as refused:
        discovery_update(discovery_id=discovery.pk, changes={"metadata": {"foo": 1}})
    assert refused.value.errors == {"foo": ["is not a field of any discovery type"]}
    Discovery.objects.filter(pk=discovery.pk).update(
        metadata={"structure_type": "Tower", "note": "keep me"}
    )
    for changes in (
        {"metadata": {"structure_type": "Spire", "note": "keep me"}},
        {"discovery_type": "🏛️"},
    ):
        with pytest.raises(DiscoveryInvalid) as refused:
            discovery_update(discovery_id=discovery.pk, changes=changes)
        assert refused.value.errors == {"note": ["is not a field of any discovery type"]}
    assert _stored(discovery)["metadata"] == {"structure_type": "Tower", "note": "keep me"}
    saved = discovery_update(discovery_id=discovery.pk, changes={"description": "Still here."})
    assert saved.metadata == {"structure_type": "Tower", "note": "keep me"}
