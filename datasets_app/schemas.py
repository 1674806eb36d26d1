from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from django.urls import reverse
from ninja import Field, Schema

from datasets_app.export import LAYOUTS
from datasets_app.models import CLIP_SORTS

SortKey = Literal[tuple(CLIP_SORTS)]  # type: ignore[valid-type]
ExportLayout = Literal[tuple(LAYOUTS)]  # type: ignore[valid-type]
# A clip id as the database stores it (a 64-bit key): anything else is a 422, never a database error.
ClipId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class DatasetIn(Schema):
    name: str = Field(..., description="1-63 lower-case letters, digits, '-' or '_'; never changed for you")
    description: str = ""
    sample_rate: int = Field(16000, description="8000, 16000, 22050, 24000, 44100 or 48000")
    licence: str = Field("", description="Under which terms the audio may be used, e.g. CC-BY-4.0")
    source: str = Field("", description="Where the audio comes from: a URL, a session, a corpus")
    consent_note: str = Field("", description="Whether and how the speakers agreed to be recorded and to this use")


class DatasetPatch(Schema):
    name: str | None = None
    description: str | None = None
    sample_rate: int | None = Field(None, description="Only while the dataset has no clips")
    licence: str | None = None
    source: str | None = None
    consent_note: str | None = None


class LabelCountOut(Schema):
    label: str
    count: int


# Output schemas read model instances: a plain field is the attribute of the same name, resolve_<field> says
# where the others come from (no docstrings on them: a docstring would become the OpenAPI description).


class DatasetOut(Schema):
    id: int
    name: str
    description: str
    sample_rate: int
    licence: str
    source: str
    consent_note: str
    created_by: str | None
    created_at: datetime
    clip_count: int = Field(..., description="Active clips, background recordings included")
    trashed_count: int
    total_seconds: float
    background_count: int = Field(..., description="Active background recordings")
    background_seconds: float
    labels: list[LabelCountOut] = Field(
        ..., description="Active clips per label, largest first ('' = unlabelled); background recordings not counted"
    )
    url: str
    clips_url: str

    # clip_count, trashed_count, total_seconds, background_count, background_seconds and label_rows come from the
    # API's datasets_with_summaries().

    @staticmethod
    def resolve_created_by(dataset) -> str | None:
        return dataset.created_by.get_username() if dataset.created_by else None

    @staticmethod
    def resolve_clip_count(dataset) -> int:
        return dataset.clip_count or 0

    @staticmethod
    def resolve_trashed_count(dataset) -> int:
        return dataset.trashed_count or 0

    @staticmethod
    def resolve_total_seconds(dataset) -> float:
        return round(dataset.total_seconds or 0.0, 3)

    @staticmethod
    def resolve_background_count(dataset) -> int:
        return dataset.background_count or 0

    @staticmethod
    def resolve_background_seconds(dataset) -> float:
        return round(dataset.background_seconds or 0.0, 3)

    @staticmethod
    def resolve_labels(dataset) -> list[dict]:
        return dataset.label_rows

    @staticmethod
    def resolve_url(dataset) -> str:
        return reverse("dataset-detail", args=[dataset.name])

    @staticmethod
    def resolve_clips_url(dataset) -> str:
        return reverse("api:list_clips", args=[dataset.name])


class ClipOut(Schema):
    id: int
    dataset: str
    original_name: str
    original_format: str
    label: str
    transcript: str
    score: float | None
    speaker: str
    notes: str
    source: str = Field(..., description="Where the clip comes from, when not the dataset's source")
    duration: float
    kind: Literal["clip", "background"] = Field(..., description="'background': a long recording of ordinary audio")
    source_sample_rate: int
    source_channels: int
    peak_dbfs: float
    rms_dbfs: float
    clipped_fraction: float
    content_hash: str
    status: str
    uploaded_by: str | None
    created_at: datetime
    updated_at: datetime | None
    updated_by: str | None
    audio_url: str
    url: str

    @staticmethod
    def resolve_dataset(clip) -> str:
        return clip.dataset.name

    @staticmethod
    def resolve_uploaded_by(clip) -> str | None:
        return clip.uploaded_by.get_username() if clip.uploaded_by else None

    @staticmethod
    def resolve_updated_by(clip) -> str | None:
        return clip.updated_by.get_username() if clip.updated_by else None

    @staticmethod
    def resolve_audio_url(clip) -> str:
        return reverse("api:clip_audio", args=[clip.dataset.name, clip.pk])

    @staticmethod
    def resolve_url(clip) -> str:
        return reverse("clip-detail", args=[clip.dataset.name, clip.pk])


class ClipPatch(Schema):
    label: str | None = None
    transcript: str | None = None
    score: float | None = Field(None, description="0 to 1; null clears it")
    speaker: str | None = None
    notes: str | None = None
    source: str | None = Field(None, description="Where the clip comes from (a URL, a device); '' clears it")


class ClipFilter(Schema):
    status: Literal["active", "trashed", "all"] = "active"
    label: str | None = Field(None, description="Exact label")
    unlabelled: bool = Field(False, description="Only clips without a label")
    speaker: str | None = Field(None, description="Exact speaker")
    kind: Literal["clip", "background"] | None = Field(None, description="Only clips or only background recordings")
    q: str = Field("", description="Text in the transcript, file name, label, speaker or notes")
    sort: SortKey = "newest"


class ExportQuery(ClipFilter):
    layout: ExportLayout = "labels"
    ids: list[ClipId] | None = Field(None, description="Only these clips (the other filters still apply)")


class ClipIdsIn(Schema):
    ids: list[ClipId] = Field(..., min_length=1, max_length=10000)


class BulkOut(Schema):
    changed: int
    ids: list[int]


class DeletedOut(Schema):
    deleted: int


class FileResultOut(Schema):
    name: str
    status: Literal["accepted", "rejected"]
    clip_id: int | None
    code: str = Field(..., description="'' when accepted; otherwise e.g. undecodable, empty, too-short, too-long, "
                                        "silent, duplicate, invalid-score, invalid-label, missing, storage-error")
    reason: str
    duplicate_of: int | None
    duration: float | None
    label: str


class IngestReportOut(Schema):
    accepted: int
    rejected: int
    layout: str
    skipped: list[str] = Field(..., description="Non-audio files in an archive (README, images, ...)")
    files: list[FileResultOut]


class HistogramBin(Schema):
    start: float
    end: float
    count: int


class LabelStat(Schema):
    label: str
    count: int
    share: float
    too_few: bool


class SpeakerStat(Schema):
    speaker: str
    count: int


class ListedClip(Schema):
    id: int
    original_name: str
    label: str
    duration: float
    rms_dbfs: float
    peak_dbfs: float
    clipped_fraction: float


class StatsWarning(Schema):
    code: str
    message: str


class StatsOut(Schema):
    clip_count: int = Field(..., description="Clips, without background recordings (counted apart)")
    total_seconds: float
    background_count: int
    background_seconds: float
    mean_seconds: float | None
    min_seconds: float | None
    max_seconds: float | None
    labels: list[LabelStat]
    unlabelled: int
    speakers: list[SpeakerStat]
    no_speaker: int
    transcribed: int
    scored: int
    duration_histogram: list[HistogramBin]
    loudness_histogram: list[HistogramBin]
    score_histogram: list[HistogramBin]
    clipped_count: int
    clipped: list[ListedClip]
    near_silent_count: int
    near_silent: list[ListedClip]
    min_clips_per_label: int
    near_silent_rms_dbfs: float
    clipped_fraction: float
    warnings: list[StatsWarning]
