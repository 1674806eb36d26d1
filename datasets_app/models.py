"""Datasets and their clips, with the domain methods every entry point calls (create, edit, trash, restore,
remove, import) and their audit. Kept as one module of ~520 lines: Dataset and Clip change together, and
splitting the two would put each half's transactions out of sight of the other."""

from __future__ import annotations

import math

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import IntegrityError, models, transaction
from django.db.models import ProtectedError
from django.db.models import Count, F, Q, Sum
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from audioml.audit import Actor, diff, record

# Lower-case letters, digits, '-' and '_', starting with a letter or digit: safe in URLs and never a path trick.
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
name_validator = RegexValidator(
    NAME_PATTERN,
    "Use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit (no spaces, dots or slashes).",
    code="invalid_name",
)

# Labels become folder names when a dataset is exported, so they may not hold path separators or control
# characters, nor be "." or "..". Anything else (spaces, capitals, accents, emoji) is fine.
label_validator = RegexValidator(
    r"^(?!\.{1,2}$)[^/\\\x00-\x1f\x7f]*$",
    "A label cannot contain '/', '\\' or control characters, and cannot be '.' or '..' "
    "(labels become folder names when the dataset is exported).",
    code="invalid_label",
)
text_line_validator = RegexValidator(
    r"^[^\x00-\x1f\x7f]*$", "Use a single line without control characters.", code="invalid_text"
)

# Levels used by the statistics page (and the clip table's badges).
CLIPPED_FRACTION = 0.001  # at least 0.1 % of the samples at full scale
NEAR_SILENT_RMS_DBFS = -50.0

SAMPLE_RATE_CHOICES = [
    (8000, "8 kHz (telephony)"),
    (16000, "16 kHz (speech, keywords)"),
    (22050, "22.05 kHz (TTS)"),
    (24000, "24 kHz"),
    (44100, "44.1 kHz"),
    (48000, "48 kHz"),
]


class DatasetManager(models.Manager):
    def create_dataset(self, name: str, description: str = "", sample_rate: int = 16000, by=None,
                       licence: str = "", source: str = "", consent_note: str = "") -> "Dataset":
        """Validate and create; raises ValidationError for a bad name or rate, DuplicateName if it is taken."""
        actor = Actor.of(by)
        dataset = Dataset(name=name, description=description.strip(), sample_rate=sample_rate,
                          licence=licence.strip(), source=source.strip(), consent_note=consent_note.strip(),
                          created_by=actor.user if actor else None)
        dataset.full_clean(validate_unique=False)
        if self.filter(name=name).exists():
            raise _duplicate_name(name)
        try:
            with transaction.atomic():
                dataset.save(force_insert=True)
                if actor:
                    record("dataset.create", dataset, by=actor,
                           changes={"name": [None, dataset.name], "sample_rate": [None, dataset.sample_rate]})
        except IntegrityError:
            raise _duplicate_name(name) from None
        return dataset


def _duplicate_name(name: str):
    from audioml.errors import DuplicateName

    return DuplicateName(f"A dataset named '{name}' already exists.", field="name")


