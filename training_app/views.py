from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling

from audioml.audit import Actor
from audioml.errors import Conflict, DomainError, Unprocessable
from audioml.panel import staff_required
from audioml.roles import CAN_CANCEL, CAN_TRAIN, CAN_VIEW_JOBS, needs
from datasets_app.models import Dataset
from training_app.charts import confusion_rows, per_class_rows, training_charts
from training_app.forms import JobFilterForm, JobForm
from training_app.ml.config import FIELDS, applies
from training_app.ml.split import split_for_task
from training_app.models import TrainingJob, plan_job
from training_app.snapshot import clip_records, data_summary, ignored_clip_count, snapshot_clips

LOG_TAIL_LINES = 30
JOBS_PER_PAGE = 50


# What became of a job, as buttons on its page: functions job -> (text, url) or None. Training knows nothing
# downstream of itself; the apps that take its results over add theirs when they start (the registry adds
# "Open model …" in registry_app/apps.py).
JOB_RESULT_LINKS: list[Callable[[TrainingJob], tuple[str, str] | None]] = []


def result_links(job: TrainingJob) -> list[tuple[str, str]]:
    return [link for make_link in JOB_RESULT_LINKS if (link := make_link(job)) is not None]


# The URL of a file the registered version of a job keeps (a voice's held-out samples): functions
# (job, artifact name) -> url or None, added by the registry when it starts (the job's work folder is gone by then).
JOB_ARTIFACT_URLS: list[Callable[[TrainingJob, str], str | None]] = []


def voice_samples(job: TrainingJob) -> list[dict]:
    """A voice job's held-out samples with the URLs its registered version serves them at (None before)."""
    def url(name: str) -> str | None:
        return next((found for make_url in JOB_ARTIFACT_URLS if (found := make_url(job, name))), None)

    return [{**sample, "real_url": url(sample["real"]), "synthesized_url": url(sample["synthesized"])}
            for sample in (job.metrics or {}).get("samples") or []]


def _get_job(job_id: int) -> TrainingJob:
    return get_object_or_404(
        TrainingJob.objects.select_related("dataset", "created_by", "rerun_of", "reproduces"), pk=job_id
    )


@staff_required
@needs(CAN_VIEW_JOBS)
def job_list(request: HttpRequest) -> HttpResponse:
    TrainingJob.objects.reap_stale()
    filters = JobFilterForm(request.GET or None)
    jobs = filters.filter(TrainingJob.objects.select_related("dataset", "created_by").defer("snapshot", "traceback"))
    page = Paginator(jobs, JOBS_PER_PAGE).get_page(request.GET.get("page"))
    positions = TrainingJob.objects.queue_positions()
    for job in page:
        job.position = positions.get(job.pk)
    polling = TrainingJob.objects.active().exists()
    context = {"page": page, "filters": filters, "polling": polling, "queued": len(positions),
               "running": TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING).count()}
    if request.htmx:
        response = render(request, "training/job_list.html#jobs", context)
        return response if polling else _stop_polling(response)
    return render(request, "training/job_list.html", context)


def _stop_polling(response: HttpResponse) -> HttpResponse:
    stopped = HttpResponseStopPolling(response.content)
    stopped["Content-Type"] = response["Content-Type"]
    return stopped


