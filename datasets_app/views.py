"""The datasets panel: list and create datasets, browse and correct clips, upload, record, statistics, export."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q, Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_htmx.http import trigger_client_event

from audioml.audit import Actor
from audioml.errors import Conflict, DuplicateName
from audioml.panel import staff_required
from audioml.roles import (
    CAN_CREATE_DATASET, CAN_DELETE_DATASET, CAN_EDIT_CLIPS, CAN_EDIT_DATASET, CAN_PURGE_CLIPS, CAN_UPLOAD, CAN_VIEW_CLIPS,
    CAN_VIEW_DATASETS, needs, require,
)
from datasets_app import charts
from datasets_app.audio_http import audio_response
from datasets_app.export import LAYOUTS, export_response
from datasets_app.forms import BulkForm, ClipFilterForm, ClipForm, DatasetForm, ExportForm, InlineFieldForm, UploadForm
from datasets_app.importing import ImportRejected, skipped_file_rule
from datasets_app.ingest import IngestItem, IngestReport
from datasets_app.models import CLIPPED_FRACTION, NEAR_SILENT_RMS_DBFS, Clip, Dataset, clean_clip_metadata
from datasets_app.stats import dataset_stats, training_needs

CLIPS_PER_PAGE = 50
INLINE_FIELDS = ("label", "transcript", "score", "speaker", "notes")


def _get_dataset(name: str) -> Dataset:
    return get_object_or_404(Dataset, name=name)


def _get_clip(dataset: Dataset, clip_id: int) -> Clip:
    clip = get_object_or_404(Clip.objects.select_related("uploaded_by", "updated_by"), dataset=dataset, pk=clip_id)
    clip.dataset = dataset
    return clip


def _back(request: HttpRequest, dataset: Dataset) -> HttpResponse:
    """Back to where the user came from (a safe `next`), else the dataset page."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect(dataset.get_absolute_url())


# ------------------------------------------------------------------------------------------- datasets