class Dataset(models.Model):
    name = models.CharField(max_length=63, unique=True, validators=[name_validator])
    description = models.TextField(blank=True)
    sample_rate = models.PositiveIntegerField(choices=SAMPLE_RATE_CHOICES, default=16000)
    # Provenance, shown on the model card of every version trained on the dataset.
    licence = models.CharField(
        max_length=100, blank=True, validators=[text_line_validator],
        help_text="Under which terms the audio may be used, e.g. CC-BY-4.0, CC0-1.0, proprietary",
    )
    source = models.CharField(
        max_length=500, blank=True, validators=[text_line_validator],
        help_text="Where the audio comes from: a URL, a recording session, a corpus name",
    )
    consent_note = models.TextField(
        blank=True, help_text="Whether and how the speakers agreed to be recorded and to this use"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = DatasetManager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("dataset-detail", args=[self.name])

    EDITABLE_FIELDS = ("name", "description", "sample_rate", "licence", "source", "consent_note")

    def update(self, changes: dict, by=None) -> list[str]:
        """Apply validated changes to name/description/sample_rate. The rate is fixed once clips exist
        (their canonical files are at that rate); a taken name raises DuplicateName."""
        from audioml.errors import Conflict

        before = {key: getattr(self, key) for key in self.EDITABLE_FIELDS}
        changed = [key for key, value in changes.items() if getattr(self, key) != value]
        if "sample_rate" in changed and self.clips.exists():
            raise Conflict(
                "The sample rate cannot change once the dataset has clips: their audio is stored at "
                f"{self.sample_rate} Hz. Export and import into a new dataset instead.",
                field="sample_rate",
            )
        if not changed:
            return []
        for key in changed:
            setattr(self, key, changes[key])
        for key in ("description", "licence", "source", "consent_note"):
            if key in changed:
                setattr(self, key, getattr(self, key).strip())
        self.full_clean(validate_unique=False)
        if "name" in changed and Dataset.objects.filter(name=self.name).exclude(pk=self.pk).exists():
            raise _duplicate_name(self.name)
        try:
            with transaction.atomic():
                self.save(update_fields=changed)
                if by is not None:
                    after = {key: getattr(self, key) for key in self.EDITABLE_FIELDS}
                    record("dataset.update", self, by=Actor.of(by), changes=diff(before, after))
        except IntegrityError:
            raise _duplicate_name(self.name) from None
        return changed

    def remove(self, by=None) -> None:
        """Delete the dataset, its clips and their files. Rows downstream that must keep their history (a
        registered model version protects the job that trained it) block the deletion: that raises Conflict."""
        from audioml.errors import Conflict

        dataset_id = self.pk  # delete() clears it
        try:
            with transaction.atomic():
                clip_count = self.clips.count()
                self.delete()
                if by is not None:
                    record("dataset.delete", by=Actor.of(by), object_type="datasets_app.dataset",
                           object_id=str(dataset_id), object_repr=self.name, changes={"clips": [clip_count, 0]})
        except ProtectedError as exc:
            blocking = sorted({str(obj) for obj in exc.protected_objects})
            kinds = sorted({str(obj._meta.verbose_name_plural) for obj in exc.protected_objects})
            shown = ", ".join(blocking[:5]) + (f" and {len(blocking) - 5} more" if len(blocking) > 5 else "")
            raise Conflict(
                f"Dataset '{self.name}' cannot be deleted: it trained {' and '.join(kinds)} ({shown}). "
                "Delete those first, or keep the dataset.",
                blocking=blocking,
            ) from None

    def empty_trash(self, by=None) -> int:
        """Delete the trashed clips and their audio for good; returns how many."""
        with transaction.atomic():
            return self.clips.trashed().purge(by, about=self)

    def add_clips(self, items, by=None, **details):
        """Store uploaded files as clips (`datasets_app.ingest.ingest_files`) and record the upload.

        Ingestion commits in chunks, so the event follows the last chunk; it lists every stored clip."""
        from datasets_app.ingest import ingest_files

        actor = Actor.of(by)
        report = ingest_files(self, items, user=actor.user if actor else None)
        self._record_upload(report, actor, **details)
        return report

    def import_archive(self, file, by=None, default_label: str = "", default_source: str = "", **details):
        """Import a zip archive (`datasets_app.importing.import_archive`) and record the upload."""
        from datasets_app.importing import import_archive

        actor = Actor.of(by)
        report = import_archive(self, file, user=actor.user if actor else None, default_label=default_label,
                                default_source=default_source)
        self._record_upload(report, actor, **details)
        return report

    def import_path(
        self, path, by=None, default_label: str = "", progress=None, background: bool = False,
        default_source: str = "", **details
    ):
        """Import a folder or zip on this machine (`datasets_app.importing.import_path`) and record the upload;
        `background` imports every file as a background recording."""
        from datasets_app.importing import import_path

        actor = Actor.of(by)
        report = import_path(self, path, user=actor.user if actor else None, progress=progress,
                             default_label=default_label, background=background, default_source=default_source)
        self._record_upload(report, actor, **details)
        return report

    def _record_upload(self, report, actor: Actor | None, **details) -> None:
        """One `clip.upload` event: the new clip ids and, when they were given their own, their source (one value
        for the batch, or each distinct value when the files had several, as a manifest's column may give)."""
        if actor and report.clip_ids:
            changes = {"clip_ids": [None, report.clip_ids]}
            sources = report.sources
            if sources:
                changes["source"] = [None, sources[0] if len(sources) == 1 else sources]
            changes.update({key: [None, value] for key, value in details.items()})
            record("clip.upload", self, by=actor, changes=changes)

    def record_export(self, layout: str, by=None, clip_ids: list[int] | None = None) -> None:
        """An export reads but changes nothing; who took a copy of the data is still worth an event."""
        if by is not None:
            changes = {"layout": [None, layout], **({"clip_ids": [None, clip_ids]} if clip_ids is not None else {})}
            record("dataset.export", self, by=Actor.of(by), changes=changes)

    def label_counts(self) -> dict[str, int]:
        """Active clips per label, largest first ("" is unlabelled); background recordings are not counted."""
        rows = (
            self.clips.active().ordinary().values("label").annotate(n=Count("id")).order_by("-n", "label").values_list("label", "n")
        )
        return dict(rows)

    def summary(self) -> dict:
        """Active clips and their total length, without the background recordings, which are counted apart (as
        Statistics and the new-job form count them); the trash holds both kinds."""
        active = Q(status=Clip.Status.ACTIVE)
        clips = active & Q(kind=Clip.Kind.CLIP)
        background = active & Q(kind=Clip.Kind.BACKGROUND)
        return self.clips.aggregate(
            clip_count=Count("id", filter=clips),
            trashed_count=Count("id", filter=~active),
            total_seconds=Sum("duration", filter=clips),
            background_count=Count("id", filter=background),
            background_seconds=Sum("duration", filter=background),
        )


class ClipQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status=Clip.Status.ACTIVE)

    def trashed(self):
        return self.filter(status=Clip.Status.TRASHED)

    def ordinary(self):
        """Clips without the background recordings."""
        return self.filter(kind=Clip.Kind.CLIP)

    def backgrounds(self):
        return self.filter(kind=Clip.Kind.BACKGROUND)

    def search(self, text: str):
        """Clips whose transcript, original file name, label, speaker or notes contain `text`."""
        text = text.strip()
        if not text:
            return self
        return self.filter(
            Q(transcript__icontains=text)
            | Q(original_name__icontains=text)
            | Q(label__icontains=text)
            | Q(speaker__icontains=text)
            | Q(notes__icontains=text)
        )

    def filtered(
        self, *, status: str = "active", label: str | None = None, speaker: str | None = None, q: str = "",
        kind: str | None = None,
    ):
        """The filters shared by the panel, the API and export. `label=""` means unlabelled; None means any."""
        clips = self if kind is None else self.filter(kind=kind)
        if status == Clip.Status.ACTIVE:
            clips = clips.active()
        elif status == Clip.Status.TRASHED:
            clips = clips.trashed()
        if label is not None:
            clips = clips.filter(label=label)
        if speaker is not None:
            clips = clips.filter(speaker=speaker)
        return clips.search(q) if q else clips

    def sorted_by(self, key: str):
        """Order by one of CLIP_SORTS (unknown keys: newest first); empty values sort last on every database."""
        fields = CLIP_SORTS.get(key, CLIP_SORTS["newest"])[1]
        return self.order_by(
            *(F(f[1:]).desc(nulls_last=True) if f.startswith("-") else F(f).asc(nulls_last=True) for f in fields)
        )

    def trash(self, by=None, *, about=None) -> list[int]:
        """Move the active clips among these to the trash; returns their ids. The event is recorded on `about`
        (the dataset they were chosen in) or, without one, on the clips."""
        return self._set_status(Clip.Status.TRASHED, "clip.trash", by, about)

    def restore(self, by=None, *, about=None) -> list[int]:
        return self._set_status(Clip.Status.ACTIVE, "clip.restore", by, about)

    def _set_status(self, status: str, action: str, by, about) -> list[int]:
        actor = Actor.of(by)
        with transaction.atomic():
            ids = sorted(self.exclude(status=status).values_list("pk", flat=True))
            changed = Clip.objects.filter(pk__in=ids).exclude(status=status).update(
                status=status, updated_at=timezone.now(), updated_by=actor.user if actor else None,
            )
            if actor and changed:
                _record_clips(action, actor, about, ids, {"clip_ids": [None, ids]})
        return ids if changed else []

    def purge(self, by=None, *, about=None) -> int:
        """Delete these clips and their audio for good; returns how many."""
        with transaction.atomic():
            ids = sorted(self.values_list("pk", flat=True))
            deleted = Clip.objects.filter(pk__in=ids).delete()[0] if ids else 0
            if by is not None and deleted:
                _record_clips("clip.purge", Actor.of(by), about, ids, {"clip_ids": [ids, None]})
        return deleted


