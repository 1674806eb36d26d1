"""Registered models and their immutable versions. Aliases and their history live in `registry_app.aliases`
(imported at the end of this module, so `registry_app.models` still offers every model)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models import Max
from django.utils import timezone

from audioml import audit
from audioml.audit import Actor
from datasets_app.models import name_validator
from audioml.errors import Unprocessable
from registry_app import artifacts as artifact_store
from registry_app.errors import ArtifactDamaged, ImmutableVersion, ReferenceNotFound, TaskMismatch, VersionAliased
from training_app.ml.artifacts import ARTIFACT_FILES as WRITTEN_FILES, MODEL_FILES, TORCH_EXPORT_FILE
from training_app.models import TrainingJob, task_headline

# The trainer's artifacts as the panel and the API list them: the exported models first, then the rest.
ARTIFACT_FILES = (*MODEL_FILES, *(name for name in WRITTEN_FILES if name not in MODEL_FILES))
MODEL_FILE = TORCH_EXPORT_FILE
DEFAULT_ALIAS = "production"
VERSION_REF = re.compile(r"^v?(\d+)$")


def alias_name_validator(value: str) -> None:
    name_validator(value)
    if VERSION_REF.match(value):
        raise ValidationError(
            f"“{value}” looks like a version number; alias names must not, so “v3” always means version 3.",
            code="alias_like_version",
        )


def parse_version_ref(ref: str) -> int | None:
    match = VERSION_REF.match(ref.strip().lower())
    return int(match.group(1)) if match else None


class RegisteredModel(models.Model):
    name = models.CharField(max_length=63, unique=True, validators=[name_validator])
    task = models.CharField(max_length=20, choices=TrainingJob.Task.choices, default=TrainingJob.Task.CLASSIFICATION)
    description = models.TextField(blank=True, help_text="Markdown")
    # The highest version number ever given out: numbers are never reused, even after a version is deleted.
    last_version = models.PositiveIntegerField(default=0, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # The prediction log (registry_app.prediction_log): on by default, kept log_retention_days; the audio only
    # when asked for, and only files up to log_audio_max_bytes (as 16-bit WAV at the model's rate).
    log_predictions = models.BooleanField(default=True, help_text="Keep a log of this model's predictions")
    log_retention_days = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Logged predictions older than this are deleted (flagged ones waiting for review are kept)",
    )
    log_audio = models.BooleanField(default=False, help_text="Keep each prediction's audio with its log entry")
    log_audio_max_bytes = models.PositiveIntegerField(
        default=2_000_000, validators=[MinValueValidator(1000), MaxValueValidator(200_000_000)],
        help_text="Audio larger than this (as 16-bit WAV) is not kept",
    )

    LOG_SETTINGS = ("log_predictions", "log_retention_days", "log_audio", "log_audio_max_bytes")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def set_log_settings(self, changes: dict[str, Any], by=None) -> dict[str, list[Any]]:
        """Change the prediction log's settings; returns {field: [before, after]} (recorded as `model.update`)."""
        with transaction.atomic():
            model = self.locked()
            before = {field: getattr(model, field) for field in self.LOG_SETTINGS}
            for field, value in changes.items():
                if field in self.LOG_SETTINGS:
                    setattr(model, field, value)
            model.full_clean(exclude=[f.name for f in self._meta.fields if f.name not in self.LOG_SETTINGS])
            after = {field: getattr(model, field) for field in self.LOG_SETTINGS}
            changed = audit.diff(before, after)
            if changed:
                model.save(update_fields=list(changed))
                for field in self.LOG_SETTINGS:
                    setattr(self, field, after[field])
                if by is not None:
                    audit.record("model.update", model, by=Actor.of(by), changes=changed)
        return changed

    def check_task(self, task: str) -> None:
        """A model has one task: raise TaskMismatch (409) for a version of another."""
        if task != self.task:
            raise TaskMismatch(
                f"Model “{self.name}” is a {self.task} model; a {task} version cannot be added to it. "
                "Choose another model name.",
                field="model_name", model_task=self.task, task=task,
            )

    def latest_version(self) -> ModelVersion | None:
        return self.versions.filter(status=ModelVersion.Status.ACTIVE).order_by("-version").first()

    def get_version(self, number: int) -> ModelVersion:
        try:
            return self.versions.get(version=number)
        except ModelVersion.DoesNotExist:
            raise ReferenceNotFound(f"Model “{self.name}” has no version {number}.") from None

    def resolve(self, ref: str | None = None) -> tuple[ModelVersion, str]:
        """The version a reference names, and how it was resolved (returned to callers as `ref`).

        `ref` is an alias name, or a version as `v3` or `3`. Without one: the `production` alias, else the
        latest active version (`ref` is then "latest"). Aliases are resolved on every call, so moving one
        takes effect on the next request.
        """
        ref = (ref or "").strip()
        if ref:
            number = parse_version_ref(ref)
            if number is not None:
                return self.get_version(number), f"v{number}"
            alias = self.aliases.select_related("version").filter(name=ref.lower()).first()
            if alias is None:
                known = ", ".join(self.aliases.values_list("name", flat=True)) or "none"
                raise ReferenceNotFound(
                    f"Model “{self.name}” has no alias “{ref}” (aliases: {known}). "
                    "Use an alias name or a version such as v3."
                )
            return alias.version, alias.name
        alias = self.aliases.select_related("version").filter(name=DEFAULT_ALIAS).first()
        if alias is not None:
            return alias.version, alias.name
        latest = self.latest_version()
        if latest is None:
            raise ReferenceNotFound(f"Model “{self.name}” has no active version to predict with.")
        return latest, "latest"

    def alias_history(self, alias_name: str | None = None):
        events = self.alias_events.select_related("moved_by")
        return events.filter(alias_name=alias_name) if alias_name else events

    # Changes: each locks the model's row, so alias moves, archiving and deletions of one model never interleave.

    def locked(self) -> RegisteredModel:
        """This model's row, locked until the transaction ends (call inside `transaction.atomic()`)."""
        model = RegisteredModel.objects.select_for_update().filter(pk=self.pk).first()
        if model is None:
            raise ReferenceNotFound(f"Model “{self.name}” was deleted.")
        return model

    def set_description(self, description: str, by=None) -> bool:
        """Save a new description; False (and nothing recorded) when it is the same."""
        with transaction.atomic():
            before = self.locked().description
            self.description = description
            if description == before:
                return False
            self.save(update_fields=["description"])
            if by is not None:
                audit.record("model.update", self, by=Actor.of(by), changes={"description": [before, description]})
        return True

    def remove(self, by=None) -> int:
        """Delete the model with its versions, their files (once committed: registry_app.receivers) and its
        alias history; returns how many versions went. VersionAliased (409) while an alias points anywhere (it
        may be serving predictions) or while another model's version was fine-tuned from one of its versions."""
        model_id = self.pk  # delete() clears it
        with transaction.atomic():
            locked = self.locked()
            aliases = sorted(locked.aliases.values_list("name", flat=True))
            if aliases:
                raise VersionAliased(
                    f"Model “{self.name}” cannot be deleted while {', '.join(aliases)} "
                    f"{'points' if len(aliases) == 1 else 'point'} at its versions. Delete the aliases first.",
                    aliases=aliases,
                )
            tunes = [str(tune) for tune in ModelVersion.objects.filter(base_version__model=locked)
                     .exclude(model=locked).select_related("model")]
            if tunes:
                raise VersionAliased(f"Model “{self.name}” cannot be deleted: {', '.join(tunes)} "
                                     f"{'was' if len(tunes) == 1 else 'were'} fine-tuned from its versions.",
                                     fine_tunes=tunes)
            versions = list(locked.versions.values_list("version", flat=True))
            # Newest first, so a version fine-tuned from an older one of the same model goes before its base.
            for version in locked.versions.order_by("-version"):
                models.Model.delete(version)  # the aliases were checked above; the receiver removes the files
            self.delete()
            if by is not None:
                audit.record("model.delete", by=Actor.of(by), object_type="registry_app.registeredmodel",
                             object_id=str(model_id), object_repr=self.name, changes={"versions": [versions, None]})
            folder = f"models/{self.name}"
            transaction.on_commit(lambda: artifact_store.remove_empty_folder(folder))
        return len(versions)


