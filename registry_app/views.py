"""The registry panel: models, versions, aliases with promote/rollback, artifact downloads and "Try it"."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from audioml.audit import Actor
from audioml.errors import DomainError
from audioml.panel import staff_required
from audioml.roles import (
    CAN_CHANGE_MODEL, CAN_CHANGE_VERSION, CAN_DELETE_ALIAS, CAN_DELETE_MODEL, CAN_DELETE_VERSION,
    CAN_FLAG_PREDICTION, CAN_MOVE_ALIAS, CAN_REVIEW_FEEDBACK, CAN_VIEW_MODELS, CAN_VIEW_PREDICTIONS,
    CAN_VIEW_VERSIONS, needs,
)
from registry_app import artifacts as artifact_store
from registry_app.card import approvals, card_markdown, model_card
from registry_app.errors import ArtifactDamaged, ReferenceNotFound, VersionAliased
from registry_app.forms import (
    FlagForm, LogSettingsForm, ModelDescriptionForm, NoteForm, PromoteForm, SpeakForm, TrafficForm, TryItForm,
    VersionEditForm,
)
from registry_app.models import DEFAULT_ALIAS, MODEL_FILE, Alias, ModelVersion, PredictionLog, RegisteredModel
from training_app.charts import confusion_rows, per_class_rows, training_charts
from training_app.ml.metrics import trend
from training_app.models import task_headline

HISTORY_ON_MODEL_PAGE = 25
PREDICTIONS_ON_MODEL_PAGE = 10
PREDICTIONS_PER_PAGE = 50
LIVE_WINDOWS = {"1": "last hour", "24": "last 24 hours", "168": "last 7 days", "720": "last 30 days"}


# Lookups ------------------------------------------------------------------------------------------------------


def _get_model(name: str) -> RegisteredModel:
    model = RegisteredModel.objects.select_related("created_by").filter(name=name).first()
    if model is None:
        raise Http404(f"No registered model named “{name}”.")
    return model


def _get_version(model: RegisteredModel, number: int) -> ModelVersion:
    version = (
        model.versions.select_related("model", "created_by", "job__dataset")
        .prefetch_related("aliases")
        .filter(version=number)
        .first()
    )
    if version is None:
        raise Http404(f"Model “{model.name}” has no version {number}.")
    return version


def _get_alias(model: RegisteredModel, name: str) -> Alias:
    alias = model.aliases.select_related("version", "model").filter(name=name).first()
    if alias is None:
        raise Http404(f"Model “{model.name}” has no alias “{name}”.")
    return alias


# Presentation helpers -----------------------------------------------------------------------------------------


def _difference(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None:
        return None
    return value - reference


def _summary(version: ModelVersion) -> dict[str, Any]:
    """A version's headline figure ("accuracy": whatever its task leads with; "metric": its key in
    ``training_app.ml.metrics.METRICS``, which says which way is better), macro F1, baseline and split."""
    evaluation = version.evaluation()
    headline = version.headline_metric()
    baseline = version.metrics.get("baseline") or {}
    return {
        "accuracy": headline[1] if headline else None,
        "metric_name": headline[0] if headline else "accuracy",
        "metric": (task_headline(version.model.task, version.metrics) or {}).get("metric", "accuracy"),
        "macro_f1": version.metrics.get("macro_f1", evaluation.get("macro_f1")),
        "baseline_accuracy": (task_headline(version.model.task, version.metrics) or {}).get(
            "baseline", baseline.get("accuracy")
        ),
        "n": evaluation.get("n"),
        "evaluated_on": version.evaluated_on(),
    }


def _version_rows(model: RegisteredModel, production: ModelVersion | None) -> list[dict[str, Any]]:
    reference = _summary(production) if production else None
    rows = []
    versions = (model.versions.select_related("created_by", "job__dataset")
                .prefetch_related("aliases", "split_aliases", "shadow_aliases").order_by("-version"))
    for version in versions:
        summary = _summary(version)
        damage = version.damage_report(trust_unchanged=True)
        rows.append({
            "version": version,
            "summary": summary,
            "aliases": [alias.name for alias in version.aliases.all()],
            "splits": [f"{alias.name} {alias.split_percent}%" for alias in version.split_aliases.all()],
            "shadows": [f"{alias.name} shadow" for alias in version.shadow_aliases.all()],
            "damaged": damage,
            "model_damaged": any(item["name"] == MODEL_FILE for item in damage),
            "is_production": production is not None and version.pk == production.pk,
            "accuracy_diff": _difference(summary["accuracy"], reference["accuracy"]) if reference else None,
            "accuracy_trend": _trend(summary, reference),
            "f1_diff": _difference(summary["macro_f1"], reference["macro_f1"]) if reference else None,
            "f1_trend": trend("macro_f1", summary["macro_f1"], reference["macro_f1"]) if reference else "",
        })
    return rows


def _trend(summary: dict[str, Any], reference: dict[str, Any] | None) -> str:
    """"better"/"worse"/"" for a version's headline figure against the reference version's, in the direction
    the metric is better (lower for false rejects, CER, losses)."""
    if reference is None or reference["metric"] != summary["metric"]:
        return ""
    return trend(summary["metric"], summary["accuracy"], reference["accuracy"])


def _comparison(left: ModelVersion | None, right: ModelVersion) -> dict[str, Any]:
    """Side-by-side numbers of the version an alias points at now (left) and the one it would point at."""
    from registry_app.templatetags.registry_tags import metric_diff, signed
    from training_app.templatetags.training_tags import metric_value

    after = _summary(right)
    before = _summary(left) if left else {}
    accuracy_diff = _difference(after["accuracy"], before.get("accuracy"))
    f1_diff = _difference(after["macro_f1"], before.get("macro_f1"))
    rows = [
        {"name": after["metric_name"].capitalize(), "left": metric_value(before.get("accuracy"), after["metric_name"]),
         "right": metric_value(after["accuracy"], after["metric_name"]), "diff": metric_diff(accuracy_diff,
                                                                                                after["metric"]),
         "trend": _trend(after, before or None)},
        {"name": "Macro F1", "left": f"{before['macro_f1']:.3f}" if before.get("macro_f1") is not None else "—",
         "right": f"{after['macro_f1']:.3f}" if after["macro_f1"] is not None else "—",
         "diff": signed(f1_diff), "trend": trend("macro_f1", after["macro_f1"], before.get("macro_f1"))},
        {"name": "Data snapshot", "left": f"{left.snapshot_size} clips" if left else "",
         "right": f"{right.snapshot_size} clips", "diff": "", "trend": ""},
        {"name": "Dataset", "left": left.job.dataset.name if left else "", "right": right.job.dataset.name,
         "diff": "", "trend": ""},
        {"name": "Registered", "left": f"{left.created_at:%Y-%m-%d %H:%M}" if left else "",
         "right": f"{right.created_at:%Y-%m-%d %H:%M}", "diff": "", "trend": ""},
    ]
    return {"left": left, "right": right, "rows": rows}


def _live_context(request: HttpRequest, model: RegisteredModel) -> dict[str, Any]:
    """The live comparison of the model page (its window from ?live=hours)."""
    from registry_app.prediction_log import live_comparison

    if not request.user.has_perm(CAN_VIEW_PREDICTIONS):
        return {}
    hours = request.GET.get("live", "24")
    hours = hours if hours in LIVE_WINDOWS else "24"
    live = live_comparison(model, int(hours))
    for entry in live["versions"]:
        entry["bars"] = [{**answer, "width": round(answer["share"] * 100, 1)} for answer in entry["answers"]]
    return {
        "live": live, "live_hours": hours, "live_windows": LIVE_WINDOWS,
        "recent_predictions": list(model.predictions.select_related("user", "review_dataset")
                                   .filter(role=PredictionLog.Role.PRIMARY)[:PREDICTIONS_ON_MODEL_PAGE]),
        "prediction_count": model.predictions.count(),
    }


def _model_context(request: HttpRequest, model: RegisteredModel, **extra) -> dict[str, Any]:
    aliases = list(model.aliases.select_related("version", "split_version", "shadow_version").order_by("name"))
    production = next((alias.version for alias in aliases if alias.name == DEFAULT_ALIAS), None)
    alias_rows = []
    for alias in aliases:
        target = alias.rollback_target()
        last = model.alias_history(alias.name).first()
        alias_rows.append({"alias": alias, "rollback_to": target, "last_event": last})
    latest = model.latest_version()
    rows = _version_rows(model, production)
    context = {
        "model": model,
        "rows": rows,
        "production": production,
        # The "vs. production" columns only when some version is not the production one.
        "compare_to_production": production is not None and any(not row["is_production"] for row in rows),
        "latest": latest,
        "alias_rows": alias_rows,
        "events": model.alias_history()[:HISTORY_ON_MODEL_PAGE],
        "event_count": model.alias_events.count(),
        "description_form": ModelDescriptionForm(instance=model),
        "promote_form": PromoteForm(model=model, initial={"version": latest.version if latest else None}),
        "try_form": TryItForm(model=model),
        "speak_form": SpeakForm(model=model) if model.task == "synthesis" else None,
        "log_form": LogSettingsForm(instance=model),
        **_live_context(request, model),
    }
    context.update(extra)
    return context


# Pages --------------------------------------------------------------------------------------------------------


def job_model_link(job) -> tuple[str, str] | None:
    """The "Open model …" button a training job's page shows once the job's model is in the registry."""
    version = ModelVersion.objects.filter(job_id=job.pk).select_related("model").first()
    if version is None:
        return None
    return f"Open model {version.model.name}", reverse("model-detail", args=[version.model.name])


def job_artifact_url(job, name: str) -> str | None:
    """Where the registered version of a training job serves one of its files (a voice's samples)."""
    version = ModelVersion.objects.filter(job_id=job.pk).select_related("model").first()
    if version is None or not any(entry["name"] == name for entry in version.artifacts):
        return None
    return reverse("artifact-download", args=[version.model.name, version.version, name])


@staff_required
@needs(CAN_VIEW_MODELS)
def model_list(request: HttpRequest) -> HttpResponse:
    models = (
        RegisteredModel.objects.annotate(version_count=Count("versions"))
        .order_by("name")
        .prefetch_related(
            Prefetch("aliases", queryset=Alias.objects.select_related("version").order_by("name")),
            Prefetch("versions", queryset=ModelVersion.objects.order_by("-version"), to_attr="ordered_versions"),
        )
    )
    rows = []
    for model in models:
        active = [v for v in model.ordered_versions if v.status == ModelVersion.Status.ACTIVE]
        latest = active[0] if active else None
        production = next((a.version for a in model.aliases.all() if a.name == DEFAULT_ALIAS), None)
        rows.append({
            "model": model,
            "latest": latest,
            "newest": model.ordered_versions[0] if model.ordered_versions else None,
            "aliases": list(model.aliases.all()),
            "headline": (production or latest).headline_metric() if (production or latest) else None,
            "headline_version": production or latest,
        })
    return render(request, "registry/model_list.html", {"rows": rows})


@staff_required
@needs(CAN_VIEW_MODELS)
def model_detail(request: HttpRequest, name: str) -> HttpResponse:
    model = _get_model(name)
    return render(request, "registry/model_detail.html", _model_context(request, model))


@staff_required
@require_POST
@needs(CAN_CHANGE_MODEL)
def model_edit(request: HttpRequest, name: str) -> HttpResponse:
    model = _get_model(name)
    form = ModelDescriptionForm(request.POST, instance=model)
    if not form.is_valid():
        return render(request, "registry/model_detail.html", _model_context(request, model, description_form=form,
                                                                            edit_description=True), status=422)
    model.set_description(form.cleaned_data["description"], by=Actor.from_request(request))
    messages.success(request, "Description saved.")
    return redirect("model-detail", name=model.name)


@staff_required
@needs(CAN_VIEW_VERSIONS)
def version_detail(request: HttpRequest, name: str, number: int) -> HttpResponse:
    model = _get_model(name)
    version = _get_version(model, number)
    production = model.aliases.select_related("version").filter(name=DEFAULT_ALIAS).first()
    damage = version.damage_report()
    damaged_names = {item["name"] for item in damage}
    summary = _summary(version)
    reference = _summary(production.version) if production and production.version.pk != version.pk else None
    history = version.training_history()
    context = {
        "model": model,
        "version": version,
        "summary": summary,
        "reference": reference,
        "production": production.version if production else None,
        "accuracy_diff": _difference(summary["accuracy"], reference["accuracy"]) if reference else None,
        "accuracy_trend": _trend(summary, reference),
        "aliases": [alias.name for alias in version.aliases.all()],
        "damage": damage,
        "model_damaged": MODEL_FILE in damaged_names,
        "artifacts": [{**entry, "damaged": entry["name"] in damaged_names} for entry in version.artifacts],
        "charts": training_charts(history, version.metrics.get("best_epoch"), model.task),
        "confusion": confusion_rows(version.evaluation().get("confusion_matrix"), version.labels),
        "per_class": per_class_rows(version.evaluation()),
        "edit_form": VersionEditForm(version=version),
        "try_form": TryItForm(model=model, initial={"ref": version.ref}),
        "speak_form": SpeakForm(model=model, initial={"ref": version.ref}) if model.task == "synthesis" else None,
        "other_versions": model.versions.exclude(pk=version.pk).order_by("-version").values_list("version", flat=True)[:20],
        "reproduction_of": (reproduced := version.reproduction_of()),
        "reproduction_label": (f"v{reproduced['source'].version}" if reproduced and reproduced["source"]
                               else f"job #{version.job.reproduces_id}"),
        "reproductions": version.reproductions(),
        "dataset": version.job.dataset,
        "approvals": approvals(version),
    }
    return render(request, "registry/version_detail.html", context)


@staff_required
@needs(CAN_VIEW_VERSIONS)
def version_card(request: HttpRequest, name: str, number: int) -> HttpResponse:
    """The model card page; ``card.md`` is the same card as a Markdown download."""
    model = _get_model(name)
    version = _get_version(model, number)
    card = model_card(version)
    return render(request, "registry/model_card.html", {"model": model, "version": version, "card": card})


@staff_required
@needs(CAN_VIEW_VERSIONS)
def version_card_markdown(request: HttpRequest, name: str, number: int) -> HttpResponse:
    model = _get_model(name)
    version = _get_version(model, number)
    response = HttpResponse(card_markdown(model_card(version)), content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{model.name}-v{version.version}-model-card.md"'
    return response


@staff_required
@needs(CAN_DELETE_MODEL)
def model_delete(request: HttpRequest, name: str) -> HttpResponse:
    """GET: confirmation (or why it is refused). POST with the model's name typed: delete the model, its
    versions and their files."""
    model = _get_model(name)
    aliases = list(model.aliases.select_related("version").order_by("name"))
    if request.method == "POST":
        if request.POST.get("confirm_name", "").strip() != model.name:
            messages.error(request, f"Type the model's name ({model.name}) to confirm the deletion.")
            return redirect("model-delete", name=model.name)
        try:
            count = model.remove(by=Actor.from_request(request))
        except DomainError as error:
            messages.error(request, error.detail)
            return redirect("model-detail", name=model.name)
        messages.success(request, f"Model {model.name}, its {count} version{'s' if count != 1 else ''} and their "
                                  "artifacts were deleted.")
        return redirect("model-list")
    return render(request, "registry/confirm.html", {
        "model": model, "action": "delete-model", "refused": [alias.name for alias in aliases],
        "version_count": model.versions.count(),
        "title": f"{model.name} cannot be deleted" if aliases else f"Delete model {model.name}?",
    })


@staff_required
@require_POST
@needs(CAN_CHANGE_VERSION)
def version_edit(request: HttpRequest, name: str, number: int) -> HttpResponse:
    model = _get_model(name)
    version = _get_version(model, number)
    form = VersionEditForm(request.POST, version=version)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect("version-detail", name=model.name, number=version.version)
    changes = {field: form.cleaned_data[field] for field in ModelVersion.MUTABLE_FIELDS}
    try:
        version.update(changes, by=Actor.from_request(request))
    except DomainError as error:
        messages.error(request, error.detail)
        return redirect("version-detail", name=model.name, number=version.version)
    except ValidationError as error:
        messages.error(request, " ".join(getattr(error, "messages", [str(error)])))
        return redirect("version-detail", name=model.name, number=version.version)
    messages.success(request, f"Version {version.version} saved.")
    return redirect("version-detail", name=model.name, number=version.version)


@staff_required
@needs(CAN_DELETE_VERSION)
def version_delete(request: HttpRequest, name: str, number: int) -> HttpResponse:
    """GET: confirmation (or why it is refused). POST: delete the version and its artifacts."""
    model = _get_model(name)
    version = _get_version(model, number)
    aliases = version.alias_uses()
    if request.method == "POST":
        try:
            version.remove(by=Actor.from_request(request))
        except VersionAliased as error:
            messages.error(request, error.detail)
            return redirect("version-detail", name=model.name, number=version.version)
        messages.success(request, f"Version {version.version} of {model.name} and its artifacts were deleted.")
        return redirect("model-detail", name=model.name)
    return render(request, "registry/confirm.html", {
        "model": model,
        "version": version,
        "action": "delete",
        "refused": aliases,
        "title": f"Version {version.version} cannot be deleted" if aliases else f"Delete version {version.version}?",
    })


@staff_required
@needs(CAN_VIEW_VERSIONS)
def artifact_download(request: HttpRequest, name: str, number: int, artifact: str) -> HttpResponse:
    model = _get_model(name)
    version = _get_version(model, number)
    try:
        entry = version.verify_artifact(artifact)
    except ReferenceNotFound as error:
            raise Http404(error.detail) from None
    except ArtifactDamaged as error:
        messages.error(request, error.detail)
        return redirect("version-detail", name=model.name, number=version.version)
    return artifact_store.download_response(entry, f"{model.name}-v{version.version}-{entry['name'].replace('/', '-')}")


# Aliases ------------------------------------------------------------------------------------------------------


@staff_required
@needs(CAN_MOVE_ALIAS)
def alias_promote(request: HttpRequest, name: str) -> HttpResponse:
    """GET with alias and version: the confirmation page. POST: point the alias, with the note."""
    model = _get_model(name)
    data = request.POST if request.method == "POST" else request.GET
    form = PromoteForm(data, model=model) if data.get("version") or data.get("alias") else PromoteForm(model=model)
    context = {"model": model, "form": form, "action": "promote"}
    if form.is_bound and form.is_valid():
        alias_name = form.cleaned_data["alias"]
        target = _get_version(model, form.cleaned_data["version"])
        current = model.aliases.select_related("version").filter(name=alias_name).first()
        if request.method == "POST":
            try:
                Alias.point(model, alias_name, target, by=Actor.from_request(request), note=form.cleaned_data["note"])
            except DomainError as error:
                messages.error(request, error.detail)
                return redirect("model-detail", name=model.name)
            if current is None or current.version_id != target.pk:
                messages.success(request, f"{alias_name} now points at v{target.version}. "
                                          "Predictions that use it switch on their next request.")
            else:
                messages.info(request, f"{alias_name} already points at v{target.version}; nothing changed.")
            return redirect("model-detail", name=model.name)
        context.update({
            "alias_name": alias_name,
            "target": target,
            "current": current.version if current else None,
            "comparison": _comparison(current.version if current else None, target),
            "title": f"Point {alias_name} at v{target.version}?",
            "note_form": NoteForm(initial={"note": form.cleaned_data["note"]}),
        })
    else:
        context["title"] = "Point an alias at a version"
    return render(request, "registry/confirm.html", context, status=422 if form.is_bound and not form.is_valid() else 200)


@staff_required
@needs(CAN_MOVE_ALIAS)
def alias_rollback(request: HttpRequest, name: str, alias: str) -> HttpResponse:
    model = _get_model(name)
    current = _get_alias(model, alias)
    target = current.rollback_target()
    if request.method == "POST":
        form = NoteForm(request.POST)
        note = form.cleaned_data["note"] if form.is_valid() else ""
        before = current.version.version
        try:
            moved = current.rollback(by=Actor.from_request(request), note=note)
        except DomainError as error:
            messages.error(request, error.detail)
            return redirect("model-detail", name=model.name)
        messages.success(request, f"{moved.name} rolled back from v{before} to v{moved.version.version}.")
        return redirect("model-detail", name=model.name)
    return render(request, "registry/confirm.html", {
        "model": model,
        "action": "rollback",
        "alias": current,
        "current": current.version,
        "target": target,
        "comparison": _comparison(current.version, target) if target else None,
        "note_form": NoteForm(),
        "title": f"Roll {current.name} back?",
    })


@staff_required
@needs(CAN_DELETE_ALIAS)
def alias_delete(request: HttpRequest, name: str, alias: str) -> HttpResponse:
    model = _get_model(name)
    current = _get_alias(model, alias)
    if request.method == "POST":
        form = NoteForm(request.POST)
        note = form.cleaned_data["note"] if form.is_valid() else ""
        try:
            current.remove(by=Actor.from_request(request), note=note)
        except DomainError as error:
            messages.error(request, error.detail)
            return redirect("model-detail", name=model.name)
        messages.success(request, f"Alias {current.name} deleted (it pointed at v{current.version.version}).")
        return redirect("model-detail", name=model.name)
    return render(request, "registry/confirm.html", {
        "model": model,
        "action": "delete-alias",
        "alias": current,
        "current": current.version,
        "note_form": NoteForm(),
        "title": f"Delete alias {current.name}?",
    })


# Try it -------------------------------------------------------------------------------------------------------


@staff_required
@require_POST
@needs(CAN_VIEW_VERSIONS)
def try_it(request: HttpRequest, name: str) -> HttpResponse:
    """Score one uploaded or recorded clip with the same inference code as the API."""
    from registry_app import inference
    from registry_app.limits import prediction_slot

    model = _get_model(name)
    form = TryItForm(request.POST, request.FILES, model=model)
    result: dict[str, Any] = {}
    if form.is_valid():
        try:
            with prediction_slot(request.user):
                outcome = inference.predict_uploads(model, form.cleaned_data["ref"] or None,
                                                    [form.cleaned_data["audio"]], form.cleaned_data.get("threshold"))
        except DomainError as error:
            result["error"] = error.detail
        else:
            prediction = outcome["results"][0]
            if "error" in prediction:
                result["error"] = prediction["error"]["detail"]
            else:
                scores = sorted((prediction.get("scores") or {}).items(), key=lambda item: item[1], reverse=True)
                result = {"prediction": prediction, "scores": scores, "cached": outcome["cached"], "load_ms": outcome["load_ms"]}
    status = 200 if "prediction" in result else 422
    if request.htmx:
        # htmx swaps only 2xx responses; the fragment itself shows the error.
        return render(request, "registry/_try_it.html#try-result", {"model": model, "try_form": form, **result})
    return render(request, "registry/model_detail.html",
                  _model_context(request, model, try_form=form, **result), status=status)


@staff_required
@require_POST
@needs(CAN_VIEW_VERSIONS)
def speak(request: HttpRequest, name: str) -> HttpResponse:
    """Try it for a voice: the typed text spoken by the same code as POST /api/models/{name}/synthesize, played
    and offered for download in the page (a data: URL, so nothing is stored)."""
    import base64

    from registry_app import synthesis

    model = _get_model(name)
    form = SpeakForm(request.POST, model=model)
    result: dict[str, Any] = {}
    if form.is_valid():
        try:
            speech = synthesis.synthesize(model, form.cleaned_data["text"], form.cleaned_data["ref"] or None)
        except DomainError as error:
            result["error"] = error.detail
        else:
            result = {"speech": speech, "speech_url": "data:audio/wav;base64," + base64.b64encode(speech.wav).decode()}
    status = 200 if "speech" in result else 422
    if request.htmx:
        return render(request, "registry/_try_synthesis.html#speak-result", {"model": model, "speak_form": form, **result})
    return render(request, "registry/model_detail.html",
                  _model_context(request, model, speak_form=form, **result), status=status)


# Traffic: split and shadow --------------------------------------------------------------------------------------


@staff_required
@needs(CAN_MOVE_ALIAS)
def alias_traffic(request: HttpRequest, name: str, alias: str) -> HttpResponse:
    """GET: the alias's split and shadow as a form. POST: apply them through `Alias.point` (the history keeps
    the change and the note)."""
    from registry_app.aliases import KEEP

    model = _get_model(name)
    current = _get_alias(model, alias)
    form = TrafficForm(request.POST or None, model=model, alias=current)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        split = None
        if data["split_version"] is not None:
            split = (model.get_version(data["split_version"]), data["split_percent"])
        shadow = KEEP
        if "shadow_version" in form.fields:
            shadow = model.get_version(data["shadow_version"]) if data["shadow_version"] is not None else None
        try:
            moved = Alias.point(model, current.name, None, by=Actor.from_request(request), note=data["note"],
                                split=split, shadow=shadow)
        except DomainError as error:
            field = error.extra.get("field")
            form.add_error({"split": "split_version", "shadow": "shadow_version"}.get(field), error.detail)
        else:
            if moved.traffic() == current.traffic():
                messages.info(request, f"{current.name}'s traffic already goes there; nothing changed.")
            else:
                messages.success(request, f"{current.name}: {traffic_summary(moved)}. Requests follow from the next one.")
            return redirect("model-detail", name=model.name)
    return render(request, "registry/traffic.html", {
        "model": model, "alias": current, "form": form, "title": f"Traffic of {current.name}",
    }, status=422 if form.is_bound and not form.is_valid() else 200)


def traffic_summary(alias: Alias) -> str:
    parts = [f"v{alias.version.version} {alias.primary_percent}%"]
    if alias.split_version_id:
        parts.append(f"v{alias.split_version.version} {alias.split_percent}%")
    if alias.shadow_version_id:
        parts.append(f"shadow v{alias.shadow_version.version}")
    return ", ".join(parts)


@staff_required
@require_POST
@needs(CAN_CHANGE_MODEL)
def model_log_settings(request: HttpRequest, name: str) -> HttpResponse:
    model = _get_model(name)
    form = LogSettingsForm(request.POST, instance=RegisteredModel.objects.get(pk=model.pk))
    if not form.is_valid():
        return render(request, "registry/model_detail.html",
                      _model_context(request, model, log_form=form, edit_log=True), status=422)
    changed = model.set_log_settings({field: form.cleaned_data[field] for field in RegisteredModel.LOG_SETTINGS},
                                     by=Actor.from_request(request))
    messages.success(request, "Prediction log settings saved." if changed else "Nothing changed.")
    return redirect(reverse("model-detail", args=[model.name]) + "#log")


# The prediction log, flags and review queues --------------------------------------------------------------------


def _get_prediction(model: RegisteredModel, prediction_id: int) -> PredictionLog:
    row = (model.predictions.select_related("model", "user", "flagged_by", "review_dataset", "primary")
           .filter(pk=prediction_id).first())
    if row is None:
        raise Http404(f"{model.name} has no logged prediction #{prediction_id} (it may have expired).")
    return row


@staff_required
@needs(CAN_VIEW_PREDICTIONS)
def prediction_list(request: HttpRequest, name: str) -> HttpResponse:
    from django.core.paginator import Paginator

    model = _get_model(name)
    rows = model.predictions.select_related("user", "review_dataset", "primary")
    version, role, flagged = request.GET.get("version", ""), request.GET.get("role", ""), request.GET.get("flagged", "")
    if version.isdigit():
        rows = rows.filter(version_number=int(version))
    if role in PredictionLog.Role.values:
        rows = rows.filter(role=role)
    if flagged == "yes":
        rows = rows.filter(flagged_at__isnull=False)
    page = Paginator(rows, PREDICTIONS_PER_PAGE).get_page(request.GET.get("page"))
    versions = sorted(set(model.predictions.values_list("version_number", flat=True)), reverse=True)
    return render(request, "registry/predictions.html", {
        "model": model, "page": page, "rows": page.object_list, "versions": versions,
        "filters": {"version": version, "role": role, "flagged": flagged},
    })


@staff_required
@needs(CAN_VIEW_PREDICTIONS)
def prediction_audio(request: HttpRequest, name: str, prediction_id: int) -> HttpResponse:
    model = _get_model(name)
    row = _get_prediction(model, prediction_id)
    if not row.audio:
        raise Http404("This prediction's audio was not kept.")
    from registry_app.prediction_log import audio_response

    return audio_response(row, f"{model.name}-prediction-{row.pk}.wav")


@staff_required
@needs(CAN_FLAG_PREDICTION)
def prediction_flag(request: HttpRequest, name: str, prediction_id: int) -> HttpResponse:
    """GET: the answer and a form for the right one. POST: flag it (and queue it for review)."""
    model = _get_model(name)
    row = _get_prediction(model, prediction_id)
    initial = {"label": row.correct_label, "score": row.correct_score, "transcript": row.correct_transcript,
               "note": row.flag_note, "dataset": row.review_dataset.name if row.review_dataset else None}
    form = FlagForm(request.POST or None, model=model, row=row, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            row.flag(by=Actor.from_request(request), label=data.get("label") or "", score=data.get("score"),
                     transcript=data.get("transcript") or "", note=data["note"], dataset=data.get("dataset"))
        except DomainError as error:
            field = error.extra.get("field")
            form.add_error(field if field in form.fields else None, error.detail)
        else:
            queued = f" and queued for review in {data['dataset'].name}" if data.get("dataset") else ""
            messages.success(request, f"Prediction #{row.pk} flagged wrong{queued}.")
            return redirect("prediction-list", name=model.name)
    return render(request, "registry/flag.html", {"model": model, "row": row, "form": form},
                  status=422 if form.is_bound and not form.is_valid() else 200)


@staff_required
@needs(CAN_VIEW_PREDICTIONS)
def review_index(request: HttpRequest) -> HttpResponse:
    from datasets_app.models import Dataset

    counts = dict(PredictionLog.objects.filter(review_status=PredictionLog.Review.PENDING)
                  .values_list("review_dataset__name").annotate(n=Count("id")))
    datasets = Dataset.objects.order_by("name")
    rows = [{"dataset": dataset, "pending": counts.get(dataset.name, 0)} for dataset in datasets]
    return render(request, "registry/review_index.html", {"rows": rows})


@staff_required
@needs(CAN_VIEW_PREDICTIONS)
def review_queue(request: HttpRequest, dataset: str) -> HttpResponse:
    from datasets_app.models import Dataset

    target = Dataset.objects.filter(name=dataset).first()
    if target is None:
        raise Http404(f"No dataset named “{dataset}”.")
    pending = (PredictionLog.objects.select_related("model", "user", "flagged_by")
               .filter(review_dataset=target, review_status=PredictionLog.Review.PENDING).order_by("flagged_at", "id"))
    done = (PredictionLog.objects.select_related("model", "reviewed_by", "clip")
            .filter(review_dataset=target, review_status__in=[PredictionLog.Review.ACCEPTED, PredictionLog.Review.DISMISSED])
            .order_by("-reviewed_at")[:20])
    return render(request, "registry/review_queue.html", {"dataset": target, "pending": pending, "done": done})


@staff_required
@require_POST
@needs(CAN_REVIEW_FEEDBACK)
def review_decide(request: HttpRequest, dataset: str, prediction_id: int) -> HttpResponse:
    """Accept (with the label, score or transcript as corrected in the queue) or dismiss one item."""
    from datasets_app.models import parse_score

    row = (PredictionLog.objects.select_related("model", "review_dataset")
           .filter(pk=prediction_id, review_dataset__name=dataset).first())
    if row is None:
        raise Http404(f"{dataset}'s review queue has no prediction #{prediction_id}.")
    actor = Actor.from_request(request)
    try:
        if request.POST.get("decision") == "accept":
            overrides: dict[str, Any] = {}
            for field in ("label", "transcript"):
                if field in request.POST:
                    overrides[field] = request.POST[field]
            if request.POST.get("score", "").strip():
                try:
                    overrides["score"] = parse_score(request.POST["score"])
                except ValidationError as error:
                    raise DomainError(" ".join(sum(error.message_dict.values(), []))) from None
            clip = row.accept(by=actor, **overrides)
            messages.success(request, f"Prediction #{row.pk} added to {dataset} as clip {clip.pk} "
                                      f"({clip.label or clip.transcript or clip.score}).")
        else:
            row.dismiss(by=actor, note=request.POST.get("note", ""))
            messages.info(request, f"Prediction #{row.pk} dismissed.")
    except DomainError as error:
        messages.error(request, f"Prediction #{row.pk}: {error.detail}")
    return redirect("review-queue", dataset=dataset)
