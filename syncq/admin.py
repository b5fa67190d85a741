"""The operators' console for the sync queue: browse items, read why they failed or wait, and
retry or reset them one or thousands at a time; let waiting items be written without their place;
and, on an item's page, settle a conflict with the Control Room by keeping one version. Every
change goes through :mod:`syncq.services`, which refuses what does not apply (synced and syncing
items, a conflict that is over) and records an :class:`OperatorAction` (source ``admin``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import (
    ERROR_FLAG,
    IGNORED_PARAMS,
    ORDER_VAR,
    PAGE_VAR,
    SEARCH_VAR,
)
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.db import models
from django.db.models import Count
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.text import Truncator, smart_split
from django.utils.translation import ngettext

from discoveries.models import Discovery
from syncq.display import retry_due_text, when_html
from syncq.errors import ConflictVersionChanged, QueueItemNotFound, QueueItemNotInConflict
from syncq.ids import MAX_ID, id_read
from syncq.models import (
    HavenAgent,
    Operation,
    OperatorAction,
    SyncAttempt,
    SyncQueueItem,
    SyncStatus,
)
from syncq.selectors import agent_online, conflict_row, waiting_row
from syncq.services import (
    CONFLICT_CHOICES,
    RETRYABLE,
    RetryReport,
    UnplacedReport,
    queue_item_conflict_resolve,
    queue_items_reset_attempts,
    queue_items_retry,
    queue_items_write_unplaced,
)

#: A bulk action over more items than this shows a confirmation page with the count first.
CONFIRM_ABOVE = 100

#: How many characters of an error the list shows; the detail page shows all of it.
ERROR_PREVIEW_CHARS = 80

#: How many characters of a system, a place or a submitter's name the queue list shows; the
#: whole text is the cell's tooltip.
NAME_PREVIEW_CHARS = 24

#: How many item ids an operator action's row links to; the rest are counted.
ACTION_IDS_SHOWN = 8

#: How an operator action's ``action`` reads in the console.
ACTION_LABELS = {
    "retry": "Retry",
    "reset_attempts": "Reset attempts",
    "write_unplaced": "Write without a place",
    "edit": "Edit",
    "delete": "Delete",
    "conflict_keep_keeper": "Kept the keeper version",
    "conflict_keep_control_room": "Kept the Control Room's version",
}

#: What a bulk action says of the items that are gone: ``"one|many"``.
MISSING_TEXT = "{n} queue item no longer exists.|{n} queue items no longer exist."

#: How a refused item's state reads in a sentence.
STATE_WORDS = {SyncStatus.CONFLICT: "in conflict", SyncStatus.MAX_RETRIES_EXCEEDED: "exceeded"}

#: The most refusal reasons a bulk action lists, and the most item ids it names per reason.
REASONS_SHOWN = 10
IDS_SHOWN = 20

#: Badge colours per state; white text reads on each in the light and the dark admin theme.
STATE_COLOURS = {
    SyncStatus.PENDING: "#b7791f",
    SyncStatus.SYNCING: "#2b6cb0",
    SyncStatus.SYNCED: "#2f855a",
    SyncStatus.MAX_RETRIES_EXCEEDED: "#c53030",
    SyncStatus.WAITING: "#6b46c1",
    SyncStatus.CONFLICT: "#c05621",
}


def _states_text(states) -> str:
    words = sorted({STATE_WORDS.get(state, state) for state in states})
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def retry_refusals(refused: dict[int, str]) -> list[str]:
    """The warning of a retry or reset that refused ``refused`` (``{id: state}``): how many,
    in which states, and what an item in conflict needs instead."""
    if not refused:
        return []
    n = len(refused)
    text = ngettext(
        "Refused {n} queue item that is {states}",
        "Refused {n} queue items that are {states}",
        n,
    ).format(n=n, states=_states_text(refused.values()))
    text += "; only pending, waiting or exceeded items can be retried."
    if SyncStatus.CONFLICT in refused.values():
        text += (
            " An item in conflict needs a choice: open it and keep the keeper version or the "
            "Control Room's."
        )
    return [text]


def unplaced_refusals(refused: dict[int, str]) -> list[str]:
    """The warnings of "Write without a place" for ``refused`` (``{id: reason}``): one per
    reason, naming its items, so that VH-Database.db's own CHECK is quoted once."""
    by_reason: dict[str, list[int]] = {}
    for item_id, reason in refused.items():
        by_reason.setdefault(reason, []).append(item_id)
    texts = []
    for reason, ids in list(by_reason.items())[:REASONS_SHOWN]:
        shown = ", ".join(str(i) for i in ids[:IDS_SHOWN]) + (" …" if len(ids) > IDS_SHOWN else "")
        texts.append(
            ngettext(
                "Not written without a place: queue item {ids}: {reason}",
                "Not written without a place: {n} queue items ({ids}): {reason}",
                len(ids),
            ).format(n=len(ids), ids=shown, reason=reason)
        )
    if len(by_reason) > REASONS_SHOWN:
        more = len(by_reason) - REASONS_SHOWN
        texts.append(f"… and {more} more reason{'s' if more > 1 else ''} for refusing.")
    return texts


@dataclass(frozen=True)
class BulkAction:
    """An action of the queue list: its ``verb`` (the menu's text), the ``service`` it calls
    with the items' ids (returning a :class:`RetryReport` or an :class:`UnplacedReport`), the
    message ``done`` (``"one|many"``, ``{n}`` the count), the ``state`` it keeps to (None:
    any), whether it ``always_confirm``s first, the states whose items it ``changes`` (others
    are refused), how it words the ``refusals`` of its service, and, for its confirmation page,
    what the refused items are (``refused_note``) and a ``note`` on what it does."""

    verb: str
    service: Callable[..., RetryReport | UnplacedReport]
    done: str
    state: str | None = None
    always_confirm: bool = False
    changes: tuple[str, ...] = RETRYABLE
    refusals: Callable[[dict[int, str]], list[str]] = retry_refusals
    refused_note: str = "synced, syncing or in conflict"
    note: str = ""


