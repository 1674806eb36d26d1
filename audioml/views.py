from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.timezone import localtime
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling

from audioml.audit import Actor
from audioml.forms import AuditFilterForm, LoginForm, StorageCleanupForm, TokenForm
from audioml.models import ApiToken, AuditEvent
from audioml.panel import staff_required
from audioml.roles import (
    CAN_COLLECT_GARBAGE, CAN_VIEW_AUDIT, CAN_VIEW_DATASETS, CAN_VIEW_JOBS, CAN_VIEW_MODELS, NO_ROLE_MESSAGE, needs,
)
from audioml.problems import problem_response


@staff_required
def home(request: HttpRequest) -> HttpResponse:
    """The first section the user may see; a user without a role lands on their API tokens, told why."""
    for perm, section in ((CAN_VIEW_DATASETS, "dataset-list"), (CAN_VIEW_JOBS, "job-list"), (CAN_VIEW_MODELS, "model-list")):
        if request.user.has_perm(perm):
            return redirect(section)
    messages.warning(request, NO_ROLE_MESSAGE)
    return redirect("token-list")


@staff_required
def token_list(request: HttpRequest) -> HttpResponse:
    new_token = None
    if request.method == "POST":
        form = TokenForm(request.POST)
        if form.is_valid():
            token, new_token = ApiToken.issue(request.user, form.cleaned_data["name"], form.cleaned_data["expires_at"],
                                              by=Actor.from_request(request))
            messages.success(request, f"Token “{token.name}” created. Copy it now: it will not be shown again.")
            form = TokenForm()
    else:
        form = TokenForm()
    tokens = ApiToken.objects.filter(user=request.user)
    return render(request, "account/tokens.html", {"form": form, "tokens": tokens, "new_token": new_token})


@staff_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    token.revoke(by=Actor.from_request(request))
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("token-list")


@staff_required
@needs(CAN_VIEW_AUDIT)
def audit_list(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    events = AuditEvent.objects.select_related("actor")
    if form.is_valid():
        events = form.filter(events)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode()}
    template = "account/audit.html#events" if request.htmx else "account/audit.html"
    return render(request, template, context)


@staff_required
@needs(CAN_COLLECT_GARBAGE)
def storage_cleanup(request: HttpRequest) -> HttpResponse:
    """What `manage.py gc --dry-run` found at the last scan (files no row references), a POST that scans again
    (`action=scan`), and a confirmed POST that removes what is still unreferenced (`manage.py gc`), recorded as
    storage.gc. A visit never lists the storage (one request per 1,000 objects on a bucket): the scan and the
    clean-up run on a worker when asked (audioml.sweep.queue_scan and queue_clean_up; never two at once), the page
    polls until it is done, and its result is remembered with its time. No role includes the permission: the files
    are deleted for good."""
    from audioml.sweep import failed_scan, last_clean_up, last_scan, queue_clean_up, queue_scan, scan_in_progress

    form = StorageCleanupForm(request.POST or None)
    if request.method == "POST" and (request.POST.get("action") == "scan" or form.is_valid()):
        by = Actor.from_request(request)
        if request.POST.get("action") == "scan":
            running, queued = queue_scan(by=by)
        else:
            running, queued = queue_clean_up(by=by, shown=form.cleaned_data["shown"])
        if not queued:
            what = "A clean-up" if running["action"] == "clean-up" else "A scan"
            messages.info(request, f"{what} {'is already running' if running['started_at'] else 'is already queued'}"
                                   f" (asked by {running['by']} at {localtime(running['queued_at']):%H:%M:%S}): "
                                   "this page shows its result when it is done.")
        return redirect("storage-cleanup")
    running = scan_in_progress()
    if running is not None and running["stale"]:
        running = None  # given up on: failed_scan() says why
    context = {
        "form": form, "scan": last_scan(), "running": running, "failed": failed_scan(), "cleaned": last_clean_up(),
        "min_age": settings.SWEEP_MIN_AGE_SECONDS, "interval": settings.SWEEP_INTERVAL_MINUTES,
        "where": _media_storage_name(),
    }
    if request.htmx and request.method == "GET":
        response = render(request, "account/storage.html#scan", context)
        return response if running else _stop_polling(response)
    return render(request, "account/storage.html", context, status=400 if request.method == "POST" else 200)


def _stop_polling(response: HttpResponse) -> HttpResponse:
    stopped = HttpResponseStopPolling(response.content)
    stopped["Content-Type"] = response["Content-Type"]
    return stopped


def _media_storage_name() -> str:
    from django.core.files.storage import FileSystemStorage, default_storage

    if isinstance(default_storage, FileSystemStorage):
        return f"the media folder {default_storage.location}"
    return f"the bucket {getattr(default_storage, 'bucket_name', '') or '(unnamed)'}"


class ThrottledLoginView(LoginView):
    """Django's login view with failed-login throttling; a throttled attempt is answered 429 with Retry-After."""

    authentication_form = LoginForm

    def form_invalid(self, form: LoginForm) -> HttpResponse:
        response = super().form_invalid(form)
        refused = getattr(form, "throttled", None)
        if refused is not None:
            response.status_code = 429
            response["Retry-After"] = str(refused.seconds)
        return response


@csrf_exempt  # it changes nothing; a CSRF check would turn a POST's 404 problem into an HTML 403 page
def api_not_found(request: HttpRequest) -> HttpResponse:
    return problem_response(404, f"No API endpoint at {request.path}.", code="not-found")


def permission_denied(request: HttpRequest, exception=None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return problem_response(403, str(exception) or "Forbidden.", code="forbidden")
    return render(request, "403.html", {"reason": str(exception or "")}, status=403)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics, for METRICS_TOKEN, a staff API token or a staff session."""
    from prometheus_client import CONTENT_TYPE_LATEST

    from audioml.metrics import render_metrics

    header = request.headers.get("Authorization", "")
    bearer = header[7:].strip() if header.lower().startswith("bearer ") else ""
    allowed = request.user.is_authenticated and request.user.is_staff
    if bearer and settings.METRICS_TOKEN and hmac.compare_digest(bearer, settings.METRICS_TOKEN):
        allowed = True
    elif bearer:
        token = ApiToken.objects.authenticate(bearer)
        allowed = allowed or (token is not None and token.user.is_staff)
    if not allowed:
        response = HttpResponse("Authentication required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="audioml-metrics"'
        return response
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
