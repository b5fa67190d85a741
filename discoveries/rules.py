"""The rules a discovery's fields obey, at every door: the bot, ``manage.py submit_discovery``,
the admin and any later API, CLI or agent.

One table, :data:`FIELDS`, gives each keeper column a person may set its label, its length limit
in characters and its kind; the type-specific fields carry theirs in :mod:`discoveries.types`.
The model takes its column widths from it, :func:`discovery_validate` checks a submission,
:func:`discovery_changes_validate` an edit, and the bot sizes its modals and filters the names it
offers by it.

Sources: REFERENCE.md ("Discovery types": the description is required and at most 1000
characters, each type field at most 200, the 📜 key excerpt 500; "keeper.db": the columns);
Discord's ids are snowflakes of up to 20 digits. Text is refused when it holds a control
character other than tab, newline and carriage return, a lone surrogate or a bidirectional
control; an evidence link must be a public http(s) address.

Nothing we store may start markup in the Control Room (REFERENCE.md, "How the Control Room shows
discoveries"): its map inserts descriptions and type fields with ``innerHTML``, embeds every
discovery in a ``<script>`` block as JSON (so ``</script>`` in any text ends that block), and puts
the evidence link inside ``<img src="…">``. So free text refuses HTML markup
(:func:`text_markup`), and an evidence link refuses the characters that could leave an HTML
attribute (:data:`URL_REFUSED_CHARACTERS`) and is stored re-serialised
(:func:`evidence_url_serialise`). :mod:`discoveries.haven.mapping` neutralises rows stored before
these rules with :func:`text_markup_neutralise`.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from discoveries.types import (
    ALL_TYPE_FIELD_KEYS,
    DISCOVERY_TYPES,
    DiscoveryType,
    LocationType,
    discovery_type_lookup,
)

#: The longest system, planet, moon or place name, in characters.
NAME_MAX_LENGTH = 200
#: The largest value of an integer column (SQLite and PostgreSQL ``integer``).
COUNT_MAX = 2**31 - 1

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
#: Characters that draw as nothing although Unicode does not call them spaces or format
#: characters: Hangul fillers, the blank braille pattern, the combining grapheme joiner,
#: Khmer inherent vowels, Mongolian and other variation selectors.
_BLANK_LOOKING = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u2800\u3164\uffa0"
    + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xE0100, 0xE01F0)))
)
#: Names that only resolve inside a local network (mDNS, RFC 8375, common home and corporate
#: conventions): no reader of the archive can open them.
LOCAL_NETWORK_SUFFIXES = (".local", ".lan", ".internal", ".home.arpa", ".intranet", ".corp")

_evidence_validator = URLValidator(schemes=["http", "https"])

#: What starts markup to an HTML parser (the WHATWG tokenizer's tag open state): "<" followed by
#: an ASCII letter (a tag), "/" (an end tag: "</script" ends a script block), "!" (a comment,
#: "<!--", or a doctype) or "?" (read as a comment). Any other "<" is text to the parser, so
#: "<3" and "a < b" are kept as typed.
MARKUP_START = re.compile(r"<(?=[A-Za-z/!?])")
_MARKUP_SNIPPET = re.compile(r"<[/!?]?[A-Za-z0-9-]{0,20}")
#: What :func:`text_markup_neutralise` writes in place of a "<" that starts markup: U+2039
#: SINGLE LEFT-POINTING ANGLE QUOTATION MARK, "‹". Unlike the fullwidth U+FF1C, it has no
#: compatibility decomposition, so no NFKC or NFKD step later on can turn it back into "<".
MARKUP_LOOKALIKE = "\u2039"
#: Characters an evidence link may not hold anywhere, besides whitespace and control characters:
#: quotes and the backtick end an HTML attribute value, angle brackets start or end a tag, and
#: a browser reads a backslash as "/" in an http(s) address (another host, another path).
URL_REFUSED_CHARACTERS = frozenset("\"'`<>\\")


@dataclass(frozen=True)
class FieldRule:
    """One keeper column a person may set: ``name`` (the column), ``label`` (how it reads to a
    person), ``max_length`` in characters (None: not text), ``kind`` (``text``, free text
    that refuses HTML markup; ``snowflake`` for a Discord id, ``url`` for the evidence link,
    ``count`` for a whole number from 0 to :data:`COUNT_MAX`, ``choice`` for the type and the
    kind of place), and whether a submission must give it (``required``)."""

    name: str
    label: str
    max_length: int | None = None
    kind: str = "text"
    required: bool = False


#: The fields of a discovery, by column name, in the order a person fills them in.
FIELDS: dict[str, FieldRule] = {
    rule.name: rule
    for rule in (
        FieldRule("user_id", "Submitter id", 20, kind="snowflake", required=True),
        FieldRule("username", "Submitter name", 100, required=True),
        FieldRule("guild_id", "Server id", 20, kind="snowflake"),
        FieldRule("discovery_type", "Discovery type", kind="choice", required=True),
        FieldRule("description", "Description", 1000, required=True),
        FieldRule("system_name", "Star system", NAME_MAX_LENGTH, required=True),
        # Required unless the place is in space (then it is stored as "Space").
        FieldRule("location", "Planet or moon", NAME_MAX_LENGTH),
        FieldRule("location_type", "Kind of place", kind="choice"),
        FieldRule("planet_name", "Planet", NAME_MAX_LENGTH),
        FieldRule("galaxy_name", "Galaxy", 100),
        FieldRule("evidence_url", "Evidence link", 2000, kind="url"),
        FieldRule("time_period", "Time period", 200),
        FieldRule("condition", "Condition", 200),
        FieldRule("significance", "Significance", 1000),
        FieldRule("coordinates", "Coordinates", 200),
        FieldRule("tags", "Tags", 1000),
        FieldRule("related_discoveries", "Related discoveries", 1000),
        # Set by operators in the admin, never by a submission.
        FieldRule("analysis_status", "Analysis status", 32),
        FieldRule("pattern_matches", "Pattern matches", kind="count"),
        FieldRule("mystery_tier", "Mystery tier", kind="count"),
    )
}

#: The optional free-text columns a submission may carry besides the named arguments of
#: :func:`discovery_validate`.
OPTIONAL_TEXT: tuple[str, ...] = (
    "planet_name",
    "galaxy_name",
    "time_period",
    "condition",
    "significance",
    "coordinates",
    "tags",
    "related_discoveries",
)
#: The columns an edit may change: every field but the submitter's id, which names who
#: submitted, and ``metadata``, which holds the type's fields.
EDITABLE: frozenset[str] = frozenset(FIELDS) - {"user_id"} | {"metadata"}


_TYPE_FIELD_LABELS = {f.key: f.label for dtype in DISCOVERY_TYPES for f in dtype.fields}


def field_label(name: str) -> str:
    """How field ``name`` (a column, or a type field's key) reads to a person; the name itself
    when it is neither."""
    if name in FIELDS:
        return FIELDS[name].label
    return _TYPE_FIELD_LABELS.get(name, name)


class DiscoveryInvalid(Exception):
    """A discovery was refused; nothing was written.

    ``errors`` maps each bad field name (a column, or a type field's key) to its messages
    (``{"description": ["is required"]}``); ``str()`` lists them all in one line.
    """

    def __init__(self, errors: Mapping[str, list[str]]):
        self.errors = {k: list(v) for k, v in errors.items()}
        super().__init__(
            "; ".join(f"{field}: {', '.join(msgs)}" for field, msgs in self.errors.items())
        )


class _Errors(dict):
    def add(self, field: str, message: str) -> None:
        self.setdefault(field, []).append(message)


def _shows_nothing(char: str) -> bool:
    return (
        char.isspace() or unicodedata.category(char) == "Cf" or char in _BLANK_LOOKING
    ) and not UNSAFE_CHARACTERS.match(char)


def text_blank(value: object) -> bool:
    """Whether ``value`` leaves a field unset: ``None``, or text of nothing but characters
    that show nothing: spaces, format characters (zero-width spaces and joiners, direction
    marks, soft hyphen, byte order mark, tags…) and those that only look blank (Hangul fillers,
    the blank braille pattern, variation selectors). The characters :func:`text_unsafe`
    refuses are not blank here, so text holding one is always reported."""
    return value is None or (isinstance(value, str) and all(map(_shows_nothing, value)))


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


def text_markup(value: str) -> str | None:
    """The HTML markup ``value`` starts, as the snippet that starts it (``'<script'``,
    ``'</'``, ``'<!--'``; at most 22 characters), or ``None`` when it starts none.

    Markup starts at a "<" followed by an ASCII letter, "/", "!" or "?" (:data:`MARKUP_START`,
    the HTML tokenizer's rule); ``"<3"`` and ``"5 < 6"`` start none. The rule comes from the
    Control Room's map, which shows this text as HTML (REFERENCE.md): every free-text field
    refuses such text at every door, and the mapping to VH neutralises it in older rows.
    """
    found = MARKUP_START.search(value)
    if found is None:
        return None
    return _MARKUP_SNIPPET.match(value, found.start()).group()


def text_markup_neutralise(value: str) -> str:
    """``value`` with every "<" that starts markup (:func:`text_markup`) replaced by
    :data:`MARKUP_LOOKALIKE` ("‹"), so that it starts none and still reads alike; every other
    character, another "<" included, is kept. Used on rows stored before the markup rule, as
    they are written to VH."""
    return MARKUP_START.sub(MARKUP_LOOKALIKE, value)


def name_problem(value: object, *, required: bool) -> str | None:
    """Why ``value`` cannot be a system, planet, moon or place name, or ``None``: it must be
    text, not blank when ``required``, without a refused character or HTML markup
    (:func:`text_markup`), and at most :data:`NAME_MAX_LENGTH` characters once stripped. The
    bot checks typed names with it as they are typed, and offers only the map's names that
    pass it."""
    errors = _Errors()
    _text(errors, "name", value, max_length=NAME_MAX_LENGTH, required=required)
    return errors["name"][0] if errors else None


def evidence_url_problem(url: str) -> str | None:
    """Why ``url`` (the link as typed, surrounding spaces already stripped) cannot be an
    evidence link, or ``None``.

    The link must hold no character :func:`text_unsafe` refuses, and nowhere a quote, a
    backtick, an angle bracket, a backslash (:data:`URL_REFUSED_CHARACTERS`), whitespace or a
    control character: the Control Room's map puts the link inside ``<img src="…">``
    (REFERENCE.md), and ``urllib.parse`` would silently drop a tab or a newline that a reader
    of the text still sees. It must be an http(s) URL (Django's ``URLValidator``, then
    ``urllib.parse.urlsplit``) naming a host, without a user name or password (which can make
    a link look like another site's), to a public host, not a local or private address (which
    no reader of the archive can open; the host read as a browser reads it, NFKC and the
    WHATWG IPv4 forms). :func:`evidence_url_serialise` gives what is stored.
    """
    if problem := text_unsafe(url):
        return problem
    for char in url:
        if char in URL_REFUSED_CHARACTERS or char.isspace() or unicodedata.category(char) == "Cc":
            shown = f"U+{ord(char):04X}" if char.isspace() or not char.isprintable() else repr(char)
            return (
                f"must not contain {shown}: a link holds no quotes, angle brackets, "
                "backslashes, spaces or control characters, since the Control Room's map puts "
                "it in an HTML image tag"
            )
        if _shows_nothing(char):
            # Zero-width and other invisible characters: IDNA drops some of them from a host
            # name, so the link would open another site than the one its reader sees.
            return (
                f"must not contain the invisible character U+{ord(char):04X}: the link would "
                "not read as what it opens"
            )
    try:
        _evidence_validator(url)
        parts = urlsplit(url)
    except (ValidationError, ValueError):
        return "must be an http:// or https:// link"
    if parts.scheme.lower() not in ("http", "https"):
        return "must be an http:// or https:// link"
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        return "must not hold a user name or password"
    if not parts.hostname:
        return "must name a host (https://host/…)"
    # As a browser reads the name (IDNA's mapping): fullwidth letters and digits, and the
    # ideographic full stops, are the ASCII ones.
    host = unicodedata.normalize("NFKC", parts.hostname or "").translate(_FULL_STOPS)
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return "must be a public address, not this computer's"
    if host.endswith(LOCAL_NETWORK_SUFFIXES):
        return "must be a public address, not one of a local network"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = _numeric_ipv4(host)
        if address is None:
            return None
    if address is False:
        return "must be an http:// or https:// link"
    if not all(inner.is_global for inner in _addresses_within(address)):
        return "must be a public address, not a local or private one"
    return None


def evidence_url_serialise(url: str) -> str:
    """The evidence link ``url`` as stored: ``urllib.parse``'s re-serialisation of its parts
    (``urlunsplit(urlsplit(url))``: the scheme in lower case, an empty query or fragment
    dropped), so that what is stored is what the parser read. Call it on a link
    :func:`evidence_url_problem` accepts; raises ``ValueError`` on one ``urlsplit`` cannot
    read."""
    return urlunsplit(urlsplit(url))


def _numeric_ipv4(host: str) -> ipaddress.IPv4Address | bool | None:
    """The IPv4 address a browser reads in ``host`` when its last label is a number (the WHATWG
    URL standard: ``127.1``, ``0x7f.0.0.1``, ``017700000001``, ``2130706433``); ``None`` when it
    is a name, ``False`` when it ends in a number but is no address (a browser refuses it)."""
    labels = host.split(".")
    if not _number(labels[-1]):
        return None
    numbers = [_number(label) for label in labels]
    if len(labels) > 4 or None in numbers or any(n > 255 for n in numbers[:-1]):
        return False
    if numbers[-1] >= 256 ** (5 - len(numbers)):
        return False
    value = numbers[-1] + sum(n * 256 ** (3 - i) for i, n in enumerate(numbers[:-1]))
    return ipaddress.IPv4Address(value)


def _number(label: str) -> int | None:
    """A host label read as the WHATWG standard reads an IPv4 part: ``0x`` hexadecimal, a
    leading 0 octal, else decimal; ``None`` when it is not a number."""
    digits, base = label, 10
    if label[:2].lower() == "0x":
        digits, base = label[2:] or "0", 16
    elif len(label) > 1 and label.startswith("0"):
        digits, base = label[1:], 8
    if not digits or not digits.isascii() or not digits.isalnum():
        return None
    try:
        return int(digits, base)
    except ValueError:
        return None


#: The full stops IDNA reads as ".": ideographic, fullwidth and halfwidth ideographic.
_FULL_STOPS = str.maketrans("\u3002\uff0e\uff61", "...")


#: The NAT64 prefixes whose last 32 bits are an IPv4 address a translator reaches.
_NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _addresses_within(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list:
    """``address`` and the IPv4 addresses an IPv6 one carries (mapped, compatible, 6to4,
    Teredo, NAT64), each of which a client may end up reaching."""
    found = [address]
    if isinstance(address, ipaddress.IPv6Address):
        found += [
            inner
            for inner in (address.ipv4_mapped, address.sixtofour, *(address.teredo or ()))
            if inner is not None
        ]
        if any(address in prefix for prefix in _NAT64_PREFIXES):  # RFC 6052 and RFC 8215
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if int(address) >> 32 == 0:  # IPv4-compatible, ::a.b.c.d
            found.append(ipaddress.IPv4Address(int(address)))
    return found


def _text(
    errors: _Errors,
    field: str,
    value: object,
    *,
    max_length: int,
    required: bool = False,
    markup: bool = True,
) -> str | None:
    """Check one text value; returns it stripped, or ``None`` when blank and optional.
    ``markup`` False leaves HTML markup to a stricter rule of the field's own (a link's)."""
    if text_blank(value):
        if required:
            errors.add(field, "is required")
        return None
    if not isinstance(value, str):
        errors.add(field, f"must be text, not {type(value).__name__}")
        return None
    if problem := text_unsafe(value):
        errors.add(field, problem)
        return None
    if markup and (snippet := text_markup(value)):
        errors.add(
            field,
            f"must not contain HTML markup ({snippet!r}): the Control Room's map shows this "
            "text as HTML",
        )
        return None
    value = value.strip()
    if len(value) > max_length:
        errors.add(field, f"is {len(value)} characters long; the limit is {max_length}")
    return value


def _field(errors: _Errors, rule: FieldRule, value: object, *, required: bool) -> object:
    """Check ``value`` by ``rule`` (text, snowflake, url or count); returns the value to store."""
    if rule.kind == "count":
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= COUNT_MAX:
            errors.add(rule.name, f"must be a whole number from 0 to {COUNT_MAX:,}")
            return None
        return value
    if rule.kind == "snowflake" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _text(
        errors,
        rule.name,
        value,
        max_length=rule.max_length,
        required=required,
        markup=rule.kind == "text",
    )
    if text is None or rule.name in errors:
        return text
    if rule.kind == "snowflake" and not SNOWFLAKE.match(text):
        errors.add(rule.name, "must be a Discord id (digits only)")
    elif rule.kind == "url":
        if problem := evidence_url_problem(text):
            errors.add(rule.name, problem)
        else:
            return evidence_url_serialise(text)
    return text


def _discovery_type(errors: _Errors, value: object) -> DiscoveryType | None:
    if text_blank(value):
        errors.add("discovery_type", "is required")
    elif isinstance(value, str) and (problem := text_unsafe(value)):
        errors.add("discovery_type", problem)
    elif (dtype := discovery_type_lookup(value)) is not None:
        return dtype
    else:
        errors.add("discovery_type", f"{value!r} is not one of the 10 types")
    return None


def _location_type(errors: _Errors, value: object) -> str | None:
    if isinstance(value, str) and (problem := text_unsafe(value)):
        errors.add("location_type", problem)
        return None
    if text_blank(value):
        return None
    kind = value.strip().lower() if isinstance(value, str) else None
    if kind not in LocationType.values:
        errors.add("location_type", "must be one of planet, moon, space (in any case)")
        return None
    return kind


def _type_values(
    errors: _Errors, dtype: DiscoveryType | None, type_fields: object
) -> dict[str, str]:
    """The type's fields from ``type_fields`` (a mapping of key to text), checked against
    ``dtype``'s keys and limits; a blank value for another type's field is ignored."""
    if type_fields is None:
        return {}
    if not isinstance(type_fields, Mapping):
        errors.add("metadata", "must be a JSON object of the type's fields")
        return {}
    values: dict[str, str] = {}
    by_key = {f.key: f for f in dtype.fields} if dtype else {}
    for key, raw in type_fields.items():
        if not isinstance(key, str) or key not in ALL_TYPE_FIELD_KEYS:
            errors.add(str(key), "is not a field of any discovery type")
            continue
        if dtype is None:
            continue  # the type itself is already reported
        if key not in by_key:
            if not text_blank(raw):
                errors.add(key, f"is not a field of {dtype}")
            continue
        text = _text(errors, key, raw, max_length=by_key[key].max_length)
        if text is not None:
            values[key] = text
    return values


def _clean(values: Mapping[str, object], names: Iterable[str]) -> tuple[dict, _Errors]:
    """Check every field of ``names`` in ``values`` (``metadata`` holding the type's fields);
    returns the values to store and the errors, by field."""
    errors = _Errors()
    clean: dict[str, object] = {}
    for name in names:
        if name in ("metadata", "discovery_type", "location_type", "location"):
            continue  # checked together below
        if name not in FIELDS:
            errors.add(name, "is not a field of a discovery")
            continue
        rule = FIELDS[name]
        clean[name] = _field(errors, rule, values.get(name), required=rule.required)
    dtype = _discovery_type(errors, values.get("discovery_type"))
    clean["discovery_type"] = dtype.emoji if dtype else None
    kind = _location_type(errors, values.get("location_type"))
    clean["location_type"] = kind
    place = _field(errors, FIELDS["location"], values.get("location"), required=kind != "space")
    clean["location"] = place if place is not None else "Space"
    clean["metadata"] = _type_values(errors, dtype, values.get("metadata"))
    return clean, errors


#: What a submission holds besides the type, the place and :data:`OPTIONAL_TEXT`.
_SUBMITTED = ("user_id", "username", "guild_id", "description", "system_name", "evidence_url")


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
    type's field is ignored, as an empty one); ``optional_text`` the columns of
    :data:`OPTIONAL_TEXT`. Text is stripped of surrounding spaces; limits are :data:`FIELDS`'.
    Returns ``{column: value}`` with the type's fields under ``metadata``. Raises
    :class:`DiscoveryInvalid` naming every bad field.
    """
    values = {
        **optional_text,
        "user_id": user_id,
        "username": username,
        "discovery_type": discovery_type,
        "description": description,
        "location": location,
        "system_name": system_name,
        "location_type": location_type,
        "guild_id": guild_id,
        "evidence_url": evidence_url,
        "metadata": type_fields,
    }
    known = [name for name in optional_text if name in OPTIONAL_TEXT]
    clean, errors = _clean(values, (*_SUBMITTED, *known))
    for name in optional_text:
        if name not in OPTIONAL_TEXT:
            errors.add(name, "is not a field of a discovery")
    clean["evidence_url"] = clean.get("evidence_url") or ""
    if errors:
        raise DiscoveryInvalid(errors)
    return clean


def discovery_payload_validate(payload: object) -> dict[str, object]:
    """Check one discovery given as a JSON object: keeper column names as keys, the type's
    fields as top-level keys (or inside ``metadata``), and optionally ``location_type``.
    Returns the values to store, as :func:`discovery_validate`. Unknown keys are refused
    along with every other bad field: raises :class:`DiscoveryInvalid`."""
    if not isinstance(payload, Mapping):
        raise DiscoveryInvalid({"discovery": [f"must be a JSON object, not {_json_kind(payload)}"]})
    errors = _Errors()
    kwargs: dict[str, object] = {}
    type_fields: dict[str, object] = {}
    accepted = {*_SUBMITTED, *OPTIONAL_TEXT, "discovery_type", "location", "location_type"}
    for key, value in payload.items():
        if key in ALL_TYPE_FIELD_KEYS:
            type_fields[key] = value
        elif key == "metadata":
            if isinstance(value, Mapping):
                type_fields = {**value, **type_fields}
            elif not text_blank(value):
                errors.add("metadata", "must be a JSON object of the type's fields")
        elif key in accepted:
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
    return values


def discovery_changes_validate(
    *, current: Mapping[str, object], changes: Mapping[str, object]
) -> dict[str, object]:
    """Check an edit of a stored discovery by the submission's rules, and return the values to
    store.

    ``current`` holds the discovery's stored columns; ``changes`` the columns to set, of
    :data:`EDITABLE`, with ``metadata`` a JSON object of the type's fields. Each changed field
    is checked; the kind of place with the place, and the type with its fields, are checked
    together when either changes (a type's fields must belong to the type, within their
    limits). Fields the edit leaves alone are not checked: they are not written. Returns
    ``{column: value}`` for the changed columns (and ``location`` ``"Space"`` when a place in
    space is left empty). Raises :class:`DiscoveryInvalid` naming every bad field.
    """
    errors = _Errors()
    for name in changes:
        if name not in EDITABLE:
            errors.add(name, "is not a field an edit may change")
    if errors:
        raise DiscoveryInvalid(errors)
    candidate = {**current, **changes}
    if not isinstance(candidate.get("metadata"), Mapping) and "metadata" not in changes:
        candidate["metadata"] = {}  # unreadable legacy metadata, left as it is
    names = [n for n in FIELDS if n in changes and n != "user_id"]
    clean, errors = _clean(candidate, names)
    affected = set(changes)
    if affected & {"location", "location_type"}:
        affected |= {"location", "location_type"}
    metadata_checked = bool(affected & {"discovery_type", "metadata"})
    if metadata_checked:
        affected |= {"discovery_type", "metadata"}
    # Every name that is no column comes from metadata: a type's field, or a key that is none.
    relevant = {
        name: msgs
        for name, msgs in errors.items()
        if name in affected or (metadata_checked and name not in FIELDS)
    }
    if relevant:
        raise DiscoveryInvalid(relevant)
    written = {name: clean[name] for name in changes if name in clean}
    if "location_type" in changes and clean["location"] != candidate.get("location"):
        written["location"] = clean["location"]  # "Space" for a place in space left empty
    return written


def _json_kind(value: object) -> str:
    return {list: "an array", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )
