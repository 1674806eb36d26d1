"""Registry errors. Each is an audioml DomainError, so the API turns it into problem details in one place."""

from __future__ import annotations

from audioml.errors import Conflict, DomainError, NotFound, Unprocessable


class ImmutableVersion(Conflict):
    code = "immutable-version"
    title = "Versions are immutable"


class VersionAliased(Conflict):
    code = "version-aliased"
    title = "Version is in use by an alias"


class ArtifactDamaged(Conflict):
    """A stored artifact is missing or its SHA-256 no longer matches the one recorded at registration."""

    code = "artifact-damaged"
    title = "Artifact damaged"


class NothingToRollBack(Conflict):
    code = "nothing-to-roll-back"
    title = "Nothing to roll back to"


class VersionArchived(Conflict):
    code = "version-archived"
    title = "Version is archived"


class TaskMismatch(Conflict):
    """A registered model has one task; a version trained for another is refused."""

    code = "task-mismatch"
    title = "The model has another task"


class ReferenceNotFound(NotFound):
    """An unknown model, alias or version number."""

    code = "not-found"


class UndecodableAudio(Unprocessable):
    code = "undecodable-audio"
    title = "Audio could not be decoded"


class AudioTooLong(DomainError):
    """One file holds more audio than one prediction may score (PREDICT_MAX_FILE_SECONDS)."""

    status = 413
    code = "audio-too-long"
    title = "Audio too long"


class PredictionTooLarge(DomainError):
    """The files of one request hold more audio in total than PREDICT_MAX_REQUEST_SECONDS."""

    status = 413
    code = "prediction-too-large"
    title = "Too much audio in one request"


# A file's own problem: reported in its place in `results` while the other files are scored.
FILE_ERRORS = (UndecodableAudio, AudioTooLong)
