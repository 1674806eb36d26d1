"""Roles are Django groups holding model permissions; the panel, the API and Django admin all check the same
permissions (`user.has_perm`). Superusers can do everything."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied

VIEWER, TRAINER, APPROVER = "viewer", "trainer", "approver"

_READ = [
    "datasets_app.view_dataset",
    "datasets_app.view_clip",
    "training_app.view_trainingjob",
    "training_app.view_joblog",
    "registry_app.view_registeredmodel",
    "registry_app.view_modelversion",
    "registry_app.view_alias",
    "registry_app.view_aliasevent",
    "audioml.view_auditevent",
]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    # Read everything, listen to clips, download exports and artifacts.
    VIEWER: _READ,
    # Upload, edit, trash and restore clips; create datasets; start and cancel training jobs.
    TRAINER: _READ
    + [
        "datasets_app.add_dataset",
        "datasets_app.change_dataset",
        "datasets_app.add_clip",
        "datasets_app.change_clip",
        "training_app.add_trainingjob",
        "training_app.change_trainingjob",
    ],
    # Move `production` and other aliases; archive versions and edit their description and tags.
    APPROVER: _READ
    + [
        "registry_app.add_alias",
        "registry_app.change_alias",
        "registry_app.delete_alias",
        "registry_app.change_modelversion",
        "registry_app.change_registeredmodel",
    ],
}

# What each action needs; views, API operations and admin use these names so the rules live in one place.
CAN_VIEW = "datasets_app.view_dataset"
CAN_EDIT_DATA = "datasets_app.change_clip"
CAN_UPLOAD = "datasets_app.add_clip"
CAN_CREATE_DATASET = "datasets_app.add_dataset"
CAN_DELETE_DATASET = "datasets_app.delete_dataset"
CAN_TRAIN = "training_app.add_trainingjob"
CAN_CANCEL = "training_app.change_trainingjob"
CAN_MOVE_ALIAS = "registry_app.change_alias"
CAN_CHANGE_VERSION = "registry_app.change_modelversion"
CAN_DELETE_VERSION = "registry_app.delete_modelversion"


def ensure_roles(**kwargs) -> None:
    """Create or refresh the role groups. Runs after every migrate (post_migrate)."""
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if permission is not None:
                wanted.append(permission)
        group.permissions.set(wanted)


def require(user, perm: str, message: str | None = None) -> None:
    """Raise PermissionDenied (403 in the panel and the API) unless the user holds the permission."""
    if not user.has_perm(perm):
        raise PermissionDenied(message or f"Your role does not allow this (needs {perm}).")


def roles_of(user) -> list[str]:
    if user.is_superuser:
        return ["superuser"]
    return sorted(user.groups.filter(name__in=ROLE_PERMISSIONS).values_list("name", flat=True))
