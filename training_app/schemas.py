from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from django.urls import reverse
from ninja import Field, FilterSchema, Schema
from ninja.filter_schema import FilterLookup
from pydantic import ConfigDict

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobIn(Schema):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="Name of the dataset to train on", min_length=1, max_length=63)
    model_name: str = Field(description="Name of the model the trained version is registered under", max_length=63)
    preset: Literal["quick", "balanced", "thorough"] = "balanced"
    task: str = Field(
        "classification",
        description="What the model learns: `classification` (a label per clip), `regression` (a 0-1 score per "
        "clip, from clips with a score), `detection` (a wake word: set `overrides.positive_label`) or `transcription` "
        "(speech to text, from clips with a transcript)",
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Settings changed from the preset: epochs, batch_size, learning_rate, val_fraction, "
        "test_fraction, seed, time_shift, noise, spec_augment, clip_seconds, early_stopping_patience, channels, "
        "dropout, weight_decay, target_far, holdout_speakers; detection: positive_label (required; a label or a "
        "comma-separated list), target_fa_per_hour, negative_weight, background_negatives, hard_negatives, "
        "smoothing_hops; "
        "transcription: text_case (lower|keep), punctuation (strip|keep), numbers (as_written|words)",
        examples=[{"epochs": 20, "seed": 7, "noise": False}],
    )


class AugmentationPreviewIn(Schema):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="Name of the dataset", min_length=1, max_length=63)
    preset: Literal["quick", "balanced", "thorough"] = "balanced"
    task: str = "classification"
    overrides: dict[str, Any] = Field(default_factory=dict, description="As for a job: time_shift, noise, "
                                      "spec_augment, warp, seed, clip_seconds, …")
    clip_id: int | None = Field(None, description="The clip to hear (default: one the seed picks)")
    variants: int = Field(4, ge=1, le=8, description="How many random draws of the augmentation")


class PreviewAudioOut(Schema):
    wav: str = Field(description="Base64 of a 16-bit mono WAV")
    png: str = Field(description="Base64 of a PNG of the normalised log-mel spectrogram the network is given")


class PreviewClipOut(Schema):
    id: int
    label: str
    duration: float
    url: str
    audio_url: str


class AugmentationPreviewOut(Schema):
    clip: PreviewClipOut
    next_clip_id: int = Field(description="Another clip to preview (the next one the job trains on)")
    clips: int = Field(description="How many clips the preview can pick from")
    sample_rate: int
    seed: int
    augmentations: list[str] = Field(description="What training does to every clip, in plain words")
    noise_source: str = Field(description="What noise augmentation mixes in ('' when it is off)")
    reference: PreviewAudioOut = Field(description="The clip through the same spectrogram round trip, unaugmented")
    variants: list[PreviewAudioOut]


class JobFilter(FilterSchema):
    status: JobStatus | None = Field(None, description="Only jobs with this status")
    dataset: Annotated[str | None, FilterLookup("dataset__name")] = Field(
        None, description="Only jobs on the dataset with this name"
    )
    model_name: str | None = Field(None, description="Only jobs for this model name")


class EpochOut(Schema):
    epoch: int
    train_loss: float | None
    val_loss: float | None
    val_accuracy: float | None = Field(None, description="Classification")
    val_mae: float | None = Field(None, description="Regression: mean absolute error of the scores")
    val_auc: float | None = Field(None, description="Detection: ROC AUC of the clip scores")
    lr: float | None
    seconds: float | None


# Output schemas read model instances: a plain field is the attribute of the same name, resolve_<field> says
# where the others come from (no docstrings on them: a docstring would become the OpenAPI description).


