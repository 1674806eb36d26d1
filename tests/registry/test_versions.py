"""Registration of succeeded jobs as numbered, immutable versions."""

from __future__ import annotations

import errno
import hashlib
import threading
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection, connections

from registry_app.errors import ImmutableVersion, VersionAliased
from registry_app.models import ARTIFACT_FILES, Alias, ModelVersion, RegisteredModel
from tests.factories import StaffFactory, TrainingJobFactory


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_succeeded_job_becomes_version_one_with_checksummed_artifacts(register, trained_artifacts):
    user = StaffFactory(username="trainer")
    version = register("keywords", created_by=user)

    assert version.version == 1
    assert version.model.name == "keywords"
    assert version.model.created_by == user
    assert version.created_by == user
    assert version.labels == ["high", "low"]
    assert version.feature_config["sample_rate"] == 16000
    assert version.feature_config["clip_samples"] == 8000
    assert version.train_config["epochs"] == 6
    assert version.metrics["evaluated_on"] in ("test", "val")
    assert version.snapshot_hash == version.job.snapshot_hash
    assert version.snapshot_size == 10
    assert version.code_version.startswith("1.0+")
    assert [entry["name"] for entry in version.artifacts] == list(ARTIFACT_FILES)
    for entry in version.artifacts:
        source = trained_artifacts / entry["name"]
        assert entry["path"] == f"models/keywords/v1/{entry['name']}"
        assert entry["size"] == source.stat().st_size
        assert entry["sha256"] == sha256_of(source)
        with default_storage.open(entry["path"], "rb") as stored:
            assert hashlib.sha256(stored.read()).hexdigest() == entry["sha256"]


def test_versions_are_numbered_one_after_another_per_model(register):
    numbers = [register("keywords").version for _ in range(3)]
    other = register("speakers")
    assert numbers == [1, 2, 3]
    assert other.version == 1
    assert RegisteredModel.objects.get(name="keywords").last_version == 3


def test_a_deleted_version_number_is_never_given_out_again(register):
    register("keywords")
    second = register("keywords")
    second.delete()
    assert register("keywords").version == 3


def test_failed_registration_leaves_no_version_and_no_files(register, trained_artifacts):
    first = register("keywords")
    # The same job again: the version row violates the one-version-per-job rule after the files were copied.
    with pytest.raises(Exception):
        ModelVersion.objects.register_from_job(first.job, trained_artifacts)
    assert ModelVersion.objects.count() == 1
    assert not default_storage.exists("models/keywords/v2")
    assert all(default_storage.exists(entry["path"]) for entry in first.artifacts)


def test_missing_artifact_fails_registration_before_anything_is_stored(tmp_path, db):
    job = TrainingJobFactory()
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError):
        ModelVersion.objects.register_from_job(job, tmp_path)
    assert ModelVersion.objects.count() == 0
    assert not default_storage.exists("models")


@pytest.mark.django_db(transaction=True)
def test_jobs_finishing_at_the_same_instant_get_distinct_consecutive_numbers(trained_artifacts):
    if connection.vendor != "postgresql":
        pytest.skip("row locks are only meaningful on PostgreSQL (SQLite serialises writers)")
    jobs = [TrainingJobFactory(model_name="racing") for _ in range(6)]
    barrier = threading.Barrier(len(jobs))
    numbers, errors = [], []

    def finish(job):
        try:
            barrier.wait()
            numbers.append(ModelVersion.objects.register_from_job(job, trained_artifacts).version)
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=finish, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(numbers) == [1, 2, 3, 4, 5, 6]
    assert RegisteredModel.objects.filter(name="racing").count() == 1
    stored = sorted(ModelVersion.objects.filter(model__name="racing").values_list("version", flat=True))
    assert stored == [1, 2, 3, 4, 5, 6]
    for version in ModelVersion.objects.filter(model__name="racing"):
        assert version.artifacts[0]["path"] == f"models/racing/v{version.version}/model.pt2"


