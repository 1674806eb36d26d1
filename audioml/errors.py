"""Domain errors that every interface (API, panel, admin, commands) understands.

The API turns each into an RFC 9457 problem-details response in one place (`audioml/api.py`)."""

from __future__ import annotations


class DomainError(Exception):
    status = 400
    code = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, **extra):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class Conflict(DomainError):
    status = 409
    code = "conflict"
    title = "Conflict"


class DuplicateName(Conflict):
    code = "duplicate-name"
    title = "Name already taken"


class NotFound(DomainError):
    status = 404
    code = "not-found"
    title = "Not found"


class Unprocessable(DomainError):
    status = 422
    code = "unprocessable"
    title = "Unprocessable content"
