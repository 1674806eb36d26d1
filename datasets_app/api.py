"""`/api/datasets`: datasets, their clips, uploads and imports, statistics, exports and audio."""

from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet, Sum
from django.http import HttpRequest
from ninja import File, Form, Query, Router, Status
from ninja.files import UploadedFile
from ninja.pagination import paginate

from audioml.audit import Actor
from audioml.errors import InsufficientStorage, NotFound, Unprocessable
from audioml.roles import (
    CAN_CREATE_DATASET, CAN_DELETE_DATASET, CAN_EDIT_CLIPS, CAN_EDIT_DATASET, CAN_PURGE_CLIPS, CAN_UPLOAD, CAN_VIEW_CLIPS,
    CAN_VIEW_DATASETS, require,
)
from datasets_app.audio_http import audio_response
from datasets_app.export import export_response
from datasets_app.importing import ImportRejected
from datasets_app.ingest import IngestItem
from datasets_app.models import Clip, Dataset, clean_clip_metadata
from datasets_app.schemas import (
    BulkOut,
    ClipFilter,
    ClipIdsIn,
    ClipOut,
    ClipPatch,
    DatasetIn,
    DatasetOut,
    DatasetPatch,
    DeletedOut,
    ExportQuery,
    IngestReportOut,
    StatsOut,
)
from datasets_app.stats import dataset_stats

router = Router(tags=["datasets"])


class ArchiveRefused(Unprocessable):
    code = "archive-refused"
    title = "Archive refused"


class NothingAdded(Unprocessable):
    code = "nothing-added"
    title = "No clip was added"


def report_or_refusal(report, what: str, field: str) -> dict:
    """The ingest report, or a 422 problem carrying it when not a single clip was added (a corrupt, empty,
    silent or too long file, an archive of nothing but rejects), so a client cannot mistake it for success."""
    body = report.as_dict()
    full = [result for result in report.rejected if result.code == "storage-full"]
    if full:
        added = len(report.accepted)
        raise InsufficientStorage(
            f"The server's disk is full: {len(full)} file{'s' * (len(full) != 1)} could not be stored "
            f"({added} added). This is not a problem with the files: an operator must free space on the media "
            "disk (MEDIA_ROOT), then send the files that were not added again.",
            **body,
        )
    if report.accepted:
        return body
    rejected = report.rejected
    if not rejected:
        skipped = len(report.skipped)
        detail = f"{what} holds no audio files" + (f" ({skipped} other file{'s' * (skipped != 1)} skipped)." if skipped else ".")
    elif len(rejected) == 1:
        detail = f"{rejected[0].name}: {rejected[0].reason}."
    else:
        reasons = "; ".join(f"{result.name}: {result.reason}" for result in rejected[:3])
        more = f"; and {len(rejected) - 3} more" if len(rejected) > 3 else ""
        detail = f"None of the {len(rejected)} files was added: {reasons}{more}."
    raise NothingAdded(detail, field=field, **body)


def get_dataset_or_404(name: str) -> Dataset:
    dataset = Dataset.objects.select_related("created_by").filter(name=name).first()
    if dataset is None:
        raise NotFound(f"No dataset named '{name}'.")
    return dataset


def get_clip_or_404(dataset: Dataset, clip_id: int) -> Clip:
    clip = Clip.objects.select_related("uploaded_by", "updated_by").filter(dataset=dataset, pk=clip_id).first()
    if clip is None:
        raise NotFound(f"No clip #{clip_id} in dataset '{dataset.name}'.")
    clip.dataset = dataset
    return clip


