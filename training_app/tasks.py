"""django-q2 entry points for training. Thin on purpose: claim the job, run ml.train, record the outcome.

This module holds the one place where training reaches forward into the registry: `hand_off()`, where a
worker's successful finish and the new registry version commit in one transaction (see the README's
"Dependencies between the apps").
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, models, transaction
from django.utils import timezone

from training_app.ml.artifacts import finite_json
from training_app.models import JobLog, TrainingJob, task_headline
from training_app.snapshot import clip_records

logger = logging.getLogger("training_app.tasks")

# Progress rows are written at most this often (epoch ends and phase changes always).
PROGRESS_WRITE_SECONDS = 1.0
# The cancel flag is read from the database at most this often.
CANCEL_POLL_SECONDS = 0.5
# should_stop() also refreshes the heartbeat when nothing else has for this long.
HEARTBEAT_SECONDS = 5.0
# Clips fetched at once from object storage into this machine's clip cache (each a round trip to the bucket).
CLIP_FETCH_THREADS = 8
# The ONNX exporter logs every graph rewrite at INFO; the job log already says what matters.
CHATTY_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "torch.export", "torch._dynamo", "torch.fx")


class SnapshotFilesMissing(RuntimeError):
    pass


class JobNotOwned(Exception):
    """The job stopped being this worker's (the reaper failed it as lost, or it finished elsewhere)."""


class WorkerStopped(Exception):
    """The worker process was told to stop (SIGTERM: its cluster ended, or a supervisor stopped it)."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def training_threads() -> int:
    """This worker's share of the machine's cores."""
    return max(1, (os.cpu_count() or 1) // settings.Q_WORKERS)


def close_stale_connections() -> None:
    """close_old_connections() around long work; skipped inside a transaction (tests, callers' atomic blocks)."""
    if not connection.in_atomic_block:
        close_old_connections()


def claim(job_id: int) -> bool:
    """Turn a queued job into this worker's running job; False when it was not queued (taken, cancelled)."""
    now = timezone.now()
    return TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.QUEUED).update(
        status=TrainingJob.Status.RUNNING,
        phase=TrainingJob.Phase.PREPARING,
        progress=0.0,
        started_at=now,
        heartbeat_at=now,
        worker=worker_name(),
    ) == 1


def run_training_job(job_id: int, progress_hook: Callable[[TrainingJob, Any], None] | None = None) -> str:
    """The training cluster's task: train the first job in queue order (the order the panel shows).

    Returns that job's final status, or "skipped" when no job is queued. Each queued job has one task, but
    brokers do not hand tasks out in the order they were queued (the ORM broker's dequeue has no ORDER BY), so
    a task trains whichever job is first in the queue, and the job it was queued for is trained by a later task.
    Jobs created to run in the foreground (``train --now``: no task) are left to their own process.
    ``progress_hook(job, progress)`` is called after every progress report.
    """
    close_stale_connections()
    try:
        queued = (
            TrainingJob.objects.filter(status=TrainingJob.Status.QUEUED)
            .filter(~models.Q(task_id="") | models.Q(pk=job_id))
            .order_by("created_at", "id")
            .values_list("id", flat=True)
        )
        for candidate in queued[:20]:
            if claim(candidate):
                if candidate != job_id:
                    logger.info("Task of job #%s runs job #%s, first in the queue", job_id, candidate)
                return _run_claimed(candidate, progress_hook, watch_parent=True)
        status = TrainingJob.objects.filter(pk=job_id).values_list("status", flat=True).first()
        logger.warning("Task of job #%s ran nothing: the job is %s and no other job is queued", job_id,
                       status or "missing")
        return "skipped"
    finally:
        close_stale_connections()


def run_job_now(job_id: int, progress_hook: Callable[[TrainingJob, Any], None] | None = None) -> str:
    """Train this one queued job in this process (``manage.py train --now``); "skipped" when it is not queued."""
    close_stale_connections()
    try:
        if not claim(job_id):
            status = TrainingJob.objects.filter(pk=job_id).values_list("status", flat=True).first()
            logger.warning("Training job #%s not started: it is %s, not queued", job_id, status or "missing")
            return "skipped"
        return _run_claimed(job_id, progress_hook)
    finally:
        close_stale_connections()


