from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from datasets_app.models import Dataset, name_validator


class TrainingJob(models.Model):
    class Task(models.TextChoices):
        CLASSIFICATION = "classification", "Classification"
        TRANSCRIPTION = "transcription", "Transcription"
        REGRESSION = "regression", "Regression"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Phase(models.TextChoices):
        WAITING = "waiting", "Waiting for a worker"
        PREPARING = "preparing", "Preparing data"
        FEATURES = "features", "Extracting features"
        TRAINING = "training", "Training"
        EVALUATING = "evaluating", "Evaluating"
        EXPORTING = "exporting", "Exporting"
        REGISTERING = "registering", "Registering the model"
        DONE = "done", "Done"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="jobs")
    model_name = models.CharField(max_length=63, validators=[name_validator])
    task = models.CharField(max_length=20, choices=Task.choices, default=Task.CLASSIFICATION)
    preset = models.CharField(max_length=20, default="balanced")
    overrides = models.JSONField(default=dict, blank=True, help_text="Settings the user changed from the preset")
    config = models.JSONField(default=dict, blank=True, help_text="The full validated configuration")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    phase = models.CharField(max_length=12, choices=Phase.choices, default=Phase.WAITING)
    progress = models.FloatField(default=0.0)
    eta_seconds = models.FloatField(null=True, blank=True)
    epochs = models.JSONField(default=list, blank=True, help_text="Per-epoch metrics, in order")
    metrics = models.JSONField(default=dict, blank=True, help_text="Final metrics")
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    snapshot = models.JSONField(default=list, blank=True, help_text="Clip ids, content hashes and labels at submit")
    snapshot_hash = models.CharField(max_length=64, blank=True)
    artifacts_dir = models.CharField(max_length=255, blank=True)
    cancel_requested = models.BooleanField(default=False)
    task_id = models.CharField(max_length=64, blank=True, help_text="django-q2 task id")
    worker = models.CharField(max_length=128, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    rerun_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Job #{self.pk} {self.model_name} on {self.dataset.name}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class JobLog(models.Model):
    class Level(models.TextChoices):
        DEBUG = "debug", "Debug"
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="logs")
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.INFO)
    created_at = models.DateTimeField(default=timezone.now)
    message = models.TextField()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"[{self.level}] {self.message[:80]}"
