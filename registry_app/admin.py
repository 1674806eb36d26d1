"""Django admin for the registry: lineage is read-only; aliases move only through the panel or the API, which
record every move in the alias history."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from audioml.audit import Actor
from registry_app.models import Alias, AliasEvent, ModelVersion, PredictionLog, RegisteredModel


def _pretty_json(value) -> str:
    return format_html('<pre style="white-space: pre-wrap; max-height: 420px; overflow: auto">{}</pre>',
                       json.dumps(value, indent=2, sort_keys=True))


class AliasInline(admin.TabularInline):
    model = Alias
    fields = ("name", "version", "updated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ("name", "task", "versions", "last_version", "created_by", "created_at")
    list_filter = ("task",)
    search_fields = ("name", "description")
    fields = ("name", "task", "description", "last_version", "created_by", "created_at", "panel_link")
    readonly_fields = ("name", "task", "last_version", "created_by", "created_at", "panel_link")
    inlines = [AliasInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(version_count=Count("versions"))

    @admin.display(ordering="version_count")
    def versions(self, obj):
        return obj.version_count

    @admin.display(description="Panel")
    def panel_link(self, obj):
        return format_html('<a href="{}">Open {} in the panel</a>', reverse("model-detail", args=[obj.name]), obj.name)

    def has_add_permission(self, request):
        return False  # models appear when a training job succeeds

    def has_delete_permission(self, request, obj=None):
        # A model whose aliases still point somewhere may be serving predictions.
        if obj is not None and obj.aliases.exists():
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        # Only the description is editable here (models are never added in admin).
        obj.set_description(obj.description, by=Actor.from_request(request))

    def delete_model(self, request, obj):
        obj.remove(by=Actor.from_request(request))

    def delete_queryset(self, request, queryset):
        for model in queryset:
            if not model.aliases.exists():
                self.delete_model(request, model)


class ModelVersionAdminForm(forms.ModelForm):
    tags = forms.CharField(required=False, max_length=1000, help_text="Comma-separated, e.g. kiosk, beta")

    class Meta:
        model = ModelVersion
        fields = ["description", "tags", "status"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["tags"] = ", ".join(self.instance.tags)

    def clean_tags(self) -> list[str]:
        return [tag.strip() for tag in self.cleaned_data["tags"].split(",") if tag.strip()]

    def clean_status(self) -> str:
        status = self.cleaned_data["status"]
        if status == ModelVersion.Status.ARCHIVED and self.instance.status != status and self.instance.aliases.exists():
            names = ", ".join(self.instance.aliases.values_list("name", flat=True))
            raise forms.ValidationError(f"{names} points at this version: move the alias before archiving it.")
        return status


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    form = ModelVersionAdminForm
    list_display = ("__str__", "status", "headline", "alias_names", "snapshot_size", "created_by", "created_at")
    list_filter = ("status", "model")
    search_fields = ("model__name", "description", "snapshot_hash", "code_version")
    list_select_related = ("model", "created_by")
    fieldsets = (
        (None, {"fields": ("model", "version", "task", "prediction_settings", "alias_names", "description", "tags",
                           "status")}),
        ("Lineage (never changes)", {"fields": (
            "job_link", "base_version", "snapshot_hash", "snapshot_size", "labels", "code_version", "created_by",
            "created_at",
        )}),
        ("Artifacts", {"fields": ("integrity", "artifact_table")}),
        ("Metrics and configuration", {"classes": ("collapse",), "fields": (
            "metrics_json", "feature_config_json", "train_config_json",
        )}),
    )
    readonly_fields = (
        "model", "version", "task", "prediction_settings", "alias_names", "job_link", "base_version", "snapshot_hash", "snapshot_size", "labels", "code_version",
        "created_by", "created_at", "integrity", "artifact_table", "metrics_json", "feature_config_json", "train_config_json",
    )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("aliases")

    def has_add_permission(self, request):
        return False  # versions are registered from succeeded training jobs only

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.aliases.exists():
            return False  # deleting a version an alias points at is refused everywhere
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request, queryset):
        aliased = [str(version) for version in queryset if version.aliases.exists()]
        if aliased:
            self.message_user(request, f"Not deleted, aliases point at them: {', '.join(aliased)}.", messages.ERROR)
        for version in queryset:
            if not version.aliases.exists():
                self.delete_model(request, version)

    def delete_model(self, request, obj):
        obj.remove(by=Actor.from_request(request))

    def save_model(self, request, obj, form, change):
        # Only description, tags and status are on the form (and versions are never added in admin).
        obj.update({field: form.cleaned_data[field] for field in ModelVersion.MUTABLE_FIELDS}, by=Actor.from_request(request))

    @admin.display(description="Accuracy")
    def headline(self, obj):
        metric = obj.headline_metric()
        if not metric:
            return "—"
        shown = f"{metric[1] * 100:.1f}%" if any(w in metric[0] for w in ("accuracy", "reject")) else f"{metric[1]:.3f}"
        return f"{shown} ({metric[0]})"

    @admin.display(description="Task")
    def task(self, obj):
        return obj.model.get_task_display()

    @admin.display(description="Prediction settings")
    def prediction_settings(self, obj):
        """What the task stored for predictions: a detection's calibrated threshold, say."""
        settings = (obj.metrics or {}).get("prediction") or {}
        return ", ".join(f"{key}: {value}" for key, value in sorted(settings.items())) or "—"

    @admin.display(description="Aliases")
    def alias_names(self, obj):
        return ", ".join(alias.name for alias in obj.aliases.all()) or "—"

    @admin.display(description="Training job")
    def job_link(self, obj):
        return format_html('<a href="{}">Job #{}</a>', reverse("admin:training_app_trainingjob_change", args=[obj.job_id]),
                           obj.job_id)

    @admin.display(description="Integrity")
    def integrity(self, obj):
        damage = obj.damage_report(trust_unchanged=True)
        if not damage:
            return "Every artifact matches its registered SHA-256."
        return format_html('<strong style="color: #b42318">Damaged:</strong> {}',
                           "; ".join(item["problem"] for item in damage))

    @admin.display(description="Artifacts")
    def artifact_table(self, obj):
        rows = format_html_join(
            "", "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            ((entry["name"], filesizeformat(entry["size"]), entry["sha256"], entry["path"]) for entry in obj.artifacts),
        )
        return format_html("<table><tr><th>File</th><th>Size</th><th>SHA-256</th><th>Storage path</th></tr>{}</table>", rows)

    @admin.display(description="Metrics")
    def metrics_json(self, obj):
        return _pretty_json(obj.metrics)

    @admin.display(description="Feature configuration")
    def feature_config_json(self, obj):
        return _pretty_json(obj.feature_config)

    @admin.display(description="Training configuration")
    def train_config_json(self, obj):
        return _pretty_json(obj.train_config)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Alias)
