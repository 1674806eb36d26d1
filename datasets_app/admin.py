"""Django admin for data correction: datasets and clips searchable and filterable, annotations editable."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from audioml.audit import record
from datasets_app.models import Clip, Dataset


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "sample_rate", "clip_count", "created_by", "created_at")
    list_filter = ("sample_rate", "created_at")
    search_fields = ("name", "description")
    readonly_fields = ("created_by", "created_at", "panel_link")
    fields = ("name", "description", "sample_rate", "panel_link", "created_by", "created_at")

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
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        record("dataset.update" if change else "dataset.create", obj, request=request,
               changes={field: [form.initial.get(field) if change else None, form.cleaned_data.get(field)]
                        for field in form.changed_data})

    def delete_model(self, request, obj):
        clip_count, dataset_id = obj.clips.count(), obj.pk  # delete() clears the pk
        super().delete_model(request, obj)
        record("dataset.delete", request=request, object_type="datasets_app.dataset", object_id=str(dataset_id),
               object_repr=obj.name, changes={"clips": [clip_count, 0]})

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
    list_display = ("id", "dataset", "original_name", "label", "short_transcript", "score", "speaker", "duration", "status", "created_at")
    list_display_links = ("id", "original_name")
    list_editable = ("label", "score")
    list_filter = ("status", LabelledFilter, "dataset", "original_format", "created_at")
    list_select_related = ("dataset",)
    search_fields = ("original_name", "label", "transcript", "speaker", "notes", "content_hash")
    list_per_page = 50
    actions = ("trash_clips", "restore_clips")
    readonly_fields = (
        "audio_player", "dataset", "original_name", "original_format", "duration", "source_sample_rate",
        "source_channels", "peak_dbfs", "rms_dbfs", "clipped_fraction", "content_hash", "uploaded_by", "created_at",
        "updated_at", "updated_by",
    )
    fieldsets = (
        (None, {"fields": ("audio_player", "dataset", "original_name", "label", "transcript", "score", "speaker", "notes", "status")}),
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
        changed = [field for field in form.changed_data if field in (*Clip.EDITABLE_FIELDS, "status")]
        if change and changed:
            obj.updated_at = timezone.now()
            obj.updated_by = request.user
        super().save_model(request, obj, form, change)
        if change and changed:
            record("clip.edit", obj, request=request,
                   changes={field: [form.initial.get(field), form.cleaned_data.get(field)] for field in changed})

    def delete_model(self, request, obj):
        clip_id = obj.pk  # delete() clears the pk
        super().delete_model(request, obj)
        record("clip.purge", request=request, object_type="datasets_app.clip", object_id=str(clip_id), object_repr=str(obj),
               changes={"clip_ids": [[clip_id], None]})

    def delete_queryset(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        super().delete_queryset(request, queryset)
        if ids:
            record("clip.purge", request=request, object_type="datasets_app.clip", object_repr=f"{len(ids)} clips",
                   changes={"clip_ids": [ids, None]})

    @admin.action(description="Move selected clips to the trash", permissions=["change"])
    def trash_clips(self, request, queryset):
        ids = list(queryset.active().values_list("pk", flat=True))
        changed = Clip.objects.filter(pk__in=ids).trash(request.user)
        if changed:
            record("clip.trash", request=request, object_type="datasets_app.clip", object_repr=f"{changed} clips", changes={"clip_ids": [None, ids]})
        self.message_user(request, f"{changed} clip(s) moved to the trash.", messages.SUCCESS)

    @admin.action(description="Restore selected clips from the trash", permissions=["change"])
    def restore_clips(self, request, queryset):
        ids = list(queryset.trashed().values_list("pk", flat=True))
        changed = Clip.objects.filter(pk__in=ids).restore(request.user)
        if changed:
            record("clip.restore", request=request, object_type="datasets_app.clip", object_repr=f"{changed} clips", changes={"clip_ids": [None, ids]})
        self.message_user(request, f"{changed} clip(s) restored.", messages.SUCCESS)
