"""The Discovery admin: the operators' console for browsing, finding and fixing discoveries.

The list shows each discovery's sync state (linked to its queue item) and whether its location
resolved in VH, which the sync records in the queue item's ``metadata["location_resolved"]``.
The change page shows the type's four fields by their labels and previews the exact VH row the
writer would write now. An edit is checked and saved by
:func:`syncq.services.discovery_update`, with the submission's own rules
(:mod:`discoveries.rules`): the form holds none of its own; a saved change goes on to VH
through the discovery's queue item by itself (a synced discovery's one VH row is updated).
"Save and retry sync" also retries an item when nothing changed, and the list action retries
through :mod:`syncq.services`, so every retry is recorded as an operator action of source
``admin``. Deleting (the delete page and "Delete selected") goes through
:func:`syncq.services.discovery_delete`: a discovery that may have a VH row is removed from the
Control Room first, through the queue, and the confirmation names that row.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.db import models
from django.db.models import Q
from django.http import HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from discoveries.haven.writer import haven_row_preview
from discoveries.models import Discovery
from discoveries.rules import (
    EDITABLE,
    DiscoveryInvalid,
    discovery_changes_validate,
    field_label,
)
from discoveries.services import discovery_values
from discoveries.types import (
    ALL_TYPE_FIELD_KEYS,
    DISCOVERY_TYPES,
    DiscoveryType,
    discovery_type_lookup,
)
from syncq.admin import AsciiIdsAdmin
from syncq.display import when_html
from syncq.errors import DiscoveryBeingDeleted, QueueItemNotFound, QueueItemNotRetryable
from syncq.ids import AsciiIntegerField
from syncq.models import Operation, SyncQueueItem, SyncStatus
from syncq.services import (
    discovery_delete,
    discovery_update,
    discovery_vh_row,
    queue_item_retry,
    queue_items_retry,
)

#: The change page's sections of columns, in order; the type's own inputs come between the
#: submitter and the other columns.
PLACE_COLUMNS = (
    "discovery_type",
    "description",
    "system_name",
    "location",
    "location_type",
    "planet_name",
    "galaxy_name",
    "coordinates",
)
SUBMITTER_COLUMNS = (
    "user_id",
    "username",
    "guild_id",
    "submission_timestamp",
    "submission_key",
    "imported_keeper_id",
)
OTHER_COLUMNS = (
    "time_period",
    "condition",
    "significance",
    "evidence_url",
    "related_discoveries",
    "tags",
    "analysis_status",
    "pattern_matches",
    "mystery_tier",
    "metadata",
)
#: Form field name prefix of the type's four fields; the rest of the name is the metadata key.
TYPE_FIELD_PREFIX = "type__"
SAVE_AND_RETRY = "_saveretry"
#: The most VH rows a "Delete selected" confirmation names one by one.
VH_ROWS_LISTED = 100


def _queue_item(discovery: Discovery) -> SyncQueueItem | None:
    """The discovery's queue item, or ``None`` for a row that has none (not yet adopted)."""
    try:
        return discovery.queue_item
    except ObjectDoesNotExist:
        return None


def _actor(request):
    """The request's user as a model instance, for the operator action's ``actor``.

    ``request.user`` is a lazy wrapper, which :class:`discoveries.haven.router.HavenRouter` does not
    recognise as a keeper model when the action row is related to it.
    """
    return get_user_model().objects.get(pk=request.user.pk)


def _being_deleted(item: SyncQueueItem | None) -> bool:
    """Whether the discovery of ``item`` is queued for deletion from VH (it goes once its VH
    row is gone)."""
    return item is not None and item.operation == Operation.DELETE


def vh_removal_text(*, discovery_id: int, haven_id: int | None, system_name: str | None) -> str:
    """What deleting discovery ``discovery_id`` does to the Control Room's map, for the
    confirmation pages: its VH row ``haven_id`` (in system ``system_name``) is removed, or it
    has none keeper.db knows of."""
    if haven_id is None:
        return (
            f"Discovery #{discovery_id}: keeper.db knows no VH row of it; if it was never "
            "sent to the Control Room it is deleted at once."
        )
    return (
        f"Discovery #{discovery_id}: VH row #{haven_id} in system {system_name or '?'} will be "
        "removed from the Control Room, then the discovery is deleted."
    )


