"""Artifact clean-up: deleting a version or a model takes its files out of the storage (API and panel, with role
checks), and `manage.py gc` removes (or with --dry-run, lists) the files no row references, never a referenced
or a recent one."""

from __future__ import annotations

import json
import os
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command

from audioml.models import AuditEvent
from registry_app.models import Alias, ModelVersion, RegisteredModel
from tests.factories import ClipFactory, DatasetFactory

TWO_HOURS_AGO = time.time() - 2 * 3600


def stored(version: ModelVersion) -> list[str]:
    return [entry["path"] for entry in version.artifacts]


def all_exist(paths) -> bool:
    return all(default_storage.exists(path) for path in paths)


def none_exist(paths) -> bool:
    return not any(default_storage.exists(path) for path in paths)


def test_deleting_a_version_through_the_api_removes_its_files(register, admin_client, django_capture_on_commit_callbacks):
    first, second = register("tones"), register("tones")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.delete("/api/models/tones/versions/1")
    assert response.status_code == 204
    assert none_exist(stored(first)) and all_exist(stored(second))
    assert not default_storage.exists("models/tones/v1")


def test_deleting_a_version_in_the_panel_removes_its_files(register, admin_client, django_capture_on_commit_callbacks):
    version = register("tones")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/models/tones/v1/delete/")
    assert response.status_code == 302
    assert none_exist(stored(version))
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize("persona", ["trainer_client", "approver_client", "viewer_client"])
def test_only_administrators_delete_versions_and_models(register, persona, request):
    version = register("tones")
    client = request.getfixturevalue(persona)
    assert client.delete("/api/models/tones/versions/1").status_code == 403
    assert client.post("/models/tones/v1/delete/").status_code == 403
    assert client.delete("/api/models/tones").status_code == 403
    assert client.post("/models/tones/delete/", {"confirm_name": "tones"}).status_code == 403
    assert "/models/tones/delete/" not in client.get("/models/tones/").content.decode()
    assert all_exist(stored(version)) and RegisteredModel.objects.filter(name="tones").exists()


def test_deleting_a_model_through_the_api_removes_every_version_and_its_folder(
    register, admin_client, django_capture_on_commit_callbacks, settings
):
    versions = [register("tones"), register("tones"), register("other")]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.delete("/api/models/tones")
    assert response.status_code == 204
    assert none_exist(stored(versions[0]) + stored(versions[1])) and all_exist(stored(versions[2]))
    assert not (Path(settings.MEDIA_ROOT) / "models" / "tones").exists()
    assert list(RegisteredModel.objects.values_list("name", flat=True)) == ["other"]
    event = AuditEvent.objects.get(action="model.delete")
    assert event.object_repr == "tones" and event.changes == {"versions": [[2, 1], None]}


def test_a_model_an_alias_points_into_is_not_deleted(register, admin_client, admin_user):
    version = register("tones")
    Alias.point(version.model, "production", version, by=admin_user)
    response = admin_client.delete("/api/models/tones")
    assert response.status_code == 409
    assert "production" in response.json()["detail"]
    page = admin_client.get("/models/tones/delete/").content.decode()
    assert "cannot be deleted" in page and "confirm_name" not in page
    assert all_exist(stored(version))


def test_deleting_a_model_in_the_panel_asks_for_its_name_then_removes_its_files(
    register, admin_client, django_capture_on_commit_callbacks
):
    version = register("tones")
    assert 'name="confirm_name"' in admin_client.get("/models/tones/delete/").content.decode()
    response = admin_client.post("/models/tones/delete/", {"confirm_name": "wrong"}, follow=True)
    assert "Type the model&#x27;s name (tones)" in response.content.decode() and all_exist(stored(version))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/models/tones/delete/", {"confirm_name": "tones"})
    assert response.status_code == 302 and response["Location"] == "/models/"
    assert none_exist(stored(version)) and not RegisteredModel.objects.exists()


# manage.py gc ---------------------------------------------------------------------------------------------------


def aged(name: str, data: bytes = b"x" * 100, seconds_ago: float = 2 * 3600) -> str:
    """A file written straight into the storage (as a crashed process leaves it), aged on local disk."""
    name = default_storage.save(name, ContentFile(data))
    when = time.time() - seconds_ago
    os.utime(default_storage.path(name), (when, when))
    return name


@pytest.fixture
def storage_with_orphans(register, db):
    dataset = DatasetFactory(name="kept")
    clips = [ClipFactory(dataset=dataset), ClipFactory(dataset=dataset, status="trashed")]
    version = register("tones")
    referenced = [clip.audio.name for clip in clips] + stored(version)
    for name in referenced:
        os.utime(default_storage.path(name), (TWO_HOURS_AGO, TWO_HOURS_AGO))
    orphans = [
        aged(f"clips/{dataset.pk}/ab/{'ab' * 32}.wav"),  # a clip whose row never committed
        aged("clips/999/ef/orphan.wav"),  # of a dataset deleted while its files were being written
        aged("models/tones/v7/model.pt2", b"y" * 1000),  # a registration that crashed before its row
        aged(".incoming/tmpa1b2c3.part"),
    ]
    young = aged(f"clips/{dataset.pk}/12/{'12' * 32}.wav", seconds_ago=5)  # an upload in flight right now
    return {"referenced": referenced, "orphans": orphans, "young": young}


def test_gc_dry_run_reports_unreferenced_files_by_kind_and_removes_nothing(storage_with_orphans):
    out = StringIO()
    call_command("gc", "--dry-run", stdout=out)
    text = out.getvalue()
    for name in storage_with_orphans["orphans"]:
        assert f"would remove {name} (" in text
    assert "Clip audio: 2 files would remove" in text
    assert "Model artifacts: 1 file would remove (1000\xa0bytes)" in text
    assert "Interrupted uploads: 1 file would remove" in text
    assert "1 unreferenced file younger than" in text
    assert "Dry run: nothing was removed." in text
    assert all_exist(storage_with_orphans["orphans"] + storage_with_orphans["referenced"] + [storage_with_orphans["young"]])


def test_gc_removes_only_old_files_no_row_references(storage_with_orphans):
    out = StringIO()
    call_command("gc", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["dry_run"] is False and report["removed"] == 4 and report["kept_young"] == 1
    assert report["kinds"]["models"] == {"files": ["models/tones/v7/model.pt2"], "bytes": 1000}
    assert sorted(report["kinds"]["clips"]["files"]) == sorted(storage_with_orphans["orphans"][:2])
    assert none_exist(storage_with_orphans["orphans"])
    # Every file a row names stays (a trashed clip's too), and so does the recent upload.
    assert all_exist(storage_with_orphans["referenced"]) and default_storage.exists(storage_with_orphans["young"])
    # Nothing left to do: a second run removes nothing.
    again = StringIO()
    call_command("gc", "--json", stdout=again)
    assert json.loads(again.getvalue())["removed"] == 0


def test_gc_min_age_zero_takes_recent_orphans_too_but_never_referenced_files(storage_with_orphans):
    call_command("gc", "--min-age", "0", stdout=StringIO())
    assert not default_storage.exists(storage_with_orphans["young"])
    assert all_exist(storage_with_orphans["referenced"])
