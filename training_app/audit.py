"""Audit events for training jobs: the panel, the API, Django admin and `manage.py train` record the same ones."""

from __future__ import annotations

from audioml.audit import record
from training_app.models import TrainingJob


def record_start(job: TrainingJob, *, request=None, user=None, via: str = "") -> None:
    """`job.start`: a job was queued (new, or a re-run of an earlier one)."""
    changes = {
        "status": [None, job.status],
        "dataset": [None, job.dataset.name],
        "model_name": [None, job.model_name],
        "preset": [None, job.preset],
        "snapshot_clips": [None, job.snapshot_size],
    }
    if job.overrides:
        changes["overrides"] = [None, job.overrides]
    if job.rerun_of_id:
        changes["rerun_of"] = [None, job.rerun_of_id]
    if via:
        changes["via"] = [None, via]
    record("job.start", job, request=request, user=user, changes=changes)


def record_cancel(job: TrainingJob, status_before: str, *, request=None, user=None) -> None:
    """`job.cancel`: a queued job left the queue, or a running one was asked to stop at its next batch."""
    after = "stopping" if job.status == TrainingJob.Status.RUNNING else job.status
    record("job.cancel", job, request=request, user=user, changes={"status": [status_before, after]})