def _record_clips(action: str, actor: Actor, about, ids: list[int], changes: dict) -> None:
    if about is not None:
        record(action, about, by=actor, changes=changes)
    else:
        record(action, by=actor, object_type="datasets_app.clip", object_repr=f"{len(ids)} clips", changes=changes)


# Orderings offered by the clip table and the API: key -> (label, ORDER BY fields).
CLIP_SORTS = {
    "newest": ("Newest first", ("-created_at", "-id")),
    "oldest": ("Oldest first", ("created_at", "id")),
    "name": ("File name", ("original_name", "id")),
    "label": ("Label", ("label", "id")),
    "speaker": ("Speaker", ("speaker", "id")),
    "shortest": ("Shortest", ("duration", "id")),
    "longest": ("Longest", ("-duration", "-id")),
    "quietest": ("Quietest", ("rms_dbfs", "id")),
    "loudest": ("Loudest", ("-rms_dbfs", "-id")),
    "score": ("Score (low to high)", ("score", "id")),
    "-score": ("Score (high to low)", ("-score", "-id")),
    "updated": ("Recently edited", ("-updated_at", "-id")),
}


def clip_storage_name(dataset_id: int, content_hash: str) -> str:
    """Where a canonical clip lives in the media storage. Never derived from the uploaded file's name."""
    return f"clips/{dataset_id}/{content_hash[:2]}/{content_hash}.wav"


