"""Audit events for version changes, shared by the panel, the API and Django admin."""

from __future__ import annotations

from typing import Any

from audioml.audit import diff, record
from registry_app.models import ModelVersion


def version_state(version: ModelVersion) -> dict[str, Any]:
    return {field: getattr(version, field) for field in ModelVersion.MUTABLE_FIELDS}


def record_version_change(version: ModelVersion, before: dict[str, Any], *, request=None, user=None) -> None:
    """One event with every changed field: `version.archive` or `version.unarchive` when the status changed
    (so archiving is easy to filter for), else `version.update`. Nothing is recorded when nothing changed."""
    changes = diff(before, version_state(version))
    if not changes:
        return
    action = "version.update"
    if "status" in changes:
        action = "version.archive" if version.status == ModelVersion.Status.ARCHIVED else "version.unarchive"
    record(action, version, request=request, user=user, changes=changes)
