"""Roles are Django groups holding model permissions; the panel, the API and Django admin all check the same
permissions (`user.has_perm`). Superusers can do everything.

- viewer: read everything, listen to clips, download exports and artifacts, try models (predict).
- trainer: viewer + create and edit datasets, upload, edit, trash and restore clips, start, cancel and re-run jobs.
- approver: viewer + move aliases (promote, roll back, delete, split and shadow traffic), archive versions, edit
  version and model notes and a model's prediction log settings.
- trainers and approvers flag logged predictions wrong; trainers accept flagged ones into a dataset (a new clip).

Permanent deletions (a dataset, a model version, emptying a dataset's trash, the storage clean-up) belong to no
role: only superusers, or a user an administrator gives the `delete_*` (or `audioml.collect_garbage`) permission
to explicitly in Django admin.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied

VIEWER, TRAINER, APPROVER = "viewer", "trainer", "approver"
ROLES = (VIEWER, TRAINER, APPROVER)

# What each action needs. Views, API operations, admin and templates (as `perms.<app>.<codename>`) use these,
# so the rules live in one place.
CAN_VIEW_DATASETS = "datasets_app.view_dataset"
CAN_VIEW_CLIPS = "datasets_app.view_clip"  # clip pages, listening, audio and export downloads
CAN_CREATE_DATASET = "datasets_app.add_dataset"
CAN_EDIT_DATASET = "datasets_app.change_dataset"
CAN_DELETE_DATASET = "datasets_app.delete_dataset"
CAN_UPLOAD = "datasets_app.add_clip"
CAN_EDIT_CLIPS = "datasets_app.change_clip"  # edit annotations, trash, restore
CAN_PURGE_CLIPS = "datasets_app.delete_clip"  # empty the trash: the audio is gone for good
CAN_VIEW_JOBS = "training_app.view_trainingjob"
CAN_TRAIN = "training_app.add_trainingjob"  # start and re-run jobs
CAN_CANCEL = "training_app.change_trainingjob"
CAN_VIEW_MODELS = "registry_app.view_registeredmodel"
CAN_VIEW_VERSIONS = "registry_app.view_modelversion"  # version pages, artifact downloads, predictions
CAN_CHANGE_MODEL = "registry_app.change_registeredmodel"  # the model's description
CAN_CHANGE_VERSION = "registry_app.change_modelversion"  # description, tags, archive / unarchive
CAN_DELETE_VERSION = "registry_app.delete_modelversion"
CAN_DELETE_MODEL = "registry_app.delete_registeredmodel"  # the model, its versions and their files
CAN_MOVE_ALIAS = "registry_app.change_alias"  # promote (set or create) and roll back
CAN_DELETE_ALIAS = "registry_app.delete_alias"
CAN_VIEW_PREDICTIONS = "registry_app.view_predictionlog"  # the prediction log, its audio, live comparisons
CAN_FLAG_PREDICTION = "registry_app.change_predictionlog"  # flag a logged answer wrong (trainers, approvers)
CAN_REVIEW_FEEDBACK = CAN_UPLOAD  # accept a flagged prediction into a dataset (it adds a clip) or dismiss it
CAN_VIEW_AUDIT = "audioml.view_auditevent"
CAN_COLLECT_GARBAGE = "audioml.collect_garbage"  # the Storage clean-up page: files no row references, gone for good

_READ = [
    CAN_VIEW_DATASETS,
    CAN_VIEW_CLIPS,
    CAN_VIEW_JOBS,
    "training_app.view_joblog",
    CAN_VIEW_MODELS,
    CAN_VIEW_VERSIONS,
    "registry_app.view_alias",
    "registry_app.view_aliasevent",
    CAN_VIEW_PREDICTIONS,
    CAN_VIEW_AUDIT,
]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    VIEWER: _READ,
    TRAINER: _READ + [CAN_CREATE_DATASET, CAN_EDIT_DATASET, CAN_UPLOAD, CAN_EDIT_CLIPS, CAN_TRAIN, CAN_CANCEL,
                      CAN_FLAG_PREDICTION],
    APPROVER: _READ + ["registry_app.add_alias", CAN_MOVE_ALIAS, CAN_DELETE_ALIAS, CAN_CHANGE_VERSION, CAN_CHANGE_MODEL,
                       CAN_FLAG_PREDICTION],
}

NO_ROLE_MESSAGE = (
    "Your account has no AudioML role yet. Ask an administrator to add you to the viewer, trainer or approver group."
)


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
    if user.has_perm(perm):
        return
    if message is None:
        if user.is_authenticated and not user.get_all_permissions():
            message = NO_ROLE_MESSAGE
        else:
            holders = [role for role, perms in ROLE_PERMISSIONS.items() if perm in perms]
            who = f"It needs the {' or '.join(holders)} role" if holders else "Only an administrator can do it"
            message = f"Your role does not allow this. {who} (permission: {perm})."
    raise PermissionDenied(message)


def needs(perm: str):
    """Decorator for panel views, below `staff_required`: `require(request.user, perm)` before the view runs.
    (API operations call `require` as their first statement instead: a wrapper would hide their signature's
    annotations from django-ninja.) The permission is kept on the view as `required_permission`, so a test checks
    that every panel view declares one."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            require(request.user, perm)
            return view(request, *args, **kwargs)

        wrapper.required_permission = perm
        return wrapper

    return decorator


def roles_of(user) -> list[str]:
    if user.is_superuser:
        return ["superuser"]
    return sorted(user.groups.filter(name__in=ROLE_PERMISSIONS).values_list("name", flat=True))


def grant(user, role: str) -> None:
    """Add the user to a role's group (creating the groups first if migrate has not yet)."""
    if role not in ROLE_PERMISSIONS:
        raise ValueError(f"Unknown role {role!r}: choose one of {', '.join(ROLES)}.")
    if not Group.objects.filter(name=role).exists():
        ensure_roles()
    user.groups.add(Group.objects.get(name=role))


def revoke(user, role: str) -> None:
    if role not in ROLE_PERMISSIONS:
        raise ValueError(f"Unknown role {role!r}: choose one of {', '.join(ROLES)}.")
    user.groups.remove(*Group.objects.filter(name=role))


def change_roles(user, roles: list[str], *, remove: bool = False, by=None) -> dict[str, list]:
    """Give the user these roles (making them staff, as the panel and the API are for staff), or take them
    away; returns {field: [before, after]} and records it as `user.roles`."""
    from django.db import transaction

    from audioml.audit import record

    with transaction.atomic():
        before = _role_names(user)
        changes: dict[str, list] = {}
        if not remove and not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
            changes["is_staff"] = [False, True]
        for role in roles:
            (revoke if remove else grant)(user, role)
        after = _role_names(user)
        if after != before:
            changes["roles"] = [before, after]
        if changes and by is not None:
            record("user.roles", user, by=by, changes=changes)
    return changes


def _role_names(user) -> list[str]:
    return sorted(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