BULK_ACTIONS: dict[str, BulkAction] = {
    "retry_selected": BulkAction(
        "Retry selected", queue_items_retry, "Retried {n} queue item.|Retried {n} queue items."
    ),
    "retry_all_exceeded": BulkAction(
        "Retry all exceeded",
        queue_items_retry,
        "Retried {n} exceeded queue item.|Retried {n} exceeded queue items.",
        state=SyncStatus.MAX_RETRIES_EXCEEDED,
        always_confirm=True,
    ),
    "reset_attempts": BulkAction(
        "Reset attempts",
        queue_items_reset_attempts,
        "Reset the attempts of {n} queue item.|Reset the attempts of {n} queue items.",
    ),
    "write_unplaced": BulkAction(
        "Write without a place",
        queue_items_write_unplaced,
        "Queued {n} waiting queue item to be written without its place.|Queued {n} waiting "
        "queue items to be written without their place.",
        always_confirm=True,
        changes=(SyncStatus.WAITING,),
        refusals=unplaced_refusals,
        refused_note="not waiting for a place",
        note=(
            "Each waiting item is written to VH-Database.db at the next sync without the system, "
            "planet or moon it names: the row is kept, but the Control Room's map shows it "
            "nowhere until the discovery is corrected. Where the file itself refuses such rows "
            "(the Control Room's current schema has a CHECK for it), the item stays waiting "
            "and the refusal is shown."
        ),
    ),
}


def _admin_action(name: str, action: BulkAction):
    """The admin action ``name`` (its function name, which the list's POST names) that runs
    ``action`` through :meth:`SyncQueueItemAdmin.bulk`; only users who may change queue items
    are offered it."""

    def run(modeladmin, request, queryset):
        return modeladmin.bulk(request, queryset, name=name, action=action)

    run.__name__ = name
    return admin.action(description=action.verb, permissions=["change"])(run)


#: Fields whose values a list filter reads as numbers, dates or times (a relation: its key).
NUMERIC_FIELDS = (
    models.IntegerField,
    models.FloatField,
    models.DecimalField,
    models.DateField,
    models.TimeField,
    models.DurationField,
    models.ForeignKey,
)


def _lookup_field(model, lookup: str) -> models.Field | None:
    """The field a list filter's ``lookup`` (``created_at__gte``, ``discovery__id__exact``)
    compares, following relations; None when it names no field of ``model``."""
    opts, field = model._meta, None
    for part in lookup.split("__"):
        try:
            field = opts.get_field(opts.pk.name if part == "pk" else part)
        except FieldDoesNotExist:
            break
        if field.is_relation and field.related_model is not None and not field.many_to_many:
            opts = field.related_model._meta
    return field


#: What a list filter's value may be after a date or time transform (``created_at__year``):
#: ASCII digits in these bounds (a year 0 or 10000 is Django's ``ValueError``, a month of
#: 30 digits SQLite's ``OverflowError``).
DATE_PART_BOUNDS = {
    "year": (1, 9999),
    "iso_year": (1, 9999),
    "quarter": (1, 4),
    "month": (1, 12),
    "week": (1, 53),
    "day": (1, 31),
    "week_day": (1, 7),
    "iso_week_day": (1, 7),
    "hour": (0, 23),
    "minute": (0, 59),
    "second": (0, 59),
}

#: What SQLite stores in an integer: a list filter's number past it is an ``OverflowError``.
INTEGER_BOUNDS = (-(2**63), 2**63 - 1)

#: The lookups whose value Django reads as the field's type (``contains`` and the like compare
#: text; ``isnull`` reads anything as true or false).
TYPED_LOOKUPS = frozenset({"exact", "gt", "gte", "lt", "lte", "in"})

#: The most terms (as Django splits them, :func:`smart_split`) and characters a changelist
#: search may hold: SQLite refuses a query of 1000 terms ("Expression tree is too large") and
#: a ``LIKE`` pattern past 50,000 characters.
SEARCH_MAX_TERMS = 50
SEARCH_MAX_CHARS = 1000

_ASCII_INTEGER = re.compile(r"-?[0-9]+\Z", re.ASCII)


def _lookup_path(model, key: str) -> tuple[models.Field | models.ForeignObjectRel | None, list]:
    """The field a list filter's ``key`` names, following relations (``discovery__id``,
    ``queue_item__id``), and the transforms and lookup after it (``["year", "gte"]``); None
    when ``key`` names no field of ``model``."""
    opts, field, parts = model._meta, None, key.split("__")
    for index, part in enumerate(parts):
        if opts is None:
            return field, parts[index:]
        try:
            field = opts.get_field(opts.pk.name if part == "pk" else part)
        except FieldDoesNotExist:
            return field, parts[index:]
        related = field.related_model if field.is_relation else None
        opts = related._meta if related is not None else None
    return field, []


def _value_field(field) -> models.Field:
    """The field whose type a filter on ``field`` compares: a relation's key."""
    if isinstance(field, models.ForeignObjectRel):
        return field.related_model._meta.pk
    if field.is_relation and field.related_model is not None:
        return getattr(field, "target_field", field.related_model._meta.pk)
    return field


def _integer_in(value: str, low: int, high: int) -> bool:
    return bool(_ASCII_INTEGER.match(value)) and low <= int(value) <= high


