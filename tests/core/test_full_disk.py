"""A full disk is the operator's problem: 507 problem details saying so, never a 422 with the raw OSError;
liveness keeps answering while readiness reports storage; the cache table comes with `migrate`."""

from __future__ import annotations

import errno
import importlib
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client

from datasets_app.models import Clip
from tests.audio import distinct_wav
from tests.factories import DatasetFactory


class FullDiskStorage(FileSystemStorage):
    """The media storage on a disk with no space left for clips."""

    def _save(self, name, content):
        if name.startswith("clips/"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return super()._save(name, content)


@pytest.fixture
def full_disk(settings):
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": f"{__name__}.FullDiskStorage"}}


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def test_an_upload_onto_a_full_disk_is_507_for_the_operator_and_stores_nothing(api, full_disk, settings):
    DatasetFactory(name="full")
    files = [SimpleUploadedFile(f"clip-{n}.wav", distinct_wav(n), content_type="audio/wav") for n in range(3)]
    response = api.post("/api/datasets/full/clips", {"files": files, "label": "x"})
    assert response.status_code == 507, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:audioml:problem:insufficient-storage"
    assert "disk is full" in problem["detail"] and "operator" in problem["detail"]
    assert "Errno" not in problem["detail"] and "OSError" not in response.content.decode()
    assert [entry["code"] for entry in problem["files"]] == ["storage-full"] * 3
    assert not Clip.objects.exists()
    assert not [path for path in files_under(settings.MEDIA_ROOT) if "clips" in path.parts]


def test_an_out_of_space_error_anywhere_in_the_api_is_507(api, settings, monkeypatch):
    """Django's own upload handler writing its temporary file onto a full disk, for example."""
    from django.core.files.uploadhandler import TemporaryFileUploadHandler

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/tmp/upload")

    monkeypatch.setattr(TemporaryFileUploadHandler, "new_file", no_space)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    DatasetFactory(name="full")
    response = api.post("/api/datasets/full/clips", {"files": [SimpleUploadedFile("a.wav", distinct_wav(1))]})
    assert response.status_code == 507, response.content
    assert response.json()["type"] == "urn:audioml:problem:insufficient-storage"
    assert "/tmp/upload" not in response.json()["detail"]


def test_ready_without_the_cache_table_is_503_not_500(db):
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE audioml_cache")
    response = Client().get("/api/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["cache"].startswith("error")
    assert body["database"] == "ok"


def test_migrate_creates_the_cache_table(db):
    migration = importlib.import_module("audioml.migrations.0003_cache_table")
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE audioml_cache")
    assert "audioml_cache" not in connection.introspection.table_names()
    migration.create_cache_table(None, SimpleNamespace(connection=connection))
    assert "audioml_cache" in connection.introspection.table_names()


def test_a_full_disk_in_a_panel_page_is_a_507_page_for_the_operator(trainer_client, settings, monkeypatch):
    from django.core.files.uploadhandler import TemporaryFileUploadHandler

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TemporaryFileUploadHandler, "new_file", no_space)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    DatasetFactory(name="full")
    response = trainer_client.post("/datasets/full/upload/", {"files": [SimpleUploadedFile("a.wav", distinct_wav(1))]})
    assert response.status_code == 507
    assert "disk is full" in response.content.decode() and "operator" in response.content.decode()
    assert not Clip.objects.exists()
