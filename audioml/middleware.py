"""Request ids: every request gets one, it is returned in `X-Request-ID` and appears on every log line."""

from __future__ import annotations

import logging
import re
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
        token = _request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


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