class Clip(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        TRASHED = "trashed", "Trashed"

    class Kind(models.TextChoices):
        CLIP = "clip", "Clip"
        BACKGROUND = "background", "Background recording"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="clips")
    audio = models.FileField(max_length=255, help_text="Canonical mono 16-bit PCM WAV at the dataset's rate")
    original_name = models.CharField(max_length=255, blank=True)
    original_format = models.CharField(max_length=32, blank=True)
    label = models.CharField(max_length=100, blank=True, db_index=True, validators=[label_validator])
    transcript = models.TextField(blank=True)
    score = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    speaker = models.CharField(max_length=100, blank=True, db_index=True, validators=[text_line_validator])
    notes = models.TextField(blank=True)
    source = models.CharField(
        max_length=255, blank=True, validators=[text_line_validator],
        help_text="Where this clip comes from when it is not the dataset's source (a URL, a device, a logged "
        "prediction).",
    )
    duration = models.FloatField(help_text="Seconds")
    source_sample_rate = models.PositiveIntegerField()
    source_channels = models.PositiveSmallIntegerField()
    peak_dbfs = models.FloatField()
    rms_dbfs = models.FloatField()
    clipped_fraction = models.FloatField(default=0.0, help_text="Share of samples at digital full scale")
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of the canonical audio samples")
    kind = models.CharField(
        max_length=12, choices=Kind.choices, default=Kind.CLIP, db_index=True,
        help_text="A background recording is long ordinary audio (minutes to hours, up to BACKGROUND_MAX_SECONDS) "
        "used as negative material by detection; classification training leaves it out",
    )
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

    EDITABLE_FIELDS = ("label", "transcript", "score", "speaker", "notes", "source")

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

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    @property
    def is_background(self) -> bool:
        return self.kind == self.Kind.BACKGROUND

    @property
    def is_clipped(self) -> bool:
        return self.clipped_fraction >= CLIPPED_FRACTION

    @property
    def is_near_silent(self) -> bool:
        return self.rms_dbfs < NEAR_SILENT_RMS_DBFS

    def _save_edits(self, changes: dict, user=None) -> list[str]:
        unknown = set(changes) - set(self.EDITABLE_FIELDS)
        if unknown:
            raise ValidationError({name: "This field cannot be edited." for name in sorted(unknown)})
        cleaned = clean_clip_metadata(**changes)
        changed = [name for name, value in cleaned.items() if getattr(self, name) != value]
        if not changed:
            return []
        for name in changed:
            setattr(self, name, cleaned[name])
        self.updated_at = timezone.now()
        self.updated_by = user
        self.save(update_fields=[*changed, "updated_at", "updated_by"])
        return changed

    def edit(self, changes: dict, by=None) -> list[str]:
        """Validate and save edits of the editable fields (and of `status`, which Django admin edits too); returns
        the fields that changed, recorded as one clip.edit with their before and after values.

        Raises ValidationError (with a message per field) and changes nothing when any value is invalid."""
        actor = Actor.of(by)
        changes = dict(changes)
        status = changes.pop("status", None)
        with transaction.atomic():
            before = {field: getattr(self, field) for field in (*self.EDITABLE_FIELDS, "status")}
            changed = self._save_edits(changes, actor.user if actor else None)
            if status is not None and status != self.status:
                self._save_status(status, actor)
                changed.append("status")
            if actor and changed:
                record("clip.edit", self, by=actor, changes=diff(before, {field: getattr(self, field) for field in changed}))
        return changed

    def trash(self, by=None) -> bool:
        """Move the clip to the trash; False when it already was there."""
        return self._change_status(self.Status.TRASHED, "clip.trash", by)

    def restore(self, by=None) -> bool:
        return self._change_status(self.Status.ACTIVE, "clip.restore", by)

    def _change_status(self, status: str, action: str, by) -> bool:
        with transaction.atomic():
            before = Clip.objects.select_for_update().values_list("status", flat=True).get(pk=self.pk)
            if before != status:
                self._save_status(status, by)
                if by is not None:
                    record(action, self, by=Actor.of(by), changes={"status": [before, status]})
        self.refresh_from_db(fields=["status", "updated_at", "updated_by"])
        return before != status

    def _save_status(self, status: str, by) -> None:
        actor = Actor.of(by)
        Clip.objects.filter(pk=self.pk).update(status=status, updated_at=timezone.now(),
                                               updated_by=actor.user if actor else None)
        self.status = status

    def purge(self, by=None) -> None:
        """Delete the clip and its audio for good."""
        clip_id, label = self.pk, str(self)  # delete() clears the pk
        with transaction.atomic():
            self.delete()
            if by is not None:
                record("clip.purge", by=Actor.of(by), object_type="datasets_app.clip", object_id=str(clip_id),
                       object_repr=label, changes={"clip_ids": [[clip_id], None]})