def _emoji_variants(dtype: DiscoveryType) -> set[str]:
    # Legacy rows may store an emoji without its variation selector (or with the text one).
    bare = dtype.emoji.replace("\ufe0f", "")
    return {dtype.emoji, bare, bare + "\ufe0e"}


# --- list filters ---------------------------------------------------------------------------


class DiscoveryTypeFilter(admin.SimpleListFilter):
    """The ten types by emoji and name, however the emoji is stored, plus unknown values."""

    title = "type"
    parameter_name = "type"

    def lookups(self, request, model_admin):
        return [(t.slug, str(t)) for t in DISCOVERY_TYPES] + [("unknown", "Unknown type")]

    def queryset(self, request, queryset):
        if self.value() == "unknown":
            known = set().union(*(_emoji_variants(t) for t in DISCOVERY_TYPES))
            return queryset.exclude(discovery_type__in=known)
        for dtype in DISCOVERY_TYPES:
            if self.value() == dtype.slug:
                return queryset.filter(discovery_type__in=_emoji_variants(dtype))
        return queryset


class SyncStateFilter(admin.SimpleListFilter):
    """The queue item's state, or no queue item at all."""

    title = "sync state"
    parameter_name = "sync_state"

    def lookups(self, request, model_admin):
        return [*SyncStatus.choices, ("deleting", "Being deleted"), ("none", "No queue item")]

    def queryset(self, request, queryset):
        if self.value() == "none":
            return queryset.filter(queue_item__isnull=True)
        if self.value() == "deleting":
            return queryset.filter(queue_item__operation=Operation.DELETE)
        if self.value() in SyncStatus.values:
            return queryset.filter(queue_item__sync_status=self.value())
        return queryset


class LocationResolvedFilter(admin.SimpleListFilter):
    """Whether the sync found the location in VH (from the queue item's metadata)."""

    title = "location in VH"
    parameter_name = "resolved"

    def lookups(self, request, model_admin):
        return [("yes", "Resolved"), ("no", "Unresolved"), ("unknown", "Unknown")]

    def queryset(self, request, queryset):
        resolved = Q(queue_item__metadata__location_resolved=True)
        unresolved = Q(queue_item__metadata__location_resolved=False)
        if self.value() == "yes":
            return queryset.filter(resolved)
        if self.value() == "no":
            return queryset.filter(unresolved)
        if self.value() == "unknown":
            # Not exclude(resolved | unresolved): SQL's NULL for a missing key would hide
            # the very rows asked for.
            known = Discovery.objects.filter(resolved | unresolved).values("pk")
            return queryset.exclude(pk__in=known)
        return queryset


# --- the change form -------------------------------------------------------------------------


#: The most ticked discoveries the list's retry action takes without the queue list's
#: confirmation step.
DISCOVERY_RETRY_LIMIT = 100


class ReadableJSONDecoder(json.JSONDecoder):
    """Python's JSON decoder, reporting JSON that Python cannot read (nested too deeply, or a
    number of more than 4,300 digits) as invalid JSON, which the form shows, rather than
    raising another error."""

    def decode(self, s, *args, **kwargs):
        try:
            return super().decode(s, *args, **kwargs)
        except RecursionError:
            raise json.JSONDecodeError("nested too deeply", s, 0) from None
        except json.JSONDecodeError:
            raise
        except ValueError as exc:
            raise json.JSONDecodeError(str(exc), s, 0) from None