def _run_claimed(job_id: int, progress_hook, watch_parent: bool = False) -> str:
    job = TrainingJob.objects.select_related("dataset").get(pk=job_id)
    parent = os.getppid()
    with StopOnSigterm() as sigterm:
        status = JobRun(job, progress_hook, watch_parent, sigterm).execute()
    if sigterm.received or (watch_parent and os.getppid() != parent):
        # The cluster is gone (or a supervisor stopped us): leave the worker instead of waiting for a task.
        raise SystemExit(f"worker {job.worker} stopped: its cluster ended")
    return status


class StopOnSigterm:
    """While a job runs in the main thread, SIGTERM asks it to stop at the next batch (should_stop() then raises
    WorkerStopped, the job is recorded as failed and the worker exits). A training cluster's processes get
    SIGTERM when the process that started them dies (training_app/cluster.py), so a worker whose cluster was
    killed does not train on as an orphan. The handler only sets a flag: an exception raised wherever the
    signal lands (inside a database driver, say) could leave the connection unusable for recording the job.
    """

    def __init__(self) -> None:
        self.previous = None
        self.received = False

    def __enter__(self) -> StopOnSigterm:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._note)
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None and not self.received:
            signal.signal(signal.SIGTERM, self.previous)

    def _note(self, signum, frame) -> None:
        self.received = True
        signal.signal(signal.SIGTERM, self.previous)  # a second SIGTERM ends the process at once


def reap_stale_jobs() -> dict[str, list[int]]:
    """Scheduled every minute on the default cluster (training_app/apps.py): fail jobs of lost workers and keep
    the queue moving (tasks a lost worker held are released, or enqueued again on Redis)."""
    reaped = TrainingJob.objects.reap_stale()
    recovered = TrainingJob.objects.recover_queue()
    return {"reaped": reaped, "recovered": recovered}


def sweep_this_machine() -> None:
    """Finished jobs' folders and the feature cache's size limit live on this worker's local disk."""
    from audioml.sweep import sweep

    try:
        sweep(media=False)
    except Exception:  # noqa: BLE001 - housekeeping must never fail a job
        logger.exception("Sweeping the work folder failed")


def hand_off(job: TrainingJob, result, artifacts_dir: Path, epochs: list[dict[str, Any]] | None = None):
    """The one door from training into the registry: the job succeeds and its model version is created in
    one transaction, or neither happens.

    The job's row is locked and must still be running on this worker (the stale-heartbeat reaper may have
    failed it while this worker was paused): otherwise JobNotOwned, and nothing is registered. A cancel
    request that arrived while training finished raises TrainingCancelled. If registering fails, the
    transaction rolls back (the job is still running) and the error propagates, so the caller fails the job.
    Returns the new ModelVersion.
    """
    from registry_app.models import ModelVersion  # training's one import of the registry (README: dependencies)
    from training_app.ml.train import TrainingCancelled

    metrics = finite_json(result.metrics)
    with transaction.atomic():
        locked = TrainingJob.objects.select_for_update().filter(pk=job.pk).first()
        if locked is None or (locked.status, locked.worker) != (TrainingJob.Status.RUNNING, job.worker):
            raise JobNotOwned(f"job #{job.pk} is {locked.status if locked else 'gone'}, no longer this worker's")
        if locked.cancel_requested:
            raise TrainingCancelled("cancelled after training finished, before its model was registered")
        now = timezone.now()
        TrainingJob.objects.filter(pk=job.pk).update(
            status=TrainingJob.Status.SUCCEEDED,
            phase=TrainingJob.Phase.DONE,
            progress=100.0,
            eta_seconds=None,
            metrics=metrics,
            epochs=metrics.get("history") or epochs or [],
            heartbeat_at=now,
            finished_at=now,
        )
        locked.refresh_from_db()
        locked.log(JobLog.Level.INFO, success_summary(locked, result, metrics) + ".")
        # Last in the transaction, so nothing after the artifact copy can roll back and leave files behind.
        return ModelVersion.objects.register_from_job(locked, Path(artifacts_dir))


def success_summary(job: TrainingJob, result, metrics: dict[str, Any]) -> str:
    """One line for the job's log: the task's headline figure beside its baseline."""
    summary = f"Succeeded in {result.total_seconds:.1f} s"
    headline = task_headline(job.task, metrics) or {}
    value, baseline = headline.get("value"), headline.get("baseline")
    if value is not None:
        summary += f": {metrics.get('evaluated_on', 'validation')} {headline['name']} {value:.3f}"
        if baseline is not None:
            summary += f" (baseline {baseline:.3f})"
    return summary


