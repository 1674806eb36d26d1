"""`POST /api/storage/gc`: the storage clean-up (`manage.py gc`, the panel's *Storage clean-up* page) for scripts."""

from __future__ import annotations

from django.conf import settings
from ninja import Field, Router, Schema

from audioml.audit import Actor
from audioml.roles import CAN_COLLECT_GARBAGE, require

router = Router(tags=["storage"])


class GcIn(Schema):
    dry_run: bool = Field(False, description="Report what would be removed and remove nothing")


class GcKindOut(Schema):
    files: list[str]
    bytes: int


class GcOut(Schema):
    dry_run: bool
    removed: int = Field(..., description="Files removed (or, in a dry run, that would be)")
    freed_bytes: int
    kept_young: int = Field(..., description="Unreferenced files younger than the minimum age, left alone")
    min_age_seconds: float
    kinds: dict[str, GcKindOut] = Field(..., description="By first folder: clips, models, predictions, .incoming, "
                                                         ".ready-probe")


@router.post("/storage/gc", response=GcOut, summary="Remove stored files that no row references")
def collect_garbage(request, payload: GcIn):
    """What `manage.py gc [--dry-run] --json` prints: the media storage's files that no row references, older than
    SWEEP_MIN_AGE_SECONDS (the only minimum age offered here: younger files may be an upload in flight), by kind.
    Without `dry_run` they are removed and the run is recorded in the audit trail (`storage.gc`). Needs the
    `audioml.collect_garbage` permission, which no role includes (superusers)."""
    from audioml.sweep import collect_garbage as collect

    require(request.user, CAN_COLLECT_GARBAGE)
    report = collect(dry_run=payload.dry_run, by=Actor.from_request(request))
    return {**report.as_gc_dict(), "min_age_seconds": settings.SWEEP_MIN_AGE_SECONDS}
