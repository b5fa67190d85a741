"""The one submit path: validate a discovery, store it with its queue item, kick the sync.

The bot, ``manage.py submit_discovery`` and any later caller go through
:func:`discovery_submit` (keyword arguments) or :func:`discovery_submit_payload` (a JSON
object). Limits come from REFERENCE.md: description required and at most 1000 characters, each
type field at most 200 (the 📜 key excerpt 500), the evidence link http(s).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction
from django.utils import timezone

from discoveries.models import Discovery, LocationType
from discoveries.types import (
    ALL_TYPE_FIELD_KEYS,
    DESCRIPTION_MAX_LENGTH,
    DiscoveryType,
    discovery_type_lookup,
)

SNOWFLAKE = re.compile(r"^[0-9]{1,20}$")
#: C0 controls but tab, newline and carriage return; DEL and the C1 controls.
CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: Bidirectional embeddings, overrides and isolates: they reorder how the text around them is
#: shown, which is how look-alike links and names are made.
BIDI_CONTROL = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
#: Every character :func:`text_unsafe` refuses.
UNSAFE_CHARACTERS = re.compile(
    "|".join(pattern.pattern for pattern in (CONTROL_CHARACTER, _SURROGATE, BIDI_CONTROL))
)
#: Spaces and the characters that show nothing (zero-width space and joiners, word joiner,
#: byte order mark, soft hyphen, direction marks): text of only these says nothing.
_INVISIBLE = re.compile(r"[\s\u00ad\u180e\u200b-\u200f\u2060-\u2064\ufeff]+")
EVIDENCE_URL_MAX_LENGTH = 2000

#: Free-text keeper columns a submission may carry, with their length limits in characters.
OPTIONAL_TEXT_LIMITS: dict[str, int] = {
    "time_period": 200,
    "condition": 200,
    "significance": 1000,
    "coordinates": 200,
    "planet_name": 200,
    "galaxy_name": 100,
    "tags": 1000,
    "related_discoveries": 1000,
}

#: Every key :func:`discovery_submit_payload` accepts besides the type fields.
PAYLOAD_KEYS: frozenset[str] = frozenset(
    {
        "user_id",
        "username",
        "guild_id",
        "discovery_type",
        "location",
        "location_type",
        "system_name",
        "description",
        "evidence_url",
        "metadata",
        *OPTIONAL_TEXT_LIMITS,
    }
)

_evidence_validator = URLValidator(schemes=["http", "https"])


class DiscoveryInvalid(Exception):
    """A submission was refused; nothing was written.

    ``errors`` maps each bad field name to its messages (``{"description": ["is required"]}``);
    ``str()`` lists them all in one line.
    """

    def __init__(self, errors: Mapping[str, list[str]]):
        self.errors = {k: list(v) for k, v in errors.items()}
        super().__init__(
            "; ".join(f"{field}: {', '.join(msgs)}" for field, msgs in self.errors.items())
        )


class _Errors(dict):
    def add(self, field: str, message: str) -> None:
        self.setdefault(field, []).append(message)


def _blank(value: object) -> bool:
    """Whether ``value`` leaves a field unset: ``None``, or text of nothing but spaces and
    characters that show nothing (zero-width spaces, joiners, marks); control characters are
    not spaces here, so they are always reported."""
    return value is None or (
        isinstance(value, str)
        and not _INVISIBLE.sub("", value)
        and not CONTROL_CHARACTER.search(value)
    )


def text_blank(value: str | None) -> bool:
    """Whether ``value`` says nothing: None, or only spaces and characters that show nothing
    (zero-width spaces, joiners, marks). A required field holding such text is missing."""
    return _blank(value)


def text_unsafe(value: str) -> str | None:
    """Why ``value`` cannot be stored as text (a control character, a lone surrogate, a
    bidirectional override), or ``None`` when it can."""
    if found := CONTROL_CHARACTER.search(value):
        return (
            f"contains the control character U+{ord(found.group()):04X} "
            "(only tab, newline and carriage return are allowed)"
        )
    if _SURROGATE.search(value):
        return "contains an unpaired UTF-16 surrogate"
    if found := BIDI_CONTROL.search(value):
        return (
            f"contains the bidirectional control U+{ord(found.group()):04X}, which changes how "
            "the text around it reads"
        )
    return None


#: Names that only resolve inside a local network (mDNS, RFC 8375, common home and corporate
#: conventions): no reader of the archive can open them.
LOCAL_NETWORK_SUFFIXES = (".local", ".lan", ".internal", ".home.arpa", ".intranet", ".corp")


def evidence_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an evidence link, or ``None``: it must be an http(s) URL
    (Django's ``URLValidator``) to a public host, without a user name or password (which can
    make a link look like another site's) and not a local or private address (which no
    reader of the archive can open)."""
    try:
        _evidence_validator(url)
    except ValidationError:
        return "must be an http:// or https:// link"
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return "must not hold a user name or password"
    host = (parts.hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return "must be a public address, not this computer's"
    if host.endswith(LOCAL_NETWORK_SUFFIXES):
        return "must be a public address, not one of a local network"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not address.is_global:
        return "must be a public address, not a local or private one"
    return None


def _text(
    errors: _Errors, field: str, value: object, *, max_length: int, required: bool = False
) -> str | None:
    """Check one text value; returns it stripped, or ``None`` when blank and optional."""
    if _blank(value):
        if required:
            errors.add(field, "is required")
        return None
    if not isinstance(value, str):
        errors.add(field, f"must be text, not {type(value).__name__}")
        return None
    if problem := text_unsafe(value):
        errors.add(field, problem)
        return None
    value = value.strip()
    if len(value) > max_length:
        errors.add(field, f"is {len(value)} characters long; the limit is {max_length}")
    return value


def _snowflake(errors: _Errors, field: str, value: object, *, required: bool) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _text(errors, field, value, max_length=20, required=required)
    if text is not None and not SNOWFLAKE.match(text):
        errors.add(field, "must be a Discord id (digits only)")
    return text


def _type_values(
    errors: _Errors, dtype: DiscoveryType | None, type_fields: Mapping[str, object]
) -> dict[str, str]:
    values: dict[str, str] = {}
    by_key = {f.key: f for f in dtype.fields} if dtype else {}
    for key, raw in type_fields.items():
        if not isinstance(key, str) or key not in ALL_TYPE_FIELD_KEYS:
            errors.add(str(key), "is not a field of any discovery type")
            continue
        if dtype is None:
            continue  # the type itself is already reported
        if key not in by_key:
            if not _blank(raw):
                errors.add(key, f"is not a field of {dtype}")
            continue
        text = _text(errors, key, raw, max_length=by_key[key].max_length)
        if text is not None:
            values[key] = text
    return values


def discovery_validate(
    *,
    user_id: object,
    username: object,
    discovery_type: object,
    description: object,
    location: object = None,
    system_name: object = None,
    location_type: object = None,
    guild_id: object = None,
    evidence_url: object = None,
    type_fields: Mapping[str, object] | None = None,
    **optional_text: object,
) -> dict[str, object]:
    """Check a submission and return the keeper column values to store.

    ``discovery_type`` is an emoji or a name (see :func:`discoveries.types.discovery_type_lookup`);
    ``location_type`` is ``planet``, ``moon``, ``space`` in any case (stored lower case) or
    empty; ``type_fields`` holds the type's own fields by key (a blank value for another
    type's field is ignored, as an empty one); ``optional_text`` the other free-text columns of
    ``OPTIONAL_TEXT_LIMITS``. Text is stripped of surrounding spaces, and refused when it holds
    a control character other than tab, newline and carriage return (C0, DEL, C1) or a lone
    surrogate. Raises :class:`DiscoveryInvalid` naming every bad field.
    """
    errors = _Errors()
    clean: dict[str, object] = {}
    clean["user_id"] = _snowflake(errors, "user_id", user_id, required=True)
    clean["guild_id"] = _snowflake(errors, "guild_id", guild_id, required=False)
    clean["username"] = _text(errors, "username", username, max_length=100, required=True)

    dtype = None
    if _blank(discovery_type):
        errors.add("discovery_type", "is required")
    elif isinstance(discovery_type, str) and (problem := text_unsafe(discovery_type)):
        errors.add("discovery_type", problem)
    else:
        dtype = discovery_type_lookup(discovery_type)
        if dtype is None:
            errors.add("discovery_type", f"{discovery_type!r} is not one of the 10 types")
    clean["discovery_type"] = dtype.emoji if dtype else None

    clean["description"] = _text(
        errors, "description", description, max_length=DESCRIPTION_MAX_LENGTH, required=True
    )
    kind = None
    if isinstance(location_type, str) and (problem := text_unsafe(location_type)):
        errors.add("location_type", problem)
    elif not _blank(location_type):
        kind = location_type.strip().lower() if isinstance(location_type, str) else None
        if kind not in LocationType.values:
            errors.add("location_type", "must be one of planet, moon, space (in any case)")
            kind = None
    clean["location_type"] = kind
    place = _text(errors, "location", location, max_length=200, required=kind != "space")
    clean["location"] = place if place is not None else "Space"
    clean["system_name"] = _text(errors, "system_name", system_name, max_length=200, required=True)

    url = _text(errors, "evidence_url", evidence_url, max_length=EVIDENCE_URL_MAX_LENGTH)
    if url is not None and "evidence_url" not in errors and (problem := evidence_url_problem(url)):
        errors.add("evidence_url", problem)
    clean["evidence_url"] = url or ""

    for name, value in optional_text.items():
        if name not in OPTIONAL_TEXT_LIMITS:
            errors.add(name, "is not a field of a discovery")
            continue
        clean[name] = _text(errors, name, value, max_length=OPTIONAL_TEXT_LIMITS[name])

    if type_fields is not None and not isinstance(type_fields, Mapping):
        errors.add("metadata", "must be a JSON object of the type's fields")
        type_fields = None
    clean["metadata"] = _type_values(errors, dtype, type_fields or {})

    if errors:
        raise DiscoveryInvalid(errors)
    return clean


def discovery_submit(*, submitted_at: datetime | None = None, **fields: object) -> Discovery:
    """Validate and store one discovery with its queue item, in one keeper.db transaction;
    after the commit, ask django-q2 for a sync batch now.

    ``fields`` are the keyword arguments of :func:`discovery_validate`. ``submitted_at``
    (aware; default now) is stored in UTC, to the second, as the legacy rows are. Returns the
    saved :class:`Discovery`. Raises :class:`DiscoveryInvalid` (nothing written), and
    ``ValueError`` for a naive ``submitted_at``.
    """
    discovery, _ = _discovery_store(discovery_validate(**fields), submitted_at, key=None)
    return discovery


def discovery_submit_once(
    *, submission_key: str, submitted_at: datetime | None = None, **fields: object
) -> tuple[Discovery, bool]:
    """:func:`discovery_submit`, idempotent by ``submission_key`` (text of 1 to 64 characters
    naming the act of submitting, such as ``discord:<interaction id>``).

    Returns ``(discovery, created)``: the first call with a key stores the discovery and its
    queue item (``created`` True); every later call with the same key, even one racing it from
    another process, stores nothing and returns that discovery (``created`` False). The
    fields are validated on every call: :class:`DiscoveryInvalid` as for
    :func:`discovery_submit`; ``ValueError`` for an empty or over-long key.
    """
    if not isinstance(submission_key, str) or not 1 <= len(submission_key) <= 64:
        raise ValueError("submission_key must be text of 1 to 64 characters")
    return _discovery_store(discovery_validate(**fields), submitted_at, key=submission_key)


def _discovery_store(
    values: dict[str, object], submitted_at: datetime | None, *, key: str | None
) -> tuple[Discovery, bool]:
    from syncq.services import queue_item_create, sync_kick

    if submitted_at is not None and timezone.is_naive(submitted_at):
        raise ValueError("submitted_at must be timezone-aware")
    stamp = (submitted_at or timezone.now()).astimezone(UTC).replace(microsecond=0)
    try:
        with transaction.atomic(using=DEFAULT_DB_ALIAS):
            if key is not None and (found := Discovery.objects.filter(submission_key=key).first()):
                return found, False
            discovery = Discovery.objects.create(
                submission_timestamp=stamp, submission_key=key, **values
            )
            queue_item_create(discovery=discovery)
            transaction.on_commit(sync_kick, robust=True)
    except IntegrityError:
        # Another process stored the same key between our check and our insert (PostgreSQL;
        # SQLite's IMMEDIATE transactions serialize the two).
        if key is None:
            raise
        found = Discovery.objects.filter(submission_key=key).first()
        if found is None:
            raise
        return found, False
    return discovery, True


def discovery_submit_payload(payload: object) -> Discovery:
    """Submit one discovery given as a JSON object: keeper column names as keys, the type's
    fields as top-level keys (or inside ``metadata``), and optionally ``location_type``.
    Unknown keys are refused along with every other bad field. Raises :class:`DiscoveryInvalid`
    (nothing written)."""
    if not isinstance(payload, Mapping):
        raise DiscoveryInvalid({"discovery": [f"must be a JSON object, not {_json_kind(payload)}"]})
    errors = _Errors()
    kwargs: dict[str, object] = {}
    type_fields: dict[str, object] = {}
    for key, value in payload.items():
        if key in ALL_TYPE_FIELD_KEYS:
            type_fields[key] = value
        elif key == "metadata":
            if isinstance(value, Mapping):
                type_fields = {**value, **type_fields}
            elif not _blank(value):
                errors.add("metadata", "must be a JSON object of the type's fields")
        elif key in PAYLOAD_KEYS:
            kwargs[key] = value
        else:
            errors.add(str(key), "is not a field of a discovery")
    for required in ("user_id", "username", "discovery_type", "description"):
        kwargs.setdefault(required, None)
    try:
        values = discovery_validate(type_fields=type_fields, **kwargs)
    except DiscoveryInvalid as exc:
        for key, messages in exc.errors.items():
            for message in messages:
                errors.add(key, message)
    if errors:
        raise DiscoveryInvalid(errors)
    discovery, _ = _discovery_store(values, None, key=None)
    return discovery


def _json_kind(value: object) -> str:
    return {list: "an array", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )
