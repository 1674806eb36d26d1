"""`/api/models`: registered models, their immutable versions, aliases, artifact downloads and predictions."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db.models import Count, Prefetch
from django.http import HttpRequest, HttpResponse
from ninja import File, Form, Router, Status
from ninja.files import UploadedFile
from ninja.pagination import paginate

from audioml.audit import Actor
from audioml.errors import Unprocessable
from audioml.roles import (
    CAN_CHANGE_MODEL, CAN_CHANGE_VERSION, CAN_DELETE_ALIAS, CAN_DELETE_MODEL, CAN_DELETE_VERSION,
    CAN_FLAG_PREDICTION, CAN_MOVE_ALIAS, CAN_REVIEW_FEEDBACK, CAN_TRAIN, CAN_VIEW_MODELS, CAN_VIEW_PREDICTIONS,
    CAN_VIEW_VERSIONS, require,
)
from registry_app import artifacts as artifact_store
from registry_app.card import card_markdown, model_card
from registry_app.errors import AudioTooLong, ImmutableVersion, ReferenceNotFound, UndecodableAudio
from registry_app.aliases import KEEP
from registry_app.models import Alias, ModelVersion, PredictionLog, RegisteredModel, parse_version_ref
from registry_app.schemas import (
    AliasEventOut,
    AliasIn,
    AliasOut,
    FlagIn,
    LiveOut,
    ModelOut,
    ModelPatch,
    NoteIn,
    PredictionOut,
    PredictOut,
    ReviewAcceptIn,
    SynthesizeIn,
    VersionOut,
    VersionPatch,
)
from training_app.schemas import JobDetailOut

router = Router(tags=["models"])
review_router = Router(tags=["review"])


# Lookups ------------------------------------------------------------------------------------------------------


def get_model_or_404(name: str) -> RegisteredModel:
    model = RegisteredModel.objects.filter(name=name).first()
    if model is None:
        raise ReferenceNotFound(f"No registered model named “{name}”.")
    return model


def get_version_or_404(model: RegisteredModel, ref: str | int) -> ModelVersion:
    number = parse_version_ref(str(ref))
    if number is None:
        raise ReferenceNotFound(f"“{ref}” is not a version number; use a number such as 3 or v3.")
    return model.get_version(number)


def get_alias_or_404(model: RegisteredModel, name: str) -> Alias:
    alias = model.aliases.select_related("version", "model").filter(name=name.lower()).first()
    if alias is None:
        raise ReferenceNotFound(f"Model “{model.name}” has no alias “{name}”.")
    return alias


# Queries the output schemas read ------------------------------------------------------------------------------


def models_with_summary():
    return RegisteredModel.objects.select_related("created_by").annotate(version_count=Count("versions")).order_by("name").prefetch_related(
        Prefetch("aliases", queryset=Alias.objects.select_related("version")),
        Prefetch(
            "versions",
            queryset=ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).order_by("-version"),
            to_attr="active_versions",
        ),
    )


def versions_of(model: RegisteredModel):
    return model.versions.select_related("model", "created_by", "job__dataset").prefetch_related("aliases")


# Models -------------------------------------------------------------------------------------------------------


@router.get("", response=list[ModelOut], summary="List registered models")
@paginate
def list_models(request: HttpRequest):
    """Every model with its latest active version, where each alias points, and its headline metric."""
    require(request.user, CAN_VIEW_MODELS)
    return models_with_summary()


@router.get("/{name}", response=ModelOut, summary="Get a model")
def get_model(request: HttpRequest, name: str):
    require(request.user, CAN_VIEW_MODELS)
    model = get_model_or_404(name)
    return models_with_summary().get(pk=model.pk)


@router.patch("/{name}", response=ModelOut, summary="Update a model's description or prediction log settings")
def update_model(request: HttpRequest, name: str, payload: ModelPatch):
    """`description` (Markdown) and the prediction log's settings: `log_predictions`, `log_retention_days`,
    `log_audio`, `log_audio_max_bytes`."""
    require(request.user, CAN_CHANGE_MODEL)
    model = get_model_or_404(name)
    changes = payload.model_dump(exclude_unset=True, exclude_none=True)
    if "description" in changes:
        model.set_description(changes.pop("description"), by=Actor.from_request(request))
    if changes:
        try:
            model.set_log_settings(changes, by=Actor.from_request(request))
        except ValidationError as error:
            field, messages = next(iter(error.message_dict.items()))
            raise Unprocessable(f"{field}: {' '.join(messages)}", field=field) from None
    return models_with_summary().get(pk=model.pk)


# Versions -----------------------------------------------------------------------------------------------------


@router.delete("/{name}", response={204: None}, summary="Delete a model")
def delete_model(request: HttpRequest, name: str):
    """Removes the model, all its versions and their artifacts, and its alias history. Refused with 409 while
    any alias points at one of its versions, or while another model was fine-tuned from one of them."""
    require(request.user, CAN_DELETE_MODEL)
    get_model_or_404(name).remove(by=Actor.from_request(request))
    return Status(204, None)


@router.get("/{name}/versions", response=list[VersionOut], summary="List a model's versions")
@paginate
def list_versions(request: HttpRequest, name: str):
    """Newest first."""
    require(request.user, CAN_VIEW_VERSIONS)
    return versions_of(get_model_or_404(name))


@router.get("/{name}/versions/{version}", response=VersionOut, summary="Get a version")
def get_version(request: HttpRequest, name: str, version: str):
    """`version` is a number: `3` or `v3`."""
    require(request.user, CAN_VIEW_VERSIONS)
    model = get_model_or_404(name)
    return versions_of(model).get(pk=get_version_or_404(model, version).pk)


@router.patch("/{name}/versions/{version}", response=VersionOut, summary="Update a version's description, tags or status")
def update_version(request: HttpRequest, name: str, version: str, payload: VersionPatch):
    """Versions are immutable: only `description`, `tags` and `status` change; any other field is refused with
    409. Archiving a version an alias points at is refused with 409 too."""
    require(request.user, CAN_CHANGE_VERSION)
    model = get_model_or_404(name)
    target = get_version_or_404(model, version)
    extra = sorted(set(_json_keys(request)) - set(ModelVersion.MUTABLE_FIELDS))
    if extra:
        raise ImmutableVersion(
            f"Versions are immutable: {', '.join(extra)} cannot change "
            f"(only {', '.join(ModelVersion.MUTABLE_FIELDS)} can).",
            fields=extra,
        )
    target.update(payload.model_dump(exclude_unset=True, exclude_none=True), by=Actor.from_request(request))
    return versions_of(model).get(pk=target.pk)


def _json_keys(request: HttpRequest) -> list[str]:
    """Top-level keys of the JSON body (the schema drops unknown ones; they must be refused, not ignored)."""
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return []
    return list(body) if isinstance(body, dict) else []


@router.delete("/{name}/versions/{version}", response={204: None}, summary="Delete a version")
def delete_version(request: HttpRequest, name: str, version: str):
    """Removes the version and its artifacts. Refused with 409 while an alias points at it."""
    require(request.user, CAN_DELETE_VERSION)
    model = get_model_or_404(name)
    get_version_or_404(model, version).remove(by=Actor.from_request(request))
    return Status(204, None)


@router.get(
    "/{name}/versions/{version}/artifacts/{path:artifact}",
    url_name="download_artifact",
    summary="Download an artifact",
    response={200: None},
)
def download_artifact(request: HttpRequest, name: str, version: str, artifact: str):
    """Streams the file after checking its SHA-256 against the one recorded at registration (on object storage:
    a 302 to a short-lived presigned URL of the checked object; follow redirects); a damaged artifact is refused
    with 409 `artifact-damaged`. The checksum is sent as `X-Content-SHA256`."""
    require(request.user, CAN_VIEW_VERSIONS)
    model = get_model_or_404(name)
    target = get_version_or_404(model, version)
    entry = target.verify_artifact(artifact)
    return artifact_store.download_response(entry, f"{model.name}-v{target.version}-{entry['name'].replace('/', '-')}")


@router.get("/{name}/versions/{version}/card", response=dict[str, Any], summary="A version's model card")
def get_model_card(request: HttpRequest, name: str, version: str):
    """Datasets with their licence, source and consent note, the snapshot and where its clips come from, the
    training configuration, metrics, code version, the base it was fine-tuned from, every alias approval, any
    reproduction and the artifacts. `card.md` is the same card as Markdown."""
    require(request.user, CAN_VIEW_VERSIONS)
    return model_card(get_version_or_404(get_model_or_404(name), version))


@router.get("/{name}/versions/{version}/card.md", response={200: None}, summary="A version's model card as Markdown")
def get_model_card_markdown(request: HttpRequest, name: str, version: str):
    require(request.user, CAN_VIEW_VERSIONS)
    target = get_version_or_404(get_model_or_404(name), version)
    response = HttpResponse(card_markdown(model_card(target)), content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}-v{target.version}-model-card.md"'
    return response


@router.post("/{name}/versions/{version}/reproduce", response={201: JobDetailOut},
             summary="Train a version's snapshot again")
def reproduce_version(request: HttpRequest, name: str, version: str):
    """A new training job on exactly this version's frozen snapshot and configuration (seed included). Follow
    it at `/api/jobs/{id}`: once it succeeds it is the model's next version, and its `reproduction` says whether
    the metrics match. 422 when clips of the snapshot were deleted for good since."""
    require(request.user, CAN_TRAIN)
    target = get_version_or_404(get_model_or_404(name), version)
    return Status(201, target.reproduce(by=Actor.from_request(request)))


# Aliases ------------------------------------------------------------------------------------------------------


@router.get("/{name}/aliases", response=list[AliasOut], summary="List a model's aliases")
def list_aliases(request: HttpRequest, name: str):
    require(request.user, CAN_VIEW_MODELS)
    model = get_model_or_404(name)
    return model.aliases.select_related("version", "model")


@router.put("/{name}/aliases/{alias}", response=AliasOut,
            summary="Set or move an alias (promote), split or shadow its traffic")
def set_alias(request: HttpRequest, name: str, alias: str, payload: AliasIn):
    """Points the alias at a version, creating it if needed, and/or changes where its traffic goes:
    `{"version": 3, "split": {"version": 4, "percent": 10}, "shadow": 5, "note": "…"}` sends 10% of the
    requests to v4 (sticky per caller `key`) and has v5 score every request in the background. Leave a field
    out to keep it; `"split": null` or `"shadow": null` removes it. Every change is kept in the alias history.
    Predictions that use the alias follow on the next request. A split or shadow of the alias's own version,
    or of an archived or damaged one, is refused (422, 409)."""
    require(request.user, CAN_MOVE_ALIAS)
    model = get_model_or_404(name)
    fields = payload.model_fields_set
    target = get_version_or_404(model, payload.version) if payload.version is not None else None
    split = KEEP
    if "split" in fields:
        split = (get_version_or_404(model, payload.split.version), payload.split.percent) if payload.split else None
    shadow = KEEP
    if "shadow" in fields:
        shadow = get_version_or_404(model, payload.shadow) if payload.shadow is not None else None
    return Alias.point(model, alias, target, by=Actor.from_request(request), note=payload.note, split=split,
                       shadow=shadow)


@router.post("/{name}/aliases/{alias}/rollback", response=AliasOut, summary="Roll an alias back")
def rollback_alias(request: HttpRequest, name: str, alias: str, payload: NoteIn | None = None):
    """Points the alias back at the version it pointed to before its current one (repeatable: each rollback
    goes one step further back). 409 `nothing-to-roll-back` when its history has no earlier version."""
    require(request.user, CAN_MOVE_ALIAS)
    model = get_model_or_404(name)
    current = get_alias_or_404(model, alias)
    return current.rollback(by=Actor.from_request(request), note=payload.note if payload else "")


@router.delete("/{name}/aliases/{alias}", response={204: None}, summary="Delete an alias")
def delete_alias(request: HttpRequest, name: str, alias: str, note: str = ""):
    require(request.user, CAN_DELETE_ALIAS)
    model = get_model_or_404(name)
    get_alias_or_404(model, alias).remove(by=Actor.from_request(request), note=note)
    return Status(204, None)


@router.get("/{name}/aliases/{alias}/history", response=list[AliasEventOut], summary="An alias's history")
@paginate
def alias_history(request: HttpRequest, name: str, alias: str):
    """Every move of the alias, newest first (also for an alias that has since been deleted)."""
    require(request.user, CAN_VIEW_MODELS)
    model = get_model_or_404(name)
    events = model.alias_history(alias.lower())
    if not events.exists():
        raise ReferenceNotFound(f"Model “{model.name}” has no alias “{alias}” and never had one.")
    return events


# Predictions --------------------------------------------------------------------------------------------------


@router.post("/{name}/predict", response={200: PredictOut}, exclude_none=True,
             summary="Predict with a model: labels, a score or detections, by the model's task")
def predict(
    request: HttpRequest,
    name: str,
    files: File[list[UploadedFile]] = None,
    ref: Form[str] = "",
    threshold: float | None = Form(
        None, description="Detection models: use this threshold (0-1) instead of the version's calibrated one"
    ),
    key: str = Form("", description="The caller (a device id, a user id): keeps it on one side of an alias's "
                    "traffic split"),
):
    """Multipart upload of one or more audio `files` (any format ingestion accepts) and an optional `ref`: an
    alias name or a version (`v3` or `3`). Without `ref`: the `production` alias, else the latest active
    version; the response's `ref` says which.

    The answer's shape follows the model's task (each file's result also has `windows`, `clip_seconds`,
    `duration`, `time_ms`, `model`, `version`, `ref`):
    - classification: `label` and `scores` (every label's probability); windows half a clip apart, averaged.
    - regression: `score` in [0, 1]; a file longer than the model's clip is scored in windows half a clip apart
      and the window scores averaged (`aggregation: "mean"`, `window_scores`).
    - detection: `detected`, `score` (the highest window score), `threshold` (the version's calibrated one, or
      the `threshold` form field in [0, 1]), `events` [{start, end, score}] in seconds, and `scores_over_time`
      (a score every `hop` seconds). Windows are 100 ms apart (80 ms, one embedding, on the speech embedding
      front end); an event starts when the score rises to the
      threshold and later onsets within the refractory period belong to it.

    Shorter clips are zero-padded.

    Traffic: when the alias splits its traffic, `version` and `arm` ("primary" or "split") say which version
    answered; send a `key` to keep one caller on one version. `shadow_version` names the version scoring the
    same audio in the background. Each answer's `prediction_id` is its entry in the prediction log.

    Partial failures: a file that cannot be decoded gets an `error` object (status 422, code
    `undecodable-audio`; a file longer than PREDICT_MAX_FILE_SECONDS: status 413, code `audio-too-long`) in its
    place in `results`, while the others are scored and the response is 200. When every file fails the
    response is a 422 problem (413 when every file was too long) with the same `results`. More than
    PREDICT_MAX_REQUEST_SECONDS of audio in one request: 413 `prediction-too-large`. More predictions at once
    than PREDICT_MAX_CONCURRENT_PER_USER: 429; every prediction slot of the process busy: 503 (both with
    Retry-After). Unknown model, alias or version: 404. A version whose model file fails its SHA-256 check:
    409 `artifact-damaged`."""
    require(request.user, CAN_VIEW_VERSIONS)
    from registry_app import inference
    from registry_app.limits import prediction_slot

    model = get_model_or_404(name)
    uploads = list(files or [])
    if not uploads:
        raise Unprocessable("Send one or more audio files as the multipart form field “files”.")
    with prediction_slot(request.user):
        outcome = inference.predict_uploads(model, ref or None, uploads, threshold, key=key, user=request.user)
    if outcome["succeeded"] == 0:
        errors = [result["error"] for result in outcome["results"]]
        all_too_long = all(error["code"] == AudioTooLong.code for error in errors)
        only = errors[0]["detail"] if len(uploads) == 1 else None
        problem = AudioTooLong if all_too_long else UndecodableAudio
        raise problem(
            only or f"None of the {len(uploads)} files could be scored"
            + (" (each is too long)." if all_too_long else "."),
            results=outcome["results"],
            model=outcome["model"],
            version=outcome["version"],
            ref=outcome["ref"],
        )
    return outcome


@router.post(
    "/{name}/synthesize",
    response={200: None},
    summary="Speak text with a voice (synthesis models)",
    openapi_extra={"responses": {200: {"description": "A 16-bit mono WAV; its duration in seconds is in the "
                                                      "X-Audio-Duration header",
                                       "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}}}},
)
def synthesize(request: HttpRequest, name: str, payload: SynthesizeIn):
    """JSON `{"text": ..., "ref": ..., "key": ...}` → `audio/wav`. Headers: `X-Audio-Duration` (seconds), `X-Model`,
    `X-Model-Version` (the version that answered), `X-Model-Ref`, `X-Sentences`, `X-Prediction-Id` (when
    logged). Text longer than the voice allows, empty text, or symbols
    outside the voice's vocabulary: 422 naming them. A model of another task: 422. Unknown model or ref: 404."""
    require(request.user, CAN_VIEW_VERSIONS)
    from registry_app import synthesis

    speech = synthesis.synthesize(get_model_or_404(name), payload.text, payload.ref or None, key=payload.key,
                                  user=request.user)
    response = HttpResponse(speech.wav, content_type="audio/wav", headers=speech.headers())
    response["Content-Disposition"] = f'attachment; filename="{name}-v{speech.version}.wav"'
    return response


# The prediction log, live comparison and feedback -------------------------------------------------------------


def _predictions(model: RegisteredModel):
    return model.predictions.select_related("model", "user", "flagged_by", "review_dataset")


def get_prediction_or_404(model: RegisteredModel, prediction_id: int) -> PredictionLog:
    row = _predictions(model).filter(pk=prediction_id).first()
    if row is None:
        raise ReferenceNotFound(f"Model “{model.name}” has no logged prediction #{prediction_id} "
                                "(it may have expired).")
    return row


@router.get("/{name}/predictions", response=list[PredictionOut], summary="The model's prediction log")
@paginate
def list_predictions(request: HttpRequest, name: str, version: int | None = None, role: str = "",
                     flagged: bool | None = None, key: str = ""):
    """Newest first. Filters: `version`, `role` (`primary`: the answers returned; `shadow`), `flagged`, `key`."""
    require(request.user, CAN_VIEW_PREDICTIONS)
    rows = _predictions(get_model_or_404(name))
    if version is not None:
        rows = rows.filter(version_number=version)
    if role:
        rows = rows.filter(role=role)
    if flagged is not None:
        rows = rows.filter(flagged_at__isnull=not flagged)
    if key:
        rows = rows.filter(caller_key=key)
    return rows


@router.get("/{name}/predictions/{prediction_id}", response=PredictionOut, summary="One logged prediction")
def get_prediction(request: HttpRequest, name: str, prediction_id: int):
    require(request.user, CAN_VIEW_PREDICTIONS)
    return get_prediction_or_404(get_model_or_404(name), prediction_id)


@router.get("/{name}/predictions/{prediction_id}/audio", url_name="prediction_audio", response={200: None},
            summary="The audio a logged prediction heard")
def prediction_audio(request: HttpRequest, name: str, prediction_id: int):
    """16-bit WAV at the model's rate; 404 when the model did not keep it."""
    require(request.user, CAN_VIEW_PREDICTIONS)
    row = get_prediction_or_404(get_model_or_404(name), prediction_id)
    if not row.audio or not default_storage.exists(row.audio):
        raise ReferenceNotFound(f"Prediction #{row.pk}'s audio was not kept"
                                + (f" ({row.audio_note})." if row.audio_note else "."))
    from registry_app.prediction_log import audio_response

    return audio_response(row, f"{name}-prediction-{row.pk}.wav")


@router.post("/{name}/predictions/{prediction_id}/flag", response=PredictionOut, summary="Flag a prediction wrong")
def flag_prediction(request: HttpRequest, name: str, prediction_id: int, payload: FlagIn):
    """The right answer for the model's task: `label` (classification, detection), `score` (regression) or
    `transcript` (transcription), with an optional `note`. With `dataset`, the audio joins that dataset's
    review queue (422 when the audio was not kept). 409 once it has been accepted."""
    require(request.user, CAN_FLAG_PREDICTION)
    from datasets_app.models import Dataset

    row = get_prediction_or_404(get_model_or_404(name), prediction_id)
    dataset = None
    if payload.dataset:
        dataset = Dataset.objects.filter(name=payload.dataset).first()
        if dataset is None:
            raise Unprocessable(f"dataset: no dataset named “{payload.dataset}”.", field="dataset")
    row.flag(by=Actor.from_request(request), label=payload.label, score=payload.score, transcript=payload.transcript,
             note=payload.note, dataset=dataset)
    return get_prediction_or_404(row.model, row.pk)


@router.get("/{name}/live", response=LiveOut, summary="Versions compared on live traffic")
def live_traffic(request: HttpRequest, name: str, hours: int = 24):
    """Per version and role over the last `hours` (1-8760): requests and their routing, latency p50/p95, the
    answers' distribution, flags, and each shadow's agreement with the answers returned for the same audio."""
    require(request.user, CAN_VIEW_PREDICTIONS)
    from registry_app.prediction_log import live_comparison

    if not 1 <= hours <= 8760:
        raise Unprocessable("hours: from 1 to 8760", field="hours")
    return live_comparison(get_model_or_404(name), hours)


# Review queues (`/api/review/{dataset}`) ----------------------------------------------------------------------


def _review_item(dataset_name: str, prediction_id: int) -> PredictionLog:
    row = (PredictionLog.objects.select_related("model", "user", "flagged_by", "review_dataset")
           .filter(pk=prediction_id, review_dataset__name=dataset_name).first())
    if row is None:
        raise ReferenceNotFound(f"Dataset “{dataset_name}”'s review queue has no prediction #{prediction_id}.")
    return row


@review_router.get("/{name}", response=list[PredictionOut], summary="A dataset's review queue")
@paginate
def list_review(request: HttpRequest, name: str, status: str = "pending"):
    """Flagged predictions queued for the dataset `name`, oldest flag first; `status`: pending (default),
    accepted, dismissed or all."""
    require(request.user, CAN_VIEW_PREDICTIONS)
    from datasets_app.models import Dataset

    if not Dataset.objects.filter(name=name).exists():
        raise ReferenceNotFound(f"No dataset named “{name}”.")
    rows = (PredictionLog.objects.select_related("model", "user", "flagged_by", "review_dataset")
            .filter(review_dataset__name=name).order_by("flagged_at", "id"))
    return rows if status == "all" else rows.filter(review_status=status)


@review_router.post("/{name}/{prediction_id}/accept", response=PredictionOut, summary="Accept a flagged prediction")
def accept_review(request: HttpRequest, name: str, prediction_id: int, payload: ReviewAcceptIn | None = None):
    """Adds the audio to the dataset as a clip with the corrected label, score or transcript (or the ones sent
    now) and a provenance note, through the same ingestion as an upload. 409 when it is not pending or the
    dataset refuses the audio (a duplicate, say)."""
    require(request.user, CAN_REVIEW_FEEDBACK)
    row = _review_item(name, prediction_id)
    overrides = payload.model_dump(exclude_none=True) if payload else {}
    row.accept(by=Actor.from_request(request), **overrides)
    return _review_item(name, prediction_id)


@review_router.post("/{name}/{prediction_id}/dismiss", response=PredictionOut, summary="Dismiss a flagged prediction")
def dismiss_review(request: HttpRequest, name: str, prediction_id: int, payload: NoteIn | None = None):
    require(request.user, CAN_REVIEW_FEEDBACK)
    row = _review_item(name, prediction_id)
    row.dismiss(by=Actor.from_request(request), note=payload.note if payload else "")
    return _review_item(name, prediction_id)