def datasets_with_summaries(datasets: QuerySet) -> list[Dataset]:
    """Datasets annotated for DatasetOut (clip counts, duration and `label_rows`), in a fixed number of queries
    whatever their number."""
    active = Q(clips__status=Clip.Status.ACTIVE)
    background = active & Q(clips__kind=Clip.Kind.BACKGROUND)
    rows = list(
        datasets.select_related("created_by").annotate(
            clip_count=Count("clips", filter=active),
            trashed_count=Count("clips", filter=~active & Q(clips__isnull=False)),
            total_seconds=Sum("clips__duration", filter=active),
            background_count=Count("clips", filter=background),
            background_seconds=Sum("clips__duration", filter=background),
        )
    )
    labels: dict[int, list[dict]] = {row.pk: [] for row in rows}
    counts = (
        Clip.objects.active()
        .ordinary()
        .filter(dataset__in=[row.pk for row in rows])
        .values("dataset_id", "label")
        .annotate(count=Count("id"))
        .order_by("dataset_id", "-count", "label")
    )
    for entry in counts:
        labels[entry["dataset_id"]].append({"label": entry["label"], "count": entry["count"]})
    for row in rows:
        row.label_rows = labels[row.pk]
    return rows


def with_summary(dataset: Dataset) -> Dataset:
    return datasets_with_summaries(Dataset.objects.filter(pk=dataset.pk))[0]


def filtered_clips(dataset: Dataset, filters: ClipFilter) -> QuerySet:
    label = "" if filters.unlabelled else filters.label
    clips = dataset.clips.filtered(status=filters.status, label=label, speaker=filters.speaker, q=filters.q,
                                   kind=filters.kind)
    return clips.sorted_by(filters.sort)


# ---------------------------------------------------------------------------------------------- datasets


@router.get("", response=list[DatasetOut], summary="List datasets")
@paginate
def list_datasets(request: HttpRequest):
    """Datasets by name, each with active and trashed clip counts, total duration and clips per label."""
    require(request.user, CAN_VIEW_DATASETS)
    return datasets_with_summaries(Dataset.objects.all())


@router.post("", response={201: DatasetOut}, summary="Create a dataset")
def create_dataset(request: HttpRequest, payload: DatasetIn):
    """409 when the name is taken; 422 when it is not a safe name (names are never changed for you)."""
    require(request.user, CAN_CREATE_DATASET)
    dataset = Dataset.objects.create_dataset(
        payload.name, payload.description, payload.sample_rate, by=Actor.from_request(request),
        licence=payload.licence, source=payload.source, consent_note=payload.consent_note,
    )
    return Status(201, with_summary(dataset))


@router.get("/{name}", response=DatasetOut, summary="Get a dataset")
def get_dataset(request: HttpRequest, name: str):
    require(request.user, CAN_VIEW_DATASETS)
    return with_summary(get_dataset_or_404(name))


@router.patch("/{name}", response=DatasetOut, summary="Rename or describe a dataset, or set its provenance")
def update_dataset(request: HttpRequest, name: str, payload: DatasetPatch):
    """409 for a taken name, or for a new sample rate once the dataset has clips."""
    require(request.user, CAN_EDIT_DATASET)
    dataset = get_dataset_or_404(name)
    changes = {key: value for key, value in payload.dict(exclude_unset=True).items() if value is not None}
    dataset.update(changes, by=Actor.from_request(request))
    return with_summary(dataset)


@router.delete("/{name}", response={204: None}, summary="Delete a dataset")
def delete_dataset(request: HttpRequest, name: str):
    """Deletes the dataset, its clips and their audio. 409 when its training produced a registered model
    version (the version keeps its training history)."""
    require(request.user, CAN_DELETE_DATASET)
    dataset = get_dataset_or_404(name)
    dataset.remove(by=Actor.from_request(request))
    return Status(204, None)


@router.get("/{name}/stats", response=StatsOut, summary="Dataset statistics")
def get_dataset_stats(request: HttpRequest, name: str):
    """Active clips: counts per label with warnings (imbalance, fewer than 5 clips), durations, loudness,
    clipped and near-silent clips, clips per speaker."""
    require(request.user, CAN_VIEW_DATASETS)
    return dataset_stats(get_dataset_or_404(name))


@router.get("/{name}/export", summary="Export as a zip", response={200: None}, openapi_extra={
    "responses": {200: {"description": "A zip archive", "content": {"application/zip": {}}}}
})
def export_dataset(request: HttpRequest, name: str, filters: Query[ExportQuery]):
    """`layout=labels`: a folder per label plus manifest.csv. `layout=ljspeech`: wavs/ plus metadata.csv at
    22.05 kHz (clips without a transcript are left out). The clip filters select what is exported."""
    require(request.user, CAN_VIEW_CLIPS)
    dataset = get_dataset_or_404(name)
    clips = filtered_clips(dataset, filters)
    if filters.ids:
        clips = clips.filter(pk__in=filters.ids)
    dataset.record_export(filters.layout, by=Actor.from_request(request))
    return export_response(dataset, clips, filters.layout)