@staff_required
@needs(CAN_TRAIN)
def job_new(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = JobForm(request.POST)
        if form.is_valid():
            try:
                job = TrainingJob.objects.create_job(
                    form.cleaned_data["dataset"], form.cleaned_data["model_name"], form.cleaned_data["preset"],
                    form.overrides(), by=Actor.from_request(request), task=form.cleaned_data["task"],
                )
            except (Unprocessable, Conflict) as error:
                form.add_domain_error(error.extra.get("field"), error.detail)
            else:
                messages.success(request, f"Job #{job.pk} is queued.")
                return redirect("job-detail", job.pk)
    else:
        initial = {}
        if name := request.GET.get("dataset"):
            initial["dataset"] = Dataset.objects.filter(name=name).first()
            if initial["dataset"] is not None:
                initial["model_name"] = name
        form = JobForm(initial=initial)
    context = {"form": form, **_plan(form)}
    return render(request, "training/job_new.html", context)


def _plan(form: JobForm) -> dict:
    """What a job from this form would train on, and what would stop it (for the live summary)."""
    empty = {"summary": None, "problems": [], "config_error": None, "split": None}
    if form.is_bound:
        form.is_valid()
        dataset, preset = form.cleaned_data.get("dataset"), form.cleaned_data.get("preset") or "balanced"
        task = form.cleaned_data.get("task") or "classification"
        overrides = form.overrides()
        setting_errors = [f"{form[name].label}: {' '.join(form[name].errors)}" for name in form.fields
                          if form[name].errors and name not in ("model_name", "dataset", "preset")]
    else:
        dataset, preset, overrides, setting_errors = form.initial.get("dataset"), "balanced", {}, []
        task = "classification"
    if dataset is None:
        return empty
    try:
        cfg, entries, summary, problems = plan_job(dataset, preset, overrides, task)
    except Unprocessable as error:
        # The data stays in view (detection's labels are what the missing setting asks for), and the setting is
        # named as the form names it.
        field = error.extra.get("field")
        detail = error.detail
        if field in form.fields and detail.startswith(f"{field}: "):
            detail = f"{form[field].label}: {detail[len(field) + 2:]}"
        summary = None
        if task in TrainingJob.Task.values:
            summary = data_summary(snapshot_clips(dataset, task), ignored_clip_count(dataset, task))
        return {**empty, "summary": summary, "config_error": detail}
    if setting_errors:
        return {**empty, "summary": summary, "config_error": "; ".join(setting_errors)}
    split = None
    if not problems:
        split, strata = split_for_task(clip_records(entries), cfg)
        split = split.summary(strata)
    return {"summary": summary, "problems": problems, "config_error": None, "split": split, "task": task}


@staff_required
@require_POST
@needs(CAN_TRAIN)
def job_new_preview(request: HttpRequest) -> HttpResponse:
    """The form's augmentation preview: a clip of the chosen dataset with the chosen settings, as training hears
    it (htmx: the preview fragment; without htmx, the form page with the preview in it)."""
    from training_app.preview import augmentation_preview

    form = JobForm(request.POST)
    form.is_valid()
    dataset = form.cleaned_data.get("dataset")
    clip = request.POST.get("preview_clip", "")
    context: dict = {"form": form}
    if dataset is None:
        context["preview_error"] = "Choose a dataset first."
    else:
        try:
            context["preview"] = augmentation_preview(
                dataset, form.cleaned_data.get("preset") or "balanced", form.overrides(),
                form.cleaned_data.get("task") or "classification", int(clip) if clip.isdigit() else None,
            )
        except DomainError as error:
            context["preview_error"] = error.detail
    if request.htmx:
        return render(request, "training/_augment_preview.html", context)
    return render(request, "training/job_new.html", {**context, **_plan(form)})


@staff_required
@needs(CAN_TRAIN)
def job_new_summary(request: HttpRequest) -> HttpResponse:
    """The live data summary of the new-job form (htmx)."""
    form = JobForm(request.GET)
    return render(request, "training/job_new.html#summary", {"form": form, **_plan(form)})


@staff_required
@needs(CAN_VIEW_JOBS)
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job(job_id)
    context = _detail_context(job)
    if request.htmx:
        response = render(request, "training/job_detail.html#live", context)
        return _stop_polling(response) if job.is_finished else response
    return render(request, "training/job_detail.html", context)


def _detail_context(job: TrainingJob) -> dict:
    metrics = job.metrics or {}
    result = job.result_metrics()
    baseline = metrics.get("baseline") or {}
    config_rows, ignored_config_rows = _config_rows(job)
    return {
        "job": job,
        "result_links": result_links(job),
        "queue_position": job.queue_position(),
        "charts": training_charts(job.epochs or [], metrics.get("best_epoch"), job.task),
        "results_template": f"training/_results_{job.task}.html",
        "voice_samples": voice_samples(job) if job.task == "synthesis" else [],
        "logs": list(reversed(job.logs.order_by("-created_at", "-id")[:LOG_TAIL_LINES])),
        "log_count": job.logs.count(),
        "result": result,
        "metrics": metrics,
        "baseline": baseline,
        "confusion": confusion_rows(result.get("confusion_matrix")),
        "per_class": per_class_rows(result),
        "improvement": _improvement(result, baseline),
        "binary": metrics.get("binary"),
        "split": metrics.get("split"),
        "data": job.snapshot_summary(),
        "config_rows": config_rows,
        "ignored_config_rows": ignored_config_rows,
        "reproduction": job.reproduction_check(),
        "reproduction_source": f"job #{job.reproduces_id}",
    }


def _improvement(result: dict, baseline: dict) -> float | None:
    if result.get("accuracy") is None or baseline.get("accuracy") is None:
        return None
    return (result["accuracy"] - baseline["accuracy"]) * 100


ConfigRow = tuple[str, object, bool, str]


def _config_rows(job: TrainingJob) -> tuple[list[ConfigRow], list[ConfigRow]]:
    """(setting, value, changed from the preset, what the setting does) for the job's configuration: the settings
    its task reads (and any it changed), then the rest of the record, which the task ignores (a classification job
    has no wake word or espeak voice)."""
    changed = set(job.overrides or {})
    read, ignored = [], []
    for name, value in sorted((job.config or {}).items()):
        row = (name, value, name in changed, FIELDS[name].help if name in FIELDS else "")
        (read if applies(name, job.task) or name in changed else ignored).append(row)
    return read, ignored


@staff_required
@needs(CAN_VIEW_JOBS)
def job_log(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job(job_id)
    return render(request, "training/job_log.html", {"job": job, "logs": job.logs.all()})


@staff_required
@require_POST
@needs(CAN_CANCEL)
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job(job_id)
    try:
        job.cancel(by=Actor.from_request(request))
    except Conflict as error:
        messages.error(request, error.detail)
    else:
        if job.status == TrainingJob.Status.CANCELLED:
            messages.success(request, f"Job #{job.pk} was removed from the queue.")
        else:
            messages.success(request, f"Job #{job.pk} stops at its next batch; no model will be saved.")
    return redirect("job-detail", job.pk)


@staff_required
@require_POST
@needs(CAN_TRAIN)
def job_rerun(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job(job_id)
    try:
        again = job.rerun(by=Actor.from_request(request))
    except (Unprocessable, Conflict) as error:
        messages.error(request, f"Cannot run job #{job.pk} again: {error.detail}")
        return redirect("job-detail", job.pk)
    messages.success(request, f"Job #{again.pk} is queued: a re-run of job #{job.pk} on the dataset as it is now.")
    return redirect("job-detail", again.pk)




@staff_required
@require_POST
@needs(CAN_TRAIN)
def job_reproduce(request: HttpRequest, job_id: int) -> HttpResponse:
    """Train the job's frozen snapshot with its configuration again; on refusal, back to the page it came from
    (the job's, or the version's in the registry)."""
    job = _get_job(job_id)
    try:
        again = job.reproduce(by=Actor.from_request(request))
    except (Unprocessable, Conflict) as error:
        messages.error(request, f"Cannot train job #{job.pk}'s snapshot again: {error.detail}")
        back = request.POST.get("back")
        return redirect(back if _is_local(back) else reverse("job-detail", args=[job.pk]))
    messages.success(request, f"Job #{again.pk} is queued: job #{job.pk}'s snapshot and configuration, trained again. "
                              "Its page says whether the metrics match once it has finished.")
    return redirect("job-detail", again.pk)


def _is_local(url: str | None) -> bool:
    from django.utils.http import url_has_allowed_host_and_scheme

    return bool(url) and url_has_allowed_host_and_scheme(url, allowed_hosts=None)
