"""RFC 9457 problem details, shared by the API handlers and the middleware."""

from __future__ import annotations

import json
from http import HTTPStatus

from django.http import HttpResponse

from audioml.middleware import current_request_id

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_response(status: int, detail: str, *, code: str | None = None, title: str | None = None, **extra):
    phrase = HTTPStatus(status).phrase
    body = {
        "type": f"urn:audioml:problem:{code}" if code else "about:blank",
        "title": title or phrase,
        "status": status,
        "detail": detail,
        "request_id": current_request_id(),
        **extra,
    }
    return HttpResponse(json.dumps(body, default=str), status=status, content_type=PROBLEM_CONTENT_TYPE)
