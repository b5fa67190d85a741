"""The form checks: what the fake refuses in what the bot sends, as Discord would (400
``Invalid Form Body``, code 50035, naming the field; 400 code 50006 for an empty message), and
the walk over a message's or modal's components that the checks and the tests share."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tests.fake_discord.protocol import (
    ACTION_ROW,
    BUTTON,
    CONTAINER,
    EMPTY_MESSAGE,
    IS_COMPONENTS_V2,
    LABEL,
    LINK_STYLE,
    PREMIUM_STYLE,
    SECTION,
    SELECT_TYPES,
    STRING_SELECT,
    TEXT_INPUT,
    Refused,
    Reply,
)


class FormErrors:
    """Discord's ``Invalid Form Body`` (400, code 50035): errors keyed by the field's path."""

    def __init__(self) -> None:
        self.errors: dict[str, dict] = {}

    def add(self, path: str, message: str, code: str = "BASE_TYPE_BAD_LENGTH") -> None:
        entry = self.errors.setdefault(path, {"_errors": []})
        entry["_errors"].append({"code": code, "message": message})

    def length(self, path: str, value: object, low: int, high: int) -> None:
        if value is None:
            if low > 0:
                self.add(path, "This field is required", "BASE_TYPE_REQUIRED")
            return
        size = len(value) if isinstance(value, str | list) else len(str(value))
        if not low <= size <= high:
            self.add(path, f"Must be between {low} and {high} in length.")

    def raise_if_any(self, interaction_id: str | None = None) -> None:
        """Refuse the request with 400 ``Invalid Form Body`` if any error was added."""
        if self.errors:
            body = {"message": "Invalid Form Body", "code": 50035, "errors": self.errors}
            raise Refused(Reply(400, body, interaction_id))


def walk(
    components: list[dict], wrapper_label: str | None = None
) -> Iterator[tuple[dict, str | None]]:
    """Leaf components with the text of the Label (type 18) wrapping them, if any."""
    for component in components or []:
        kind = component.get("type")
        if kind in (ACTION_ROW, CONTAINER):
            yield from walk(component.get("components") or [], wrapper_label)
        elif kind == SECTION:
            yield from walk(component.get("components") or [], wrapper_label)
            if component.get("accessory"):
                yield from walk([component["accessory"]], wrapper_label)
        elif kind == LABEL:
            if isinstance(component.get("component"), dict):
                yield from walk([component["component"]], component.get("label"))
        else:
            yield component, wrapper_label


def components_of(message: dict) -> list[dict]:
    """The leaf components of a message or modal dict, flattened in display order.

    Buttons, selects, text inputs (and, in Components V2 layouts, text displays and the like);
    action rows (type 1), containers (17), sections (9) and labels (18, key ``component``) are
    recursed into, not returned.
    """
    return [leaf for leaf, _ in walk(message.get("components") or [])]


def describe(leaf: dict, wrapper_label: str | None) -> str:
    parts = [f"type={leaf.get('type')}"]
    for key in ("custom_id", "label", "placeholder", "url"):
        if leaf.get(key) is not None:
            parts.append(f"{key}={leaf[key]!r}")
    if wrapper_label is not None:
        parts.append(f"in Label {wrapper_label!r}")
    return "{" + ", ".join(parts) + "}"


def find_component(
    message: dict,
    *,
    type: int | None = None,
    label: str | None = None,
    custom_id: str | None = None,
    placeholder: str | None = None,
) -> dict:
    """The one leaf component of ``message`` (or modal) matching every given criterion.

    ``label`` matches a button's ``label``, a select's ``placeholder`` and a text input's label
    (its own or that of the Label component wrapping it). Raises ``AssertionError`` listing the
    components that exist when none or several match.
    """
    matches = []
    leaves = list(walk(message.get("components") or []))
    for leaf, wrapper_label in leaves:
        if type is not None and leaf.get("type") != type:
            continue
        if custom_id is not None and leaf.get("custom_id") != custom_id:
            continue
        if placeholder is not None and leaf.get("placeholder") != placeholder:
            continue
        if label is not None:
            names = {leaf.get("label"), wrapper_label}
            if leaf.get("type") in SELECT_TYPES:
                names.add(leaf.get("placeholder"))
            if label not in names:
                continue
        matches.append(leaf)
    if len(matches) != 1:
        wanted = {"type": type, "label": label, "custom_id": custom_id, "placeholder": placeholder}
        wanted = {k: v for k, v in wanted.items() if v is not None}
        existing = "\n  ".join(describe(leaf, wl) for leaf, wl in leaves) or "(none)"
        found = "no component" if not matches else f"{len(matches)} components"
        raise AssertionError(f"{found} match {wanted}; the components are:\n  {existing}")
    return matches[0]


def message_check(
    data: dict, files: list[dict], *, creating: bool, interaction_id: str | None = None
) -> None:
    """Refuse a message body Discord would refuse: form limits (50035), empty (50006)."""
    errors = FormErrors()
    if data.get("content") is not None and len(str(data["content"])) > 2000:
        errors.add("content", "Must be 2000 or fewer in length.", "BASE_TYPE_MAX_LENGTH")
    embeds = data.get("embeds") or []
    if len(embeds) > 10:
        errors.add("embeds", "Must be 10 or fewer in length.", "BASE_TYPE_MAX_LENGTH")
    total = 0
    for i, embed in enumerate(embeds):
        texts = [
            (f"embeds.{i}.title", embed.get("title"), 256),
            (f"embeds.{i}.description", embed.get("description"), 4096),
            (f"embeds.{i}.footer.text", (embed.get("footer") or {}).get("text"), 2048),
            (f"embeds.{i}.author.name", (embed.get("author") or {}).get("name"), 256),
        ]
        for path, text, limit in texts:
            if text is not None:
                errors.length(path, text, 0, limit)
                total += len(str(text))
        fields = embed.get("fields") or []
        if len(fields) > 25:
            errors.add(
                f"embeds.{i}.fields", "Must be 25 or fewer in length.", "BASE_TYPE_MAX_LENGTH"
            )
        for j, embed_field in enumerate(fields):
            errors.length(f"embeds.{i}.fields.{j}.name", embed_field.get("name"), 1, 256)
            errors.length(f"embeds.{i}.fields.{j}.value", embed_field.get("value"), 1, 1024)
            total += len(str(embed_field.get("name") or ""))
            total += len(str(embed_field.get("value") or ""))
    if total > 6000:
        errors.add("embeds", "Embed size exceeds maximum size of 6000", "MAX_EMBED_SIZE_EXCEEDED")
    v2 = bool((data.get("flags") or 0) & IS_COMPONENTS_V2)
    components_check(data.get("components") or [], errors, v2=v2)
    errors.raise_if_any(interaction_id)
    has_body = (
        data.get("content")
        or embeds
        or data.get("components")
        or files
        or data.get("sticker_ids")
        or data.get("poll")
    )
    if creating and not has_body:
        raise Refused(Reply(400, EMPTY_MESSAGE, interaction_id))


def components_check(rows: list[dict], errors: FormErrors, *, v2: bool) -> None:
    if not v2 and len(rows) > 5:
        errors.add("components", "Must be 5 or fewer in length.", "BASE_TYPE_MAX_LENGTH")
    for i, row in enumerate(rows):
        if not v2 and row.get("type") != ACTION_ROW:
            errors.add(f"components.{i}.type", "Must be an action row", "COMPONENT_LAYOUT_INVALID")
            continue
        if row.get("type") != ACTION_ROW:
            continue
        children = row.get("components") or []
        errors.length(f"components.{i}.components", children, 1, 5)
        if len(children) > 1 and any(c.get("type") in SELECT_TYPES for c in children):
            errors.add(
                f"components.{i}.components",
                "A select menu must be alone in its row",
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
            )
    custom_ids: set[str] = set()
    for n, (leaf, _) in enumerate(walk(rows)):
        path = f"components.leaf{n}"
        custom_id = leaf.get("custom_id")
        if custom_id is not None:
            errors.length(f"{path}.custom_id", custom_id, 1, 100)
            if custom_id in custom_ids:
                errors.add(
                    f"{path}.custom_id",
                    "Duplicated custom id",
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                )
            custom_ids.add(custom_id)
        kind = leaf.get("type")
        if kind == BUTTON:
            if leaf.get("label") is not None:
                errors.length(f"{path}.label", leaf["label"], 0, 80)
            if leaf.get("style") == LINK_STYLE:
                if not leaf.get("url") or custom_id:
                    errors.add(f"{path}.url", "A link button has a url and no custom_id")
            elif leaf.get("style") != PREMIUM_STYLE and not custom_id:
                errors.add(f"{path}.custom_id", "This field is required", "BASE_TYPE_REQUIRED")
        elif kind in SELECT_TYPES:
            if leaf.get("placeholder") is not None:
                errors.length(f"{path}.placeholder", leaf["placeholder"], 0, 150)
            low, high = leaf.get("min_values", 1), leaf.get("max_values", 1)
            if not (0 <= low <= 25 and 1 <= high <= 25 and low <= high):
                errors.add(f"{path}.max_values", "Needs 0 <= min_values <= max_values <= 25")
            if kind == STRING_SELECT:
                options = leaf.get("options") or []
                errors.length(f"{path}.options", options, 1, 25)
                if options and high > len(options):
                    errors.add(f"{path}.max_values", f"Must be {len(options)} or fewer.")
                for j, option in enumerate(options):
                    errors.length(f"{path}.options.{j}.label", option.get("label"), 1, 100)
                    errors.length(f"{path}.options.{j}.value", option.get("value"), 1, 100)
                    if option.get("description") is not None:
                        errors.length(
                            f"{path}.options.{j}.description", option["description"], 0, 100
                        )


def modal_check(data: dict, interaction_id: str) -> None:
    """Refuse a modal Discord would refuse (400, code 50035)."""
    errors = FormErrors()
    errors.length("data.title", data.get("title"), 1, 45)
    errors.length("data.custom_id", data.get("custom_id"), 1, 100)
    components = data.get("components") or []
    errors.length("data.components", components, 1, 5)
    for i, component in enumerate(components):
        path = f"data.components.{i}"
        if component.get("type") == ACTION_ROW:
            children = component.get("components") or []
            if len(children) != 1 or children[0].get("type") != TEXT_INPUT:
                errors.add(
                    path,
                    "A modal's action row holds one text input",
                    "COMPONENT_LAYOUT_INVALID",
                )
            for child in children:
                errors.length(f"{path}.components.0.label", child.get("label"), 1, 45)
        elif component.get("type") == LABEL:
            errors.length(f"{path}.label", component.get("label"), 1, 45)
            if component.get("description") is not None:
                errors.length(f"{path}.description", component["description"], 0, 100)
            if not isinstance(component.get("component"), dict):
                errors.add(f"{path}.component", "This field is required", "BASE_TYPE_REQUIRED")
    seen: set[str] = set()
    for n, (leaf, _) in enumerate(walk(components)):
        path = f"data.components.leaf{n}"
        if leaf.get("custom_id") is not None:
            errors.length(f"{path}.custom_id", leaf["custom_id"], 1, 100)
            if leaf["custom_id"] in seen:
                errors.add(
                    f"{path}.custom_id",
                    "Duplicated custom id",
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                )
            seen.add(leaf["custom_id"])
        if leaf.get("type") != TEXT_INPUT:
            continue
        if leaf.get("style") not in (1, 2):
            errors.add(f"{path}.style", "Value must be one of {1, 2}.", "BASE_TYPE_CHOICES")
        low, high = leaf.get("min_length") or 0, leaf.get("max_length") or 4000
        if not (0 <= low <= 4000 and 1 <= high <= 4000 and low <= high):
            errors.add(f"{path}.max_length", "Needs 0 <= min_length <= max_length <= 4000")
        if leaf.get("placeholder") is not None:
            errors.length(f"{path}.placeholder", leaf["placeholder"], 0, 100)
        if leaf.get("value") is not None:
            errors.length(f"{path}.value", leaf["value"], 0, 4000)
    errors.raise_if_any(interaction_id)


def commands_check(body: object) -> None:
    """Refuse a command list Discord would refuse (400, code 50035): not a list, more than 100
    commands, a chat command whose name or description is out of form, a name given twice."""
    errors = FormErrors()
    if not isinstance(body, list):
        errors.add("_", "Expected a list of commands", "BASE_TYPE_ARRAY")
        errors.raise_if_any()
    if len(body) > 100:
        errors.add("_", "Must be 100 or fewer in length.", "BASE_TYPE_MAX_LENGTH")
    seen: set[tuple[str, int]] = set()
    for i, command in enumerate(body):
        kind = command.get("type", 1)
        name = command.get("name") or ""
        if kind == 1:
            if not re.fullmatch(r"[-_\w]{1,32}", name) or name != name.lower():
                errors.add(
                    f"{i}.name", "Command name is invalid", "APPLICATION_COMMAND_INVALID_NAME"
                )
            errors.length(f"{i}.description", command.get("description"), 1, 100)
        if (name, kind) in seen:
            errors.add(
                f"{i}.name",
                "Command names must be unique",
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
            )
        seen.add((name, kind))
    errors.raise_if_any()
