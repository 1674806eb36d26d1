from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied

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
    with pytest.raises(PermissionDenied, match="needs training_app.add_trainingjob"):
        require(_user_with(VIEWER), CAN_TRAIN)
    require(AdminFactory(), CAN_TRAIN)


def test_roles_of(db):
    assert roles_of(AdminFactory()) == ["superuser"]
    assert roles_of(_user_with(TRAINER)) == [TRAINER]