class AliasAdmin(ReadOnlyAdmin):
    """Aliases move through the panel or the API (promote, rollback, delete), which keep their history."""

    list_display = ("__str__", "model", "name", "version", "split_version", "split_percent", "shadow_version",
                    "updated_at")
    list_filter = ("model", "name")
    list_select_related = ("model", "version", "split_version", "shadow_version")


@admin.register(AliasEvent)
class AliasEventAdmin(ReadOnlyAdmin):
    list_display = ("moved_at", "model", "alias_name", "action", "from_number", "to_number", "moved_by", "note")
    list_filter = ("action", "model", "alias_name")
    search_fields = ("alias_name", "note", "model__name")
    list_select_related = ("model", "moved_by")
    date_hierarchy = "moved_at"


@admin.register(PredictionLog)
class PredictionLogAdmin(ReadOnlyAdmin):
    """The log is written by predictions and expires by itself; flags and reviews go through the panel or the API."""

    list_display = ("created_at", "model", "version_number", "role", "arm", "user", "caller_key", "answer", "score",
                    "latency_ms", "review_status")
    list_filter = ("role", "arm", "review_status", "model")
    search_fields = ("caller_key", "answer", "file_name", "model__name")
    list_select_related = ("model", "user")
    date_hierarchy = "created_at"