# ------------------------------------------------------------------------------------------------- clips


@router.get("/{name}/clips", response=list[ClipOut], summary="List clips")
@paginate
def list_clips(request: HttpRequest, name: str, filters: Query[ClipFilter]):
    """Active clips by default (`status=trashed` or `all` for the others), filtered and sorted."""
    require(request.user, CAN_VIEW_CLIPS)
    dataset = get_dataset_or_404(name)
    return filtered_clips(dataset, filters).select_related("dataset", "uploaded_by", "updated_by")


def _per_file(values: list[str] | None, count: int, field: str) -> list[str | None]:
    """One value for every file, one value per file (in order), or none at all."""
    if not values:
        return [None] * count
    if len(values) == 1:
        return values * count
    if len(values) == count:
        return values
    raise Unprocessable(
        f"{len(values)} values for '{field}' but {count} files: send one value for all files or one per file.",
        field=field,
    )


def _check_source(value: str) -> str:
    """A clip source sent with an upload, checked before any file is read: 422 naming `source` when invalid."""
    try:
        return clean_clip_metadata(source=value)["source"]
    except ValidationError as exc:
        raise Unprocessable(f"source: {' '.join(exc.message_dict['source'])}", field="source") from None


@router.post("/{name}/clips", response=IngestReportOut, summary="Upload clips")
def upload_clips(
    request: HttpRequest,
    name: str,
    files: File[list[UploadedFile]],
    label: Form[list[str]] = None,
    transcript: Form[list[str]] = None,
    score: Form[list[str]] = None,
    speaker: Form[list[str]] = None,
    notes: Form[list[str]] = None,
    source: Form[list[str]] = None,
    background: Form[bool] = False,
):
    """Multipart upload of one or many audio files (`files`, repeated). Each metadata field may be sent once
    (applies to every file) or once per file in the same order. Every file is accepted (with its clip id) or
    rejected with a reason; when none is accepted the answer is a 422 problem (`nothing-added`, naming the
    field `files`) carrying the same report. A request larger than MAX_UPLOAD_BYTES gets 413.

    `background=true` stores every file of the request as a long background recording (`kind` background:
    minutes to hours of ordinary audio, up to BACKGROUND_MAX_SECONDS instead of CLIP_MAX_SECONDS), converted
    a block at a time and left out of classification training.

    `source` says where the files come from when it is not the dataset's source (a URL, a device, a corpus); an
    invalid one (over 255 characters, a line break or another control character) is a 422 naming `source`
    before anything is stored."""
    require(request.user, CAN_UPLOAD)
    dataset = get_dataset_or_404(name)
    count = len(files)
    for value in source or []:
        _check_source(value)
    columns = {
        field: _per_file(values, count, field)
        for field, values in (("label", label), ("transcript", transcript), ("score", score), ("speaker", speaker),
                              ("notes", notes), ("source", source))
    }
    items = [
        IngestItem(
            name=upload.name or f"file-{index + 1}",
            file=upload,
            background=background,
            **{field: column[index] for field, column in columns.items() if column[index] is not None},
        )
        for index, upload in enumerate(files)
    ]
    report = dataset.add_clips(items, by=Actor.from_request(request))
    return report_or_refusal(report, "The upload", "files")


