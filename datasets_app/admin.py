"""Django admin for data correction: datasets and clips searchable and filterable, annotations editable."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.html import format_html

from audioml.audit import Actor
from datasets_app.models import Clip, Dataset


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "sample_rate", "clip_count", "created_by", "created_at")
    list_filter = ("sample_rate", "created_at")
    search_fields = ("name", "description")
    readonly_fields = ("created_by", "created_at", "panel_link")
    fields = ("name", "description", "sample_rate", "licence", "source", "consent_note", "panel_link", "created_by",
              "created_at")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            active_clips=Count("clips", filter=Q(clips__status=Clip.Status.ACTIVE))
        )

    @admin.display(description="Active clips", ordering="active_clips")
    def clip_count(self, obj: Dataset) -> int:
        return obj.active_clips

    @admin.display(description="Panel")
    def panel_link(self, obj: Dataset) -> str:
        if not obj.pk:
            return "—"
        return format_html('<a href="{}">Open in the panel</a>', obj.get_absolute_url())

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.clips.exists():
            readonly.append("sample_rate")  # the clips are stored at this rate
        return readonly

    def save_model(self, request, obj, form, change):
        data = {field: form.cleaned_data[field] for field in Dataset.EDITABLE_FIELDS if field in form.cleaned_data}
        if change:
            stored = Dataset.objects.get(pk=obj.pk)
            stored.update({field: data[field] for field in form.changed_data if field in data},
                          by=Actor.from_request(request))
            obj.refresh_from_db()
        else:
            created = Dataset.objects.create_dataset(by=Actor.from_request(request), **data)
            obj.pk, obj.created_by, obj.created_at = created.pk, created.created_by, created.created_at
            obj._state.adding = False

    def delete_model(self, request, obj):
        obj.remove(by=Actor.from_request(request))

    def delete_queryset(self, request, queryset):
        for dataset in queryset:
            self.delete_model(request, dataset)


class LabelledFilter(admin.SimpleListFilter):
    title = "label"
    parameter_name = "has_label"

    def lookups(self, request, model_admin):
        return [("yes", "Labelled"), ("no", "Unlabelled")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(label="")
        if self.value() == "no":
            return queryset.filter(label="")
        return queryset


@admin.register(Clip)
class ClipAdmin(admin.ModelAdmin):
    list_display = ("id", "dataset", "original_name", "label", "short_transcript", "score", "speaker", "duration", "kind", "status", "created_at")
    list_display_links = ("id", "original_name")
    list_editable = ("label", "score")
    list_filter = ("status", "kind", LabelledFilter, "dataset", "original_format", "created_at")
    list_select_related = ("dataset",)
    search_fields = ("original_name", "label", "transcript", "speaker", "notes", "content_hash")
    list_per_page = 50
    actions = ("trash_clips", "restore_clips")
    readonly_fields = (
        "audio_player", "dataset", "kind", "original_name", "original_format", "duration", "source_sample_rate",
        "source_channels", "peak_dbfs", "rms_dbfs", "clipped_fraction", "content_hash", "uploaded_by", "created_at",
        "updated_at", "updated_by",
    )
    fieldsets = (
        (None, {"fields": ("audio_player", "dataset", "kind", "original_name", "label", "transcript", "score", "speaker", "notes", "source", "status")}),
        ("Audio", {"classes": ("collapse",), "fields": (
            "original_format", "duration", "source_sample_rate", "source_channels", "peak_dbfs", "rms_dbfs",
            "clipped_fraction", "content_hash",
        )}),
        ("History", {"classes": ("collapse",), "fields": ("uploaded_by", "created_at", "updated_at", "updated_by")}),
    )

    def has_add_permission(self, request) -> bool:
        return False  # clips arrive through ingestion (panel, API, import_dataset), which decodes and checks them

    @admin.display(description="Transcript")
    def short_transcript(self, obj: Clip) -> str:
        return obj.transcript if len(obj.transcript) <= 60 else obj.transcript[:59] + "…"

    @admin.display(description="Audio")
    def audio_player(self, obj: Clip) -> str:
        if not obj.pk:
            return "—"
        url = reverse("clip-audio", args=[obj.dataset.name, obj.pk])
        return format_html('<audio controls preload="metadata" src="{}"></audio><br><a href="{}?download=1">Download WAV</a>', url, url)

    def save_model(self, request, obj, form, change):
        # Clips are never added here (has_add_permission); the form edits the annotations and the status.
        changed = [field for field in form.changed_data if field in (*Clip.EDITABLE_FIELDS, "status")]
        if changed:
            stored = Clip.objects.get(pk=obj.pk)
            stored.edit({field: form.cleaned_data[field] for field in changed}, by=Actor.from_request(request))
            obj.refresh_from_db()

    def delete_model(self, request, obj):
        obj.purge(by=Actor.from_request(request))

    def delete_queryset(self, request, queryset):
        queryset.purge(by=Actor.from_request(request))

    @admin.action(description="Move selected clips to the trash", permissions=["change"])
    def trash_clips(self, request, queryset):
        changed = len(Clip.objects.filter(pk__in=queryset.values("pk")).trash(by=Actor.from_request(request)))
        self.message_user(request, f"{changed} clip(s) moved to the trash.", messages.SUCCESS)

    @admin.action(description="Restore selected clips from the trash", permissions=["change"])
    def restore_clips(self, request, queryset):
        changed = len(Clip.objects.filter(pk__in=queryset.values("pk")).restore(by=Actor.from_request(request)))
        self.message_user(request, f"{changed} clip(s) restored.", messages.SUCCESS)
