from __future__ import annotations

import logging
import shutil
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from audioml.audit import Actor, record
from audioml.errors import Conflict, Unprocessable
from datasets_app.models import Clip, Dataset, name_validator
from training_app.broker import TRAINING_CLUSTER, training_queue
from training_app.signals import job_requested
from training_app.snapshot import (
    clip_records,
    data_summary,
    ignored_clip_count,
    missing_snapshot_clips,
    snapshot_clips,
    snapshot_hash,
    trained_field,
)

logger = logging.getLogger("training_app")


class JobNotTrainable(Unprocessable):
    code = "not-trainable"
    title = "The data cannot train a model"


class JobNotCancellable(Conflict):
    code = "not-cancellable"
    title = "The job has already finished"


def task_headline(task: str, metrics: dict[str, Any]) -> dict[str, Any] | None:
    """A finished job's (or version's) main figure beside its baseline, as the task defines it."""
    from training_app.ml.tasks import TASKS

    return TASKS[task].headline(metrics) if metrics and task in TASKS else None


def validate_config(preset: str, overrides: dict[str, Any] | None, task: str):
    """The validated TrainConfig, or Unprocessable naming the offending field."""
    from training_app.ml.config import ConfigError, TrainConfig

    if task not in TrainingJob.Task.values:
        raise Unprocessable(
            f"task: unknown task {task!r}; choose one of {', '.join(TrainingJob.Task.values)}", field="task"
        )
    if overrides is not None and not isinstance(overrides, dict):
        raise Unprocessable("overrides: must be an object of setting names and values", field="overrides")
    overrides = dict(overrides or {})
    if "task" in overrides and overrides["task"] != task:
        raise Unprocessable(f"task: overrides say {overrides['task']!r} but the job's task is {task!r}", field="task")
    try:
        cfg = TrainConfig.from_dict(preset, {**overrides, "task": task})
    except ConfigError as error:
        raise Unprocessable(f"{error.field}: {error.message}", field=error.field) from None
    if cfg.trainer:
        check_external_trainer(cfg.trainer, task)
    return cfg


def check_external_trainer(name: str, task: str) -> None:
    trainers = settings.EXTERNAL_TRAINERS
    if name not in trainers:
        configured = ", ".join(sorted(trainers)) or "none (AUDIOML_EXTERNAL_TRAINERS is empty)"
        raise Unprocessable(f"trainer: no external trainer named {name!r}; configured: {configured}", field="trainer")
    if task not in trainers[name].tasks:
        raise Unprocessable(f"trainer: {name!r} trains {', '.join(trainers[name].tasks)}, not {task}", field="trainer")


def pin_base_version(cfg, task: str):
    """The config with ``init_from`` pinned to model:vN by the registry (which raises for a bad reference)."""
    import dataclasses

    from training_app.fine_tune import bases

    return dataclasses.replace(cfg, init_from=bases.pin(cfg.init_from, task))


def plan_job(dataset: Dataset, preset: str, overrides: dict[str, Any] | None, task: str = "classification"):
    """Validate a would-be job without creating it: (config, snapshot entries, summary, problems).

    Raises Unprocessable for an invalid configuration; data problems come back as a list of plain sentences.
    """
    from training_app.ml.data import check_trainable

    cfg = validate_config(preset, overrides, task)
    entries = snapshot_clips(dataset, task)
    ignored = ignored_clip_count(dataset, task)
    if entries or trained_field(task) != "label":
        problems = check_trainable(clip_records(entries), cfg)
    else:
        unlabelled = Clip.objects.active().filter(dataset=dataset, label="").count()
        problems = [
            f"the dataset has no labelled clips ({unlabelled} active clips have no label)"
            if unlabelled
            else "the dataset has no clips"
        ]
    return cfg, entries, data_summary(entries, ignored), problems


class TrainingJobQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status__in=(TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING))

    def finished(self):
        return self.filter(status__in=TrainingJob.FINISHED)

    def with_queue_positions(self):
        """Annotate each queued job's 1-based `queue_rank` (read by queue_position()) in the same query."""
        queued = TrainingJob.Status.QUEUED
        up_to_this_one = (
            TrainingJob.objects.filter(status=queued)
            .filter(
                models.Q(created_at__lt=models.OuterRef("created_at"))
                | models.Q(created_at=models.OuterRef("created_at"), id__lte=models.OuterRef("id"))
            )
            .order_by()
            .values("status")
            .annotate(count=models.Count("id"))
            .values("count")
        )
        rank = models.Case(models.When(status=queued, then=models.Subquery(up_to_this_one)), default=None)
        return self.annotate(queue_rank=rank)


class TrainingJobManager(models.Manager.from_queryset(TrainingJobQuerySet)):
    def create_job(
        self,
        dataset: Dataset,
        model_name: str,
        preset: str,
        overrides: dict[str, Any] | None,
        by=None,
        task: str = "classification",
        rerun_of: TrainingJob | None = None,
        enqueue: bool = True,
    ) -> TrainingJob:
        """Validate, freeze the data snapshot and enqueue the job once the transaction commits.

        Raises Unprocessable (422) with ``field`` for an invalid configuration and with ``problems`` when the
        data cannot train a model. ``enqueue=False`` leaves the job queued for a caller that runs it itself
        (``manage.py train --now``). `by` (an Actor, or a user) is recorded as `job.start`.
        """
        actor = Actor.of(by)
        try:
            name_validator(model_name or "")
        except ValidationError as error:
            raise Unprocessable(f"model_name: {' '.join(error.messages)}", field="model_name") from None
        overrides = dict(overrides or {})
        cfg, entries, summary, problems = plan_job(dataset, preset, overrides, task)
        job_requested.send(sender=TrainingJob, model_name=model_name, task=task)
        if cfg.init_from:
            cfg = pin_base_version(cfg, task)
            overrides["init_from"] = cfg.init_from
        if problems:
            raise JobNotTrainable(
                f"Dataset '{dataset.name}' cannot train a model: {'; '.join(problems)}.", problems=problems
            )
        with transaction.atomic():
            job = self.create(
                dataset=dataset,
                model_name=model_name,
                task=task,
                preset=preset,
                overrides=overrides,
                config=cfg.to_dict(),
                snapshot=entries,
                snapshot_hash=snapshot_hash(entries),
                snapshot_size=len(entries),
                ignored_clips=summary["ignored_clips"],
                created_by=actor.user if actor else None,
                rerun_of=rerun_of,
            )
            labels = ", ".join(f"{row['label']} ({row['clips']})" for row in summary["labels"])
            ignored = summary["ignored_clips"]
            job.log(
                JobLog.Level.INFO,
                f"Queued by {job.created_by or 'the system'}: {task} on {summary['clips']} clips, labels {labels}"
                + (f"; {ignored} clips without a {trained_field(task)} left out" if ignored else "")
                + f"; snapshot {job.snapshot_hash[:12]}"
                + (f"; re-run of job #{rerun_of.pk}" if rerun_of else ""),
            )
            if actor:
                job._record_start(actor)
            if enqueue:
                transaction.on_commit(job.enqueue)
        return job

    def create_reproduction(self, source: TrainingJob, by=None, enqueue: bool = True) -> TrainingJob:
        """A new job that trains exactly ``source``'s frozen snapshot with exactly its configuration (seed
        included), so on the same kind of device it gives the same metrics.

        The snapshot names clips by their storage names, so any worker can read them. Raises JobNotTrainable
        (422) when clips of the snapshot were deleted for good since, Unprocessable when the configuration is
        no longer valid (a removed external trainer), and whatever the registry raises for the model name.
        """
        actor = Actor.of(by)
        if not source.snapshot:
            raise JobNotTrainable(f"Job #{source.pk} has no data snapshot to train again.", problems=[])
        validate_config(source.preset, source.config, source.task)
        missing = missing_snapshot_clips(source.snapshot)
        if missing:
            examples = ", ".join(f"clip {entry['id']}" for entry in missing[:5])
            problem = (f"{len(missing)} of the {len(source.snapshot)} clips of job #{source.pk}'s snapshot were "
                       f"deleted for good since ({examples}{', …' if len(missing) > 5 else ''})")
            raise JobNotTrainable(f"The snapshot cannot be trained again: {problem}. Run again on the dataset as "
                                  "it is now instead.", problems=[problem])
        job_requested.send(sender=TrainingJob, model_name=source.model_name, task=source.task)
        with transaction.atomic():
            job = self.create(
                dataset=source.dataset, model_name=source.model_name, task=source.task, preset=source.preset,
                overrides=source.overrides, config=source.config, snapshot=source.snapshot,
                snapshot_hash=source.snapshot_hash, snapshot_size=source.snapshot_size,
                ignored_clips=source.ignored_clips, created_by=actor.user if actor else None, reproduces=source,
            )
            job.log(JobLog.Level.INFO,
                    f"Queued by {job.created_by or 'the system'}: a reproduction of job #{source.pk}, training its "
                    f"frozen snapshot {job.snapshot_hash[:12]} ({job.snapshot_size} clips) with its configuration "
                    f"(seed {(job.config or {}).get('seed')})")
            if actor:
                job._record_start(actor)
            if enqueue:
                transaction.on_commit(job.enqueue)
        return job

    def queue_positions(self) -> dict[int, int]:
        """1-based position of every queued job, in the order workers take them."""
        queued = self.filter(status=TrainingJob.Status.QUEUED).order_by("created_at", "id").values_list("id", flat=True)
        return {pk: position for position, pk in enumerate(queued, start=1)}

    def reap_stale(self, now: datetime | None = None) -> list[int]:
        """Fail running jobs whose worker stopped sending heartbeats ("worker lost"); returns their ids."""
        now = now or timezone.now()
        cutoff = now - timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS)
        stale = models.Q(heartbeat_at__lt=cutoff) | models.Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
        reaped = []
        for job in self.filter(status=TrainingJob.Status.RUNNING).filter(stale):
            last_seen = job.heartbeat_at or job.started_at
            error = (
                f"worker lost: worker {job.worker or 'unknown'} sent no heartbeat for more than "
                f"{settings.HEARTBEAT_STALE_SECONDS} s (last at {last_seen:%Y-%m-%d %H:%M:%S %Z})"
            )
            # Conditional on the stale heartbeat, so a worker that just reported keeps its job.
            updated = self.filter(pk=job.pk, status=TrainingJob.Status.RUNNING).filter(stale).update(
                status=TrainingJob.Status.FAILED, error=error, finished_at=now, eta_seconds=None
            )
            if updated:
                job.log(JobLog.Level.ERROR, error)
                job.remove_from_queue()
                job.remove_working_files()
                reaped.append(job.pk)
                logger.warning("Job #%s: %s", job.pk, error)
        if reaped:
            self.recover_queue(now)
        return reaped

    def recover_queue(self, now: datetime | None = None) -> list[int]:
        """Make every queued job reachable by a worker again; returns the ids it touched.

        A training cluster prefetches the next task while it trains. When that cluster dies, the ORM broker
        keeps the task locked until ``retry`` (hours away) and Redis has lost it (a popped task has no receipt;
        training_app/broker.py). When no worker is visibly busy, held tasks of queued jobs are released and
        queued jobs whose task vanished from the queue are enqueued again. A task delivered twice is harmless:
        the task claims its job atomically and skips jobs that are not queued.
        """
        now = now or timezone.now()
        queue = training_queue()
        cutoff = now - timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS)
        if self.filter(status=TrainingJob.Status.RUNNING, heartbeat_at__gte=cutoff).exists():
            return []  # a live worker may hold the next task in memory; leave the queue alone
        tasks = {task.task_id: task for task in queue.tasks(now)}
        queued = list(self.filter(status=TrainingJob.Status.QUEUED).order_by("created_at", "id"))
        # Tasks train the head of the queue: a task whose own job another task trained will train another job.
        spare_tasks = len(set(tasks) - {job.task_id for job in queued})
        queue.release_held(now)
        touched = []
        for job in queued:
            task = tasks.get(job.task_id) if job.task_id else None
            # A job without a task id may still be between its commit and its enqueue: give it a minute.
            if task is None and (job.task_id or job.created_at < now - timedelta(seconds=60)):
                spare_tasks -= 1
                if spare_tasks >= 0:
                    continue
                job.enqueue()
                job.log(JobLog.Level.WARNING, "Its task was missing from the queue (a lost worker had taken it); "
                        "queued again.")
                touched.append(job.pk)
            elif task is not None and task.held:
                job.log(JobLog.Level.INFO, "Released from a lost worker; waiting for the next worker.")
                touched.append(job.pk)
        return touched