# Immutability -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("metrics", {"accuracy": 1.0}),
        ("labels", ["a", "b"]),
        ("artifacts", []),
        ("snapshot_hash", "f" * 64),
        ("code_version", "hacked"),
        ("version", 99),
        ("train_config", {}),
    ],
)
def test_saving_a_changed_lineage_field_is_refused(register, field, value):
    version = register()
    original = getattr(version, field)
    setattr(version, field, value)
    with pytest.raises(ImmutableVersion) as error:
        version.save()
    assert field in str(error.value)
    assert getattr(ModelVersion.objects.get(pk=version.pk), field) == original


def test_queryset_update_of_lineage_is_refused(register):
    version = register()
    with pytest.raises(ImmutableVersion):
        ModelVersion.objects.filter(pk=version.pk).update(metrics={})
    with pytest.raises(ImmutableVersion):
        ModelVersion.objects.bulk_update([version], ["labels"])
    assert ModelVersion.objects.get(pk=version.pk).metrics == version.metrics


def test_description_tags_and_status_can_change(register):
    version = register()
    version.description = "Shipped to the kiosk"
    version.tags = ["kiosk", "q4"]
    version.status = ModelVersion.Status.ARCHIVED
    version.save()
    ModelVersion.objects.filter(pk=version.pk).update(description="Again")
    stored = ModelVersion.objects.get(pk=version.pk)
    assert (stored.description, stored.tags, stored.status) == ("Again", ["kiosk", "q4"], "archived")


def test_deleting_an_aliased_version_is_refused(register):
    version = register()
    Alias.point(version.model, "production", version)
    with pytest.raises(VersionAliased) as error:
        version.delete()
    assert "production" in str(error.value)
    with pytest.raises(VersionAliased):
        ModelVersion.objects.filter(pk=version.pk).delete()
    assert ModelVersion.objects.filter(pk=version.pk).exists()
    assert default_storage.exists(version.artifacts[0]["path"])


def test_deleting_a_version_removes_its_files(register, django_capture_on_commit_callbacks):
    version = register()
    paths = [entry["path"] for entry in version.artifacts]
    with django_capture_on_commit_callbacks(execute=True):
        version.delete()
    assert not any(default_storage.exists(path) for path in paths)


class RefusingStorage(FileSystemStorage):
    """The media storage failing part-way through a version's files (the third one), as a full disk does."""

    def _save(self, name, content):
        if name.endswith("/model.onnx"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return super()._save(name, content)


def test_a_failed_first_registration_leaves_no_model_and_no_empty_model_folder(trained_artifacts, settings, db):
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": f"{__name__}.RefusingStorage"}}
    with pytest.raises(OSError):
        ModelVersion.objects.register_from_job(TrainingJobFactory(model_name="fresh"), trained_artifacts)
    assert not RegisteredModel.objects.filter(name="fresh").exists()
    assert not (Path(settings.MEDIA_ROOT) / "models" / "fresh").exists()


def test_files_a_crashed_registration_left_are_replaced_not_renamed_around(register, trained_artifacts):
    register("keywords")
    # A worker killed while copying version 2's files: a partial model and no row.
    default_storage.save("models/keywords/v2/model.pt2", ContentFile(b"half a model"))
    second = register("keywords")
    assert second.version == 2
    assert second.artifact("model.pt2")["path"] == "models/keywords/v2/model.pt2"
    assert sorted(default_storage.listdir("models/keywords/v2")[1]) == sorted(ARTIFACT_FILES)
    second.verify_artifact("model.pt2")


def test_only_a_succeeded_job_can_be_registered(trained_artifacts, db):
    running = TrainingJobFactory(status="running", phase="exporting")
    with pytest.raises(ValueError, match="has not succeeded"):
        ModelVersion.objects.register_from_job(running, trained_artifacts)
    assert not ModelVersion.objects.exists() and not RegisteredModel.objects.exists()
