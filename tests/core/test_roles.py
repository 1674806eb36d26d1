from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied

from audioml import roles
from audioml.roles import APPROVER, CAN_MOVE_ALIAS, CAN_TRAIN, CAN_UPLOAD, TRAINER, VIEWER, require, roles_of
from tests.factories import AdminFactory, StaffFactory


def _user_with(role):
    user = StaffFactory()
    user.groups.add(Group.objects.get(name=role))
    return type(user).objects.get(pk=user.pk)  # fresh object: permission caches are per instance


def test_roles_exist_after_migrate(db):
    assert set(Group.objects.values_list("name", flat=True)) >= {VIEWER, TRAINER, APPROVER}
    assert Group.objects.get(name=VIEWER).permissions.filter(codename="view_clip").exists()


@pytest.mark.parametrize(
    ("role", "perm", "allowed"),
    [
        (VIEWER, "datasets_app.view_clip", True),
        (VIEWER, CAN_UPLOAD, False),
        (VIEWER, CAN_MOVE_ALIAS, False),
        (TRAINER, CAN_UPLOAD, True),
        (TRAINER, CAN_TRAIN, True),
        (TRAINER, CAN_MOVE_ALIAS, False),
        (APPROVER, CAN_MOVE_ALIAS, True),
        (APPROVER, CAN_TRAIN, False),
        (APPROVER, "registry_app.view_modelversion", True),
    ],
)
def test_role_permissions(db, role, perm, allowed):
    assert _user_with(role).has_perm(perm) is allowed


def test_require_raises_for_missing_permission(db):
    with pytest.raises(PermissionDenied, match=r"It needs the trainer role \(permission: training_app.add_trainingjob\)"):
        require(_user_with(VIEWER), CAN_TRAIN)
    with pytest.raises(PermissionDenied, match="Only an administrator can do it"):
        require(_user_with(TRAINER), roles.CAN_DELETE_DATASET)
    require(AdminFactory(), CAN_TRAIN)


def test_roles_of(db):
    assert roles_of(AdminFactory()) == ["superuser"]
    assert roles_of(_user_with(TRAINER)) == [TRAINER]


@pytest.mark.parametrize(
    "perm", [roles.CAN_DELETE_DATASET, roles.CAN_DELETE_VERSION, roles.CAN_PURGE_CLIPS],
)
def test_permanent_deletions_belong_to_no_role(db, perm):
    for role in (VIEWER, TRAINER, APPROVER):
        assert not Group.objects.get(name=role).permissions.filter(codename=perm.split(".")[1]).exists()
    assert AdminFactory().has_perm(perm)


def test_roles_share_the_read_permissions_and_nothing_else_of_each_other(db):
    trainer, approver = _user_with(TRAINER), _user_with(APPROVER)
    for perm in (roles.CAN_VIEW_DATASETS, roles.CAN_VIEW_CLIPS, roles.CAN_VIEW_JOBS, roles.CAN_VIEW_MODELS,
                 roles.CAN_VIEW_VERSIONS, roles.CAN_VIEW_AUDIT):
        assert trainer.has_perm(perm) and approver.has_perm(perm)
    assert not approver.has_perm(roles.CAN_EDIT_CLIPS) and not approver.has_perm(roles.CAN_CANCEL)
    assert not trainer.has_perm(roles.CAN_CHANGE_VERSION) and not trainer.has_perm(roles.CAN_DELETE_ALIAS)


def test_ensure_roles_repairs_a_changed_group(db):
    viewer = Group.objects.get(name=VIEWER)
    viewer.permissions.add(Permission.objects.get(codename="delete_dataset"))
    viewer.permissions.remove(Permission.objects.get(codename="view_clip"))
    roles.ensure_roles()
    codenames = set(viewer.permissions.values_list("codename", flat=True))
    assert "view_clip" in codenames and "delete_dataset" not in codenames


def test_require_tells_a_user_without_any_role_what_to_ask_for(db):
    with pytest.raises(PermissionDenied, match="no AudioML role yet"):
        require(StaffFactory(), roles.CAN_VIEW_DATASETS)


def test_needs_decorator_checks_before_the_view_and_names_the_permission(rf, db):
    calls = []

    @roles.needs(CAN_TRAIN)
    def view(request):
        calls.append(request)
        return "ran"

    request = rf.get("/")
    request.user = _user_with(VIEWER)
    with pytest.raises(PermissionDenied):
        view(request)
    assert calls == [] and view.required_permission == CAN_TRAIN
    request.user = _user_with(TRAINER)
    assert view(request) == "ran"


def test_grant_and_revoke_a_role(db):
    user = StaffFactory()
    roles.grant(user, APPROVER)
    assert roles_of(type(user).objects.get(pk=user.pk)) == [APPROVER]
    roles.revoke(user, APPROVER)
    assert roles_of(user) == []
    with pytest.raises(ValueError, match="Unknown role"):
        roles.grant(user, "owner")
