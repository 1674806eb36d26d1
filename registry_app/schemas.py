from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.urls import reverse
from ninja import Field, Schema
from pydantic import ConfigDict

# Output schemas read model instances: a plain field is the attribute of the same name, resolve_<field> says
# where the others come from (no docstrings on them: a docstring would become the OpenAPI description).


def _username(user) -> str | None:
    return user.get_username() if user is not None else None


def _headline(version) -> dict | None:
    headline = version.headline_metric() if version is not None else None
    return {"name": headline[0], "value": headline[1]} if headline else None


def _latest_active(model):
    """The highest active version, from the `active_versions` prefetch of the API's models_with_summary()."""
    return model.active_versions[0] if model.active_versions else None


class Metric(Schema):
    name: str
    value: float


class ModelOut(Schema):
    name: str
    task: str
    description: str
    created_at: datetime
    created_by: str | None
    version_count: int
    latest_version: int | None = Field(description="Highest active version number")
    aliases: dict[str, int] = Field(description="Alias name → version number it points at")
    headline_metric: Metric | None = Field(description="Accuracy of the latest version on its evaluation split")

    @staticmethod
    def resolve_created_by(model) -> str | None:
        return _username(model.created_by)

    @staticmethod
    def resolve_latest_version(model) -> int | None:
        latest = _latest_active(model)
        return latest.version if latest else None

    @staticmethod
    def resolve_aliases(model) -> dict[str, int]:
        return {alias.name: alias.version.version for alias in model.aliases.all()}

    @staticmethod
    def resolve_headline_metric(model) -> dict | None:
        return _headline(_latest_active(model))


class ModelPatch(Schema):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(max_length=20000, description="Markdown")


class ArtifactOut(Schema):
    name: str
    size: int
    sha256: str
    download_url: str


class VersionOut(Schema):
    model: str
    task: str = Field(description="The model's task: classification, regression, detection or transcription")
    version: int
    prediction: dict[str, Any] = Field(
        description="What the task stored for predictions: for detection the calibrated `threshold`, "
        "`hop_seconds`, `refractory_seconds`, `positive_labels`"
    )
    status: str
    description: str
    tags: list[str]
    aliases: list[str]
    labels: list[str]
    metrics: dict[str, Any]
    headline_metric: Metric | None
    feature_config: dict[str, Any]
    train_config: dict[str, Any]
    snapshot_hash: str
    snapshot_size: int
    code_version: str
    job_id: int
    dataset: str | None
    base_version: str | None = Field(None, description="The version this one was fine-tuned from (model:vN)")
    artifacts: list[ArtifactOut]
    created_at: datetime
    created_by: str | None

    @staticmethod
    def resolve_model(version) -> str:
        return version.model.name

    @staticmethod
    def resolve_task(version) -> str:
        return version.model.task

    @staticmethod
    def resolve_prediction(version) -> dict[str, Any]:
        return (version.metrics or {}).get("prediction") or {}

    @staticmethod
    def resolve_aliases(version) -> list[str]:
        return [alias.name for alias in version.aliases.all()]

    @staticmethod
    def resolve_headline_metric(version) -> dict | None:
        return _headline(version)

    @staticmethod
    def resolve_dataset(version) -> str | None:
        return version.job.dataset.name if version.job.dataset_id else None

    @staticmethod
    def resolve_artifacts(version) -> list[dict]:
        return [{**entry, "download_url": artifact_url(version, entry["name"])} for entry in version.artifacts]

    @staticmethod
    def resolve_created_by(version) -> str | None:
        return _username(version.created_by)

    @staticmethod
    def resolve_base_version(version) -> str | None:
        return version.base_version.pinned_ref if version.base_version_id else None


def artifact_url(version, name: str) -> str:
    return reverse(
        "api:download_artifact", kwargs={"name": version.model.name, "version": version.version, "artifact": name}
    )


class VersionPatch(Schema):
    """Only description, tags and status can change; anything else is refused with 409 (versions are immutable)."""

    description: str | None = Field(None, max_length=20000)
    tags: list[str] | None = Field(None, description="Replaces the tags")
    status: Literal["active", "archived"] | None = None


class AliasIn(Schema):
    model_config = ConfigDict(extra="forbid")

    version: int | str = Field(description="Version number: 3 or \"v3\"")
    note: str = Field("", max_length=2000, description="Why it moves (kept in the alias history)")


class NoteIn(Schema):
    model_config = ConfigDict(extra="forbid")

    note: str = Field("", max_length=2000)