def lookup_refusal(model, key: str, values: list[str]) -> str | None:
    """Why the list filter ``key`` with ``values`` (as ``request.GET`` holds them) would be a
    server error rather than a filter, or None: a regular expression (SQLite's errors, and a
    slow pattern on members' text), a lookup on a JSON field other than ``isnull`` (SQLite
    has no ``contains``), a ``range`` (Django reads its text as characters), or a number not
    ASCII digits within an integer's or a date part's bounds (``__in`` split on ``,``)."""
    field, rest = _lookup_path(model, key)
    if field is None:
        return None  # not a field: Django's own filters, or its "incorrect lookup"
    if {"regex", "iregex"} & set(rest):
        return f"{key}: regular expressions are not allowed"
    if "range" in rest:
        return f"{key}: ranges are not allowed"
    field = _value_field(field)
    if isinstance(field, models.JSONField):
        return None if rest == ["isnull"] else f"{key}: only isnull on JSON"
    bounds = INTEGER_BOUNDS if isinstance(field, models.IntegerField) else None
    lookup = "exact"
    for part in rest:
        if part in DATE_PART_BOUNDS and isinstance(field, models.DateField | models.TimeField):
            bounds = DATE_PART_BOUNDS[part]
        elif part in ("date", "time") and isinstance(field, models.DateTimeField):
            bounds = None  # a date or time: Django's parsers refuse what is not one
        else:
            lookup = part
            break
    if bounds is None or lookup not in TYPED_LOOKUPS:
        return None
    items = [item for value in values for item in value.split(",")] if lookup == "in" else values
    if not all(_integer_in(item, *bounds) for item in items):
        return f"{key}: not ASCII digits from {bounds[0]} to {bounds[1]}"
    return None


class ChangelistGuardAdmin(admin.ModelAdmin):
    """A model admin whose list answers a crafted query string with Django's incorrect
    lookup (``?e=1``), never a 500: a list filter :func:`lookup_refusal` refuses (regular
    expressions, lookups into JSON, ranges, numbers past an integer's or a date part's
    bounds), or a search of more than :data:`SEARCH_MAX_TERMS` words or
    :data:`SEARCH_MAX_CHARS` characters (with a message). Django lets staff filter on any
    lookup of a model's own fields; the admins' own links are unaffected."""

    def get_changelist_instance(self, request):
        own = self._own_parameters(request)
        for key, values in request.GET.lists():
            refusal = None if key in own else lookup_refusal(self.model, key, values)
            if refusal:
                raise IncorrectLookupParameters(refusal)
        search = request.GET.get(SEARCH_VAR, "")
        if len(search) > SEARCH_MAX_CHARS or _more_terms_than(search, SEARCH_MAX_TERMS):
            self.message_user(
                request,
                f"Search for at most {SEARCH_MAX_TERMS} words and {SEARCH_MAX_CHARS} characters.",
                messages.ERROR,
            )
            raise IncorrectLookupParameters(f"{SEARCH_VAR}: too long")
        return super().get_changelist_instance(request)

    def _own_parameters(self, request) -> set[str]:
        """The query parameters Django's changelist reads itself (page, ordering, search,
        popup…) and those of this admin's own list filters (:class:`SimpleListFilter`): not
        field lookups."""
        own = {*IGNORED_PARAMS, PAGE_VAR, ORDER_VAR, SEARCH_VAR, ERROR_FLAG}
        for list_filter in self.get_list_filter(request):
            if isinstance(list_filter, type) and issubclass(list_filter, admin.SimpleListFilter):
                own.add(list_filter.parameter_name)
        return own


class AsciiIdsAdmin(ChangelistGuardAdmin):
    """A model admin whose ids, numbers and dates are ASCII digits only, as in the API
    (:mod:`syncq.ids`), and whose malformed requests get a message, never a 500:

    - a change, history or delete page of an id that is not ASCII digits naming 1 to 2**63-1
      (``abc``, ``١٢``, ``１２``, 10**30) finds no object: Django's "doesn't exist" message;
    - an action whose ticked rows (``_selected_action``) are not such ids acts on nothing and
      says so (Django would read them with ``int()``: a 500 for ``abc`` or 10**30, another
      row for ``١``); with "select all" the ticked rows do not count, as in Django;
    - a list filter on a number, date or time, or a page or ordering number, in other
      scripts' digits is an incorrect lookup: Django's ``?e=1``;
    - and the list's crafted filters and searches are refused as in
      :class:`ChangelistGuardAdmin`."""

    def get_object(self, request, object_id, from_field=None):
        field = self.opts.pk if from_field is None else self.opts.get_field(from_field)
        if isinstance(field, models.IntegerField) and id_read(object_id) is None:
            return None
        return super().get_object(request, object_id, from_field)

    def response_action(self, request, queryset):
        select_across = forms.BooleanField(required=False).clean(request.POST.get("select_across"))
        selected = request.POST.getlist(ACTION_CHECKBOX_NAME)
        if not select_across and any(id_read(value) is None for value in selected):
            self.message_user(
                request,
                "Nothing changed: the selection holds something that is not a row id (ASCII "
                f"digits, 1 to {MAX_ID}).",
                messages.ERROR,
            )
            return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset)

    def get_changelist_instance(self, request):
        for key, values in request.GET.lists():
            numeric = key in (PAGE_VAR, ORDER_VAR) or isinstance(
                _lookup_field(self.model, key), NUMERIC_FIELDS
            )
            if numeric and not all(value.isascii() for value in values):
                raise IncorrectLookupParameters(f"{key}: other scripts' digits")
        return super().get_changelist_instance(request)


def _more_terms_than(search: str, limit: int) -> bool:
    """Whether Django's search splits ``search`` into more than ``limit`` terms (stops
    reading at ``limit + 1``)."""
    return any(index >= limit for index, _ in enumerate(smart_split(search)))


