"""What an alert says: alert events as the JSON body of one Discord webhook message.

Pure functions, no database: :func:`message_body` takes events as ``(kind, data)`` pairs and
returns the body :mod:`syncq.alert_services` posts to ``ALERT_WEBHOOK_URL``. Every body

- pings no one: ``allowed_mentions`` is ``{"parse": []}``, and every ``@`` of text from
  keeper.db (a member's name, a system's, an error) is followed by a zero-width space, so
  ``@everyone``, ``<@id>`` and ``<@&id>`` are not even written as mentions;
- shows such text literally: Discord's markdown characters are escaped, line breaks folded;
- fits Discord's limits for a webhook message (Discord's developer documentation, "Embed
  Limits" and "Execute Webhook"; REFERENCE.md, "Discord platform limits"): content 2,000;
  at most 10 embeds; title 256, description 4,096, 25 fields, field name 256, value 1,024,
  footer 2,048; 6,000 characters in all the embeds together. Lengths are counted as Discord
  counts them, in UTF-16 code units. Items that do not fit are counted in a last line,
  "… and N more", rather than posted in further messages.

The ``data`` of each kind (:class:`syncq.models.AlertKind`):

- ``failing``, ``exceeded``, ``waiting``, ``synced``: one queue item, ``{queue_id,
  discovery_id, number (its attempt count), error, type (the emoji), system, location,
  username, haven_discovery_id, at (ISO 8601 UTC)}``;
- ``outage``: ``{what, since}``; ``recovered``: ``{what, since, until}``;
- ``daily``: ``{day, synced, failed, exceeded, waiting_started, counts {state: n},
  oldest_pending_seconds}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Discord's limits on one webhook message (see the module's docstring).
CONTENT_MAX = 2000
EMBEDS_MAX = 10
EMBED_TITLE_MAX = 256
EMBED_DESCRIPTION_MAX = 4096
EMBED_FIELDS_MAX = 25
EMBED_FIELD_NAME_MAX = 256
EMBED_FIELD_VALUE_MAX = 1024
EMBED_FOOTER_MAX = 2048
EMBEDS_TOTAL_MAX = 6000

#: The name the webhook posts under.
SENDER = "Keeper Sync"
#: One item's line shows at most this much of its error text.
ERROR_SHOWN_MAX = 200
ELLIPSIS = "…"
ZERO_WIDTH_SPACE = "\u200b"

#: Embed colours (RGB integers) and titles by kind, in the order a message lists them.
_COLOURS = {
    "outage": 0xE74C3C,
    "recovered": 0x2ECC71,
    "exceeded": 0xE74C3C,
    "failing": 0xE67E22,
    "waiting": 0xF1C40F,
    "daily": 0x3498DB,
    "synced": 0x1ABC9C,
}
ORDER = tuple(_COLOURS)

#: Characters that start markdown inside a line (bold, italics, strike, code, spoilers, masked
#: links, and ``<…>`` mentions, channels, emoji and timestamps). An alert's lines begin with
#: its own words, so headings, quotes and lists, which only start a line, cannot happen.
_MARKDOWN = re.compile(r"([\\*_~`|\[\]()<])")


def text_length(text: str) -> int:
    """``text``'s length as Discord counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def cut(text: str, limit: int) -> str:
    """``text`` when it fits in ``limit`` UTF-16 code units (at least 1), else its beginning
    and an ellipsis, together within ``limit``; a character is never split."""
    if text_length(text) <= limit:
        return text
    kept, used = [], 0
    for char in text:
        size = 2 if ord(char) > 0xFFFF else 1
        if used + size > limit - 1:
            break
        kept.append(char)
        used += size
    return "".join(kept) + ELLIPSIS


def shown(text: object, limit: int | None = None) -> str:
    """Text from keeper.db (a member's, the Control Room's, an error) as an alert shows it:
    on one line, markdown characters escaped, every ``@`` followed by a zero-width space (so
    ``@everyone``, ``@here``, ``<@id>`` and ``<@&id>`` cannot ping, whatever
    ``allowed_mentions`` says), cut to ``limit`` characters before escaping."""
    value = " ".join(str(text if text is not None else "").split())
    if limit is not None:
        value = cut(value, limit)
    return _MARKDOWN.sub(r"\\\1", value).replace("@", "@" + ZERO_WIDTH_SPACE)


