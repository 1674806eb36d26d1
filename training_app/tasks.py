"""django-q2 entry points for training. Thin on purpose: claim the job, run ml.train, record the outcome."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import close_old_connections, connection
from django.utils import timezone

from training_app.ml.artifacts import finite_json
from training_app.models import JobLog, TrainingJob, task_headline
from training_app.snapshot import clip_records
from training_app.signals import job_succeeded

logger = logging.getLogger("training_app.tasks")

# Progress rows are written at most this often (epoch ends and phase changes always).
PROGRESS_WRITE_SECONDS = 1.0
# The cancel flag is read from the database at most this often.
CANCEL_POLL_SECONDS = 0.5
# should_stop() also refreshes the heartbeat when nothing else has for this long.
HEARTBEAT_SECONDS = 5.0
# The ONNX exporter logs every graph rewrite at INFO; the job log already says what matters.
CHATTY_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "torch.export", "torch._dynamo", "torch.fx")


class SnapshotFilesMissing(RuntimeError):
    pass


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def training_threads() -> int:
    """This worker's share of the machine's cores."""
    return max(1, (os.cpu_count() or 1) // settings.Q_WORKERS)


def close_stale_connections() -> None:
    """close_old_connections() around long work; skipped inside a transaction (tests, callers' atomic blocks)."""
    if not connection.in_atomic_block:
        close_old_connections()


def run_training_job(job_id: int, progress_hook: Callable[[TrainingJob, Any], None] | None = None) -> str:
    """Train one queued job. Returns the job's final status, or "skipped" when the job was not queued.

    ``progress_hook(job, progress)`` is called after every progress report (the ``train --now`` command draws
    its progress bar with it).
    """
    close_stale_connections()
    try:
        now = timezone.now()
        claimed = TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.QUEUED).update(
            status=TrainingJob.Status.RUNNING,
            phase=TrainingJob.Phase.PREPARING,
            progress=0.0,
            started_at=now,
            heartbeat_at=now,
            worker=worker_name(),
        )
        if claimed != 1:
            status = TrainingJob.objects.filter(pk=job_id).values_list("status", flat=True).first()
            logger.warning("Training job #%s not started: it is %s, not queued", job_id, status or "missing")
            return "skipped"
        job = TrainingJob.objects.select_related("dataset").get(pk=job_id)
        return JobRun(job, progress_hook).execute()
    finally:
        close_stale_connections()


def reap_stale_jobs() -> dict[str, list[int]]:
    """Scheduled every minute on the default cluster: fail jobs of lost workers, keep the queue moving."""
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