class DiscoveryAdminForm(forms.ModelForm):
    """A discovery's columns, its type as a choice of the ten, and (added per type by
    :meth:`DiscoveryAdmin.get_form`) the type's four fields, stored in ``metadata``.

    ``metadata`` shows only the keys other than the type's fields; on save the type's fields
    are written into it (a blank field removes its key). Whether the edit may be stored is
    :func:`discoveries.rules.discovery_changes_validate`'s to say, shown at each input.
    """

    class Meta:
        model = Discovery
        fields = tuple(
            name
            for name in (*PLACE_COLUMNS, *SUBMITTER_COLUMNS, *OTHER_COLUMNS)
            if name in EDITABLE
        )

    dtype: DiscoveryType | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        current = self.instance.discovery_type if self.instance.pk else None
        choices = [(t.emoji, str(t)) for t in DISCOVERY_TYPES]
        known = discovery_type_lookup(current)
        if "discovery_type" in self.fields:
            if current and known is None:
                choices.insert(0, (current, f"Unknown type {current!r}: choose one"))
            self.fields["discovery_type"] = forms.ChoiceField(
                choices=choices,
                initial=known.emoji if known else current,
                help_text="Unknown types cannot be mapped to VH; choose one of the ten.",
            )
            if known is not None:
                self.initial["discovery_type"] = known.emoji
        # What is stored now: the rules check an edit against it.
        self.stored = discovery_values(self.instance)
        metadata = self.instance.metadata
        if self.dtype is not None and isinstance(metadata, dict) and "metadata" in self.fields:
            self.initial["metadata"] = {
                k: v for k, v in metadata.items() if k not in self.dtype.field_keys
            }
            for field in self.dtype.fields:
                value = metadata.get(field.key)
                if value is not None:
                    self.initial[TYPE_FIELD_PREFIX + field.key] = (
                        value if isinstance(value, str) else str(value)
                    )
        if "metadata" in self.fields:
            metadata_field = self.fields["metadata"]
            metadata_field.decoder = ReadableJSONDecoder
            metadata_field.help_text = (
                "A JSON object. The type's fields above are stored in it under their keys."
            )

    def changes(self) -> dict[str, object]:
        """The columns the operator changed, for :func:`syncq.services.discovery_update`:
        the type's four inputs go into ``metadata``, over the JSON object the operator left in
        the metadata box."""
        cleaned = self.cleaned_data
        changed = set(self.changed_data)
        changes = {
            name: cleaned.get(name) for name in changed if name in EDITABLE and name != "metadata"
        }
        type_inputs = [name for name in changed if name.startswith(TYPE_FIELD_PREFIX)]
        if "metadata" in changed or type_inputs:
            box = cleaned.get("metadata")
            merged = {} if box in (None, "") else box
            if isinstance(merged, dict) and self.dtype is not None:
                merged = dict(merged)
                for field in self.dtype.fields:
                    value = cleaned.get(TYPE_FIELD_PREFIX + field.key)
                    if value:
                        merged[field.key] = value
                    else:
                        merged.pop(field.key, None)
            changes["metadata"] = merged
        return changes

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            discovery_changes_validate(current=self.stored, changes=self.changes())
        except DiscoveryInvalid as exc:
            for name, problems in exc.errors.items():
                for problem in problems:
                    self._add_rule_error(name, problem)
        return cleaned

    def _add_rule_error(self, name: str, problem: str) -> None:
        """Show a refusal of :mod:`discoveries.rules` at the input it concerns."""
        if name in self.fields:
            self.add_error(name, problem)
        elif TYPE_FIELD_PREFIX + name in self.fields:
            self.add_error(TYPE_FIELD_PREFIX + name, problem)
        elif name in ALL_TYPE_FIELD_KEYS and "metadata" in self.fields:
            self.add_error("metadata", f"{name}: {problem}")
        else:
            self.add_error(None, f"{field_label(name)}: {problem}")


# --- the admin -------------------------------------------------------------------------------


