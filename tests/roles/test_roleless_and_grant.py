"""Staff without a role: told why they see nothing, still able to manage tokens and log out. Giving roles with
`manage.py grant_role`."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from audioml.models import AuditEvent
from audioml.roles import roles_of
from tests.core.test_panel_access import PANEL_ROUTES
from tests.factories import UserFactory

FOR_ANY_STAFF = {"/", "/account/tokens/", "/account/tokens/999999/revoke/"}


@pytest.mark.parametrize("url", sorted(set(PANEL_ROUTES) - FOR_ANY_STAFF))
def test_staff_without_a_role_get_403_on_every_data_page(roleless_client, url):
    response = roleless_client.post(url)
    assert response.status_code == 403
    assert "no AudioML role yet" in response.content.decode()
    assert roleless_client.get(url).status_code in (403, 405)  # 405: a POST-only URL


def test_staff_without_a_role_land_on_their_tokens_with_an_explanation(roleless_client):
    response = roleless_client.get("/", follow=True)
    assert response.redirect_chain == [("/account/tokens/", 302)]
    html = response.content.decode()
    assert "Ask an administrator to add you to the viewer, trainer or approver group." in html
    assert roleless_client.post("/logout/").status_code == 302
    assert roleless_client.get("/account/tokens/").status_code == 302  # logged out: back to login


@pytest.mark.parametrize(("client_fixture", "section"), [("viewer_client", "/datasets/"), ("admin_client", "/datasets/")])
def test_home_sends_users_with_a_role_to_their_first_section(db, request, client_fixture, section):
    assert request.getfixturevalue(client_fixture).get("/")["Location"] == section


def test_home_sends_a_registry_only_user_to_the_models(db):
    from django.contrib.auth.models import Permission
    from django.test import Client

    from tests.factories import StaffFactory

    user = StaffFactory(username="registry-reader")
    user.user_permissions.add(Permission.objects.get(codename="view_registeredmodel"))
    client = Client()
    client.force_login(user)
    assert client.get("/")["Location"] == "/models/"


def grant_role(*args) -> str:
    out = io.StringIO()
    call_command("grant_role", *args, stdout=out)
    return out.getvalue()


def test_grant_role_gives_roles_makes_staff_and_is_audited(db):
    user = UserFactory(username="ann")
    output = grant_role("ann", "viewer", "trainer")
    assert "ann is now staff" in output and "ann: trainer, viewer" in output
    user.refresh_from_db()
    assert user.is_staff and roles_of(user) == ["trainer", "viewer"]
    assert user.has_perm("datasets_app.add_clip")
    event = AuditEvent.objects.get(action="user.roles")
    assert event.changes == {"is_staff": [False, True], "roles": [[], ["trainer", "viewer"]],
                             "via": [None, "manage.py grant_role"]}


def test_grant_role_revokes_and_lists(db):
    UserFactory(username="bo", is_staff=True)
    grant_role("bo", "approver", "viewer")
    assert grant_role("bo", "approver", "--revoke").strip() == "bo: viewer"
    assert grant_role("bo").strip() == "bo: viewer"
    assert AuditEvent.objects.filter(action="user.roles").count() == 2
    grant_role("bo", "viewer")  # already held: nothing changes, nothing recorded
    assert AuditEvent.objects.filter(action="user.roles").count() == 2


def test_grant_role_refuses_unknown_users_and_roles(db):
    UserFactory(username="cy")
    with pytest.raises(CommandError, match="Unknown role admin: choose from viewer, trainer, approver"):
        grant_role("cy", "admin")
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        grant_role("nobody", "viewer")