class ErrorTextFilter(admin.SimpleListFilter):
    """The ten most common error texts of items not synced, most frequent first, each with its
    count."""

    title = "error text"
    parameter_name = "error"

    def lookups(self, request, model_admin):
        rows = (
            SyncQueueItem.objects.unsynced_errors()
            .order_by()
            .values("sync_error")
            .annotate(n=Count("id"))
            .order_by("-n", "sync_error")[:10]
        )
        return [
            (row["sync_error"], f"{Truncator(row['sync_error']).chars(60)} ({row['n']})")
            for row in rows
        ]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(sync_error=self.value())
        return queryset


def _waiting_reason(item: SyncQueueItem) -> str | None:
    """Why a waiting ``item`` waits, from its ``metadata`` (no query), or None."""
    metadata = item.metadata if isinstance(item.metadata, dict) else {}
    waiting = metadata.get("waiting")
    reason = waiting.get("reason") if isinstance(waiting, dict) else None
    return reason if isinstance(reason, str) and reason else None


def _conflict_hash(item: SyncQueueItem) -> str | None:
    """The hash of the Control Room's version an item in conflict holds (no query), or None."""
    metadata = item.metadata if isinstance(item.metadata, dict) else {}
    conflict = metadata.get("conflict")
    return conflict.get("theirs_hash") if isinstance(conflict, dict) else None


def _as_text(value: object) -> str | None:
    return None if value is None else str(value)


def conflict_table(ours: dict | None, theirs: dict) -> list[dict]:
    """The rows of a conflict's side-by-side view: each mapped ``column`` with ``ours`` (None
    for a delete), ``theirs`` and whether they ``differ`` (never for a delete: it has no
    version of ours to compare). ``theirs`` is the row as SQLite's text, so values are compared
    as text: our ``19`` is their ``'19'``."""
    columns = list(theirs) + [c for c in (ours or {}) if c not in theirs]
    return [
        {
            "column": column,
            "ours": (ours or {}).get(column),
            "theirs": theirs.get(column),
            "differs": ours is not None
            and _as_text(ours.get(column)) != _as_text(theirs.get(column)),
        }
        for column in columns
    ]


def state_label(value: str | None) -> str:
    """A queue item's state as people read it (:class:`SyncStatus`' labels); a state other
    tools wrote, unknown here, as it is stored."""
    if value in SyncStatus.values:
        return SyncStatus(value).label
    return value or "—"


def _name_cell(text: str | None) -> str:
    """A name cut to :data:`NAME_PREVIEW_CHARS`, the whole of it in the tooltip; ``"—"`` when
    empty."""
    if not text:
        return "—"
    short = Truncator(text).chars(NAME_PREVIEW_CHARS)
    if short == text:
        return text
    return format_html('<span title="{}">{}</span>', text, short)


class SyncAttemptInline(admin.TabularInline):
    """Every attempt of the item, newest first, read-only. Numbers count on across retries
    (:func:`syncq.services._attempt_numbers_load`)."""

    model = SyncAttempt
    fields = ("number", "started", "duration_ms", "outcome", "error", "haven_discovery_id")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="started", ordering="started_at")
    def started(self, attempt: SyncAttempt) -> str:
        return when_html(attempt.started_at, timezone.now())