class TrainingJob(models.Model):
    class Task(models.TextChoices):
        CLASSIFICATION = "classification", "Classification"
        TRANSCRIPTION = "transcription", "Transcription"
        REGRESSION = "regression", "Regression"
        DETECTION = "detection", "Detection"
        SYNTHESIS = "synthesis", "Synthesis"

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
    snapshot_size = models.PositiveIntegerField(default=0, help_text="Number of clips in the snapshot")
    ignored_clips = models.PositiveIntegerField(
        default=0, help_text="Active clips left out because they lack what the task trains on (a score, say)"
    )
    cancel_requested = models.BooleanField(default=False)
    task_id = models.CharField(max_length=64, blank=True, help_text="django-q2 task id")
    worker = models.CharField(max_length=128, blank=True)
    device = models.CharField(max_length=16, blank=True, help_text="Where it trained: cpu, cuda:0, …")
    device_name = models.CharField(max_length=128, blank=True, help_text="The GPU's (or CPU's) model name")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    rerun_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns")
    reproduces = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reproductions",
        help_text="The job whose frozen snapshot and configuration this one trains again",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TrainingJobManager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Job #{self.pk} {self.model_name} on {self.dataset.name}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def is_active(self) -> bool:
        return not self.is_finished

    @property
    def can_cancel(self) -> bool:
        return self.status == self.Status.QUEUED or (self.status == self.Status.RUNNING and not self.cancel_requested)

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()

    def queue_position(self) -> int | None:
        """1 = next to run; None unless queued."""
        if self.status != self.Status.QUEUED:
            return None
        if "queue_rank" in self.__dict__:  # annotated by with_queue_positions()
            return self.queue_rank
        return TrainingJob.objects.with_queue_positions().values_list("queue_rank", flat=True).get(pk=self.pk)

    def working_dir(self):
        """Where ml.train writes this job's artifacts (local disk of the worker)."""
        return settings.WORK_DIR / "jobs" / str(self.pk)

    def log(self, level: str, message: str) -> JobLog:
        return JobLog.objects.create(job=self, level=level, message=message)

    # Queue handling -------------------------------------------------------------------------------------------

    def enqueue(self) -> str:
        """Hand the job to the training cluster; called once the creating transaction has committed."""
        from django_q.tasks import async_task

        task_id = async_task(
            "training_app.tasks.run_training_job",
            self.pk,
            cluster=TRAINING_CLUSTER,
            task_name=f"training-job-{self.pk}",
        )
        self.task_id = task_id or ""
        TrainingJob.objects.filter(pk=self.pk).update(task_id=self.task_id)
        return self.task_id

    def remove_from_queue(self) -> int:
        """Delete this job's task from the broker's queue (tasks not yet pulled by a worker)."""
        if not self.task_id:
            return 0
        return training_queue().remove(self.task_id)

    def remove_working_files(self) -> None:
        """Remove the job's working folder and any half-written export next to it."""
        folder = self.working_dir()
        shutil.rmtree(folder, ignore_errors=True)
        if folder.parent.is_dir():
            for partial in folder.parent.glob(f"{folder.name}.tmp-*"):
                shutil.rmtree(partial, ignore_errors=True)

    # Actions ------------------------------------------------------------------------------------------------

    def cancel(self, by=None) -> TrainingJob:
        """Queued: remove from the queue and mark cancelled. Running: ask the worker to stop at the next batch.
        `by` (an Actor, or a user) is recorded as `job.cancel`.

        Raises Conflict (409) when the job has already finished.
        """
        actor = Actor.of(by)
        who = str(actor) if actor else "the system"
        jobs = TrainingJob.objects.filter(pk=self.pk)
        with transaction.atomic():
            if jobs.filter(status=self.Status.QUEUED).update(
                status=self.Status.CANCELLED, cancel_requested=True, finished_at=timezone.now(), eta_seconds=None,
                error=f"Cancelled by {who} before it started.",
            ):
                change, note = ["queued", "cancelled"], f"Cancelled by {who} while queued; removed from the queue."
            elif jobs.filter(status=self.Status.RUNNING).update(cancel_requested=True):
                change, note = ["running", "stopping"], f"Cancel requested by {who}; the worker stops at the next batch."
            else:
                change, note = None, ""
            if change:
                self.log(JobLog.Level.WARNING, note)
                if actor:
                    record("job.cancel", self, by=actor, changes={"status": change})
        if change and change[1] == "cancelled":
            self.remove_from_queue()
        self.refresh_from_db()
        if change is None:
            raise JobNotCancellable(
                f"Job #{self.pk} has already {self.get_status_display().lower()}; only queued or running jobs can be "
                "cancelled.",
                job_status=self.status,
            )
        return self

    def rerun(self, by=None) -> TrainingJob:
        """A new job with the same dataset, model name, preset and overrides on a fresh snapshot of the data
        (recorded as its `job.start`)."""
        return TrainingJob.objects.create_job(
            self.dataset, self.model_name, self.preset, self.overrides, by, task=self.task, rerun_of=self
        )

    def reproduce(self, by=None, enqueue: bool = True) -> TrainingJob:
        """A new job on this job's frozen snapshot and configuration (TrainingJobManager.create_reproduction)."""
        return TrainingJob.objects.create_reproduction(self, by, enqueue=enqueue)

    def reproduction_check(self):
        """How this reproduction's metrics compare with its source's (training_app.reproduce.compare_metrics):
        None unless this job reproduces a job and both have metrics."""
        from training_app.reproduce import compare_metrics

        source = self.reproduces
        if source is None or not self.metrics or not source.metrics:
            return None
        return compare_metrics(source.metrics, self.metrics)

    def _record_start(self, actor: Actor) -> None:
        """`job.start`: a job was queued (new, a re-run of an earlier one, or a reproduction of one)."""
        started = {"status": self.status, "dataset": self.dataset.name, "model_name": self.model_name,
                   "preset": self.preset, "snapshot_clips": self.snapshot_size,
                   "overrides": self.overrides or None, "rerun_of": self.rerun_of_id,
                   "reproduces": self.reproduces_id}
        record("job.start", self, by=actor,
               changes={key: [None, value] for key, value in started.items() if value is not None})

    # Read helpers for the panel and the API -------------------------------------------------------------------

    def result_metrics(self) -> dict[str, Any]:
        """The evaluation split's metrics (test when there is one, else validation)."""
        if not self.metrics:
            return {}
        return self.metrics.get(self.metrics.get("evaluated_on") or "val") or {}

    def snapshot_summary(self) -> dict[str, Any]:
        return data_summary(self.snapshot or [], self.ignored_clips)

    def headline(self) -> dict[str, Any] | None:
        """The task's main figure beside its baseline, for lists: {"name", "value", "baseline"}."""
        return task_headline(self.task, self.metrics or {})


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
