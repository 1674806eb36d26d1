"""`/api/jobs`: create, list, inspect, cancel, re-run and reproduce training jobs."""

from django.http import HttpRequest
from ninja import Query, Router, Status
from ninja.pagination import paginate

from audioml.audit import Actor
from audioml.errors import NotFound
from audioml.roles import CAN_CANCEL, CAN_TRAIN, CAN_VIEW_JOBS, require
from datasets_app.models import Dataset
from training_app.models import JobLog, TrainingJob
from training_app.schemas import (
    AugmentationPreviewIn,
    AugmentationPreviewOut,
    EpochOut,
    JobDetailOut,
    JobFilter,
    JobIn,
    JobLogOut,
    JobOut,
)

router = Router(tags=["jobs"])


def get_job_or_404(job_id: int) -> TrainingJob:
    job = TrainingJob.objects.select_related("dataset", "created_by").filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"No training job #{job_id}.")
    return job


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
        dataset, payload.model_name, payload.preset, payload.overrides, by=Actor.from_request(request), task=payload.task
    )
    return Status(201, job)


@router.post("/augmentation-preview", response=AugmentationPreviewOut, summary="Hear what training will hear")
def augmentation_preview(request: HttpRequest, payload: AugmentationPreviewIn):
    """One clip of the dataset with the job's augmentation settings applied, as training would hear it: the
    reference (the clip through the same spectrogram round trip, unaugmented) and `variants` random draws, each a
    base64 WAV and a base64 PNG of the spectrogram the network is given. Nothing is stored. 422 for invalid
    settings or a dataset with nothing to train on; 404 for an unknown dataset or a clip the job would not use."""
    from training_app.preview import augmentation_preview as preview

    require(request.user, CAN_TRAIN)
    dataset = Dataset.objects.filter(name=payload.dataset).first()
    if dataset is None:
        raise NotFound(f"No dataset named '{payload.dataset}'.", field="dataset")
    return preview(dataset, payload.preset, payload.overrides, payload.task, payload.clip_id, payload.variants)


@router.get("", response=list[JobOut], summary="List training jobs")
@paginate
def list_jobs(request: HttpRequest, filters: Query[JobFilter]):
    """Newest first. Filter by status, dataset name or model name."""
    require(request.user, CAN_VIEW_JOBS)
    TrainingJob.objects.reap_stale()
    jobs = TrainingJob.objects.with_queue_positions().select_related("dataset", "created_by")
    return filters.filter(jobs.defer("snapshot", "traceback"))


@router.get("/{int:job_id}", response=JobDetailOut, summary="Get a training job")
def get_job(request: HttpRequest, job_id: int):
    """Status, phase, progress, ETA, queue position, configuration, data summary, epochs and final metrics."""
    require(request.user, CAN_VIEW_JOBS)
    return get_job_or_404(job_id)


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
    job.cancel(by=Actor.from_request(request))
    return job


@router.post("/{int:job_id}/reproduce", response={201: JobDetailOut}, summary="Train a job's snapshot again")
def reproduce_job(request: HttpRequest, job_id: int):
    """A new job on exactly this job's frozen snapshot and configuration (seed included); once it succeeds,
    `reproduction` says whether its metrics match. 422 when clips of the snapshot were deleted for good since."""
    require(request.user, CAN_TRAIN)
    job = get_job_or_404(job_id)
    return Status(201, job.reproduce(by=Actor.from_request(request)))


@router.post("/{int:job_id}/rerun", response={201: JobDetailOut}, summary="Run a job again")
def rerun_job(request: HttpRequest, job_id: int):
    """A new job with the same dataset, model name, preset and overrides, on a fresh snapshot of the data."""
    require(request.user, CAN_TRAIN)
    job = get_job_or_404(job_id)
    again = job.rerun(by=Actor.from_request(request))
    return Status(201, again)