class JobOut(Schema):
    id: int
    url: str = Field(description="The job's page in the panel")
    dataset: str
    model_name: str
    task: str
    preset: str
    overrides: dict[str, Any]
    status: JobStatus
    phase: str
    phase_display: str
    progress: float = Field(description="0-100")
    eta_seconds: float | None
    queue_position: int | None = Field(description="1 = next to run; null unless queued")
    cancel_requested: bool
    accuracy: float | None = Field(description="Accuracy on the evaluation split once succeeded")
    baseline_accuracy: float | None
    headline: dict[str, Any] | None = Field(
        None, description="The task's main figure once succeeded: name (accuracy, Spearman, false rejects at the "
        "calibrated threshold, CER), value, baseline, higher_is_better"
    )
    error: str
    snapshot_hash: str
    snapshot_clips: int
    rerun_of: int | None
    reproduces: int | None = Field(None, description="The job whose frozen snapshot and configuration this one "
                                   "trains again (null unless it is a reproduction)")
    created_by: str | None
    worker: str
    device: str = Field(description="Where the job trained: cpu, cuda:0, … (empty until it starts)")
    device_name: str = Field(description="That device's model name: the GPU's (NVIDIA H200) or the CPU's")
    training_precision: str | None = Field(
        description="What the network trained in once succeeded: fp32, or bf16/fp16 (CUDA mixed precision)"
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None

    @staticmethod
    def resolve_training_precision(job) -> str | None:
        return (job.metrics or {}).get("training_precision")

    @staticmethod
    def resolve_url(job) -> str:
        return reverse("job-detail", args=[job.pk])

    @staticmethod
    def resolve_dataset(job) -> str:
        return job.dataset.name

    @staticmethod
    def resolve_phase_display(job) -> str:
        return job.get_phase_display()

    @staticmethod
    def resolve_queue_position(job) -> int | None:
        return job.queue_position()

    @staticmethod
    def resolve_accuracy(job) -> float | None:
        return job.result_metrics().get("accuracy")

    @staticmethod
    def resolve_baseline_accuracy(job) -> float | None:
        return ((job.metrics or {}).get("baseline") or {}).get("accuracy")

    @staticmethod
    def resolve_headline(job) -> dict[str, Any] | None:
        return job.headline()

    @staticmethod
    def resolve_snapshot_clips(job) -> int:
        return job.snapshot_size

    @staticmethod
    def resolve_rerun_of(job) -> int | None:
        return job.rerun_of_id

    @staticmethod
    def resolve_reproduces(job) -> int | None:
        return job.reproduces_id

    @staticmethod
    def resolve_created_by(job) -> str | None:
        return job.created_by.get_username() if job.created_by else None


class MetricDifferenceOut(Schema):
    path: str = Field(description="Where the figure sits in the metrics, e.g. test.accuracy or history[2].val_loss")
    expected: Any
    actual: Any


class ReproductionOut(Schema):
    of_job: int
    match: bool = Field(description="Every figure equal (timings and cache hits aside)")
    compared: int = Field(description="How many figures were compared")
    summary: str
    devices: list[str] = Field(description="The device of the original run and of the reproduction")
    differences: list[MetricDifferenceOut]


class JobDetailOut(JobOut):
    config: dict[str, Any] = Field(description="The full validated configuration")
    data: dict[str, Any] = Field(description="Clips, labels and speakers in the job's snapshot")
    epochs: list[EpochOut]
    metrics: dict[str, Any] = Field(description="Final metrics (empty until the job succeeds)")
    traceback: str
    version: int | None = Field(
        description="Number of the model version this job registered (its artifacts live there); null until then"
    )
    reproduction: ReproductionOut | None = Field(
        None, description="For a finished reproduction: whether its metrics match those of the job it reproduces"
    )

    @staticmethod
    def resolve_version(job) -> int | None:
        version = getattr(job, "model_version", None)  # the registry's one-to-one back to its job
        return version.version if version is not None else None

    @staticmethod
    def resolve_data(job) -> dict[str, Any]:
        return job.snapshot_summary()

    @staticmethod
    def resolve_reproduction(job) -> dict[str, Any] | None:
        check = job.reproduction_check()
        return {"of_job": job.reproduces_id, **check.as_dict()} if check is not None else None


class JobLogOut(Schema):
    id: int
    level: str
    created_at: datetime
    message: str