class JobRun:
    def __init__(self, job: TrainingJob, progress_hook=None, watch_parent: bool = False,
                 sigterm: StopOnSigterm | None = None) -> None:
        self.job = job
        self.sigterm = sigterm
        self.progress_hook = progress_hook
        self.epochs: list[dict[str, Any]] = []
        self.last_write = 0.0
        self.last_heartbeat = time.monotonic()
        self.last_cancel_check = 0.0
        self.cancel_seen = False
        self.lost = False  # the job is no longer this worker's: stop and record nothing
        # A cluster worker stops when its parent (the cluster's sentinel) is gone; `train --now` may outlive its shell.
        self.parent_pid = os.getppid() if watch_parent else None
        self.phase = TrainingJob.Phase.PREPARING
        self.temp_dir: Path | None = None
        self.device_claim = None

    def execute(self) -> str:
        from training_app.ml.config import TrainConfig
        from training_app.ml.train import Runtime, TrainingCancelled, train

        job = self.job
        out_dir = job.working_dir()
        threads = training_threads()
        job.log(JobLog.Level.INFO, f"Started on worker {job.worker} with {threads} CPU thread(s).")
        for name in CHATTY_LOGGERS:
            if logging.getLogger(name).getEffectiveLevel() < logging.WARNING:
                logging.getLogger(name).setLevel(logging.WARNING)
        try:
            job.remove_working_files()
            sweep_this_machine()
            cfg = TrainConfig.from_dict(job.preset, job.config)
            clips = self.snapshot_records()
            device = self.claim_device()
            runtime = Runtime(settings.WORK_DIR / "feature-cache", self.snapshot_document(), self.on_log, threads,
                              device=device, base_dir=self.base_artifacts(cfg.init_from))
            if cfg.trainer:
                result = self.run_external(cfg, clips, out_dir, runtime)
            else:
                result = train(cfg, clips, out_dir, self.on_progress, self.should_stop, runtime)
            version = hand_off(job, result, out_dir, self.epochs)
        except TrainingCancelled:
            return self.finish_lost() if self.lost else self.finish_cancelled()
        except JobNotOwned:
            return self.finish_lost()
        except Exception as error:  # noqa: BLE001 - every failure is recorded on the job
            return self.finish_failed(error)
        finally:
            if self.device_claim is not None:
                self.device_claim.release()
            if self.temp_dir is not None:
                shutil.rmtree(self.temp_dir, ignore_errors=True)
        status = self.finish_succeeded(result, version)
        job.remove_working_files()  # its artifacts now live in the registry
        sweep_this_machine()
        return status

    def claim_device(self) -> str:
        """This machine's device for the job (TRAINING_DEVICE; a GPU no other job here holds), recorded on it."""
        from training_app.ml.device import claim_device

        self.device_claim = claim = claim_device(settings.TRAINING_DEVICE, settings.WORK_DIR / "devices")
        self.write(device=str(claim.device), device_name=claim.name)
        where = f"GPU {claim.device} ({claim.name})" if claim.is_cuda else f"the CPU ({claim.name})"
        self.job.log(JobLog.Level.INFO, f"Training on {where}" + (f"; {claim.note}" if claim.note else "") + ".")
        return str(claim.device)

    # Data --------------------------------------------------------------------------------------------------

    def snapshot_records(self):
        """ClipRecords from the job's frozen snapshot, reading the canonical audio it names: the media files
        themselves on local storage; on object storage this machine's cached copies, fetching the missing ones."""
        entries = self.job.snapshot
        local_paths, missing = self.fetch_clips(entries)
        if missing:
            examples = ", ".join(f"clip {e['id']} ({e['audio']})" for e in missing[:3])
            raise SnapshotFilesMissing(
                f"{len(missing)} of the {len(entries)} clips in this job's snapshot no longer have their audio "
                f"file (e.g. {examples}); the data the job was submitted with is gone. Run the job again to "
                "train on the dataset as it is now."
            )
        return clip_records(entries, local_paths.__getitem__)

    def fetch_clips(self, entries: list[dict[str, Any]]) -> tuple[dict[str, Path], list[dict[str, Any]]]:
        """A local file for every clip of the snapshot (fetched in parallel on object storage) and the entries
        whose audio the storage no longer holds."""
        from audioml import storage as media

        def copy(name: str):
            if name not in present:
                media.forget_local_copy(name)  # deleted for good: a cached copy must not outlive it
                return None
            try:
                return media.local_copy(name)
            except FileNotFoundError:
                return None

        names = list(dict.fromkeys(entry["audio"] for entry in entries))
        started = time.monotonic()
        present = media.existing(names)
        with ThreadPoolExecutor(max_workers=1 if media.is_local() else CLIP_FETCH_THREADS) as pool:
            copies = dict(zip(names, pool.map(copy, names), strict=True))
        local_paths = {name: found.path for name, found in copies.items() if found is not None}
        missing = [entry for entry in entries if copies[entry["audio"]] is None]
        if not media.is_local():
            fetched = [found for found in copies.values() if found is not None and found.fetched_bytes]
            megabytes = sum(found.fetched_bytes for found in fetched) / 1e6
            self.job.log(
                JobLog.Level.INFO,
                f"Clips: {len(local_paths) - len(fetched)} already in this machine's clip cache, {len(fetched)} "
                f"fetched from the object storage ({megabytes:.1f} MB in {time.monotonic() - started:.1f} s).",
            )
        return local_paths, missing

    def run_external(self, cfg, clips, out_dir: Path, runtime):
        """The job's configured external trainer instead of the built-in one (training_app/external.py)."""
        from training_app.external import ExportedClip, ExternalTrainerCancelled, run_external_trainer
        from training_app.ml.train import Progress, TrainingCancelled, TrainResult

        spec = settings.EXTERNAL_TRAINERS.get(cfg.trainer)
        if spec is None:
            raise RuntimeError(f"trainer {cfg.trainer!r} is no longer configured (AUDIOML_EXTERNAL_TRAINERS)")
        from training_app.ml.data import trainable_clips

        exported = [ExportedClip(c.id, c.path, c.label, c.transcript, c.score, c.speaker)
                    for c in trainable_clips(clips, cfg)]

        def progress(fraction: float, record: dict | None) -> None:
            percent = self.job.progress if fraction < 0 else 2.0 + 96.0 * fraction
            self.on_progress(Progress("training", round(percent, 2), None, record))

        self.on_progress(Progress("preparing", 1.0, None))
        try:
            outcome = run_external_trainer(spec, cfg.task, exported, cfg.to_dict(), self.job.dataset.sample_rate,
                                           out_dir, progress, self.on_log, self.should_stop, runtime.snapshot,
                                           runtime.base_dir, settings.WORK_DIR, device=runtime.device or "cpu")
        except ExternalTrainerCancelled:
            raise TrainingCancelled("cancelled: the external trainer was sent SIGTERM") from None
        history = outcome.history
        metrics = {**outcome.metrics, "task": cfg.task, "trainer": spec.name, "history": history,
                   "best_epoch": history[-1]["epoch"] if history else 0, "epochs_run": len(history),
                   "evaluated_on": "val", "labels": [], "prediction": {},
                   "timings": {"training_seconds": outcome.seconds}}
        self.write(phase=TrainingJob.Phase.EXPORTING, progress=99.0)
        return TrainResult([], metrics, outcome.files, out_dir, metrics["best_epoch"], 0.0, outcome.seconds)

    def base_artifacts(self, init_from: str) -> Path | None:
        """A local copy of the fine-tune's base version (weights and config), checked by the registry."""
        if not init_from:
            return None
        if self.temp_dir is None:
            self.temp_dir = Path(tempfile.mkdtemp(prefix=f"job-{self.job.pk}-clips-"))
        folder = self.temp_dir / "base-version"
        folder.mkdir()
        from training_app.fine_tune import bases

        bases.fetch(init_from, folder)
        if not (folder / "weights.pt").is_file():
            raise SnapshotFilesMissing(f"init_from={init_from}: the base version's weights could not be fetched")
        self.job.log(JobLog.Level.INFO, f"Fine-tuning from {init_from}.")
        return folder

    def snapshot_document(self) -> dict[str, Any]:
        job = self.job
        return {
            "job_id": job.pk,
            "dataset": {"id": job.dataset_id, "name": job.dataset.name},
            "snapshot_hash": job.snapshot_hash,
            "created_at": job.created_at.isoformat(),
            "clips": job.snapshot,
        }

    # Callbacks ---------------------------------------------------------------------------------------------

    def on_progress(self, progress) -> None:
        now = time.monotonic()
        phase_changed = progress.phase != self.phase
        if progress.epoch is not None:
            self.epochs.append(finite_json(progress.epoch))
        if progress.epoch is not None or phase_changed or now - self.last_write >= PROGRESS_WRITE_SECONDS:
            self.phase = progress.phase
            fields = {"phase": progress.phase, "progress": progress.percent, "eta_seconds": progress.eta_seconds}
            if progress.epoch is not None:
                fields["epochs"] = self.epochs
            self.write(**fields)
        if self.progress_hook is not None:
            self.progress_hook(self.job, progress)

    def on_log(self, level: str, message: str) -> None:
        level = level if level in JobLog.Level.values else JobLog.Level.INFO
        self.job.log(level, message)

    def should_stop(self) -> bool:
        """True when the training must stop: a cancel request, a job no longer ours, or our cluster gone."""
        if self.sigterm is not None and self.sigterm.received:
            raise WorkerStopped("the worker was stopped by SIGTERM (its cluster ended or it was shut down)")
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            raise WorkerStopped(f"the worker's parent process {self.parent_pid} ended (its cluster stopped)")
        if time.monotonic() - self.last_heartbeat >= HEARTBEAT_SECONDS:
            self.write()
        return self.cancel_requested()

    def cancel_requested(self, force: bool = False) -> bool:
        now = time.monotonic()
        if not (self.cancel_seen or self.lost) and (force or now - self.last_cancel_check >= CANCEL_POLL_SECONDS):
            self.last_cancel_check = now
            row = TrainingJob.objects.filter(pk=self.job.pk).values_list("cancel_requested", "status", "worker").first()
            self.cancel_seen = bool(row and row[0])
            self.lost = row is None or row[1:] != (TrainingJob.Status.RUNNING, self.job.worker)
        return self.cancel_seen or self.lost

    def owned(self):
        """This job's row while it is still running on this worker (the fence every write goes through)."""
        return TrainingJob.objects.filter(pk=self.job.pk, status=TrainingJob.Status.RUNNING, worker=self.job.worker)

    def write(self, **fields) -> None:
        """Update the running job's row (and its heartbeat); only while it is still running on this worker."""
        now = time.monotonic()
        fields["heartbeat_at"] = timezone.now()
        if not self.owned().update(**fields):
            self.lost = True
        for name, value in fields.items():
            setattr(self.job, name, value)
        self.last_write = self.last_heartbeat = now

    # Outcomes ----------------------------------------------------------------------------------------------

    def finish_succeeded(self, result, version) -> str:
        logger.info("Job #%s %s; registered as %s", self.job.pk, success_summary(self.job, result, result.metrics), version)
        self.job.refresh_from_db()
        return self.job.status

    def finish_lost(self) -> str:
        """The job stopped being ours mid-run (failed as lost by the reaper): leave its row alone, save nothing."""
        job = self.job
        job.remove_working_files()
        job.refresh_from_db()
        message = (
            f"Worker {worker_name()} stopped: the job is {job.status} and no longer its own; no model was saved."
        )
        job.log(JobLog.Level.WARNING, message)
        logger.warning("Job #%s: %s", job.pk, message)
        return job.status

    def finish_cancelled(self) -> str:
        job = self.job
        job.remove_working_files()
        phase = TrainingJob.Phase(self.phase).label.lower() if self.phase in TrainingJob.Phase.values else self.phase
        if not self.owned().update(
            status=TrainingJob.Status.CANCELLED,
            eta_seconds=None,
            error=f"Cancelled while {phase}; no model was saved.",
            finished_at=timezone.now(),
        ):
            return self.finish_lost()
        job.log(JobLog.Level.WARNING, f"Cancelled while {phase}; no model was saved.")
        job.refresh_from_db()
        return job.status

    def finish_failed(self, error: Exception) -> str:
        job = self.job
        job.remove_working_files()
        message = str(error) or error.__class__.__name__
        if not isinstance(error, (SnapshotFilesMissing,)) and error.__class__.__module__ != "training_app.ml.data":
            message = f"{error.__class__.__name__}: {message}"
        trace = traceback.format_exc()
        if not self.owned().update(
            status=TrainingJob.Status.FAILED,
            eta_seconds=None,
            error=message,
            traceback=trace,
            finished_at=timezone.now(),
        ):
            return self.finish_lost()
        job.log(JobLog.Level.ERROR, f"Failed: {message}")
        logger.error("Job #%s failed: %s\n%s", job.pk, message, trace)
        job.refresh_from_db()
        return job.status
