from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html

from audioml.errors import Conflict
from audioml.roles import CAN_CANCEL
from audioml.audit import Actor
from training_app.models import JobLog, TrainingJob


class JobLogInline(admin.TabularInline):
    model = JobLog
    fields = ("created_at", "level", "message")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    """Read-only: jobs change only through their own methods. The one action cancels."""

    list_display = ("id", "model_name", "dataset", "task", "task_settings", "status_badge", "phase",
                    "progress_percent", "created_by", "created_at", "finished_at")
    list_display_links = ("id", "model_name")
    list_filter = ("status", "task", "preset", "dataset")
    search_fields = ("model_name", "dataset__name", "error", "snapshot_hash", "worker")
    date_hierarchy = "created_at"
    list_select_related = ("dataset", "created_by")
    inlines = [JobLogInline]
    actions = ["cancel_selected"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields] + ["task_settings"]

    @admin.display(description="Task settings")
    def task_settings(self, job: TrainingJob) -> str:
        """What only this task reads: the detected labels and calibrated threshold, the clips left out."""
        config, calibration = job.config or {}, (job.metrics or {}).get("calibration") or {}
        parts = []
        if config.get("positive_label") and job.task == TrainingJob.Task.DETECTION:
            parts.append(f"detects {', '.join(config['positive_label'])}")
            parts.append(f"budget {config.get('target_fa_per_hour')} FA/h")
        if calibration.get("threshold") is not None:
            parts.append(f"threshold {calibration['threshold']:.3f}")
        if job.ignored_clips:
            parts.append(f"{job.ignored_clips} clips left out")
        return "; ".join(parts) or "—"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm(CAN_CANCEL)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, job: TrainingJob) -> str:
        text = "stopping" if job.status == "running" and job.cancel_requested else job.status
        return format_html('<span title="{}">{}</span>', job.error or job.get_status_display(), text)

    @admin.display(description="Progress", ordering="progress")
    def progress_percent(self, job: TrainingJob) -> str:
        return f"{job.progress:.0f}%"

    @admin.action(description="Cancel selected jobs", permissions=["cancel"])
    def cancel_selected(self, request, queryset) -> None:
        cancelled, stopping, refused = [], [], []
        actor = Actor.from_request(request)
        for job in queryset.order_by("id"):
            try:
                job.cancel(by=actor)
            except Conflict:
                refused.append(job)
                continue
            (cancelled if job.status == TrainingJob.Status.CANCELLED else stopping).append(job)
        if cancelled:
            self.message_user(request, f"Removed from the queue: {_ids(cancelled)}.", messages.SUCCESS)
        if stopping:
            self.message_user(request, f"Asked to stop at the next batch: {_ids(stopping)}.", messages.SUCCESS)
        if refused:
            self.message_user(request, f"Already finished, left as they were: {_ids(refused)}.", messages.WARNING)


def _ids(jobs: list[TrainingJob]) -> str:
    return ", ".join(f"#{job.pk}" for job in jobs)