@admin.register(SyncQueueItem)
class SyncQueueItemAdmin(AsciiIdsAdmin):
    """The queue, read-only field by field: states change only through the actions, which call
    the retry services."""

    list_display = (
        "id",
        "discovery_link",
        "where",
        "submitter",
        "state",
        "attempts",
        "next_retry",
        "last_error",
        "vh_id",
        "queued",
    )
    list_select_related = ("discovery",)
    list_filter = (
        "sync_status",
        "operation",
        ErrorTextFilter,
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = (
        "=id",
        "sync_error",
        "discovery__system_name",
        "discovery__location",
        "discovery__planet_name",
        "discovery__username",
        "discovery__discovery_type",
    )
    list_per_page = 100
    actions = tuple(_admin_action(name, action) for name, action in BULK_ACTIONS.items())
    fields = (
        "discovery_link",
        "system",
        "place",
        "submitter",
        "state",
        "operation",
        "attempts",
        "next_retry",
        "full_error",
        "haven_discovery_id",
        "queued",
        "last_attempt",
        "retry_after",
        "synced",
        "leased_until_text",
        "metadata",
    )
    readonly_fields = fields
    inlines = [SyncAttemptInline]

    def has_add_permission(self, request) -> bool:
        # Queue items are created with their discovery (discovery_submit), never by hand.
        return False

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        # Before the default routes: their "<path:object_id>/" would swallow these.
        return [
            path(
                "<path:object_id>/keep/<str:keep>/",
                wrap(self.conflict_resolve_view),
                name="{}_{}_keep".format(*info),
            ),
            path(
                "<path:object_id>/write-unplaced/",
                wrap(self.write_unplaced_view),
                name="{}_{}_write_unplaced".format(*info),
            ),
            path(
                "<path:object_id>/retry/",
                wrap(self.retry_view),
                name="{}_{}_retry".format(*info),
            ),
            path(
                "<path:object_id>/reset-attempts/",
                wrap(self.reset_attempts_view),
                name="{}_{}_reset_attempts".format(*info),
            ),
            *super().get_urls(),
        ]

    # --- columns ---------------------------------------------------------------------------

    @admin.display(description="discovery", ordering="discovery_id")
    def discovery_link(self, item: SyncQueueItem) -> str:
        """The discovery's type (its emoji, the name in the tooltip) and id, linked to its
        page."""
        discovery = item.discovery
        dtype = discovery.type
        emoji = dtype.emoji if dtype else "❓"
        type_name = dtype.name if dtype else f"unknown type {discovery.discovery_type!r}"
        if not self.admin_site.is_registered(Discovery):
            return format_html('<span title="{}">{} #{}</span>', type_name, emoji, discovery.id)
        url = reverse(f"{self.admin_site.name}:discoveries_discovery_change", args=[discovery.id])
        return format_html(
            '<a href="{}" title="{}" class="queue-discovery">{}&nbsp;#{}</a>',
            url,
            type_name,
            emoji,
            discovery.id,
        )

    @admin.display(description="system", ordering="discovery__system_name")
    def system(self, item: SyncQueueItem) -> str:
        return _name_cell(item.discovery.system_name)

    @admin.display(description="place", ordering="discovery__location")
    def place(self, item: SyncQueueItem) -> str:
        """The planet, moon or place named, with its kind (and a moon's planet) in the
        tooltip."""
        discovery = item.discovery
        if not discovery.location:
            return "—"
        kind = discovery.location_type or "place"
        whole = f"{discovery.location} ({kind}"
        whole += f" of {discovery.planet_name})" if discovery.planet_name else ")"
        return format_html(
            '<span title="{}">{}</span>',
            whole,
            Truncator(discovery.location).chars(NAME_PREVIEW_CHARS),
        )

    @admin.display(description="system · place", ordering="discovery__system_name")
    def where(self, item: SyncQueueItem) -> str:
        """The system, and under it the planet, moon or place (:meth:`place`)."""
        return format_html(
            '{}<br><small class="queue-place">{}</small>', self.system(item), self.place(item)
        )

    @admin.display(description="VH id", ordering="haven_discovery_id")
    def vh_id(self, item: SyncQueueItem) -> str:
        return str(item.haven_discovery_id) if item.haven_discovery_id is not None else "—"

    @admin.display(description="submitter", ordering="discovery__username")
    def submitter(self, item: SyncQueueItem) -> str:
        return _name_cell(item.discovery.username)

    @admin.display(description="queued", ordering="created_at")
    def queued(self, item: SyncQueueItem) -> str:
        return when_html(item.created_at, timezone.now())

    @admin.display(description="last attempt", ordering="last_sync_attempt")
    def last_attempt(self, item: SyncQueueItem) -> str:
        return when_html(item.last_sync_attempt, timezone.now())

    @admin.display(description="next retry after", ordering="next_retry_after")
    def retry_after(self, item: SyncQueueItem) -> str:
        return when_html(item.next_retry_after, timezone.now())

    @admin.display(description="synced", ordering="synced_at")
    def synced(self, item: SyncQueueItem) -> str:
        return when_html(item.synced_at, timezone.now())

    @admin.display(description="leased until", ordering="leased_until")
    def leased_until_text(self, item: SyncQueueItem) -> str:
        return when_html(item.leased_until, timezone.now())

    @admin.display(description="state", ordering="sync_status")
    def state(self, item: SyncQueueItem) -> str:
        badge = format_html(
            '<span class="sync-state sync-state-{}" style="background:{};color:#fff;'
            'padding:2px 8px;border-radius:10px;display:inline-block;line-height:1.4">{}</span>',
            item.sync_status,
            STATE_COLOURS.get(item.sync_status, "#4a5568"),
            state_label(item.sync_status),
        )
        if item.operation == Operation.DELETE and item.sync_status != SyncStatus.SYNCED:
            # The discovery goes once its VH row is gone; say so beside whatever state it is in.
            return format_html('{} <span class="sync-operation-delete">being deleted</span>', badge)
        return badge

    @admin.display(description="attempts", ordering="sync_attempts")
    def attempts(self, item: SyncQueueItem) -> str:
        return f"{item.sync_attempts} / {item.max_attempts}"

    @admin.display(description="next retry", ordering="next_retry_after")
    def next_retry(self, item: SyncQueueItem) -> str:
        text = retry_due_text(item, timezone.now())
        if item.next_retry_after is None or text == "—":
            return text
        return format_html(
            '<span title="{}">{}</span>', item.next_retry_after.isoformat(timespec="seconds"), text
        )

    @admin.display(description="last error or why it waits")
    def last_error(self, item: SyncQueueItem) -> str:
        if not item.sync_error:
            return "—"
        reason = _waiting_reason(item) if item.sync_status == SyncStatus.WAITING else None
        if reason is None:
            return Truncator(item.sync_error).chars(ERROR_PREVIEW_CHARS)
        # The reason first, whole sentence in the tooltip with the nearest names VH has.
        return format_html(
            '<span class="waiting-reason" title="{}">Waiting: {}</span>',
            item.sync_error,
            Truncator(reason).chars(ERROR_PREVIEW_CHARS),
        )

    @admin.display(description="last error")
    def full_error(self, item: SyncQueueItem) -> str:
        if not item.sync_error:
            return "—"
        return format_html('<pre style="white-space:pre-wrap;margin:0">{}</pre>', item.sync_error)

    # --- the item's page: why it waits, both versions of a conflict, and the choices ---------

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context.update(self._decision_context(request, obj))
            # The page's title names the state as people read it, not as it is stored.
            context["subtitle"] = (
                f"Queue item {obj.pk} (discovery {obj.discovery_id}): "
                f"{state_label(obj.sync_status)}"
            )
        # Every field is read only: the item changes through the buttons above, never a save;
        # and deleting it would silently drop its discovery from the sync (its discovery's
        # delete removes it).
        context.update(
            show_save=False,
            show_save_and_continue=False,
            show_save_and_add_another=False,
            show_delete=False,
        )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _decision_context(self, request, item: SyncQueueItem) -> dict:
        """What the change page shows above the item's fields: for a waiting item its reason,
        the nearest names and the "Write without a place" button; for a conflict both versions
        side by side and the two choices. Buttons only for users who may change queue items."""
        can_change = self.has_change_permission(request, item)
        retryable = item.sync_status in RETRYABLE
        context: dict[str, object] = {
            "queue_can_decide": can_change,
            "queue_state_label": state_label(item.sync_status),
            "queue_retry_urls": (
                {
                    "retry": reverse(
                        f"{self.admin_site.name}:syncq_syncqueueitem_retry", args=[item.pk]
                    ),
                    "reset": reverse(
                        f"{self.admin_site.name}:syncq_syncqueueitem_reset_attempts",
                        args=[item.pk],
                    ),
                }
                if can_change and retryable
                else None
            ),
            "queue_discovery_url": (
                reverse(
                    f"{self.admin_site.name}:discoveries_discovery_change",
                    args=[item.discovery_id],
                )
                if self.admin_site.is_registered(Discovery)
                else None
            ),
        }
        name = self.admin_site.name
        if item.sync_status == SyncStatus.WAITING:
            waiting = waiting_row(item)
            since = parse_datetime(waiting["since"]) if waiting["since"] else None
            context["queue_waiting"] = {
                **waiting,
                "since": since.strftime("%Y-%m-%d %H:%M:%S UTC") if since else None,
            }
            context["queue_write_unplaced_url"] = reverse(
                f"{name}:syncq_syncqueueitem_write_unplaced", args=[item.pk]
            )
        elif item.sync_status == SyncStatus.CONFLICT:
            conflict = conflict_row(item)
            rows = conflict_table(conflict["ours"], conflict["theirs"])
            context["queue_conflict"] = {
                **conflict,
                "rows": rows,
                "differing": sum(1 for row in rows if row["differs"]),
                "is_delete": conflict["operation"] == Operation.DELETE,
                "theirs_hash": _conflict_hash(item),
            }
            context["queue_keep_urls"] = {
                keep: reverse(f"{name}:syncq_syncqueueitem_keep", args=[item.pk, keep])
                for keep in CONFLICT_CHOICES
            }
        return context

    def _decision_item(self, request, object_id) -> SyncQueueItem:
        """The item a change page's button names, once the button may be used: POST only
        (the caller answers 405 otherwise), an item that exists (404) and a user who may change
        queue items (403)."""
        item = self.get_object(request, unquote(object_id))
        if item is None:
            raise Http404(f"no queue item {object_id}")
        if not self.has_change_permission(request, item):
            raise PermissionDenied
        return item

    def _change_redirect(self, item_id: int) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:syncq_syncqueueitem_change", args=[item_id])
        )

    def conflict_resolve_view(self, request, object_id, keep):
        """``POST <id>/keep/keeper/`` or ``<id>/keep/control_room/``: settle the item's
        conflict through :func:`syncq.services.queue_item_conflict_resolve`, then back to its
        page with what will happen. The form posts ``theirs_hash``, the version it showed; if
        the item now holds another (the Control Room changed the row again), nothing changes
        and the operator is asked to look again."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if keep not in CONFLICT_CHOICES:
            raise Http404(f"no choice {keep!r}")
        item = self._decision_item(request, object_id)
        conflict = conflict_row(item) if item.sync_status == SyncStatus.CONFLICT else {}
        row = conflict.get("haven_discovery_id")
        try:
            queue_item_conflict_resolve(
                item_id=item.pk,
                keep=keep,
                seen_hash=request.POST.get("theirs_hash") or "",
                actor=request.user,
                source="admin",
            )
        except ConflictVersionChanged:
            # The Control Room changed the row again (or another operator chose) since the page
            # was shown: a choice applies only to the version the operator saw.
            self.message_user(
                request,
                f"Nothing changed: VH row #{row} is not the version you saw any more; look at "
                "it again and choose.",
                messages.WARNING,
            )
            return self._change_redirect(item.pk)
        except QueueItemNotFound:
            self.message_user(request, f"Queue item {item.pk} no longer exists.", messages.WARNING)
            return HttpResponseRedirect(
                reverse(f"{self.admin_site.name}:syncq_syncqueueitem_changelist")
            )
        except QueueItemNotInConflict as exc:
            self.message_user(
                request,
                f"Nothing changed: queue item {item.pk} is {exc.status}, not in conflict.",
                messages.WARNING,
            )
            return self._change_redirect(item.pk)
        deleting = conflict.get("operation") == Operation.DELETE
        if conflict.get("theirs_deleted"):
            text = (
                f"Queue item {item.pk}: VH row #{row} will be written again at the next sync."
                if keep == "keeper"
                else f"Queue item {item.pk}: the Control Room deleted VH row #{row}; the "
                "discovery will be deleted too at the next sync."
            )
        elif keep == "keeper" and deleting:
            text = (
                f"Queue item {item.pk}: VH row #{row} will be deleted at the next sync, as the "
                "Control Room left it, and then the discovery."
            )
        elif keep == "keeper":
            text = (
                f"Queue item {item.pk}: the keeper version will be written over VH row #{row} "
                "at the next sync."
            )
        elif deleting:
            text = (
                f"Queue item {item.pk}: the delete is cancelled. VH row #{row} stays as the "
                "Control Room left it, and so does the discovery."
            )
        else:
            text = (
                f"Queue item {item.pk}: VH row #{row} stays as the Control Room left it; later "
                "edits of the discovery update it from there."
            )
        self.message_user(
            request,
            text + " If the Control Room changes the row again first, the item comes back here.",
            messages.SUCCESS,
        )
        return self._change_redirect(item.pk)

    def retry_view(self, request, object_id):
        """``POST <id>/retry/``: retry this one item now (attempts 0, error cleared, due now)
        through :func:`syncq.services.queue_items_retry`, recorded as an operator action of
        source ``admin``; a synced, syncing or conflict item is refused with the reason."""
        return self._one_item_reset(
            request, object_id, service=queue_items_retry, done="will be tried again now"
        )

    def reset_attempts_view(self, request, object_id):
        """``POST <id>/reset-attempts/``: give this one item back its whole allowance
        (attempts 0, due now, its last error kept) through
        :func:`syncq.services.queue_items_reset_attempts`; refusals as :meth:`retry_view`."""
        return self._one_item_reset(
            request,
            object_id,
            service=queue_items_reset_attempts,
            done="has its attempts back and is due now; its last error is kept until the next "
            "attempt",
        )

    def _one_item_reset(self, request, object_id, *, service, done: str):
        """Run ``service`` (a retry or a reset of attempts) on the item of a change page's
        button, then back to its page with what happened."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        item = self._decision_item(request, object_id)
        report = service(ids=[item.pk], actor=request.user, source="admin")
        if report.reset:
            self.message_user(request, f"Queue item {item.pk} {done}.", messages.SUCCESS)
        for text in retry_refusals(report.refused):
            self.message_user(request, text, messages.WARNING)
        if report.missing:
            self.message_user(request, f"Queue item {item.pk} no longer exists.", messages.WARNING)
            return HttpResponseRedirect(
                reverse(f"{self.admin_site.name}:syncq_syncqueueitem_changelist")
            )
        return self._change_redirect(item.pk)

    def write_unplaced_view(self, request, object_id):
        """``POST <id>/write-unplaced/``: "Write without a place" for this one waiting item,
        through :func:`syncq.services.queue_items_write_unplaced`; a refusal is shown with
        its reason (VH-Database.db's CHECK, quoted)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        item = self._decision_item(request, object_id)
        report = queue_items_write_unplaced(ids=[item.pk], actor=request.user, source="admin")
        if report.queued:
            self.message_user(
                request,
                f"Queue item {item.pk} will be written without its place at the next sync; the "
                "Control Room's map shows it nowhere until the discovery is corrected.",
                messages.SUCCESS,
            )
        for text in unplaced_refusals(report.refused):
            self.message_user(request, text, messages.WARNING)
        if report.missing:
            self.message_user(request, f"Queue item {item.pk} no longer exists.", messages.WARNING)
        return self._change_redirect(item.pk)

    # --- actions ---------------------------------------------------------------------------

    def get_actions(self, request):
        actions = super().get_actions(request)
        # Deleting a queue item would silently drop its discovery from the sync.
        actions.pop("delete_selected", None)
        return actions

    def changelist_view(self, request, extra_context=None):
        if (
            request.method == "POST"
            and _posted_action(request) == "retry_all_exceeded"
            and "retry_all_exceeded" in self.get_actions(request)
        ):
            # "Retry all exceeded" means every exceeded item under the current filters, whatever
            # is ticked, so it runs without a ticked row too (Django refuses empty selections).
            post = request.POST.copy()
            post["select_across"] = "1"
            if not post.getlist(ACTION_CHECKBOX_NAME):
                post.setlist(ACTION_CHECKBOX_NAME, ["all"])
            request.POST = post
        return super().changelist_view(request, extra_context)

    def bulk(self, request, queryset, *, name: str, action: BulkAction):
        """Run ``action`` on the items of ``queryset`` (the ticked rows, or every row under
        the filters with "select all"; only those in ``action.state`` when it names one),
        after a confirmation page when the set is large, spans the filter, or the action always
        asks. Reports what changed and what was refused."""
        if action.state is not None:
            queryset = queryset.filter(sync_status=action.state)
        select_across = forms.BooleanField(required=False).clean(request.POST.get("select_across"))
        if request.POST.get("post") != "yes":
            per_state = dict(queryset.order_by().values_list("sync_status").annotate(n=Count("id")))
            total = sum(per_state.values())
            if total == 0:
                self.message_user(request, "No queue item matches; nothing changed.", messages.INFO)
                return None
            if action.always_confirm or select_across or total > CONFIRM_ABOVE:
                return self._confirmation(request, name=name, action=action, per_state=per_state)
        ids = list(queryset.order_by().values_list("id", flat=True))
        report = action.service(ids=ids, actor=request.user, source="admin")
        changed = report.queued if isinstance(report, UnplacedReport) else report.reset
        if changed:
            one, many = action.done.split("|")
            self.message_user(
                request, ngettext(one, many, len(changed)).format(n=len(changed)), messages.SUCCESS
            )
        for text in action.refusals(report.refused):
            self.message_user(request, text, messages.WARNING)
        if report.missing:
            one, many = MISSING_TEXT.split("|")
            n = len(report.missing)
            self.message_user(request, ngettext(one, many, n).format(n=n), messages.WARNING)
        if not (changed or report.refused or report.missing):
            self.message_user(request, "No queue item matches; nothing changed.", messages.INFO)
        return None

    def _confirmation(self, request, *, name, action: BulkAction, per_state):
        """The page that shows how many items an action would change and refuse, and posts
        the same action again with ``post=yes`` when the operator confirms."""
        opts = self.model._meta
        changing = sum(n for state, n in per_state.items() if state in action.changes)
        context = {
            **self.admin_site.each_context(request),
            "title": "Are you sure?",
            "subtitle": None,
            "opts": opts,
            "app_label": opts.app_label,
            "action_name": name,
            "action_verb": action.verb,
            "action_note": action.note,
            "refused_note": action.refused_note,
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "total": sum(per_state.values()),
            "changing": changing,
            "refusing": sum(per_state.values()) - changing,
            "per_state": [
                (SyncStatus(state).label if state in SyncStatus.values else state, n)
                for state, n in sorted(per_state.items())
            ],
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request, "admin/syncq/syncqueueitem/action_confirmation.html", context
        )


def _posted_action(request) -> str | None:
    """The action an admin changelist POST chose, read as Django's ``response_action`` does."""
    names = request.POST.getlist("action")
    try:
        return names[int(request.POST.get("index", 0))]
    except (ValueError, IndexError):
        return None


