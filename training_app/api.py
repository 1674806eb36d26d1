"""`/api/jobs`: create, list, inspect, cancel and re-run training jobs."""

from django.http import HttpRequest
from django.urls import reverse
from ninja import Query, Router, Status
from ninja.pagination import paginate

from audioml.errors import NotFound
from audioml.roles import CAN_CANCEL, CAN_TRAIN, CAN_VIEW_JOBS, require
from datasets_app.models import Dataset
from training_app.audit import record_cancel, record_start
from training_app.models import JobLog, TrainingJob
from training_app.schemas import EpochOut, JobDetailOut, JobFilter, JobIn, JobLogOut, JobOut

router = Router(tags=["jobs"])


def get_job_or_404(job_id: int) -> TrainingJob:
    job = TrainingJob.objects.select_related("dataset", "created_by").filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"No training job #{job_id}.")
    return job


def job_out(job: TrainingJob, queue_positions: dict[int, int] | None = None) -> dict:
    result = job.result_metrics()
    baseline = (job.metrics or {}).get("baseline") or {}
    if queue_positions is not None:
        position = queue_positions.get(job.pk)
    else:
        position = job.queue_position()
    return {
        "id": job.pk,
        "url": reverse("job-detail", args=[job.pk]),
        "dataset": job.dataset.name,
        "model_name": job.model_name,
        "task": job.task,
        "preset": job.preset,
        "overrides": job.overrides,
        "status": job.status,
        "phase": job.phase,
        "phase_display": job.get_phase_display(),
        "progress": job.progress,
        "eta_seconds": job.eta_seconds,
        "queue_position": position,
        "cancel_requested": job.cancel_requested,
        "accuracy": result.get("accuracy"),
        "baseline_accuracy": baseline.get("accuracy"),
        "error": job.error,
        "snapshot_hash": job.snapshot_hash,
        "snapshot_clips": job.snapshot_size,
        "rerun_of": job.rerun_of_id,
        "created_by": job.created_by.get_username() if job.created_by else None,
        "worker": job.worker,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "heartbeat_at": job.heartbeat_at,
    }


def job_detail_out(job: TrainingJob) -> dict:
    return {
        **job_out(job),
        "config": job.config,
        "data": job.snapshot_summary(),
        "epochs": job.epochs,
        "metrics": job.metrics,
        "traceback": job.traceback,
        "artifacts_dir": job.artifacts_dir,
    }


@router.post("", response={201: JobDetailOut}, summary="Start a training job")
def create_job(request: HttpRequest, payload: JobIn):
    """Validate the configuration and the data, freeze a snapshot of the dataset's labelled clips and queue
    the job. 404 for an unknown dataset; 422 for an invalid setting (`field` names it) or for data that cannot
    train a model (`problems` lists every reason)."""
    require(request.user, CAN_TRAIN)
    dataset = Dataset.objects.filter(name=payload.dataset).first()
    if dataset is None:
        raise NotFound(f"No dataset named '{payload.dataset}'.", field="dataset")
    job = TrainingJob.objects.create_job(
        dataset, payload.model_name, payload.preset, payload.overrides, request.user, task=payload.task
    )
    record_start(job, request=request)
    return Status(201, job_detail_out(job))


@router.get("", response=list[JobOut], summary="List training jobs")
@paginate
def list_jobs(request: HttpRequest, filters: Query[JobFilter]):
    """Newest first. Filter by status, dataset name or model name."""
    require(request.user, CAN_VIEW_JOBS)
    TrainingJob.objects.reap_stale()
    positions = TrainingJob.objects.queue_positions()
    jobs = filters.filter(TrainingJob.objects.select_related("dataset", "created_by").defer("snapshot", "traceback"))
    return _JobPage(jobs, positions)


class _JobPage:
    """A lazily sliced queryset that turns each page's rows into JobOut dicts with their queue positions."""

    def __init__(self, queryset, positions: dict[int, int]) -> None:
        self.queryset = queryset
        self.positions = positions

    def __getitem__(self, item: slice) -> list[dict]:
        return [job_out(job, self.positions) for job in self.queryset[item]]

    def __len__(self) -> int:
        return self.queryset.count()

    def count(self) -> int:
        return self.queryset.count()


@router.get("/{int:job_id}", response=JobDetailOut, summary="Get a training job")
def get_job(request: HttpRequest, job_id: int):
    """Status, phase, progress, ETA, queue position, configuration, data summary, epochs and final metrics."""
    require(request.user, CAN_VIEW_JOBS)
    return job_detail_out(get_job_or_404(job_id))


@router.get("/{int:job_id}/epochs", response=list[EpochOut], summary="Per-epoch metrics of a job")
def job_epochs(request: HttpRequest, job_id: int):
    require(request.user, CAN_VIEW_JOBS)
    return get_job_or_404(job_id).epochs


@router.get("/{int:job_id}/logs", response=list[JobLogOut], summary="Log lines of a job")
@paginate
def job_logs(request: HttpRequest, job_id: int, level: JobLog.Level | None = None, after: int | None = None):
    """Oldest first. `after` returns only lines with a larger id (to follow a running job); `level` filters."""
    require(request.user, CAN_VIEW_JOBS)
    job = get_job_or_404(job_id)
    logs = job.logs.all()
    if level:
        logs = logs.filter(level=level)
    if after is not None:
        logs = logs.filter(id__gt=after)
    return logs


@router.post("/{int:job_id}/cancel", response=JobOut, summary="Cancel a job")
def cancel_job(request: HttpRequest, job_id: int):
    """A queued job leaves the queue and ends cancelled; a running one stops at its next batch and saves no
    model (`cancel_requested` is true until it has). 409 when the job has already finished."""
    require(request.user, CAN_CANCEL)
    job = get_job_or_404(job_id)
    status_before = job.status
    job.cancel(request.user)
    record_cancel(job, status_before, request=request)
    return job_out(job)


@router.post("/{int:job_id}/rerun", response={201: JobDetailOut}, summary="Run a job again")
def rerun_job(request: HttpRequest, job_id: int):
    """A new job with the same dataset, model name, preset and overrides, on a fresh snapshot of the data."""
    require(request.user, CAN_TRAIN)
    job = get_job_or_404(job_id)
    again = job.rerun(request.user)
    record_start(again, request=request)
    return Status(201, job_detail_out(again))