class JobRun:
    def __init__(self, job: TrainingJob, progress_hook=None) -> None:
        self.job = job
        self.progress_hook = progress_hook
        self.epochs: list[dict[str, Any]] = []
        self.last_write = 0.0
        self.last_heartbeat = time.monotonic()
        self.last_cancel_check = 0.0
        self.cancel_seen = False
        self.phase = TrainingJob.Phase.PREPARING
        self.temp_dir: Path | None = None

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
            runtime = Runtime(settings.WORK_DIR / "feature-cache", self.snapshot_document(), self.on_log, threads)
            result = train(cfg, clips, out_dir, self.on_progress, self.should_stop, runtime)
            if self.cancel_requested(force=True):
                raise TrainingCancelled("cancelled after training finished, before registration")
            self.write(phase=TrainingJob.Phase.REGISTERING, progress=100.0, eta_seconds=0.0)
            job_succeeded.send(sender=TrainingJob, job=job, artifacts_dir=out_dir, result=result)
        except TrainingCancelled:
            return self.finish_cancelled()
        except Exception as error:  # noqa: BLE001 - every failure is recorded on the job
            return self.finish_failed(error)
        finally:
            if self.temp_dir is not None:
                shutil.rmtree(self.temp_dir, ignore_errors=True)
        status = self.finish_succeeded(result, out_dir)
        if status == TrainingJob.Status.SUCCEEDED:
            job.remove_working_files()  # its artifacts now live in the registry
            sweep_this_machine()
        return status

    # Data --------------------------------------------------------------------------------------------------

    def snapshot_records(self):
        """ClipRecords from the job's frozen snapshot, reading the canonical audio it names."""
        entries = self.job.snapshot
        missing = [e for e in entries if not default_storage.exists(e["audio"])]
        if missing:
            examples = ", ".join(f"clip {e['id']} ({e['audio']})" for e in missing[:3])
            raise SnapshotFilesMissing(
                f"{len(missing)} of the {len(entries)} clips in this job's snapshot no longer have their audio "
                f"file (e.g. {examples}); the data the job was submitted with is gone. Run the job again to "
                "train on the dataset as it is now."
            )
        return clip_records(entries, self.local_path)

    def local_path(self, name: str) -> Path:
        try:
            return Path(default_storage.path(name))
        except NotImplementedError:
            # A remote storage: copy the clip to a local temporary folder for the trainer.
            if self.temp_dir is None:
                self.temp_dir = Path(tempfile.mkdtemp(prefix=f"job-{self.job.pk}-clips-"))
            target = self.temp_dir / name.replace("/", "_")
            with default_storage.open(name, "rb") as source, open(target, "wb") as copy:
                shutil.copyfileobj(source, copy)
            return target

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
        if time.monotonic() - self.last_heartbeat >= HEARTBEAT_SECONDS:
            self.write()
        return self.cancel_requested()

    def cancel_requested(self, force: bool = False) -> bool:
        now = time.monotonic()
        if not self.cancel_seen and (force or now - self.last_cancel_check >= CANCEL_POLL_SECONDS):
            self.last_cancel_check = now
            self.cancel_seen = bool(
                TrainingJob.objects.filter(pk=self.job.pk).values_list("cancel_requested", flat=True).first()
            )
        return self.cancel_seen

    def write(self, **fields) -> None:
        """Update the running job's row (and its heartbeat); only while it is still running."""
        now = time.monotonic()
        fields["heartbeat_at"] = timezone.now()
        TrainingJob.objects.filter(pk=self.job.pk, status=TrainingJob.Status.RUNNING).update(**fields)
        for name, value in fields.items():
            setattr(self.job, name, value)
        self.last_write = self.last_heartbeat = now

    # Outcomes ----------------------------------------------------------------------------------------------

    def finish_succeeded(self, result, out_dir: Path) -> str:
        job = self.job
        metrics = finite_json(result.metrics)
        updated = TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.RUNNING).update(
            status=TrainingJob.Status.SUCCEEDED,
            phase=TrainingJob.Phase.DONE,
            progress=100.0,
            eta_seconds=None,
            metrics=metrics,
            epochs=metrics.get("history") or self.epochs,
            artifacts_dir=str(out_dir),
            heartbeat_at=timezone.now(),
            finished_at=timezone.now(),
        )
        if not updated:
            job.refresh_from_db()
            logger.error("Job #%s finished training but was already %s", job.pk, job.status)
            return job.status
        headline = task_headline(job.task, metrics) or {}
        value, baseline = headline.get("value"), headline.get("baseline")
        summary = f"Succeeded in {result.total_seconds:.1f} s"
        if value is not None:
            summary += f": {metrics.get('evaluated_on', 'validation')} {headline['name']} {value:.3f}"
            if baseline is not None:
                summary += f" (baseline {baseline:.3f})"
        job.log(JobLog.Level.INFO, summary + ".")
        logger.info("Job #%s %s", job.pk, summary)
        job.refresh_from_db()
        return job.status

    def finish_cancelled(self) -> str:
        job = self.job
        job.remove_working_files()
        phase = TrainingJob.Phase(self.phase).label.lower() if self.phase in TrainingJob.Phase.values else self.phase
        TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.RUNNING).update(
            status=TrainingJob.Status.CANCELLED,
            eta_seconds=None,
            error=f"Cancelled while {phase}; no model was saved.",
            finished_at=timezone.now(),
        )
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
        TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.RUNNING).update(
            status=TrainingJob.Status.FAILED,
            eta_seconds=None,
            error=message,
            traceback=trace,
            finished_at=timezone.now(),
        )
        job.log(JobLog.Level.ERROR, f"Failed: {message}")
        logger.error("Job #%s failed: %s\n%s", job.pk, message, trace)
        job.refresh_from_db()
        return job.status