class OperatorActionFilter(admin.SimpleListFilter):
    """The actions recorded, by their labels (:data:`ACTION_LABELS`); the same parameter as
    Django's own filter on the field, so older links keep working."""

    title = "action"
    parameter_name = "action__exact"

    def lookups(self, request, model_admin):
        actions = OperatorAction.objects.order_by().values_list("action", flat=True).distinct()
        return [(a, ACTION_LABELS.get(a, a)) for a in sorted(actions)]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(action=self.value())
        return queryset


@admin.register(OperatorAction)
class OperatorActionAdmin(AsciiIdsAdmin):
    """Who changed the queue, when, how and how many items, and which: a record, never
    edited."""

    list_display = ("when", "actor_name", "source", "action_label", "items_changed", "items")
    list_filter = ("source", OperatorActionFilter)
    search_fields = ("actor_name",)
    fields = ("when", "actor_name", "source", "action_label", "items_changed", "items", "detail")
    readonly_fields = fields

    @admin.display(description="at", ordering="at")
    def when(self, action: OperatorAction) -> str:
        return when_html(action.at, timezone.now())

    @admin.display(description="action", ordering="action")
    def action_label(self, action: OperatorAction) -> str:
        return ACTION_LABELS.get(action.action, action.action)

    @admin.display(description="items")
    def items(self, action: OperatorAction) -> str:
        """What the action changed, from its ``detail``: the queue items by id (the first
        :data:`ACTION_IDS_SHOWN`, each linked to its page, then how many more), every item in a
        state (linked to the list filtered to it), or a discovery (linked to its page)."""
        detail = action.detail if isinstance(action.detail, dict) else {}
        site = self.admin_site.name
        ids = detail.get("ids")
        if isinstance(ids, list):
            ids = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
            links = format_html_join(
                ", ",
                '<a href="{}">{}</a>',
                (
                    (reverse(f"{site}:syncq_syncqueueitem_change", args=[i]), i)
                    for i in ids[:ACTION_IDS_SHOWN]
                ),
            )
            more = len(ids) - ACTION_IDS_SHOWN
            if more > 0:
                return format_html(
                    '<span title="{}">{} … and {} more</span>',
                    ", ".join(str(i) for i in ids[:200]),
                    links,
                    more,
                )
            return links or "—"
        status = detail.get("status")
        if isinstance(status, str) and status:
            url = reverse(f"{site}:syncq_syncqueueitem_changelist")
            return format_html(
                'every item <a href="{}?{}">{}</a>',
                url,
                urlencode({"sync_status__exact": status}),
                state_label(status),
            )
        discovery_id = detail.get("discovery_id")
        if isinstance(discovery_id, int) and not isinstance(discovery_id, bool):
            if self.admin_site.is_registered(Discovery):
                url = reverse(f"{site}:discoveries_discovery_change", args=[discovery_id])
                return format_html('discovery <a href="{}">#{}</a>', url, discovery_id)
            return f"discovery #{discovery_id}"
        return "—"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(HavenAgent)