@router.post("/{name}/import", response=IngestReportOut, summary="Import a zip archive")
def import_zip(request: HttpRequest, name: str, file: File[UploadedFile], label: Form[str] = "",
               source: Form[str] = ""):
    """A zip with a folder per label (`yes/001.wav`), or audio plus a manifest: `manifest.csv` (header among
    file,label,transcript,score,speaker,notes,source,kind) or LJSpeech `metadata.csv`. `label` labels files the
    layout leaves unlabelled; `source` is the source of every file whose manifest row names none (an invalid one
    is a 422 naming `source`; an invalid `source` cell rejects that file). Unsafe archives (absolute paths, '..',
    links, too many entries, zip bombs) get 422, and so does an archive from which no clip was added (the 422
    problem carries the per-file report)."""
    require(request.user, CAN_UPLOAD)
    dataset = get_dataset_or_404(name)
    source = _check_source(source)
    try:
        report = dataset.import_archive(file, by=Actor.from_request(request), default_label=label.strip(),
                                        default_source=source, archive=file.name)
    except ImportRejected as exc:
        raise ArchiveRefused(f"Archive refused: {exc.reason}.") from None
    return report_or_refusal(report, "The archive", "file")


@router.post("/{name}/clips/trash", response=BulkOut, summary="Move clips to the trash")
def trash_clips(request: HttpRequest, name: str, payload: ClipIdsIn):
    require(request.user, CAN_EDIT_CLIPS)
    dataset = get_dataset_or_404(name)
    ids = dataset.clips.filter(pk__in=payload.ids).trash(by=Actor.from_request(request), about=dataset)
    return {"changed": len(ids), "ids": ids}


@router.post("/{name}/clips/restore", response=BulkOut, summary="Restore clips from the trash")
def restore_clips(request: HttpRequest, name: str, payload: ClipIdsIn):
    require(request.user, CAN_EDIT_CLIPS)
    dataset = get_dataset_or_404(name)
    ids = dataset.clips.filter(pk__in=payload.ids).restore(by=Actor.from_request(request), about=dataset)
    return {"changed": len(ids), "ids": ids}


@router.delete("/{name}/trash", response=DeletedOut, summary="Empty the trash")
def empty_trash(request: HttpRequest, name: str):
    """Deletes the trashed clips of the dataset and their audio for good."""
    require(request.user, CAN_PURGE_CLIPS)
    dataset = get_dataset_or_404(name)
    return {"deleted": dataset.empty_trash(by=Actor.from_request(request))}


@router.get("/{name}/clips/{clip_id}", response=ClipOut, summary="Get a clip")
def get_clip(request: HttpRequest, name: str, clip_id: int):
    require(request.user, CAN_VIEW_CLIPS)
    return get_clip_or_404(get_dataset_or_404(name), clip_id)


@router.patch("/{name}/clips/{clip_id}", response=ClipOut, summary="Correct a clip's label, transcript, score, speaker, notes or source")
def update_clip(request: HttpRequest, name: str, clip_id: int, payload: ClipPatch):
    """Only the fields sent change (`"score": null` clears the score); 422 names each invalid field."""
    require(request.user, CAN_EDIT_CLIPS)
    clip = get_clip_or_404(get_dataset_or_404(name), clip_id)
    clip.edit(payload.dict(exclude_unset=True), by=Actor.from_request(request))
    return clip


@router.post("/{name}/clips/{clip_id}/trash", response=ClipOut, summary="Move a clip to the trash")
def trash_clip(request: HttpRequest, name: str, clip_id: int):
    require(request.user, CAN_EDIT_CLIPS)
    clip = get_clip_or_404(get_dataset_or_404(name), clip_id)
    clip.trash(by=Actor.from_request(request))
    return clip


@router.post("/{name}/clips/{clip_id}/restore", response=ClipOut, summary="Restore a clip from the trash")
def restore_clip(request: HttpRequest, name: str, clip_id: int):
    require(request.user, CAN_EDIT_CLIPS)
    clip = get_clip_or_404(get_dataset_or_404(name), clip_id)
    clip.restore(by=Actor.from_request(request))
    return clip


@router.get("/{name}/clips/{clip_id}/audio", response={200: None}, summary="Download a clip's audio", openapi_extra={
    "responses": {200: {"description": "Mono 16-bit PCM WAV", "content": {"audio/wav": {}}}}
})
def clip_audio(request: HttpRequest, name: str, clip_id: int, download: bool = False):
    """The canonical WAV (supports `Range` requests). `download=true` asks the browser to save it."""
    require(request.user, CAN_VIEW_CLIPS)
    clip = get_clip_or_404(get_dataset_or_404(name), clip_id)
    return audio_response(request, clip, as_attachment=download)