class ModelVersionQuerySet(models.QuerySet):
    def update(self, **kwargs):
        frozen = sorted(set(kwargs) - set(ModelVersion.MUTABLE_FIELDS))
        if frozen:
            raise ImmutableVersion(
                f"Versions are immutable: {', '.join(frozen)} cannot change "
                f"(only {', '.join(ModelVersion.MUTABLE_FIELDS)} can)."
            )
        return super().update(**kwargs)

    def bulk_update(self, objs, fields, batch_size=None):
        frozen = sorted(set(fields) - set(ModelVersion.MUTABLE_FIELDS))
        if frozen:
            raise ImmutableVersion(f"Versions are immutable: {', '.join(frozen)} cannot change.")
        return super().bulk_update(objs, fields, batch_size=batch_size)

    def delete(self):
        # One by one, so every version gets the aliased check and its files are removed.
        deleted = 0
        for version in self:
            version.delete()
            deleted += 1
        return deleted, {ModelVersion._meta.label: deleted}


class ModelVersionManager(models.Manager.from_queryset(ModelVersionQuerySet)):
    def base_for(self, init_from: str, task: str | None) -> ModelVersion:
        """The version a fine-tune starts from ("model:v3" or "model:alias"); 422 when it is not one of
        ``task`` (None: any), 404 when it does not exist."""
        name, _, ref = init_from.partition(":")
        model = RegisteredModel.objects.filter(name=name).first()
        if model is None or not ref:
            raise ReferenceNotFound(f"init_from: no registered model “{name}” to fine-tune from "
                                    "(write it as model:version, e.g. voice:v3)", field="init_from")
        if task is not None and model.task != task:
            raise Unprocessable(f"init_from: “{name}” is a {model.task} model; a {task} job can only fine-tune "
                                f"a {task} model", field="init_from")
        version, _ = model.resolve(ref)
        return version

    def register_from_job(self, job: TrainingJob, artifacts_dir: Path) -> ModelVersion:
        """Turn a succeeded job's artifacts into the next numbered version of its model.

        Called by the training worker's hand-off (training_app.tasks.hand_off) inside the transaction that
        marks the job succeeded, so a version is never visible without its job succeeded: a job that is not
        succeeded in the caller's transaction is refused. The model row is locked while the number is
        assigned, so jobs finishing at the same instant get consecutive numbers. Artifacts are copied into
        the media storage with their size and SHA-256. If anything fails, every copied file is deleted and the
        error propagates: no version, no files, no model made for it.
        """
        artifacts_dir = Path(artifacts_dir)
        if not TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.SUCCEEDED).exists():
            raise ValueError(f"job #{job.pk} has not succeeded; only a succeeded job's model can be registered")
        config = _read_json(artifacts_dir / "config.json")
        metrics = _read_json(artifacts_dir / "metrics.json")
        snapshot = _read_json(artifacts_dir / "snapshot.json")
        names = stored_artifact_names(job.task, artifacts_dir)
        missing = [name for name in names if not (artifacts_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(f"artifacts missing from {artifacts_dir}: {', '.join(missing)}")

        stored: list[str] = []
        folder = f"models/{job.model_name}"
        try:
            with transaction.atomic():
                registered, _ = RegisteredModel.objects.get_or_create(
                    name=job.model_name, defaults={"task": job.task, "created_by": job.created_by}
                )
                model = RegisteredModel.objects.select_for_update().get(pk=registered.pk)
                model.check_task(job.task)
                highest = model.versions.aggregate(highest=Max("version"))["highest"] or 0
                number = max(model.last_version, highest) + 1
                # The number is ours under the lock and no row has it: files already in its folder were left
                # by a registration that crashed before committing, and are replaced rather than renamed around.
                artifact_store.clear_folder(f"{folder}/v{number}")
                entries = []
                for name in names:
                    entry = artifact_store.store_file(artifacts_dir / name, f"{folder}/v{number}/{name}")
                    entry["name"] = name  # a path inside the folder for a voice's samples/
                    stored.append(entry["path"])
                    entries.append(entry)
                version = self.create(
                    model=model,
                    version=number,
                    job=job,
                    snapshot_hash=job.snapshot_hash or snapshot.get("snapshot_hash") or _snapshot_digest(snapshot),
                    snapshot_size=_snapshot_size(job, snapshot),
                    labels=list(config.get("labels", [])),
                    feature_config={
                        **config.get("features", {}),
                        "sample_rate": config.get("sample_rate"),
                        "clip_samples": config.get("clip_samples"),
                    },
                    train_config=config.get("train_config", {}) or job.config,
                    metrics=metrics,
                    artifacts=entries,
                    code_version=str(config.get("code_version", ""))[:64],
                    base_version=_base_version(job),
                    created_by=job.created_by,
                )
                RegisteredModel.objects.filter(pk=model.pk).update(last_version=number)
                audit.record("version.register", version, user=job.created_by, changes={"job": [None, job.pk]})
        except BaseException:
            artifact_store.delete_stored(stored)
            artifact_store.remove_empty_folder(folder)  # a model made for this version is rolled back too
            raise
        return version


def stored_artifact_names(task: str, artifacts_dir: Path) -> list[str]:
    """The files a version of ``task`` keeps: the task's own list when it has one (a voice), else the usual."""
    from training_app.ml.tasks import task_module

    if _read_json(artifacts_dir / "config.json").get("trainer"):
        # An external trainer's output: every file it wrote, plus AudioML's config.json and snapshot.json.
        return sorted(p.relative_to(artifacts_dir).as_posix() for p in artifacts_dir.rglob("*") if p.is_file())
    module = task_module(task)
    return list(module.artifact_files(artifacts_dir)) if hasattr(module, "artifact_files") else list(ARTIFACT_FILES)


def pin_base(init_from: str, task: str) -> str:
    """training_app.fine_tune's pin: the version init_from names, as model:vN."""
    return ModelVersion.objects.base_for(init_from, task).pinned_ref


def base_choices(task: str) -> list[tuple[str, str]]:
    """training_app.fine_tune's choices: the active versions of ``task`` a job may start from."""
    versions = (ModelVersion.objects.filter(model__task=task, status=ModelVersion.Status.ACTIVE)
                .select_related("model").prefetch_related("aliases").order_by("model__name", "-version"))
    choices = []
    for version in versions:
        aliases = ", ".join(alias.name for alias in version.aliases.all())
        choices.append((version.pinned_ref, f"{version.model.name} v{version.version}" + (f" ({aliases})" if aliases else "")))
    return choices


def fetch_base(init_from: str, folder: Path) -> None:
    """training_app.fine_tune's fetch: the version's weights and config, checked against their SHA-256."""
    version = ModelVersion.objects.base_for(init_from, None)
    for name in ("weights.pt", "config.json"):
        entry = version.verify_artifact(name)
        artifact_store.copy_to_local(entry["path"], Path(folder) / name)


def _base_version(job: TrainingJob) -> ModelVersion | None:
    """The version a fine-tune started from (pinned as model:vN when the job was created)."""
    init_from = (job.config or {}).get("init_from") or ""
    if not init_from:
        return None
    name, _, ref = init_from.partition(":")
    number = parse_version_ref(ref)
    return ModelVersion.objects.filter(model__name=name, version=number).first() if number else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"artifact missing: {path}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path.name} is not valid JSON: {error}") from None
    return data if isinstance(data, dict) else {"value": data}


def _snapshot_size(job: TrainingJob, snapshot: dict[str, Any]) -> int:
    if isinstance(job.snapshot, list) and job.snapshot:
        return len(job.snapshot)
    clips = snapshot.get("clips")
    return len(clips) if isinstance(clips, list) else 0


def _snapshot_digest(snapshot: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode()).hexdigest()


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
    base_version = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="fine_tunes",
        help_text="The version this one was fine-tuned from (a voice's init_from)",
    )
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = ModelVersionManager()

    class Meta:
        ordering = ["model", "-version"]
        constraints = [models.UniqueConstraint(fields=["model", "version"], name="unique_version_per_model")]
        verbose_name = "registered model version"

    def __str__(self) -> str:
        return f"{self.model.name} v{self.version}"

    @property
    def ref(self) -> str:
        return f"v{self.version}"

    @classmethod
    def lineage_fields(cls) -> list[models.Field]:
        return [
            field
            for field in cls._meta.concrete_fields
            if field.name not in cls.MUTABLE_FIELDS and not field.primary_key
        ]

    def clean(self) -> None:
        if not isinstance(self.tags, list) or not all(isinstance(tag, str) for tag in self.tags):
            raise ValidationError({"tags": "Tags are a list of short texts."})
        self.tags = list(dict.fromkeys(tag.strip() for tag in self.tags if tag.strip()))
        too_long = [tag for tag in self.tags if len(tag) > 50]
        if too_long:
            raise ValidationError({"tags": f"Tags are at most 50 characters: “{too_long[0][:60]}”."})
        if len(self.tags) > 30:
            raise ValidationError({"tags": "At most 30 tags."})

    def save(self, *args, **kwargs):
        if not self._state.adding and self.pk is not None:
            self._refuse_lineage_changes()
            update_fields = kwargs.get("update_fields")
            if update_fields is not None:
                frozen = sorted(set(update_fields) - set(self.MUTABLE_FIELDS))
                if frozen:
                    raise ImmutableVersion(f"Versions are immutable: {', '.join(frozen)} cannot change.")
            else:
                kwargs["update_fields"] = list(self.MUTABLE_FIELDS)
        super().save(*args, **kwargs)

    def _refuse_lineage_changes(self) -> None:
        fields = self.lineage_fields()
        stored = type(self).objects.filter(pk=self.pk).values(*(field.attname for field in fields)).first()
        if stored is None:
            return
        changed = [
            field.name for field in fields if _comparable(field, getattr(self, field.attname)) != _comparable(field, stored[field.attname])
        ]
        if changed:
            raise ImmutableVersion(
                f"Version {self.version} of “{self.model.name}” is immutable: {', '.join(changed)} cannot change "
                f"(only {', '.join(self.MUTABLE_FIELDS)} can).",
                fields=changed,
            )

    def update(self, changes: dict[str, Any], by=None) -> dict[str, list[Any]]:
        """Change `description`, `tags` and/or `status` (the only mutable fields) and return {field: [before,
        after]}. Recorded as `version.archive` or `version.unarchive` when the status changed (easy to filter
        for), else `version.update`; nothing is recorded when nothing changed."""
        with transaction.atomic():
            self.model.locked()  # an alias may not be pointed at it while it is being archived
            stored = ModelVersion.objects.get(pk=self.pk)
            before = {field: getattr(stored, field) for field in self.MUTABLE_FIELDS}
            if "description" in changes:
                self.description = changes["description"]
            if "tags" in changes:
                self.tags = changes["tags"]
            if "status" in changes:
                self.set_status(changes["status"])
            self.full_clean(exclude=[field.name for field in self._meta.fields if field.name not in self.MUTABLE_FIELDS])
            self.save()
            changed = audit.diff(before, {field: getattr(self, field) for field in self.MUTABLE_FIELDS})
            if changed and by is not None:
                action = "version.update"
                if "status" in changed:
                    action = "version.archive" if self.status == self.Status.ARCHIVED else "version.unarchive"
                audit.record(action, self, by=Actor.of(by), changes=changed)
        return changed

    def remove(self, by=None) -> None:
        """Delete the version and its artifacts; VersionAliased while an alias points at it."""
        version_id = self.pk  # delete() clears it
        with transaction.atomic():
            self.model.locked()  # no alias may be pointed at it meanwhile
            self.delete()
            if by is not None:
                audit.record("version.delete", by=Actor.of(by), object_type="registry_app.modelversion",
                             object_id=str(version_id), object_repr=f"{self.model.name} v{self.version}")

    def alias_uses(self) -> list[str]:
        """The aliases that send this version traffic or shadow it: "production", "production (10% split)",
        "staging (shadow)". A version in use cannot be archived or deleted."""
        uses = list(self.aliases.values_list("name", flat=True))
        uses += [f"{name} ({percent}% split)" for name, percent
                 in Alias.objects.filter(split_version=self).values_list("name", "split_percent")]
        uses += [f"{name} (shadow)" for name in Alias.objects.filter(shadow_version=self).values_list("name", flat=True)]
        return uses

    def set_status(self, status: str) -> None:
        uses = self.alias_uses()
        if status == self.Status.ARCHIVED and uses:
            names = ", ".join(uses)
            raise VersionAliased(
                f"Version {self.version} cannot be archived while {names} points at it. Move the alias first.",
                aliases=uses,
            )
        self.status = status

    def delete(self, *args, **kwargs):
        aliases = self.alias_uses()
        if aliases:
            raise VersionAliased(
                f"Version {self.version} of “{self.model.name}” cannot be deleted: "
                f"{', '.join(aliases)} {'points' if len(aliases) == 1 else 'point'} at it. Move or delete the alias first.",
                aliases=aliases,
            )
        tunes = [str(tune) for tune in self.fine_tunes.select_related("model")]
        if tunes:
            raise VersionAliased(
                f"Version {self.version} of “{self.model.name}” cannot be deleted: "
                f"{', '.join(tunes)} {'was' if len(tunes) == 1 else 'were'} fine-tuned from it.",
                fine_tunes=tunes,
            )
        return super().delete(*args, **kwargs)

    # Reproductions

    def reproduce(self, by=None, enqueue: bool = True) -> TrainingJob:
        """A new training job on exactly this version's frozen snapshot and configuration (seed included); when
        it succeeds it becomes the next version, and `reproduction_of()` says whether the metrics matched."""
        return self.job.reproduce(by=by, enqueue=enqueue)

    def reproduction_of(self) -> dict[str, Any] | None:
        """When this version's job reproduced another job: {source (the version it made, or None), job, check},
        the check comparing this version's metrics with the source version's (else the source job's)."""
        from training_app.reproduce import compare_metrics

        source_job = self.job.reproduces
        if source_job is None:
            return None
        source = ModelVersion.objects.filter(job=source_job).select_related("model").first()
        expected = source.metrics if source is not None else source_job.metrics
        return {"source": source, "job": source_job,
                "check": compare_metrics(expected, self.metrics) if expected and self.metrics else None}

    def reproductions(self) -> list[dict[str, Any]]:
        """The jobs that trained this version's snapshot again, newest first: {job, version (once registered),
        check (once succeeded: their metrics against this version's)}."""
        from training_app.reproduce import compare_metrics

        rows = []
        for job in self.job.reproductions.select_related("created_by").order_by("-created_at", "-id"):
            made = ModelVersion.objects.filter(job=job).select_related("model").first()
            check = compare_metrics(self.metrics, job.metrics) if job.metrics and self.metrics else None
            rows.append({"job": job, "version": made, "check": check})
        return rows

    @property
    def pinned_ref(self) -> str:
        """model:vN, the reference a fine-tune records."""
        return f"{self.model.name}:v{self.version}"

    # Artifacts

    def artifact(self, name: str) -> dict[str, Any]:
        for entry in self.artifacts:
            if entry["name"] == name:
                return entry
        raise ReferenceNotFound(
            f"Version {self.version} of “{self.model.name}” has no artifact “{name}” "
            f"(artifacts: {', '.join(entry['name'] for entry in self.artifacts)})."
        )

    def verify_artifact(self, name: str) -> dict[str, Any]:
        """The artifact's entry after checking its SHA-256; raises ArtifactDamaged on a mismatch."""
        entry = self.artifact(name)
        problem = artifact_store.problem_with(entry)
        if problem:
            raise ArtifactDamaged(
                f"Version {self.version} of “{self.model.name}” is damaged: {problem}. "
                "It is not served or loaded; register a new version by re-running its training job.",
                artifact=name,
                version=self.version,
            )
        return entry

    def damage_report(self, *, trust_unchanged: bool = False) -> list[dict[str, str]]:
        """Every artifact whose stored bytes no longer match the registered SHA-256, with the reason."""
        report = []
        for entry in self.artifacts:
            problem = artifact_store.problem_with(entry, trust_unchanged=trust_unchanged)
            if problem:
                report.append({"name": entry["name"], "problem": problem})
        return report

    # Metrics

    def evaluated_on(self) -> str:
        """The split the final metrics describe: "test" when the job held one back, else "val"."""
        return self.metrics.get("evaluated_on") or ("test" if self.metrics.get("test") else "val")

    def evaluation(self) -> dict[str, Any]:
        return self.metrics.get(self.evaluated_on()) or {}

    def headline_metric(self) -> tuple[str, float] | None:
        """(name, value) of the number the panel leads with on the evaluation split: the task's headline
        (accuracy for classification, Spearman correlation for regression...)."""
        headline = task_headline(self.model.task, self.metrics) or {}
        value = headline.get("value")
        if headline.get("name") == "accuracy" and value is None:
            value = self.evaluation().get("accuracy")
        if isinstance(value, (int, float)):
            return f"{self.evaluated_on()} {headline['name']}", float(value)
        return None

    def training_history(self) -> list[dict[str, Any]]:
        """Per-epoch records (epoch, train_loss, val_loss, val_accuracy, …) from the metrics or the job."""
        history = self.metrics.get("history")
        if isinstance(history, list) and history:
            return history
        return list(self.job.epochs or [])


def _comparable(field: models.Field, value: Any) -> Any:
    """JSON values as the database would hand them back, so a tuple equals the list it was saved as."""
    if isinstance(field, models.JSONField):
        return json.loads(json.dumps(value, sort_keys=True, default=str))
    return value


from registry_app.aliases import Alias, AliasEvent  # noqa: E402 - defined beside these models, which they point at
from registry_app.prediction_log import PredictionLog  # noqa: E402, F401 - the log of predictions, beside them