def _duration(seconds: float | None) -> str:
    """``seconds`` as ``3 d 4 h``, ``2 h 5 min``, ``7 min`` or ``12 s``; ``-`` for None."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def _utc(text: str | None) -> str:
    """ISO 8601 UTC text as ``YYYY-MM-DD HH:MM UTC`` (shown as given when it is not such)."""
    if not text:
        return "-"
    return f"{text[:10]} {text[11:16]} UTC" if len(text) >= 16 else text


def item_line(kind: str, data: dict) -> str:
    """One queue item's line in an alert: its queue and discovery ids, type, place and
    submitter, and, as the kind asks, its attempt count and error or its VH row."""
    place = shown(data.get("system") or "an unknown system", 100)
    if data.get("location"):
        place += f" / {shown(data['location'], 100)}"
    line = (
        f"Queue {data.get('queue_id')} · #{data.get('discovery_id')} "
        f"{shown(data.get('type'), 10)} {place}, by {shown(data.get('username'), 64)}"
    )
    if kind == "synced":
        return line + f": VH row {data.get('haven_discovery_id')}"
    if kind == "waiting":
        return line + f": {shown(data.get('error'), ERROR_SHOWN_MAX)}"
    return line + f": attempt {data.get('number')}, {shown(data.get('error'), ERROR_SHOWN_MAX)}"


_ITEM_TITLES = {
    "exceeded": "Out of attempts: {n} (max_retries_exceeded, an operator must retry)",
    "failing": "Failing: {n} reached {threshold} failed attempts",
    "waiting": "Waiting for their place in the Control Room: {n}",
    "synced": "Reached the Control Room: {n}",
}


def _lines_embed(title: str, colour: int, lines: list[str], budget: int) -> tuple[dict, int]:
    """An embed titled ``title`` listing as many of ``lines`` as fit in its description and
    in ``budget`` (characters left of the message's 6,000), then ``… and N more``. Returns
    the embed and how many lines it left out."""
    title = cut(title, EMBED_TITLE_MAX)
    room = min(EMBED_DESCRIPTION_MAX, budget - text_length(title))
    kept: list[str] = []
    used = 0
    for n, line in enumerate(lines):
        left = len(lines) - n - 1
        tail = text_length(f"\n… and {len(lines)} more") if left else 0
        size = text_length(line) + (1 if kept else 0)
        if used + size + tail > room:
            break
        kept.append(line)
        used += size
    more = len(lines) - len(kept)
    description = "\n".join(kept)
    if more:
        description += ("\n" if kept else "") + f"… and {more} more"
    return {"title": title, "description": cut(description, max(1, room)), "color": colour}, more


def _daily_embed(data: dict) -> dict:
    counts = data.get("counts") or {}
    state_fields = [
        ("Pending now", counts.get("pending", 0)),
        ("Waiting now", counts.get("waiting", 0)),
        ("Out of attempts now", counts.get("max_retries_exceeded", 0)),
        ("Conflicts now", counts.get("conflict", 0)),
    ]
    fields = [
        {"name": "Synced (24 h)", "value": str(data.get("synced", 0)), "inline": True},
        {"name": "Failed attempts (24 h)", "value": str(data.get("failed", 0)), "inline": True},
        {"name": "Out of attempts (24 h)", "value": str(data.get("exceeded", 0)), "inline": True},
        {
            "name": "Started waiting (24 h)",
            "value": str(data.get("waiting_started", 0)),
            "inline": True,
        },
        *({"name": name, "value": str(value), "inline": True} for name, value in state_fields),
        {
            "name": "Oldest pending",
            "value": _duration(data.get("oldest_pending_seconds")),
            "inline": True,
        },
    ]
    return {
        "title": f"Daily summary, {cut(str(data.get('day')), 20)}",
        "description": "The last 24 hours of the sync queue.",
        "color": _COLOURS["daily"],
        "fields": fields[:EMBED_FIELDS_MAX],
    }


def _outage_embed(kind: str, data: dict) -> dict:
    # Our own words (outage_probe's), not a member's: shown as they are.
    what = cut(" ".join(str(data.get("what") or "").split()), 200)
    if kind == "outage":
        title = f"Unreachable: {what}"
        text = f"Since {_utc(data.get('since'))}. Items stay queued and sync once it is back."
    else:
        title = f"Reachable again: {what}"
        text = f"Unreachable from {_utc(data.get('since'))} to {_utc(data.get('until'))}."
    return {"title": cut(title, EMBED_TITLE_MAX), "description": text, "color": _COLOURS[kind]}


def embeds_length(embeds: Iterable[dict]) -> int:
    """The characters of ``embeds`` that count toward Discord's 6,000: titles, descriptions,
    field names and values, footer texts and author names."""
    total = 0
    for embed in embeds:
        parts = [embed.get("title", ""), embed.get("description", "")]
        for field in embed.get("fields", []):
            parts += [field.get("name", ""), field.get("value", "")]
        parts += [embed.get("footer", {}).get("text", ""), embed.get("author", {}).get("name", "")]
        total += sum(text_length(p or "") for p in parts)
    return total


def message_body(
    events: Iterable[tuple[str, dict]], *, failed_attempts: int, footer: str = ""
) -> dict:
    """The Discord webhook JSON telling ``events`` (``(kind, data)`` pairs, see the module's
    docstring): ``{"username", "content", "embeds", "allowed_mentions": {"parse": []}}``.
    Outages first, then items out of attempts, failing (``failed_attempts`` failed attempts),
    waiting, the daily summary and discoveries synced; each kind one embed. ``footer`` (say,
    the scan's time) goes under the last embed. Within every limit of the module's docstring
    whatever the number of events; raises nothing."""
    by_kind: dict[str, list[dict]] = {kind: [] for kind in ORDER}
    for kind, data in events:
        by_kind.setdefault(kind, []).append(data)
    embeds: list[dict] = []
    for kind in ("outage", "recovered"):
        embeds += [_outage_embed(kind, data) for data in by_kind[kind][-1:]]
    embeds += [_daily_embed(data) for data in by_kind["daily"][-1:]]
    budget = EMBEDS_TOTAL_MAX - embeds_length(embeds) - text_length(footer)
    listed = [kind for kind in ("exceeded", "failing", "waiting", "synced") if by_kind[kind]]
    for kind in listed:
        items = by_kind[kind]
        title = _ITEM_TITLES[kind].format(n=len(items), threshold=failed_attempts)
        # Each listed kind gets an even share of what is left, so one cannot crowd out the rest.
        share = budget // (len(listed) - listed.index(kind))
        embed, _ = _lines_embed(title, _COLOURS[kind], [item_line(kind, d) for d in items], share)
        embeds.append(embed)
        budget -= embeds_length([embed])
    embeds = embeds[:EMBEDS_MAX]
    if footer and embeds:
        embeds[-1]["footer"] = {"text": cut(footer, EMBED_FOOTER_MAX)}
    total = sum(len(items) for items in by_kind.values())
    summary = ", ".join(
        f"{len(by_kind[kind])} {_SUMMARY_WORDS[kind]}" for kind in ORDER if by_kind[kind]
    )
    content = cut(f"**{SENDER}**: {summary}." if total else f"**{SENDER}**", CONTENT_MAX)
    return {
        "username": SENDER,
        "content": content,
        "embeds": embeds,
        "allowed_mentions": {"parse": []},
    }


_SUMMARY_WORDS = {
    "outage": "unreachable",
    "recovered": "back",
    "exceeded": "out of attempts",
    "failing": "failing",
    "waiting": "waiting",
    "daily": "daily summary",
    "synced": "synced",
}


def check_body(*, now_text: str) -> dict:
    """The body ``manage.py alerts_test`` posts: one embed saying the webhook works, at
    ``now_text`` (ISO 8601 UTC)."""
    return {
        "username": SENDER,
        "content": f"**{SENDER}**: test message.",
        "embeds": [
            {
                "title": "Alerts reach this channel",
                "description": f"Sent by `manage.py alerts_test` at {_utc(now_text)}.",
                "color": _COLOURS["recovered"],
            }
        ],
        "allowed_mentions": {"parse": []},
    }
