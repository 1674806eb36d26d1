"""`/api/models`: registered models, their immutable versions, aliases, artifact downloads and predictions."""

from __future__ import annotations

import json

from django.db.models import Count, Prefetch
from django.http import HttpRequest, HttpResponse
from ninja import File, Form, Router, Status
from ninja.files import UploadedFile
from ninja.pagination import paginate

from audioml.audit import Actor
from audioml.errors import Unprocessable
from audioml.roles import (
    CAN_CHANGE_MODEL, CAN_CHANGE_VERSION, CAN_DELETE_ALIAS, CAN_DELETE_VERSION, CAN_MOVE_ALIAS, CAN_VIEW_MODELS,
    CAN_VIEW_VERSIONS, require,
)
from registry_app import artifacts as artifact_store
from registry_app.errors import AudioTooLong, ImmutableVersion, ReferenceNotFound, UndecodableAudio
from registry_app.models import Alias, ModelVersion, RegisteredModel, parse_version_ref
from registry_app.schemas import (
    AliasEventOut,
    AliasIn,
    AliasOut,
    ModelOut,
    ModelPatch,
    NoteIn,
    PredictOut,
    SynthesizeIn,
    VersionOut,
    VersionPatch,
)

router = Router(tags=["models"])


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


@router.patch("/{name}", response=ModelOut, summary="Update a model's description")
def update_model(request: HttpRequest, name: str, payload: ModelPatch):
    require(request.user, CAN_CHANGE_MODEL)
    model = get_model_or_404(name)
    model.set_description(payload.description, by=Actor.from_request(request))
    return models_with_summary().get(pk=model.pk)


# Versions -----------------------------------------------------------------------------------------------------


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


# Aliases ------------------------------------------------------------------------------------------------------


@router.get("/{name}/aliases", response=list[AliasOut], summary="List a model's aliases")
def list_aliases(request: HttpRequest, name: str):
    require(request.user, CAN_VIEW_MODELS)
    model = get_model_or_404(name)
    return model.aliases.select_related("version", "model")


@router.put("/{name}/aliases/{alias}", response=AliasOut, summary="Set or move an alias (promote)")
def set_alias(request: HttpRequest, name: str, alias: str, payload: AliasIn):
    """Points the alias at a version, creating it if needed; every move is kept in the alias history.
    Predictions that use the alias switch on the next request."""
    require(request.user, CAN_MOVE_ALIAS)
    model = get_model_or_404(name)
    target = get_version_or_404(model, payload.version)
    return Alias.point(model, alias, target, by=Actor.from_request(request), note=payload.note)


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
      (a score every `hop` seconds). Windows are 100 ms apart; an event starts when the score rises to the
      threshold and later onsets within the refractory period belong to it.

    Shorter clips are zero-padded.

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
        outcome = inference.predict_uploads(model, ref or None, uploads, threshold)
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
    """JSON `{"text": ..., "ref": ...}` → `audio/wav`. Headers: `X-Audio-Duration` (seconds), `X-Model`,
    `X-Model-Version`, `X-Model-Ref`, `X-Sentences`. Text longer than the voice allows, empty text, or symbols
    outside the voice's vocabulary: 422 naming them. A model of another task: 422. Unknown model or ref: 404."""
    require(request.user, CAN_VIEW_VERSIONS)
    from registry_app import synthesis

    speech = synthesis.synthesize(get_model_or_404(name), payload.text, payload.ref or None)
    response = HttpResponse(speech.wav, content_type="audio/wav", headers=speech.headers())
    response["Content-Disposition"] = f'attachment; filename="{name}-v{speech.version}.wav"'
    return response
