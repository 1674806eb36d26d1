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
    log_predictions: bool
    log_retention_days: int
    log_audio: bool
    log_audio_max_bytes: int

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

    description: str | None = Field(None, max_length=20000, description="Markdown")
    log_predictions: bool | None = Field(None, description="Keep a log of the model's predictions")
    log_retention_days: int | None = Field(None, ge=1, le=3650, description="Days a logged prediction is kept")
    log_audio: bool | None = Field(None, description="Keep each prediction's audio (as 16-bit WAV)")
    log_audio_max_bytes: int | None = Field(None, ge=1000, le=200_000_000,
                                            description="Audio larger than this is not kept")


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


class SplitIn(Schema):
    model_config = ConfigDict(extra="forbid")

    version: int | str = Field(description="The version that receives `percent` of the traffic: 4 or \"v4\"")
    percent: int = Field(ge=1, le=99, description="Its share of the alias's traffic, 1-99")


class AliasIn(Schema):
    model_config = ConfigDict(extra="forbid")

    version: int | str | None = Field(None, description="Version number: 3 or \"v3\" (leave out to keep it; "
                                      "required for a new alias)")
    split: SplitIn | None = Field(None, description="Send part of the traffic to another version; null removes "
                                  "the split; leave out to keep it")
    shadow: int | str | None = Field(None, description="A version that scores every request in the background, its "
                                     "answers only logged; null removes it; leave out to keep it")
    note: str = Field("", max_length=2000, description="Why it moves (kept in the alias history)")


class NoteIn(Schema):
    model_config = ConfigDict(extra="forbid")

    note: str = Field("", max_length=2000)


class SplitOut(Schema):
    version: int
    percent: int


class AliasOut(Schema):
    name: str
    version: int
    percent: int = Field(description="The share of the traffic its version answers (100 without a split)")
    split: SplitOut | None = Field(description="The version that answers the rest of the traffic, if any")
    shadow: int | None = Field(description="The version that scores every request in the background, if any")
    updated_at: datetime
    rollback_to: int | None = Field(description="The version a rollback would point it at, if any")

    @staticmethod
    def resolve_version(alias) -> int:
        return alias.version.version

    @staticmethod
    def resolve_percent(alias) -> int:
        return alias.primary_percent

    @staticmethod
    def resolve_split(alias) -> dict | None:
        return alias.traffic()["split"]

    @staticmethod
    def resolve_shadow(alias) -> int | None:
        return alias.traffic()["shadow"]

    @staticmethod
    def resolve_rollback_to(alias) -> int | None:
        target = alias.rollback_target()
        return target.version if target else None


class AliasEventOut(Schema):
    alias: str
    action: Literal["set", "rollback", "delete", "traffic"]
    from_version: int | None
    to_version: int | None
    moved_by: str | None
    moved_at: datetime
    note: str
    traffic: dict[str, Any] = Field(description="When the split or shadow changed: {before, after}, each "
                                    "{split: {version, percent} or null, shadow: version or null}")

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
    unsure: bool | None = Field(None, description="Classification: the top score is a keyword under the version's "
                                "unsure threshold (maybe a word the model never heard); with an unknown label the "
                                "answer is then that label")
    top_label: str | None = Field(None, description="Classification: the label of the top score (differs from "
                                  "`label` when an unsure answer became the unknown label)")
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
    prediction_id: int | None = Field(None, description="The answer's entry in the prediction log (to flag it)")
    error: FileError | None = None


class SynthesizeIn(Schema):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="What to say; long text is split into sentences (at most 2000 characters)")
    ref: str = Field("", description="An alias name or a version (v3); default: production, else the latest")
    key: str = Field("", max_length=200, description="The caller (a device id): keeps it on one side of a split")


class PredictOut(Schema):
    model: str
    version: int = Field(description="The version that answered")
    ref: str
    arm: str = Field(description="How it was chosen: \"primary\" or \"split\" of an alias's traffic, \"direct\" "
                     "(a version was named) or \"latest\"")
    shadow_version: int | None = Field(None, description="The version scoring the same audio in the background "
                                       "(its answers are logged, not returned)")
    cached: bool = Field(description="The model was already loaded in this server process")
    load_ms: float = Field(description="Time spent loading the model for this request (0 when cached)")
    succeeded: int
    failed: int
    results: list[FilePrediction]


class PredictionOut(Schema):
    id: int
    model: str
    version: int
    role: Literal["primary", "shadow"] = Field(description="primary: the answer returned; shadow: a shadow's")
    primary_id: int | None = Field(description="A shadow's answer: the returned answer for the same audio")
    created_at: datetime
    ref: str
    arm: str
    channel: str
    user: str | None
    key: str
    file: str
    text: str = Field(description="Synthesis: the text spoken")
    answer: str
    score: float | None
    result: dict[str, Any]
    latency_ms: float
    duration: float | None
    audio_url: str | None = Field(description="The audio the model heard, when the model keeps audio")
    audio_note: str
    flagged_at: datetime | None
    flagged_by: str | None
    correction: str = Field(description="The right label, score or transcript given when it was flagged")
    flag_note: str
    review_dataset: str | None
    review_status: str = Field(description="\"\", pending, accepted or dismissed")
    clip_id: int | None = Field(description="The clip an accepted review added")

    @staticmethod
    def resolve_model(row) -> str:
        return row.model.name

    @staticmethod
    def resolve_version(row) -> int:
        return row.version_number

    @staticmethod
    def resolve_user(row) -> str | None:
        return _username(row.user)

    @staticmethod
    def resolve_key(row) -> str:
        return row.caller_key

    @staticmethod
    def resolve_file(row) -> str:
        return row.file_name

    @staticmethod
    def resolve_text(row) -> str:
        return row.input_text

    @staticmethod
    def resolve_audio_url(row) -> str | None:
        if not row.audio:
            return None
        return reverse("api:prediction_audio", kwargs={"name": row.model.name, "prediction_id": row.pk})

    @staticmethod
    def resolve_flagged_by(row) -> str | None:
        return _username(row.flagged_by)

    @staticmethod
    def resolve_review_dataset(row) -> str | None:
        return row.review_dataset.name if row.review_dataset_id else None


class FlagIn(Schema):
    model_config = ConfigDict(extra="forbid")

    label: str = Field("", max_length=100, description="Classification and detection: the right label")
    score: float | None = Field(None, description="Regression: the right score (0-1)")
    transcript: str = Field("", max_length=20000, description="Transcription: the right text")
    note: str = Field("", max_length=2000, description="What was wrong")
    dataset: str | None = Field(None, description="Queue the audio for review in this dataset (needs the audio)")


class ReviewAcceptIn(Schema):
    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(None, max_length=100, description="Overrides the flagged label")
    score: float | None = Field(None, description="Overrides the flagged score")
    transcript: str | None = Field(None, max_length=20000, description="Overrides the flagged transcript")


class LiveLatency(Schema):
    p50: float | None
    p95: float | None


class LiveAnswer(Schema):
    answer: str
    count: int
    share: float


class LiveVersion(Schema):
    version: int
    role: Literal["primary", "shadow"]
    requests: int
    share: float | None = Field(description="Of the answered requests (primary role only)")
    arms: dict[str, int]
    latency_ms: LiveLatency
    answers: list[LiveAnswer]
    other_answers: int
    flagged: int


class LiveAgreement(Schema):
    shadow: int
    primary: int
    compared: int
    agreed: int
    rate: float


class LiveOut(Schema):
    hours: int
    since: datetime
    total: int
    answered: int
    truncated: bool
    versions: list[LiveVersion]
    agreement: list[LiveAgreement]