class AliasOut(Schema):
    name: str
    version: int
    updated_at: datetime
    rollback_to: int | None = Field(description="The version a rollback would point it at, if any")

    @staticmethod
    def resolve_version(alias) -> int:
        return alias.version.version

    @staticmethod
    def resolve_rollback_to(alias) -> int | None:
        target = alias.rollback_target()
        return target.version if target else None


class AliasEventOut(Schema):
    alias: str
    action: Literal["set", "rollback", "delete"]
    from_version: int | None
    to_version: int | None
    moved_by: str | None
    moved_at: datetime
    note: str

    @staticmethod
    def resolve_alias(event) -> str:
        return event.alias_name

    @staticmethod
    def resolve_from_version(event) -> int | None:
        return event.from_number

    @staticmethod
    def resolve_to_version(event) -> int | None:
        return event.to_number

    @staticmethod
    def resolve_moved_by(event) -> str | None:
        return _username(event.moved_by)


class FileError(Schema):
    status: int
    code: str
    reason: str
    detail: str


class WindowScore(Schema):
    start: float = Field(description="Seconds from the start of the file")
    score: float


class DetectionEvent(Schema):
    start: float = Field(description="Seconds: the start of the first window at or above the threshold")
    end: float = Field(description="Seconds: the end of the last window of the event")
    score: float = Field(description="The highest window score in the event")


class ScoresOverTime(Schema):
    hop: float = Field(description="Seconds between consecutive window starts")
    window: float = Field(description="Seconds of audio each score covers")
    scores: list[float]


class WordTiming(Schema):
    word: str
    start: float = Field(description="Seconds: the frame of the word's first character")
    end: float = Field(description="Seconds: the end of the frame of its last character")


class TranscriptSegment(Schema):
    start: float = Field(description="Seconds from the start of the file")
    end: float
    text: str


class TextNormalizationOut(Schema):
    case: str
    punctuation: str
    numbers: str


class FilePrediction(Schema):
    """One file's result: a prediction, or an `error` for a file that could not be decoded."""

    file: str
    label: str | None = Field(None, description="Classification: the most probable label")
    scores: dict[str, float] | None = Field(None, description="Classification: every label's probability (they sum to 1)")
    score: float | None = Field(
        None, description="Regression: the predicted 0-1 score. Detection: the highest window score"
    )
    window_scores: list[WindowScore] | None = Field(None, description="Regression: each window's score")
    detected: bool | None = Field(None, description="Detection: whether any event reached the threshold")
    threshold: float | None = Field(
        None, description="Detection: the threshold used (the version's calibrated one unless overridden)"
    )
    threshold_source: str | None = Field(None, description="Detection: \"calibrated\" or \"request\"")
    events: list[DetectionEvent] | None = Field(None, description="Detection: the detections, in seconds")
    scores_over_time: ScoresOverTime | None = Field(None, description="Detection: the score every `hop` seconds")
    text: str | None = Field(None, description="Transcription: the transcript (segments joined by spaces)")
    words: list[WordTiming] | None = Field(None, description="Transcription: each word with its time")
    segments: list[TranscriptSegment] | None = Field(
        None, description="Transcription: the parts decoded one by one (files over 20 s are cut at quiet points)"
    )
    decoding: str | None = Field(None, description="Transcription: \"greedy\" CTC decoding")
    normalization: TextNormalizationOut | None = Field(
        None, description="Transcription: how the training transcripts were normalised (what the model writes)"
    )
    model: str | None = None
    version: int | None = None
    ref: str | None = Field(None, description="How the version was chosen: alias name, vN, or \"latest\"")
    windows: int | None = Field(None, description="Windows scored: more than 1 for clips longer than the model's "
                                "(transcription: segments decoded)")
    aggregation: str | None = Field(None, description="\"mean\" of window outputs when windows > 1 (classification, "
                                    "regression)")
    clip_seconds: float | None = Field(None, description="The model's clip length")
    duration: float | None = Field(None, description="Seconds of audio in the file")
    time_ms: float | None = Field(None, description="Decoding and scoring time for this file")
    error: FileError | None = None


class SynthesizeIn(Schema):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="What to say; long text is split into sentences (at most 2000 characters)")
    ref: str = Field("", description="An alias name or a version (v3); default: production, else the latest")


class PredictOut(Schema):
    model: str
    version: int
    ref: str
    cached: bool = Field(description="The model was already loaded in this server process")
    load_ms: float = Field(description="Time spent loading the model for this request (0 when cached)")
    succeeded: int
    failed: int
    results: list[FilePrediction]