@admin.register(Discovery)
class DiscoveryAdmin(AsciiIdsAdmin):
    """Discoveries with their sync state; new ones come only through the submit service."""

    form = DiscoveryAdminForm
    # Counts in ASCII digits only, as every door reads numbers (syncq.ids).
    formfield_overrides = {models.IntegerField: {"form_class": AsciiIntegerField}}
    list_display = (
        "id",
        "type_display",
        "system_name",
        "location",
        "username",
        "submitted",
        "sync_state",
        "location_resolved",
    )
    list_display_links = ("id", "type_display")
    list_filter = (
        DiscoveryTypeFilter,
        SyncStateFilter,
        LocationResolvedFilter,
        "system_name",
        "submission_timestamp",
    )
    list_select_related = ("queue_item",)
    search_fields = ("description", "system_name", "location", "username")
    # "delete_selected" here replaces Django's own: deleting goes through the delete service.
    actions = ["retry_sync", "delete_selected"]
    readonly_fields = (
        "id",
        "user_id",
        "submission_timestamp",
        "submission_key",
        "imported_keeper_id",
        "haven_discovery_id",
        "type_fields_display",
        "sync_state",
        "location_resolved",
        "sync_error",
        "haven_row_preview",
    )

    def get_fieldsets(self, request, obj=None):
        dtype = obj.type if obj is not None else None
        type_fields = ["type_fields_display"]
        if dtype is not None and self.has_change_permission(request, obj):
            type_fields += [TYPE_FIELD_PREFIX + f.key for f in dtype.fields]
        return [
            (None, {"fields": ["id", *PLACE_COLUMNS]}),
            ("Submitter", {"fields": list(SUBMITTER_COLUMNS)}),
            ("Type fields", {"fields": type_fields}),
            ("Other columns", {"fields": list(OTHER_COLUMNS)}),
            (
                "Sync",
                {"fields": ["sync_state", "location_resolved", "sync_error", "haven_discovery_id"]},
            ),
            ("VH row preview", {"fields": ["haven_row_preview"]}),
        ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        dtype = obj.type if obj is not None else None
        attrs: dict[str, object] = {"dtype": dtype}
        for field in dtype.fields if dtype else ():
            # The limit is drawn as the input's maxlength; the rules check it on save.
            attrs[TYPE_FIELD_PREFIX + field.key] = forms.CharField(
                label=field.label,
                required=False,
                strip=False,
                widget=forms.TextInput(attrs={"maxlength": field.max_length, "size": 60}),
                help_text=f"metadata key {field.key!r}, at most {field.max_length} characters",
            )
        kwargs["form"] = type("DiscoveryAdminForm", (self.form,), attrs)
        return super().get_form(request, obj, change=change, **kwargs)

    def has_add_permission(self, request) -> bool:
        # A discovery without its queue item would never sync: new ones go through
        # syncq.services.discovery_submit (the bot, the API, manage.py submit_discovery).
        return False

    # --- columns -----------------------------------------------------------------------------

    @admin.display(description="type", ordering="discovery_type")
    def type_display(self, obj: Discovery) -> str:
        dtype = obj.type
        return str(dtype) if dtype else f"❓ unknown ({obj.discovery_type!r})"

    @admin.display(description="submitted", ordering="submission_timestamp")
    def submitted(self, obj: Discovery) -> str:
        return when_html(obj.submission_timestamp, timezone.now())

    @admin.display(description="sync state", ordering="queue_item__sync_status")
    def sync_state(self, obj: Discovery):
        item = _queue_item(obj)
        if item is None:
            return "no queue item"
        url = reverse("admin:syncq_syncqueueitem_change", args=[item.pk])
        label, detail = item.get_sync_status_display(), ""
        if _being_deleted(item) and item.sync_status != SyncStatus.SYNCED:
            label = "Being deleted"
            detail = "its VH row is removed from the Control Room first"
            if item.sync_status == SyncStatus.CONFLICT:
                detail = "held: the Control Room changed its VH row; choose on the queue item"
            elif item.sync_status == SyncStatus.MAX_RETRIES_EXCEEDED:
                detail = "the removal from VH failed; retry it on the queue item"
        elif item.sync_status == SyncStatus.WAITING:
            metadata = item.metadata if isinstance(item.metadata, dict) else {}
            waiting = metadata.get("waiting") if isinstance(metadata.get("waiting"), dict) else {}
            detail = waiting.get("reason") or item.sync_error or ""
        elif item.sync_status == SyncStatus.CONFLICT:
            detail = "the Control Room changed its VH row; choose a version on the queue item"
        if not detail:
            return format_html('<a href="{}">{}</a>', url, label)
        return format_html(
            '<a href="{}" title="{}">{}</a><br><small class="sync-state-detail">{}</small>',
            url,
            item.sync_error or detail,
            label,
            Truncator(str(detail)).chars(80),
        )

    @admin.display(description="location in VH", boolean=True)
    def location_resolved(self, obj: Discovery) -> bool | None:
        item = _queue_item(obj)
        metadata = item.metadata if item is not None else None
        value = metadata.get("location_resolved") if isinstance(metadata, dict) else None
        return value if isinstance(value, bool) else None

    @admin.display(description="last sync error")
    def sync_error(self, obj: Discovery) -> str:
        item = _queue_item(obj)
        return (item.sync_error if item else None) or "-"

    @admin.display(description="type's fields")
    def type_fields_display(self, obj: Discovery) -> str:
        dtype = obj.type
        if dtype is None:
            return f"unknown type {obj.discovery_type!r}: choose a type to see its fields"
        values = obj.type_fields
        return render_to_string(
            "admin/discoveries/discovery/type_fields.html",
            {
                "dtype": dtype,
                "fields": [(f.label, values.get(f.key)) for f in dtype.fields],
                "unreadable": not isinstance(obj.metadata, dict | None),
            },
        )

    @admin.display(description="VH row")
    def haven_row_preview(self, obj: Discovery) -> str:
        if isinstance(obj.metadata, str):
            # The stored text tells a JSON string from text that is not JSON (see the mapping).
            obj.metadata_stored = obj.metadata_raw()
        preview = haven_row_preview(obj)
        item = _queue_item(obj)
        return render_to_string(
            "admin/discoveries/discovery/haven_preview.html",
            {
                "preview": preview,
                "row": list(preview.row.items()) if preview.row else [],
                "synced_to": item.haven_discovery_id
                if item and item.sync_status == SyncStatus.SYNCED
                else None,
            },
        )

    # --- retry ---------------------------------------------------------------------------------

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        item = _queue_item(obj) if obj is not None else None
        # An edit already sends itself to VH; the button also retries an item when nothing
        # changed. A discovery being deleted takes no edit at all.
        context["show_save_and_retry"] = (
            item is not None
            and not _being_deleted(item)
            and self.has_change_permission(request, obj)
        )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- saving ------------------------------------------------------------------------------

    def save_model(self, request, obj, form, change):
        """Store the edit through :func:`syncq.services.discovery_update`, which also sends it
        to VH through the discovery's queue item. The form has
        shown every refusal already; one that arises only now (another edit landed between the
        two) is reported, and nothing is stored."""
        try:
            discovery_update(
                discovery_id=obj.pk, changes=form.changes(), actor=_actor(request), source="admin"
            )
        except DiscoveryInvalid as exc:
            request.discovery_refused = True
            self.message_user(request, f"Nothing was saved: {exc}.", messages.ERROR)
        except DiscoveryBeingDeleted:
            request.discovery_refused = True
            self.message_user(
                request,
                f"Nothing was saved: discovery #{obj.pk} is being deleted (its VH row is removed "
                "from the Control Room first, then the discovery), so it can no longer be edited.",
                messages.ERROR,
            )
        obj.refresh_from_db()
        # discovery_update requeues the item only when a value changed (form.stored is what
        # was stored when the form was shown).
        request.discovery_requeued = not getattr(
            request, "discovery_refused", False
        ) and form.stored != discovery_values(obj)

    def log_change(self, request, obj, message):
        if getattr(request, "discovery_refused", False):
            return None
        return super().log_change(request, obj, message)

    def response_change(self, request, obj):
        if getattr(request, "discovery_refused", False):
            return HttpResponseRedirect(request.get_full_path())
        requeued = getattr(request, "discovery_requeued", False)
        if SAVE_AND_RETRY not in request.POST:
            response = super().response_change(request, obj)
            if requeued:
                self._requeued_message(request, obj)
            return response
        self.message_user(request, f"Discovery #{obj.pk} was saved.", messages.SUCCESS)
        if requeued:
            # The edit made its item pending with its attempts reset: nothing is left to retry.
            self._requeued_message(request, obj)
        else:
            self._retry_one(request, obj)
        return HttpResponseRedirect(request.get_full_path())

    def _requeued_message(self, request, obj: Discovery) -> None:
        """Say where a saved change goes: the queue item is pending again and the sync sends
        the change to VH next, updating the discovery's VH row when it has one."""
        item = _queue_item(Discovery.objects.get(pk=obj.pk))
        if item is None:
            return
        row = discovery_vh_row(obj)
        where = (
            f"VH row #{row} is updated at the next sync"
            if row is not None
            else "the sync writes it to VH next"
        )
        self.message_user(
            request,
            f"Queue item {item.pk} is pending again with its attempts reset: {where}.",
            messages.SUCCESS,
        )

    def _retry_one(self, request, obj: Discovery) -> None:
        item_id = (
            SyncQueueItem.objects.filter(discovery_id=obj.pk).values_list("id", flat=True).first()
        )
        if item_id is None:
            self.message_user(
                request, f"Discovery #{obj.pk} has no queue item to retry.", messages.WARNING
            )
            return
        try:
            queue_item_retry(item_id=item_id, actor=_actor(request), source="admin")
        except QueueItemNotRetryable as exc:
            self.message_user(request, f"Not retried: {exc}.", messages.WARNING)
        except QueueItemNotFound:
            self.message_user(
                request, f"Not retried: queue item {item_id} is gone.", messages.WARNING
            )
        else:
            self.message_user(
                request,
                f"Queue item {item_id} is pending again with its attempts reset; "
                "the sync takes it next.",
                messages.SUCCESS,
            )

    @admin.action(description="Retry sync of the selected discoveries", permissions=["change"])
    def retry_sync(self, request, queryset):
        if (
            request.POST.get("select_across") == "1"
            or len(request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME)) > DISCOVERY_RETRY_LIMIT
        ):
            # Large retries belong to the queue list, which counts and asks before it acts.
            self.message_user(
                request,
                f"Nothing changed: this action retries at most {DISCOVERY_RETRY_LIMIT} ticked "
                "discoveries. To retry more, use Queue items, which shows the count and asks "
                "first.",
                messages.WARNING,
            )
            return None
        item_ids = list(
            SyncQueueItem.objects.filter(discovery__in=queryset).values_list("id", flat=True)
        )
        without = queryset.count() - len(item_ids)
        report = queue_items_retry(ids=item_ids, actor=_actor(request), source="admin")
        if report.reset:
            self.message_user(
                request, f"{len(report.reset)} queue item(s) reset to pending.", messages.SUCCESS
            )
        if report.refused:
            states = ", ".join(sorted(set(report.refused.values())))
            self.message_user(
                request,
                f"{len(report.refused)} queue item(s) not retried: they are {states}; only "
                "pending, waiting or failed items retry (a conflict needs a choice on its queue "
                "item).",
                messages.WARNING,
            )
        if without:
            self.message_user(
                request, f"{without} discovery(ies) have no queue item.", messages.WARNING
            )

    # --- deleting ------------------------------------------------------------------------------

    def delete_view(self, request, object_id, extra_context=None):
        """Django's delete page, naming on the confirmation the VH row that will be removed
        from the Control Room's map (:func:`vh_removal_text`)."""
        obj = self.get_object(request, unquote(object_id))
        if obj is not None and request.method != "POST":
            haven_id = discovery_vh_row(obj)
            extra_context = {
                **(extra_context or {}),
                "vh_removal": vh_removal_text(
                    discovery_id=obj.pk, haven_id=haven_id, system_name=obj.system_name
                ),
                "vh_row": haven_id,
            }
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request, obj):
        """Delete through :func:`syncq.services.discovery_delete`: at once, or queued behind
        the removal of its VH row; :meth:`response_delete` says which."""
        haven_id = discovery_vh_row(obj)
        result = discovery_delete(discovery_id=obj.pk, actor=_actor(request), source="admin")
        request.discovery_deleted = (obj.pk, result, haven_id)

    def delete_queryset(self, request, queryset):
        """Each discovery through :func:`syncq.services.discovery_delete`; the results are kept
        on the request for the message."""
        results: dict[str, list[tuple[int, int | None]]] = {"deleted": [], "queued": []}
        actor = _actor(request)
        for obj in queryset.select_related("queue_item"):
            haven_id = discovery_vh_row(obj)
            try:
                result = discovery_delete(discovery_id=obj.pk, actor=actor, source="admin")
            except Discovery.DoesNotExist:
                continue
            results[result].append((obj.pk, haven_id))
        request.discoveries_deleted = results

    def response_delete(self, request, obj_display, obj_id):
        if IS_POPUP_VAR in request.POST:
            return super().response_delete(request, obj_display, obj_id)
        _, result, haven_id = getattr(request, "discovery_deleted", (obj_id, "deleted", None))
        if result == "queued":
            row = f"VH row #{haven_id}" if haven_id is not None else "its VH row, if it has one,"
            text = (
                f"Discovery #{obj_id} is queued for deletion: the sync removes {row} from the "
                "Control Room first, then deletes the discovery."
            )
        else:
            text = f"Discovery #{obj_id} was deleted at once: it had no row in the Control Room."
        self.message_user(request, text, messages.SUCCESS)
        if self.has_change_permission(request, None):
            url = reverse(
                f"{self.admin_site.name}:discoveries_discovery_changelist",
            )
            url = add_preserved_filters(
                {"preserved_filters": self.get_preserved_filters(request), "opts": self.opts}, url
            )
        else:
            url = reverse(f"{self.admin_site.name}:index")
        return HttpResponseRedirect(url)

    @admin.action(description="Delete selected discoveries", permissions=["delete"])
    def delete_selected(self, request, queryset):
        """Django's "Delete selected", through :meth:`delete_queryset`: the confirmation lists
        the VH rows that will be removed from the Control Room, and the message says which
        discoveries went at once and which are queued behind their VH row's removal."""
        if not request.POST.get("post"):
            response = django_delete_selected(self, request, queryset)
            if isinstance(response, TemplateResponse):
                response.context_data["vh_removals"], response.context_data["vh_more"] = (
                    self._vh_removals(queryset)
                )
            return response
        _, _, perms_needed, protected = self.get_deleted_objects(queryset, request)
        if protected:
            return django_delete_selected(self, request, queryset)
        if perms_needed:
            raise PermissionDenied
        if not queryset.exists():
            return None
        self.log_deletions(request, queryset)
        self.delete_queryset(request, queryset)
        results = request.discoveries_deleted
        if results["deleted"]:
            n = len(results["deleted"])
            self.message_user(
                request,
                f"Deleted {n} discover{'y' if n == 1 else 'ies'} at once (no row in the Control "
                "Room).",
                messages.SUCCESS,
            )
        if results["queued"]:
            n = len(results["queued"])
            known = [f"#{h}" for _, h in results["queued"][:VH_ROWS_LISTED] if h is not None]
            rows = (
                f"VH row{'s' if len(known) > 1 else ''} {', '.join(known)}"
                if known
                else "their VH rows"
            )
            self.message_user(
                request,
                f"Queued {n} discover{'y' if n == 1 else 'ies'} for deletion: the sync removes "
                f"{rows} from the Control Room first, then deletes "
                f"{'it' if n == 1 else 'them'}.",
                messages.SUCCESS,
            )
        return None

    def _vh_removals(self, queryset) -> tuple[list[str], int]:
        """The confirmation's lines for the discoveries of ``queryset`` that have a VH row
        (at most :data:`VH_ROWS_LISTED`), and how many more there are."""
        rows = [
            (pk, own if own is not None else queued, system)
            for pk, own, queued, system in queryset.order_by("pk").values_list(
                "pk", "haven_discovery_id", "queue_item__haven_discovery_id", "system_name"
            )
            if own is not None or queued is not None
        ]
        lines = [
            vh_removal_text(discovery_id=pk, haven_id=haven_id, system_name=system)
            for pk, haven_id, system in rows[:VH_ROWS_LISTED]
        ]
        return lines, max(0, len(rows) - VH_ROWS_LISTED)
