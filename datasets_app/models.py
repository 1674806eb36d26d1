from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

# Lower-case letters, digits, '-' and '_', starting with a letter or digit: safe in URLs and never a path trick.
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
name_validator = RegexValidator(
    NAME_PATTERN,
    "Use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit (no spaces, dots or slashes).",
    code="invalid_name",
)

SAMPLE_RATE_CHOICES = [
    (8000, "8 kHz (telephony)"),
    (16000, "16 kHz (speech, keywords)"),
    (22050, "22.05 kHz (TTS)"),
    (24000, "24 kHz"),
    (44100, "44.1 kHz"),
    (48000, "48 kHz"),
]


class Dataset(models.Model):
    name = models.CharField(max_length=63, unique=True, validators=[name_validator])
    description = models.TextField(blank=True)
    sample_rate = models.PositiveIntegerField(choices=SAMPLE_RATE_CHOICES, default=16000)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ClipQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status=Clip.Status.ACTIVE)

    def trashed(self):
        return self.filter(status=Clip.Status.TRASHED)


def clip_storage_name(dataset_id: int, content_hash: str) -> str:
    """Where a canonical clip lives in the media storage. Never derived from the uploaded file's name."""
    return f"clips/{dataset_id}/{content_hash[:2]}/{content_hash}.wav"


class Clip(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        TRASHED = "trashed", "Trashed"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="clips")
    audio = models.FileField(max_length=255, help_text="Canonical mono 16-bit PCM WAV at the dataset's rate")
    original_name = models.CharField(max_length=255, blank=True)
    original_format = models.CharField(max_length=32, blank=True)
    label = models.CharField(max_length=100, blank=True, db_index=True)
    transcript = models.TextField(blank=True)
    score = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    speaker = models.CharField(max_length=100, blank=True, db_index=True)
    notes = models.TextField(blank=True)
    duration = models.FloatField(help_text="Seconds")
    source_sample_rate = models.PositiveIntegerField()
    source_channels = models.PositiveSmallIntegerField()
    peak_dbfs = models.FloatField()
    rms_dbfs = models.FloatField()
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of the canonical audio samples")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(null=True, blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = ClipQuerySet.as_manager()

    EDITABLE_FIELDS = ("label", "transcript", "score", "speaker", "notes")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "content_hash"], name="unique_clip_content_per_dataset"),
            models.CheckConstraint(
                condition=models.Q(score__isnull=True) | (models.Q(score__gte=0) & models.Q(score__lte=1)),
                name="clip_score_between_0_and_1",
            ),
        ]
        indexes = [models.Index(fields=["dataset", "status", "label"])]

    def __str__(self) -> str:
        return f"{self.dataset.name}/{self.pk} {self.original_name}"
