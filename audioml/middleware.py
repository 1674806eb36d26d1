"""Request ids: every request gets one, it is returned in `X-Request-ID` and appears on every log line."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar

_request_id: ContextVar[str] = ContextVar("request_id", default="-")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def current_request_id() -> str:
    return _request_id.get()


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        _request_id.set(request_id)
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        # Django logs 4xx/5xx responses after the middleware returns: keep the id until the response is closed.
        response._resource_closers.append(lambda: _request_id.set("-"))
        return response


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line (LOG_FORMAT=json), with the request id on every line."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class UploadLimitMiddleware:
    """Refuse a request whose declared body is larger than MAX_UPLOAD_BYTES before reading any of it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.conf import settings

        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.MAX_UPLOAD_BYTES:
            from audioml.problems import problem_response

            limit_mb = settings.MAX_UPLOAD_BYTES / (1024 * 1024)
            return problem_response(
                413,
                f"The request is {length / (1024 * 1024):.1f} MB; this server accepts at most {limit_mb:.0f} MB "
                "per request (MAX_UPLOAD_BYTES). Split the upload into smaller batches.",
                code="payload-too-large",
            )
        return self.get_response(request)


class ApiMethodNotAllowedMiddleware:
    """ninja answers a known /api/ path asked with the wrong method with a bare HTML 405: make it a problem
    (like every other API error), keeping its Allow header."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code == 405 and request.path.startswith("/api/"):
            from audioml.problems import PROBLEM_CONTENT_TYPE, problem_response

            if response.get("Content-Type", "").startswith(PROBLEM_CONTENT_TYPE):
                return response
            allowed = response.get("Allow", "")
            problem = problem_response(
                405, f"{request.method} is not allowed on {request.path}; use {allowed or 'another method'}.",
                code="method-not-allowed",
            )
            problem["Allow"] = allowed
            return problem
        return response


class OutOfSpaceMiddleware:
    """A full disk is the operator's problem, not the client's: 507 with a message saying so, wherever it
    happens in a panel page (the API's own handler does the same for API operations)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        from audioml.errors import is_out_of_space, out_of_space_message

        if not is_out_of_space(exception):
            return None
        logging.getLogger("audioml.storage").error("Out of disk space on %s %s: %s", request.method, request.path, exception)
        if request.path.startswith("/api/"):
            from audioml.problems import problem_response

            return problem_response(507, out_of_space_message(), code="insufficient-storage", title="Server storage full")
        from django.shortcuts import render

        return render(request, "507.html", {"reason": out_of_space_message()}, status=507)
