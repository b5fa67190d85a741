"""Discord's limits on what a bot sends, and cutting text to fit them.

Sources: REFERENCE.md ("Discord platform limits") and Discord's developer documentation for
message components, modals and embeds. Discord counts the length of a string as JavaScript
does, in UTF-16 code units, so an emoji outside the Basic Multilingual Plane counts twice:
:func:`text_length` and :func:`cut` count the same way.
"""

from __future__ import annotations

MESSAGE_CONTENT_MAX = 2000

SELECT_OPTIONS_MAX = 25
SELECT_OPTION_LABEL_MAX = 100
SELECT_OPTION_VALUE_MAX = 100
SELECT_PLACEHOLDER_MAX = 150
BUTTON_LABEL_MAX = 80
CUSTOM_ID_MAX = 100
ACTION_ROWS_MAX = 5

MODAL_TITLE_MAX = 45
MODAL_TEXT_INPUTS_MAX = 5
TEXT_INPUT_LABEL_MAX = 45
TEXT_INPUT_VALUE_MAX = 4000

EMBED_TITLE_MAX = 256
EMBED_DESCRIPTION_MAX = 4096
EMBED_FIELDS_MAX = 25
EMBED_FIELD_NAME_MAX = 256
EMBED_FIELD_VALUE_MAX = 1024
EMBED_FOOTER_MAX = 2048
EMBED_TOTAL_MAX = 6000

ELLIPSIS = "…"


def text_length(text: str) -> int:
    """``text``'s length as Discord counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def cut(text: str, limit: int) -> str:
    """``text`` unchanged when it fits in ``limit`` (UTF-16 code units, at least 1), else its
    beginning and an ellipsis, together exactly within ``limit``; never splits a character."""
    if text_length(text) <= limit:
        return text
    budget = limit - 1
    kept: list[str] = []
    used = 0
    for char in text:
        size = 2 if ord(char) > 0xFFFF else 1
        if used + size > budget:
            break
        kept.append(char)
        used += size
    return "".join(kept) + ELLIPSIS


def embed_length(embed: dict) -> int:
    """The characters of an embed (its ``to_dict()`` form) that count toward Discord's 6,000:
    title, description, field names and values, footer text and author name."""
    parts = [embed.get("title", ""), embed.get("description", "")]
    for field in embed.get("fields", []):
        parts += [field.get("name", ""), field.get("value", "")]
    parts += [embed.get("footer", {}).get("text", ""), embed.get("author", {}).get("name", "")]
    return sum(text_length(p or "") for p in parts)
