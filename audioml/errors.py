"""Domain errors that every interface (API, panel, admin, commands) understands.

The API turns each into an RFC 9457 problem-details response in one place (`audioml/api.py`)."""

from __future__ import annotations

import errno


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


class TooManyRequests(DomainError):
    status = 429
    code = "too-many-requests"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int = 5, **extra):
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class ServerBusy(DomainError):
    status = 503
    code = "server-busy"
    title = "Server busy"

    def __init__(self, detail: str, retry_after: int = 5, **extra):
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class InsufficientStorage(DomainError):
    """The server's disk is full: an operator's problem, never the client's (HTTP 507)."""

    status = 507
    code = "insufficient-storage"
    title = "Server storage full"


OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_out_of_space(exc: BaseException | None) -> bool:
    """True for "no space left on device" and "disk quota exceeded", also when wrapped in another error."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, OSError) and exc.errno in OUT_OF_SPACE_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def out_of_space_message() -> str:
    return (
        "The server ran out of disk space; nothing was stored for this request. This is not a problem "
        "with your request: an operator must free space on the media (MEDIA_ROOT) or work (AUDIOML_WORK_DIR) "
        "disk, then the request can be sent again."
    )
