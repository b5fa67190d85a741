"""The operators' console for the sync queue: browse items, read why they failed, and retry or
reset them one or thousands at a time. Every change goes through :mod:`syncq.services`, which
refuses synced and syncing items and records an :class:`OperatorAction` (source ``admin``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Count
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import ngettext

from discoveries.models import Discovery
from syncq.display import retry_due_text
from syncq.models import OperatorAction, SyncAttempt, SyncQueueItem, SyncStatus
from syncq.services import (
    RETRYABLE,
    RetryReport,
    queue_items_reset_attempts,
    queue_items_retry,
)

#: A bulk action over more items than this shows a confirmation page with the count first.
CONFIRM_ABOVE = 100

#: How many characters of an error the list shows; the detail page shows all of it.
ERROR_PREVIEW_CHARS = 80

#: What a bulk action says of the items it refused and of those gone: ``"one|many"``.
REFUSED_TEXT = (
    "Refused {n} queue item that is synced or syncing; only pending or exceeded items can be "
    "retried.|Refused {n} queue items that are synced or syncing; only pending or exceeded "
    "items can be retried."
)
MISSING_TEXT = "{n} queue item no longer exists.|{n} queue items no longer exist."

#: Badge colours per state; white text reads on each in the light and the dark admin theme.
STATE_COLOURS = {
    SyncStatus.PENDING: "#b7791f",
    SyncStatus.SYNCING: "#2b6cb0",
    SyncStatus.SYNCED: "#2f855a",
    SyncStatus.MAX_RETRIES_EXCEEDED: "#c53030",
}


@dataclass(frozen=True)
class BulkAction:
    """An action of the queue list: its ``verb`` (the menu's text), the retry ``service`` it
    calls with the items' ids, the message ``done`` (``"one|many"``, ``{n}`` the count), the
    ``state`` it keeps to (None: any) and whether it ``always_confirm``s first."""

    verb: str
    service: Callable[..., RetryReport]
    done: str
    state: str | None = None
    always_confirm: bool = False


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
}


def _admin_action(name: str, action: BulkAction):
    """The admin action ``name`` (its function name, which the list's POST names) that runs
    ``action`` through :meth:`SyncQueueItemAdmin.bulk`; only users who may change queue items
    are offered it."""

    def run(modeladmin, request, queryset):
        return modeladmin.bulk(request, queryset, name=name, action=action)

    run.__name__ = name
    return admin.action(description=action.verb, permissions=["change"])(run)


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


class SyncAttemptInline(admin.TabularInline):
    """Every attempt of the item, newest first, read-only."""

    model = SyncAttempt
    fields = ("number", "started_at", "duration_ms", "outcome", "error", "haven_discovery_id")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SyncQueueItem)
class SyncQueueItemAdmin(admin.ModelAdmin):
    """The queue, read-only field by field: states change only through the actions, which call
    the retry services."""

    list_display = (
        "id",
        "discovery_link",
        "state",
        "attempts",
        "next_retry",
        "last_error",
        "haven_discovery_id",
        "created_at",
    )
    list_filter = ("sync_status", ErrorTextFilter, ("created_at", admin.DateFieldListFilter))
    search_fields = ("=id", "sync_error")
    list_per_page = 100
    actions = tuple(_admin_action(name, action) for name, action in BULK_ACTIONS.items())
    fields = (
        "discovery_link",
        "state",
        "attempts",
        "next_retry",
        "full_error",
        "haven_discovery_id",
        "created_at",
        "last_sync_attempt",
        "next_retry_after",
        "synced_at",
        "leased_until",
        "metadata",
    )
    readonly_fields = fields
    inlines = [SyncAttemptInline]

    def has_add_permission(self, request) -> bool:
        # Queue items are created with their discovery (discovery_submit), never by hand.
        return False

    # --- columns ---------------------------------------------------------------------------

    @admin.display(description="discovery", ordering="discovery_id")
    def discovery_link(self, item: SyncQueueItem) -> str:
        if not self.admin_site.is_registered(Discovery):
            return str(item.discovery_id)
        url = reverse(
            f"{self.admin_site.name}:discoveries_discovery_change", args=[item.discovery_id]
        )
        return format_html('<a href="{}">{}</a>', url, item.discovery_id)

    @admin.display(description="state", ordering="sync_status")
    def state(self, item: SyncQueueItem) -> str:
        return format_html(
            '<span class="sync-state sync-state-{}" style="background:{};color:#fff;'
            'padding:2px 8px;border-radius:10px;white-space:nowrap">{}</span>',
            item.sync_status,
            STATE_COLOURS.get(item.sync_status, "#4a5568"),
            item.get_sync_status_display(),
        )

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

    @admin.display(description="last error")
    def last_error(self, item: SyncQueueItem) -> str:
        if not item.sync_error:
            return "—"
        return Truncator(item.sync_error).chars(ERROR_PREVIEW_CHARS)

    @admin.display(description="last error")
    def full_error(self, item: SyncQueueItem) -> str:
        if not item.sync_error:
            return "—"
        return format_html('<pre style="white-space:pre-wrap;margin:0">{}</pre>', item.sync_error)

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
                return self._confirmation(request, name=name, verb=action.verb, per_state=per_state)
        ids = list(queryset.order_by().values_list("id", flat=True))
        report = action.service(ids=ids, actor=request.user, source="admin")
        for ids, text, level in (
            (report.reset, action.done, messages.SUCCESS),
            (report.refused, REFUSED_TEXT, messages.WARNING),
            (report.missing, MISSING_TEXT, messages.WARNING),
        ):
            if ids:
                one, many = text.split("|")
                self.message_user(request, ngettext(one, many, len(ids)).format(n=len(ids)), level)
        if not (report.reset or report.refused or report.missing):
            self.message_user(request, "No queue item matches; nothing changed.", messages.INFO)
        return None

    def _confirmation(self, request, *, name, verb, per_state):
        """The page that shows how many items an action would change and refuse, and posts
        the same action again with ``post=yes`` when the operator confirms."""
        opts = self.model._meta
        changing = sum(n for state, n in per_state.items() if state in RETRYABLE)
        context = {
            **self.admin_site.each_context(request),
            "title": "Are you sure?",
            "subtitle": None,
            "opts": opts,
            "app_label": opts.app_label,
            "action_name": name,
            "action_verb": verb,
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


@admin.register(OperatorAction)
class OperatorActionAdmin(admin.ModelAdmin):
    """Who changed the queue, when, how and how many items: a record, never edited."""

    list_display = ("at", "actor_name", "source", "action", "items_changed")
    list_filter = ("source", "action")
    search_fields = ("actor_name",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
