"""The one NinjaAPI: authentication, error handling as problem details, and the app routers."""

from __future__ import annotations

import json
import logging
from functools import wraps
from importlib.metadata import PackageNotFoundError, version

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection, transaction
from django.http import Http404, HttpRequest
from ninja import NinjaAPI, Router, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.files import UploadedFile
from ninja.parser import Parser
from ninja.security import APIKeyCookie, HttpBearer
from pydantic import BaseModel

from audioml.errors import DomainError, InsufficientStorage, Unprocessable, is_out_of_space, out_of_space_message
from audioml.models import ApiToken
from audioml.problems import PROBLEM_CONTENT_TYPE, problem_response

logger = logging.getLogger("audioml.api")


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <token>` for scripts. Listed before session auth so token POSTs skip CSRF."""

    def authenticate(self, request: HttpRequest, token: str):
        api_token = ApiToken.objects.authenticate(token)
        if api_token is None:
            return None
        user = api_token.user
        if not user.is_staff:
            raise PermissionDenied("This token's user is not staff.")
        request.user = user
        request.api_token = api_token
        return user


class StaffSessionAuth(APIKeyCookie):
    """The panel's session, for the panel's own HTMX calls and the docs page. Checks CSRF on writes."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest):
        if self.param_name not in request.COOKIES:
            # No session, so nothing for CSRF to protect: a request whose token failed gets its 401, not a 403.
            return None
        try:
            return super()._get_key(request)
        except HttpError:
            raise PermissionDenied(
                "CSRF check failed: a browser session must send its CSRF token in the X-CSRFToken header "
                "(scripts should authenticate with a bearer token instead)."
            ) from None

    def authenticate(self, request: HttpRequest, key):
        user = request.user
        if not user.is_authenticated:
            return None
        if not user.is_staff:
            raise PermissionDenied("Only staff users may use the API.")
        return user


class UnreadableBody(Exception):
    """Why a JSON request body cannot be read; ninja wraps it in HttpError(400) and on_http_error answers it."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class JsonParser(Parser):
    """JSON bodies must say so (`Content-Type: application/json` or `…+json`), be UTF-8 and parse."""

    def parse_body(self, request: HttpRequest):
        content_type = request.content_type or ""
        if content_type != "application/json" and not content_type.endswith("+json"):
            raise UnreadableBody(
                415, "unsupported-media-type",
                f"This operation takes a JSON body: send it with Content-Type: application/json "
                f"(this request says {content_type or 'nothing'}).",
            )
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnreadableBody(
                400, "invalid-body", f"The request body is not UTF-8 (byte 0x{request.body[exc.start]:02x} at "
                f"position {exc.start}); JSON must be UTF-8.",
            ) from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise UnreadableBody(400, "invalid-json", f"The request body is not valid JSON: {exc}.") from None


PROBLEM_SCHEMA = {
    "title": "Problem",
    "description": "RFC 9457 problem details; some problems add fields (`field`, `errors`, `files`, `results`, …).",
    "type": "object",
    "required": ["type", "title", "status", "detail", "request_id"],
    "properties": {
        "type": {"type": "string", "description": "urn:audioml:problem:<code>, or about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "request_id": {"type": "string", "description": "Also in the X-Request-ID header and the server's logs"},
    },
}


class AudioMLAPI(NinjaAPI):
    """The schema documents every operation's errors: 4xx and 5xx answers are problem details."""

    def get_openapi_schema(self, *args, **kwargs):
        schema = super().get_openapi_schema(*args, **kwargs)
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        problem = {"content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for operations in schema["paths"].values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                responses.setdefault("4XX", {"description": "The request was refused", **problem})
                responses.setdefault("5XX", {"description": "The server failed", **problem})
        return schema


api = AudioMLAPI(
    title="AudioML API",
    version="1",
    description="Datasets, clips, training jobs, registered models and predictions. "
    "Authenticate with `Authorization: Bearer <token>` (create tokens in the panel under API tokens).",
    auth=[TokenAuth(), StaffSessionAuth()],
    parser=JsonParser(),
    urls_namespace="api",
)


class NulCharacter(Unprocessable):
    code = "nul-character"
    title = "NUL character in text"


def _field_with_nul(value, path: tuple[str, ...]) -> tuple[str, ...] | None:
    """Where a NUL character hides in a parsed input (strings, schemas, lists, dicts, upload names), or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, UploadedFile):
        return path if "\x00" in (value.name or "") else None
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, dict):
        for key, item in value.items():
            found = _field_with_nul(str(key), path) or _field_with_nul(item, (*path, str(key)))
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _field_with_nul(item, (*path, str(index)))
            if found:
                return found
    return None


def refuse_nul_characters(operation):
    """PostgreSQL text cannot hold NUL (0x00) and no name, label or note needs one: refuse such input with a
    422 naming the field, for every operation, instead of failing in the database (or storing it on SQLite)."""

    @wraps(operation)
    def checked(request, *args, **kwargs):
        for name, value in kwargs.items():
            where = _field_with_nul(value, (name,))
            if where is not None:
                raise NulCharacter(
                    f"{'.'.join(where)}: text must not contain NUL (\\0) characters.", field=".".join(where)
                )
        return operation(request, *args, **kwargs)

    return checked


api.add_decorator(refuse_nul_characters)


@api.exception_handler(DomainError)
def on_domain_error(request, exc: DomainError):
    response = problem_response(exc.status, exc.detail, code=exc.code, title=exc.title, **exc.extra)
    if retry_after := getattr(exc, "retry_after", None):
        response["Retry-After"] = str(retry_after)
    return response


@api.exception_handler(ValidationError)
def on_validation_error(request, exc: ValidationError):
    errors = [
        {"loc": [str(part) for part in error.get("loc", [])], "msg": error.get("msg", ""), "type": error.get("type", "")}
        for error in exc.errors
    ]
    summary = "; ".join(f"{'.'.join(e['loc'][1:] or e['loc'])}: {e['msg']}" for e in errors[:5])
    return problem_response(422, f"Invalid request: {summary}", code="validation-error", errors=errors)


@api.exception_handler(DjangoValidationError)
def on_django_validation_error(request, exc: DjangoValidationError):
    if hasattr(exc, "message_dict"):
        errors = {field: messages for field, messages in exc.message_dict.items()}
        detail = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items())
        return problem_response(422, detail, code="validation-error", errors=errors)
    return problem_response(422, " ".join(exc.messages), code="validation-error")


@api.exception_handler(AuthenticationError)
def on_authentication_error(request, exc):
    response = problem_response(
        401, "Authentication required: send a valid, unrevoked token as 'Authorization: Bearer <token>'.",
        code="unauthenticated",
    )
    response["WWW-Authenticate"] = 'Bearer realm="audioml"'
    return response


@api.exception_handler(PermissionDenied)
def on_permission_denied(request, exc):
    return problem_response(403, str(exc) or "You do not have permission to do this.", code="forbidden")


@api.exception_handler(Http404)
def on_not_found(request, exc):
    detail = str(exc) if exc.args else "Not found."
    if "matches the given query" in detail:
        detail = "Not found."
    return problem_response(404, detail, code="not-found")


@api.exception_handler(HttpError)
def on_http_error(request, exc: HttpError):
    if isinstance(exc.__cause__, UnreadableBody):
        cause = exc.__cause__
        return problem_response(cause.status, cause.detail, code=cause.code)
    return problem_response(exc.status_code, str(exc))


@api.exception_handler(RequestDataTooBig)
def on_too_big(request, exc):
    return problem_response(413, "The request body is larger than this server accepts.", code="payload-too-large")


@api.exception_handler(TooManyFilesSent)
def on_too_many_files(request, exc):
    return problem_response(
        413, f"Too many files in one request (at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES}).",
        code="payload-too-large",
    )


@api.exception_handler(Exception)
def on_unexpected(request, exc):
    if is_out_of_space(exc):
        logger.error("Out of disk space on %s %s: %s", request.method, request.path, exc)
        error = InsufficientStorage(out_of_space_message())
        return problem_response(error.status, error.detail, code=error.code, title=error.title)
    logger.exception("Unhandled API error on %s %s", request.method, request.path)
    return problem_response(500, "An unexpected error occurred. Quote the request id when reporting it.")


class HealthOut(Schema):
    status: str
    database: str
    broker: str
    media: str
    versions: dict[str, str]


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        return f"error: {exc.__class__.__name__}"


def _check_broker() -> str:
    try:
        from django_q.brokers import get_broker

        broker = get_broker()
        broker.ping()
        broker.queue_size()
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"error: {exc.__class__.__name__}"


def _check_media() -> str:
    """The media folder is writable, or the bucket answers (one HEAD request; /api/ready writes to it)."""
    from audioml.storage import check_reachable

    return check_reachable()


def _check_storage() -> str:
    """Write, read back and delete a small file through Django's storage API (what clips and artifacts use)."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    try:
        name = default_storage.save(".ready-probe/probe.txt", ContentFile(b"ok"))
        try:
            with default_storage.open(name) as handle:
                if handle.read() != b"ok":
                    return "error: read back different bytes"
        finally:
            default_storage.delete(name)
        return "ok"
    except OSError as exc:
        return f"error: {exc.strerror or exc.__class__.__name__}"
    except Exception as exc:  # noqa: BLE001
        return f"error: {exc.__class__.__name__}"


def _check_cache() -> str:
    """The shared cache table (workers' heartbeats, login throttling) exists and answers."""
    from django.core.cache import cache

    try:
        with transaction.atomic():  # a savepoint: the failed query must not poison the request's connection
            cache.get("audioml:ready-probe")
        return "ok"
    except Exception as exc:  # noqa: BLE001 - a missing table (createcachetable never ran) or no database
        return f"error: {exc.__class__.__name__} (run python manage.py migrate)"


def live_clusters() -> list[dict]:
    """The django-q2 clusters that reported in the last few seconds (their stats expire after 3 s)."""
    from django_q.brokers import get_broker
    from django_q.status import Stat

    return [
        {
            "cluster_id": str(stat.cluster_id),
            "host": stat.host,
            "status": str(stat.status),
            "workers": len(stat.workers or []),
            "uptime_seconds": round(stat.uptime(), 1) if stat.tob else 0.0,
        }
        for stat in Stat.get_all(get_broker())
    ]


system_router = Router(tags=["system"])


@system_router.get("/health", auth=None, response={200: HealthOut, 503: HealthOut}, summary="Health check")
def health(request):
    """Liveness: 503 only when this process cannot serve (its database is unreachable). A full or unwritable
    media folder or an unreachable broker is reported in the body (`degraded`) and fails `/api/ready`, not
    this probe: restarting the web process would not fix either."""
    checks = {"database": _check_database(), "broker": _check_broker(), "media": _check_media()}
    healthy = all(value == "ok" for value in checks.values())
    body = {
        "status": "ok" if healthy else "degraded",
        **checks,
        "versions": {
            "audioml": _package_version("audioml"),
            "django": _package_version("django"),
            "django-q2": _package_version("django-q2"),
            "torch": _package_version("torch"),
            "torchaudio": _package_version("torchaudio"),
        },
    }
    return Status(200 if checks["database"] == "ok" else 503, body)


class ClusterOut(Schema):
    cluster_id: str
    host: str
    status: str
    workers: int
    uptime_seconds: float


class ReadyOut(Schema):
    status: str
    database: str
    broker: str
    cache: str
    storage: str
    workers: str
    clusters: list[ClusterOut]


@system_router.get("/ready", auth=None, response={200: ReadyOut, 503: ReadyOut}, summary="Readiness check")
def ready(request):
    """Ready to serve: database, broker, shared cache and storage work, and at least one worker cluster is alive."""
    database = _check_database()
    broker = _check_broker() if database == "ok" else "error: database unreachable"
    cache = _check_cache() if database == "ok" else "error: database unreachable"
    storage = _check_storage()
    clusters = live_clusters() if cache == "ok" else []
    # A cluster reports itself before its workers have started: ready only once one has a worker.
    alive = [c for c in clusters if c["status"] not in ("Stopped", "Stopping") and c["workers"] > 0]
    workers = "ok" if alive else "error: no worker has reported in the last few seconds (is qcluster running?)"
    checks = {"database": database, "broker": broker, "cache": cache, "storage": storage, "workers": workers}
    healthy = all(value == "ok" for value in checks.values())
    return Status(200 if healthy else 503, {"status": "ok" if healthy else "not ready", **checks, "clusters": clusters})


api.add_router("/", system_router)
api.add_router("/", "audioml.tokens_api.router")
api.add_router("/", "audioml.storage_api.router")
api.add_router("/datasets", "datasets_app.api.router")
api.add_router("/jobs", "training_app.api.router")
api.add_router("/models", "registry_app.api.router")
api.add_router("/review", "registry_app.api.review_router")