def parse_score(value) -> float | None:
    """A score from a form, CSV cell or JSON value: empty means none; otherwise a finite number in [0, 1]."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValidationError({"score": "The score must be a number between 0 and 1."})
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise ValidationError({"score": f"The score must be a number between 0 and 1, not {str(value)[:40]!r}."}) from None
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise ValidationError({"score": f"The score must be between 0 and 1 (got {score:g})."})
    return score


_METADATA_DEFAULTS = {"label": "", "transcript": "", "score": None, "speaker": "", "notes": "", "source": ""}


def clean_clip_metadata(**values) -> dict:
    """Validate label/transcript/score/speaker/notes with the model's own rules (surrounding whitespace trimmed).

    Only the given fields are returned; raises ValidationError with a message per invalid field."""
    cleaned: dict = {}
    errors: dict[str, list[str]] = {}
    for name, value in values.items():
        if name == "score":
            try:
                cleaned["score"] = parse_score(value)
            except ValidationError as exc:
                errors.update(exc.message_dict)
            continue
        cleaned[name] = "" if value is None else str(value).strip()
    probe = Clip(**{**_METADATA_DEFAULTS, **cleaned})
    try:
        probe.clean_fields(exclude=[f.name for f in Clip._meta.fields if f.name not in cleaned])
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    return cleaned


@receiver(post_delete, sender=Clip)
def _delete_clip_file(sender, instance: Clip, **kwargs) -> None:
    """A deleted clip takes its canonical file with it, once the deletion is committed."""
    name = instance.audio.name
    if name:
        transaction.on_commit(lambda: default_storage.delete(name))
