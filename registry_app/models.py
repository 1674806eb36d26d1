from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from datasets_app.models import name_validator
from training_app.models import TrainingJob


class RegisteredModel(models.Model):
    name = models.CharField(max_length=63, unique=True, validators=[name_validator])
    task = models.CharField(max_length=20, choices=TrainingJob.Task.choices, default=TrainingJob.Task.CLASSIFICATION)
    description = models.TextField(blank=True, help_text="Markdown")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        ARCHIVED = "archived", "Archived"

    # Everything but these is lineage and never changes once the version exists.
    MUTABLE_FIELDS = ("description", "tags", "status")

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    job = models.OneToOneField(TrainingJob, on_delete=models.PROTECT, related_name="model_version")
    snapshot_hash = models.CharField(max_length=64)
    snapshot_size = models.PositiveIntegerField(default=0, help_text="Number of clips in the data snapshot")
    labels = models.JSONField(default=list)
    feature_config = models.JSONField(default=dict)
    train_config = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)
    artifacts = models.JSONField(default=list, help_text="[{name, path, size, sha256}]")
    code_version = models.CharField(max_length=64, blank=True)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["model", "-version"]
        constraints = [models.UniqueConstraint(fields=["model", "version"], name="unique_version_per_model")]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.version}"


class Alias(models.Model):
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=63, validators=[name_validator])
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["model", "name"]
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="unique_alias_per_model")]
        verbose_name_plural = "aliases"

    def __str__(self) -> str:
        return f"{self.model.name}@{self.name}"


class AliasEvent(models.Model):
    """One move of an alias: kept forever as its history."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="alias_events")
    alias_name = models.CharField(max_length=63)
    from_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    to_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    from_number = models.PositiveIntegerField(null=True, blank=True)
    to_number = models.PositiveIntegerField(null=True, blank=True)
    moved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    moved_at = models.DateTimeField(default=timezone.now)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-moved_at", "-id"]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.alias_name}: v{self.from_number} → v{self.to_number}"