@staff_required
@needs(CAN_VIEW_DATASETS)
def dataset_list(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        require(request.user, CAN_CREATE_DATASET)
        form = DatasetForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                dataset = Dataset.objects.create_dataset(
                    data["name"], data["description"], data["sample_rate"], by=Actor.from_request(request),
                    licence=data["licence"], source=data["source"], consent_note=data["consent_note"],
                )
            except DuplicateName as exc:
                form.add_error("name", exc.detail)
        if form.is_valid():
            messages.success(request, f"Dataset “{dataset.name}” created. Add clips by dropping files below.")
            return redirect(dataset.get_absolute_url())
    else:
        form = DatasetForm()
    active = Q(clips__status=Clip.Status.ACTIVE)
    clips = active & Q(clips__kind=Clip.Kind.CLIP)
    background = active & Q(clips__kind=Clip.Kind.BACKGROUND)
    datasets = list(
        Dataset.objects.annotate(
            clip_count=Count("clips", filter=clips), total_seconds=Sum("clips__duration", filter=clips),
            background_count=Count("clips", filter=background), background_seconds=Sum("clips__duration", filter=background),
        ).select_related("created_by")
    )
    labels: dict[int, list[tuple[str, int]]] = {dataset.pk: [] for dataset in datasets}
    for row in (
        Clip.objects.active().ordinary().values("dataset_id", "label").annotate(n=Count("id"))
        .order_by("dataset_id", "-n", "label")
    ):
        labels[row["dataset_id"]].append((row["label"], row["n"]))
    for dataset in datasets:
        dataset.label_rows = labels[dataset.pk]
    return render(request, "datasets/dataset_list.html", {"datasets": datasets, "form": form, "open_form": request.method == "POST" or not datasets,
                                                          "min_clips": training_needs.min_clips_per_label})


def _clip_table_context(request: HttpRequest, dataset: Dataset, params) -> dict:
    filter_form = ClipFilterForm(params, dataset)
    clips = filter_form.apply(dataset.clips.select_related("uploaded_by"))
    page = Paginator(clips, CLIPS_PER_PAGE).get_page(filter_form.value("page", 1))
    for clip in page.object_list:
        clip.dataset = dataset
    return {
        "dataset": dataset,
        "filter_form": filter_form,
        "page": page,
        "clips": page.object_list,
        "inline_fields": INLINE_FIELDS,
        "label_options": list(dataset.clips.exclude(label="").values_list("label", flat=True).distinct().order_by("label")),
        "next_url": f"{dataset.get_absolute_url()}?{filter_form.querystring(page=page.number)}",
        "layouts": LAYOUTS,
    }


@staff_required
@needs(CAN_VIEW_DATASETS)
def dataset_detail(request: HttpRequest, name: str) -> HttpResponse:
    dataset = _get_dataset(name)
    context = _clip_table_context(request, dataset, request.GET)
    if request.htmx and request.htmx.target == "clip-table":
        return render(request, "datasets/dataset_detail.html#clip-table", context)
    context.update(_page_context(dataset, UploadForm()))
    return render(request, "datasets/dataset_detail.html", context)


def _page_context(dataset: Dataset, upload_form: UploadForm) -> dict:
    """The dataset page around its clip table: summary, label counts and the upload card."""
    return {
        "summary": dataset.summary(),
        "label_counts": dataset.label_counts(),
        "speaker_count": dataset.clips.active().exclude(speaker="").values("speaker").distinct().count(),
        "upload_form": upload_form,
        "min_clips": training_needs.min_clips_per_label,
        "max_upload_bytes": settings.MAX_UPLOAD_BYTES,
        "background_max_hours": settings.BACKGROUND_MAX_SECONDS / 3600,
        "skipped_file_rule": skipped_file_rule(),
    }


@staff_required
@needs(CAN_EDIT_DATASET)
def dataset_settings(request: HttpRequest, name: str) -> HttpResponse:
    dataset = _get_dataset(name)
    if request.method == "POST":
        form = DatasetForm(request.POST, instance=Dataset.objects.get(pk=dataset.pk))
        if form.is_valid():
            changes = {key: form.cleaned_data[key] for key in Dataset.EDITABLE_FIELDS}
            try:
                changed = dataset.update(changes, by=Actor.from_request(request))
            except Conflict as exc:
                form.add_error(exc.extra.get("field"), exc.detail)
            else:
                if changed:
                    messages.success(request, "Dataset settings saved.")
                return redirect(dataset.get_absolute_url())
    else:
        form = DatasetForm(instance=dataset)
    return render(request, "datasets/dataset_settings.html", {"dataset": dataset, "form": form, "summary": dataset.summary()})


@staff_required
@require_POST
@needs(CAN_DELETE_DATASET)
def dataset_delete(request: HttpRequest, name: str) -> HttpResponse:
    dataset = _get_dataset(name)
    if request.POST.get("confirm_name", "").strip() != dataset.name:
        messages.error(request, f"Type the dataset's name ({dataset.name}) to confirm the deletion.")
        return redirect("dataset-settings", name=dataset.name)
    clip_count = dataset.clips.count()
    try:
        dataset.remove(by=Actor.from_request(request))
    except Conflict as exc:
        messages.error(request, exc.detail)
        return redirect("dataset-settings", name=dataset.name)
    messages.success(request, f"Dataset “{dataset.name}” and its {clip_count} clips were deleted.")
    return redirect("dataset-list")


@staff_required
@needs(CAN_VIEW_DATASETS)
def dataset_stats_page(request: HttpRequest, name: str) -> HttpResponse:
    dataset = _get_dataset(name)
    stats = dataset_stats(dataset)
    label_rows = [(entry["label"], entry["count"]) for entry in stats["labels"]]
    minimum = stats["min_clips_per_label"]
    if stats["unlabelled"]:
        label_rows.append(("(no label)", stats["unlabelled"]))
    speaker_rows = [(entry["speaker"], entry["count"]) for entry in stats["speakers"][:30]]
    chart = {
        "labels": charts.hbar_chart(
            label_rows, highlight=lambda name, count: count < minimum or name == "(no label)",
            threshold=minimum or None, threshold_label=f"minimum {minimum}", title="Clips per label",
        ),
        "speakers": charts.hbar_chart(speaker_rows, title="Clips per speaker"),
        "durations": charts.histogram_chart(stats["duration_histogram"], x_label="Duration (seconds)", unit=" s", title="Clip durations"),
        "loudness": charts.histogram_chart(
            stats["loudness_histogram"], x_label="RMS level (dBFS)", unit=" dBFS", label_every=2,
            highlight=lambda entry: entry["end"] <= NEAR_SILENT_RMS_DBFS, title="Loudness",
        ),
        "scores": charts.histogram_chart(stats["score_histogram"], x_label="Score", title="Scores"),
    }
    return render(request, "datasets/dataset_stats.html", {
        "dataset": dataset, "stats": stats, "chart": chart, "more_speakers": max(len(stats["speakers"]) - 30, 0),
        "near_silent_dbfs": NEAR_SILENT_RMS_DBFS, "clipped_percent": CLIPPED_FRACTION * 100,
    })


@staff_required
@needs(CAN_VIEW_CLIPS)
def dataset_export(request: HttpRequest, name: str) -> HttpResponse:
    dataset = _get_dataset(name)
    form = ExportForm(request.GET)
    if not form.is_valid():
        raise Http404("Unknown export layout.")
    clips = ClipFilterForm(request.GET, dataset).apply(dataset.clips.all())
    dataset.record_export(form.cleaned_data["layout"], by=Actor.from_request(request))
    return export_response(dataset, clips, form.cleaned_data["layout"])


@staff_required
@require_POST
@needs(CAN_PURGE_CLIPS)
def dataset_empty_trash(request: HttpRequest, name: str) -> HttpResponse:
    dataset = _get_dataset(name)
    deleted = dataset.empty_trash(by=Actor.from_request(request))
    messages.success(request, f"Deleted {deleted} trashed clip{'s' if deleted != 1 else ''} for good.")
    return redirect(f"{dataset.get_absolute_url()}?status=trashed")


# --------------------------------------------------------------------------------------------- uploads


@staff_required
@require_POST
@needs(CAN_UPLOAD)
def dataset_upload(request: HttpRequest, name: str) -> HttpResponse:
    """Upload without JavaScript (the panel's script uses the JSON API for per-file progress instead)."""
    dataset = _get_dataset(name)
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        context = _clip_table_context(request, dataset, request.GET)
        context.update(_page_context(dataset, form))
        return render(request, "datasets/dataset_detail.html", context, status=400)
    actor = Actor.from_request(request)
    metadata = clean_clip_metadata(**{key: form.cleaned_data[key] for key in UploadForm.METADATA})
    background = form.cleaned_data["background"]
    reports: list[tuple[str, IngestReport | None, str]] = []
    audio = []
    for upload in form.cleaned_data["files"]:
        if (upload.name or "").lower().endswith(".zip"):
            try:
                report = dataset.import_archive(upload, by=actor, default_label=metadata["label"],
                                                default_source=metadata["source"], archive=upload.name)
                reports.append((upload.name, report, ""))
            except ImportRejected as exc:
                reports.append((upload.name, None, f"Archive refused: {exc.reason}."))
        else:
            audio.append(IngestItem(name=upload.name or "upload", file=upload, background=background, **metadata))
    if audio:
        reports.insert(0, ("", dataset.add_clips(audio, by=actor), ""))
    accepted = sum(len(report.accepted) for _, report, _ in reports if report)
    rejected = sum(len(report.rejected) for _, report, _ in reports if report)
    return render(request, "datasets/upload_result.html", {
        "dataset": dataset, "reports": reports, "accepted": accepted, "rejected": rejected,
    })


# ----------------------------------------------------------------------------------------------- clips


@staff_required
@needs(CAN_VIEW_CLIPS)
def clip_detail(request: HttpRequest, name: str, clip_id: int) -> HttpResponse:
    dataset = _get_dataset(name)
    clip = _get_clip(dataset, clip_id)
    if request.method == "POST":
        require(request.user, CAN_EDIT_CLIPS)
        form = ClipForm(request.POST, instance=clip)
        if form.is_valid():
            if form.save(by=Actor.from_request(request)):
                messages.success(request, f"Clip #{clip.pk} saved.")
            if request.POST.get("next"):
                return _back(request, dataset)
            here = reverse("clip-detail", args=[dataset.name, clip.pk])
            return redirect(f"{here}?{request.GET.urlencode()}" if request.GET else here)
    else:
        form = ClipForm(instance=clip)
    previous_id, next_id, list_query = _neighbours(request, dataset, clip)
    return render(request, "datasets/clip_detail.html", {
        "dataset": dataset, "clip": clip, "form": form, "previous_id": previous_id, "next_id": next_id,
        "list_query": list_query,
        "label_options": list(dataset.clips.exclude(label="").values_list("label", flat=True).distinct().order_by("label")),
    })


def _neighbours(request: HttpRequest, dataset: Dataset, clip: Clip) -> tuple[int | None, int | None, str]:
    """The clips before and after this one in the list it was opened from (its filters and sort travel in the
    query string; none: the dataset page's default, newest first, among clips of the same status), and that
    list's query string for the links. A clip the list no longer holds (edited out of its filter) falls back to
    the default list."""
    params = request.GET.copy()
    if not params.get("status") and clip.status != Clip.Status.ACTIVE:
        params["status"] = clip.status
    filter_form = ClipFilterForm(params, dataset)
    ids = list(filter_form.apply(dataset.clips.all()).values_list("pk", flat=True))
    if clip.pk not in ids:
        filter_form = ClipFilterForm({} if clip.status == Clip.Status.ACTIVE else {"status": clip.status}, dataset)
        ids = list(filter_form.apply(dataset.clips.all()).values_list("pk", flat=True))
    index = ids.index(clip.pk) if clip.pk in ids else None
    if index is None:
        return None, None, ""
    previous_id = ids[index - 1] if index > 0 else None
    next_id = ids[index + 1] if index + 1 < len(ids) else None
    return previous_id, next_id, filter_form.querystring()


@staff_required
@needs(CAN_EDIT_CLIPS)
def clip_field(request: HttpRequest, name: str, clip_id: int, field: str) -> HttpResponse:
    """Inline editing of one field (htmx): returns the field's cell with a saved mark or the error beside it."""
    if field not in INLINE_FIELDS:
        raise Http404("This field cannot be edited in place.")
    dataset = _get_dataset(name)
    clip = _get_clip(dataset, clip_id)
    context = {"dataset": dataset, "clip": clip, "field": field, "saved": False, "error": ""}
    if request.method == "POST":
        form = InlineFieldForm(request.POST, field=field)
        if form.is_valid():
            if clip.edit({field: form.cleaned_data["value"]}, by=Actor.from_request(request)):
                context["changed_label"] = field in ("label", "speaker")
            # Saved even when unchanged: a repeated request (change, then Enter) must not hide the mark.
            context["saved"] = True
        else:
            context["error"] = form.errors["value"][0]
            context["submitted"] = request.POST.get("value", "")
        if not request.htmx:
            if context["error"]:
                messages.error(request, f"Clip #{clip.pk}, {field}: {context['error']}")
            else:
                messages.success(request, f"Clip #{clip.pk}: {field} saved.")
            return _back(request, dataset)
    # 200 with the error beside the field: htmx swaps only successful responses.
    response = render(request, "datasets/dataset_detail.html#clip-field", context)
    if context.get("changed_label"):
        trigger_client_event(response, "clips-changed")
    return response


def _row_response(request: HttpRequest, dataset: Dataset, clip: Clip) -> HttpResponse:
    clip.refresh_from_db()
    clip.dataset = dataset
    response = render(request, "datasets/dataset_detail.html#clip-row", {
        "dataset": dataset, "clip": clip, "inline_fields": INLINE_FIELDS, "next_url": request.POST.get("next", ""),
    })
    return trigger_client_event(response, "clips-changed")


@staff_required
@require_POST
@needs(CAN_EDIT_CLIPS)
def clip_trash(request: HttpRequest, name: str, clip_id: int) -> HttpResponse:
    dataset = _get_dataset(name)
    clip = _get_clip(dataset, clip_id)
    clip.trash(by=Actor.from_request(request))
    if request.htmx:
        return _row_response(request, dataset, clip)
    messages.success(request, f"Clip #{clip.pk} moved to the trash.")
    return _back(request, dataset)


@staff_required
@require_POST
@needs(CAN_EDIT_CLIPS)
def clip_restore(request: HttpRequest, name: str, clip_id: int) -> HttpResponse:
    dataset = _get_dataset(name)
    clip = _get_clip(dataset, clip_id)
    clip.restore(by=Actor.from_request(request))
    if request.htmx:
        return _row_response(request, dataset, clip)
    messages.success(request, f"Clip #{clip.pk} restored.")
    return _back(request, dataset)


@staff_required
@require_POST
@needs(CAN_VIEW_CLIPS)
def clips_bulk(request: HttpRequest, name: str) -> HttpResponse:
    dataset = _get_dataset(name)
    form = BulkForm(request.POST, dataset)
    if not form.is_valid():
        problem = form.errors.get("ids") or form.errors.get("action")
        messages.error(request, problem[0] if problem else "Choose an action and at least one clip.")
    else:
        action, ids = form.cleaned_data["action"], form.cleaned_data["ids"]
        actor = Actor.from_request(request)
        if action.startswith("export-"):
            dataset.record_export(action[7:], by=actor, clip_ids=ids)
            return export_response(dataset, dataset.clips.filter(pk__in=ids), action[7:])
        require(request.user, CAN_EDIT_CLIPS)
        clips = Clip.objects.filter(dataset=dataset, pk__in=ids)
        if action == "trash":
            changed = len(clips.trash(by=actor, about=dataset))
            verb = "moved to the trash"
        else:
            changed = len(clips.restore(by=actor, about=dataset))
            verb = "restored"
        messages.success(request, f"{changed} clip{'s' if changed != 1 else ''} {verb}.")
    if request.htmx:
        context = _clip_table_context(request, dataset, request.POST)
        response = render(request, "datasets/dataset_detail.html#clip-table", context)
        return trigger_client_event(response, "clips-changed")
    return _back(request, dataset)


@staff_required
@needs(CAN_VIEW_CLIPS)
def clip_audio(request: HttpRequest, name: str, clip_id: int) -> HttpResponse:
    """The clip's WAV for the panel's players: staff only (media files are never served publicly)."""
    dataset = _get_dataset(name)
    return audio_response(request, _get_clip(dataset, clip_id), as_attachment=request.GET.get("download") == "1")

