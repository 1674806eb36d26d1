"""The /api/models JSON API apart from predictions: models, versions, aliases, history, permissions."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage
from django.test import Client

from audioml.models import AuditEvent
from registry_app.models import Alias, ModelVersion


def test_list_models_shows_latest_version_aliases_and_headline_metric(api, register):
    v1 = register("keywords")
    register("keywords")
    register("speakers")
    Alias.point(v1.model, "production", v1)
    response = api.get("/api/models")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    keywords = body["items"][0]
    assert keywords["name"] == "keywords"
    assert keywords["latest_version"] == 2
    assert keywords["version_count"] == 2
    assert keywords["aliases"] == {"production": 1}
    assert keywords["headline_metric"]["name"] in ("test accuracy", "val accuracy")
    assert 0.0 <= keywords["headline_metric"]["value"] <= 1.0


def test_get_and_update_a_models_description(api, register):
    register()
    response = api.patch("/api/models/keywords", {"description": "# Wake words\nFor the kiosk."}, content_type="application/json")
    assert response.status_code == 200
    assert api.get("/api/models/keywords").json()["description"] == "# Wake words\nFor the kiosk."
    assert AuditEvent.objects.filter(action="model.update").count() == 1


def test_model_update_refuses_other_fields(api, register):
    register()
    response = api.patch("/api/models/keywords", {"description": "x", "name": "renamed"}, content_type="application/json")
    assert response.status_code == 422
    assert api.get("/api/models/keywords").status_code == 200


def test_list_and_get_versions_with_lineage_and_download_links(api, register):
    register()
    register()
    listing = api.get("/api/models/keywords/versions").json()
    assert [item["version"] for item in listing["items"]] == [2, 1]
    version = api.get("/api/models/keywords/versions/v1").json()
    assert version["version"] == 1
    assert version["labels"] == ["high", "low"]
    assert version["dataset"].startswith("dataset-")
    assert version["snapshot_size"] == 10
    assert len(version["snapshot_hash"]) == 64
    assert version["code_version"].startswith("1.0+")
    assert {a["name"] for a in version["artifacts"]} == {"model.pt2", "model.onnx", "weights.pt", "config.json", "metrics.json", "snapshot.json"}
    download = next(a for a in version["artifacts"] if a["name"] == "model.onnx")["download_url"]
    assert download == "/api/models/keywords/versions/1/artifacts/model.onnx"
    assert api.get(download).status_code == 200


def test_update_version_changes_only_description_tags_and_status(api, register):
    register()
    response = api.patch(
        "/api/models/keywords/versions/1",
        {"description": "Tried on the hallway mic", "tags": ["hallway", "hallway", " beta "], "status": "archived"},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["description"], body["tags"], body["status"]) == ("Tried on the hallway mic", ["hallway", "beta"], "archived")
    event = AuditEvent.objects.get(action="version.archive")
    assert event.changes["status"] == ["active", "archived"]


@pytest.mark.parametrize("field, value", [("metrics", {"accuracy": 1}), ("labels", ["x"]), ("artifacts", []), ("version", 5)])
def test_update_version_refuses_lineage_fields_with_409(api, register, field, value):
    version = register()
    response = api.patch("/api/models/keywords/versions/1", {field: value, "description": "sneaky"}, content_type="application/json")
    assert response.status_code == 409
    assert response.json()["type"] == "urn:audioml:problem:immutable-version"
    assert field in response.json()["detail"]
    stored = ModelVersion.objects.get(pk=version.pk)
    assert stored.description == ""
    assert getattr(stored, field) == getattr(version, field)


def test_update_version_rejects_bad_values(api, register):
    register()
    assert api.patch("/api/models/keywords/versions/1", {"status": "deleted"}, content_type="application/json").status_code == 422
    response = api.patch("/api/models/keywords/versions/1", {"tags": ["x" * 80]}, content_type="application/json")
    assert response.status_code == 422
    assert "50 characters" in response.json()["detail"]


def test_archiving_an_aliased_version_is_409(api, register):
    version = register()
    Alias.point(version.model, "production", version)
    response = api.patch("/api/models/keywords/versions/1", {"status": "archived"}, content_type="application/json")
    assert response.status_code == 409
    assert "production" in response.json()["detail"]


def test_delete_version_removes_it_and_its_files(api, register, django_capture_on_commit_callbacks):
    register()
    version = register()
    paths = [entry["path"] for entry in version.artifacts]
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete("/api/models/keywords/versions/2")
    assert response.status_code == 204
    assert not ModelVersion.objects.filter(pk=version.pk).exists()
    assert not any(default_storage.exists(path) for path in paths)
    assert AuditEvent.objects.filter(action="version.delete", object_repr="keywords v2").exists()


def test_delete_aliased_version_is_409(api, register):
    version = register()
    Alias.point(version.model, "staging", version)
    response = api.delete("/api/models/keywords/versions/1")
    assert response.status_code == 409
    problem = response.json()
    assert problem["type"] == "urn:audioml:problem:version-aliased"
    assert problem["aliases"] == ["staging"]
    assert ModelVersion.objects.filter(pk=version.pk).exists()


def test_set_rollback_and_delete_an_alias_with_history(api, register, admin_user):
    for _ in range(3):
        register()
    put = lambda version, note="": api.put(  # noqa: E731
        "/api/models/keywords/aliases/production", {"version": version, "note": note}, content_type="application/json"
    )
    assert put(1, "first").json() == {**put(1).json(), "version": 1}
    assert put("v3", "new model").json()["rollback_to"] == 1
    listing = api.get("/api/models/keywords/aliases").json()
    assert [(a["name"], a["version"]) for a in listing] == [("production", 3)]

    rolled = api.post("/api/models/keywords/aliases/production/rollback", {"note": "too many false accepts"}, content_type="application/json")
    assert rolled.status_code == 200
    assert (rolled.json()["version"], rolled.json()["rollback_to"]) == (1, None)
    again = api.post("/api/models/keywords/aliases/production/rollback", {}, content_type="application/json")
    assert again.status_code == 409
    assert again.json()["type"] == "urn:audioml:problem:nothing-to-roll-back"

    assert api.delete("/api/models/keywords/aliases/production?note=retired").status_code == 204
    history = api.get("/api/models/keywords/aliases/production/history").json()["items"]
    assert [(h["action"], h["from_version"], h["to_version"], h["note"]) for h in history] == [
        ("delete", 1, None, "retired"),
        ("rollback", 3, 1, "too many false accepts"),
        ("set", 1, 3, "new model"),
        ("set", None, 1, "first"),
    ]
    assert all(h["moved_by"] == admin_user.username for h in history)
    assert list(AuditEvent.objects.filter(action__startswith="alias.").values_list("action", flat=True).order_by("id")) == [
        "alias.set", "alias.set", "alias.rollback", "alias.delete"
    ]


def test_alias_name_that_looks_like_a_version_is_422(api, register):
    register()
    response = api.put("/api/models/keywords/aliases/v2", {"version": 1}, content_type="application/json")
    assert response.status_code == 422
    assert "version number" in response.json()["detail"]


@pytest.mark.parametrize(
    "method, url",
    [
        ("get", "/api/models/ghost"),
        ("get", "/api/models/ghost/versions"),
        ("get", "/api/models/keywords/versions/9"),
        ("get", "/api/models/keywords/versions/latest"),
        ("delete", "/api/models/keywords/versions/9"),
        ("get", "/api/models/keywords/aliases/ghost/history"),
        ("post", "/api/models/keywords/aliases/ghost/rollback"),
        ("delete", "/api/models/keywords/aliases/ghost"),
    ],
)
def test_unknown_things_are_404_problem_details(api, register, method, url):
    register()
    response = getattr(api, method)(url, content_type="application/json") if method == "post" else getattr(api, method)(url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


def test_set_alias_to_unknown_version_is_404(api, register):
    register()
    response = api.put("/api/models/keywords/aliases/production", {"version": 7}, content_type="application/json")
    assert response.status_code == 404
    assert not Alias.objects.exists()


def test_api_needs_a_staff_identity(register, outsider_client, staff_client, staff_user):
    register()
    assert Client().get("/api/models").status_code == 401
    assert outsider_client.get("/api/models").status_code == 403
    assert staff_client.get("/api/models").status_code == 200
    # Session writes need the CSRF token like any form.
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(staff_user)
    response = csrf_client.put("/api/models/keywords/aliases/production", {"version": 1}, content_type="application/json")
    assert response.status_code == 403
    assert not Alias.objects.exists()