class HavenAgentAdmin(AsciiIdsAdmin):
    """The Control Room agents as the server last heard from them (``manage.py haven_agent``
    on the desktop): whether each is online, when it was last seen, its version and host, and
    what it found of VH-Database.db. Read only: the agents' heartbeats write these rows, and
    ``manage.py agent_token`` makes and revokes the agents' tokens."""

    list_display = (
        "name",
        "is_online",
        "last_seen",
        "version",
        "host",
        "vh_state",
        "started",
    )
    list_filter = ("vh_state",)
    search_fields = ("name", "host")
    ordering = ("name",)
    fields = (
        "name",
        "agent_id",
        "instance",
        "version",
        "host",
        "vh_state",
        "vh_detail",
        "catalog_hash",
        "started",
        "last_seen",
    )
    readonly_fields = fields

    @admin.display(description="last seen", ordering="last_seen_at")
    def last_seen(self, agent: HavenAgent) -> str:
        return when_html(agent.last_seen_at, timezone.now())

    @admin.display(description="running since", ordering="started_at")
    def started(self, agent: HavenAgent) -> str:
        return when_html(agent.started_at, timezone.now())

    @admin.display(boolean=True, description="online")
    def is_online(self, agent: HavenAgent) -> bool:
        """Seen within ``HAVEN_AGENT_ONLINE_SECONDS`` (:func:`syncq.selectors.agent_online`)."""
        return agent_online(agent.last_seen_at, now=timezone.now())

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def admin_ids_guard(site: admin.AdminSite = admin.site) -> list[type[models.Model]]:
    """Give every model admin of ``site`` whose model's primary key is an integer (Django's
    users and groups, django-q2's schedules, django-axes' records…) :class:`AsciiIdsAdmin`'s
    id rules, by registering it again as a subclass of both: those admins would otherwise
    answer ``_selected_action=abc`` or ``10**30`` with a 500. Admins of models keyed by text
    (API tokens, django-q2's tasks) keep their ids but get :class:`ChangelistGuardAdmin`'s
    checks of the list's filters and search. Admins already built on these are left as they
    are. Returns the models changed. Run once, below, after the apps listed before ``syncq``
    registered theirs."""
    changed = []
    for model, model_admin in list(site._registry.items()):
        guard = (
            AsciiIdsAdmin
            if isinstance(model._meta.pk, models.IntegerField)
            else ChangelistGuardAdmin
        )
        if isinstance(model_admin, guard):
            continue
        guarded = type(type(model_admin).__name__, (guard, type(model_admin)), {})
        guarded.__module__ = type(model_admin).__module__
        site.unregister(model)
        site.register(model, guarded)
        changed.append(model)
    return changed


admin_ids_guard()
