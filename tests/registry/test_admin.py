"""Django admin: lineage read-only, only description/tags/status editable, aliased versions not deletable."""

from __future__ import annotations

import pytest

from registry_app.models import Alias, AliasEvent, ModelVersion


@pytest.fixture
def aliased(register):
    version = register()
    Alias.point(version.model, "production", version, note="go")
    return version


def test_version_change_page_shows_lineage_read_only(admin_client, aliased):
    response = admin_client.get(f"/admin/registry_app/modelversion/{aliased.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    for editable in ("description", "tags", "status"):
        assert f'name="{editable}"' in html
    for frozen in ("metrics", "labels", "artifacts", "snapshot_hash", "version", "job", "code_version"):
        assert f'name="{frozen}"' not in html
    assert aliased.artifacts[0]["sha256"] in html
    assert aliased.snapshot_hash in html


def test_admin_post_changes_only_the_mutable_fields(admin_client, aliased):
    response = admin_client.post(
        f"/admin/registry_app/modelversion/{aliased.pk}/change/",
        {"description": "edited in admin", "tags": "admin, lobby", "status": "active",
         "metrics": '{"accuracy": 1.0}', "snapshot_hash": "f" * 64, "version": "42"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    stored = ModelVersion.objects.get(pk=aliased.pk)
    assert (stored.description, stored.tags) == ("edited in admin", ["admin", "lobby"])
    assert (stored.metrics, stored.snapshot_hash, stored.version) == (aliased.metrics, aliased.snapshot_hash, 1)


def test_archiving_an_aliased_version_in_admin_is_refused(admin_client, aliased):
    response = admin_client.post(
        f"/admin/registry_app/modelversion/{aliased.pk}/change/", {"description": "", "tags": "", "status": "archived"}
    )
    assert response.status_code == 200
    assert "move the alias before archiving" in response.content.decode()
    assert ModelVersion.objects.get(pk=aliased.pk).status == "active"


def test_aliased_version_cannot_be_deleted_in_admin(admin_client, aliased):
    assert admin_client.get(f"/admin/registry_app/modelversion/{aliased.pk}/delete/").status_code == 403
    response = admin_client.post(
        "/admin/registry_app/modelversion/",
        {"action": "delete_selected", "_selected_action": [aliased.pk], "post": "yes"},
    )
    assert response.status_code in (200, 302)
    assert ModelVersion.objects.filter(pk=aliased.pk).exists()


def test_unaliased_version_can_be_deleted_in_admin(admin_client, register):
    version = register()
    response = admin_client.post(f"/admin/registry_app/modelversion/{version.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not ModelVersion.objects.filter(pk=version.pk).exists()


def test_versions_cannot_be_added_in_admin(admin_client, aliased):
    assert admin_client.get("/admin/registry_app/modelversion/add/").status_code == 403


def test_aliases_and_history_are_read_only_in_admin(admin_client, aliased):
    alias = Alias.objects.get()
    event = AliasEvent.objects.get()
    assert admin_client.get("/admin/registry_app/alias/").status_code == 200
    assert admin_client.get("/admin/registry_app/aliasevent/").status_code == 200
    page = admin_client.get(f"/admin/registry_app/alias/{alias.pk}/change/").content.decode()
    assert 'name="version"' not in page
    assert admin_client.post(f"/admin/registry_app/alias/{alias.pk}/change/", {"version": aliased.pk}).status_code == 403
    assert admin_client.get("/admin/registry_app/alias/add/").status_code == 403
    assert admin_client.get(f"/admin/registry_app/aliasevent/{event.pk}/delete/").status_code == 403


def test_model_admin_edits_description_only(admin_client, aliased):
    model = aliased.model
    page = admin_client.get(f"/admin/registry_app/registeredmodel/{model.pk}/change/").content.decode()
    assert 'name="description"' in page and 'name="name"' not in page
    alias = Alias.objects.get()
    response = admin_client.post(
        f"/admin/registry_app/registeredmodel/{model.pk}/change/",
        {"description": "From admin", "name": "renamed", "aliases-TOTAL_FORMS": "1", "aliases-INITIAL_FORMS": "1",
         "aliases-MIN_NUM_FORMS": "0", "aliases-MAX_NUM_FORMS": "1000", "aliases-0-id": alias.pk, "aliases-0-model": model.pk},
    )
    assert response.status_code == 302
    model.refresh_from_db()
    assert (model.name, model.description) == ("keywords", "From admin")
    assert admin_client.get(f"/admin/registry_app/registeredmodel/{model.pk}/delete/").status_code == 403


def test_staff_without_a_role_cannot_use_the_registry_admin(roleless_client, aliased):
    response = roleless_client.get(f"/admin/registry_app/modelversion/{aliased.pk}/change/")
    assert response.status_code in (302, 403)
