"""Every clip, export and artifact in an S3 bucket (AWS_STORAGE_BUCKET_NAME), against a real S3 protocol endpoint:
the session's moto_server on loopback (the `s3_storage` fixture). Nothing may land in MEDIA_ROOT."""

from __future__ import annotations

import hashlib
import io
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audioml.storage import size_and_checksum
from audioml.sweep import sweep
from datasets_app.models import Clip, Dataset
from registry_app import inference
from tests.audio import distinct_wav, zip_bytes
from tests.factories import ClipFactory, DatasetFactory
from tests.registry.conftest import wav_upload
from tests.training.conftest import add_clips
from training_app import tasks
from training_app.models import JobLog

pytestmark = pytest.mark.django_db


def media_files(settings) -> list[Path]:
    return [path for path in Path(settings.MEDIA_ROOT).rglob("*") if path.is_file()]


def fetch(url: str, headers: dict | None = None):
    """GET a URL as a browser would (the presigned URLs point at the bucket, not at Django)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.fixture
def register(s3_storage, trained_artifacts, db):  # noqa: F811
    """The registry's register() with the artifacts copied into the bucket."""
    from registry_app.models import ModelVersion
    from tests.factories import TrainingJobFactory

    def _register(model_name: str = "keywords"):
        return ModelVersion.objects.register_from_job(TrainingJobFactory(model_name=model_name), trained_artifacts)

    return _register


def test_uploaded_clips_are_objects_in_the_bucket_and_nothing_is_on_disk(api, s3_storage, settings):
    api.post("/api/datasets", {"name": "words"}, content_type="application/json")
    files = [SimpleUploadedFile(f"{n}.wav", distinct_wav(n), content_type="audio/wav") for n in (1, 2)]
    report = api.post("/api/datasets/words/clips", {"files": files, "label": "yes"}).json()
    assert [f["status"] for f in report["files"]] == ["accepted", "accepted"]
    clips = list(Clip.objects.order_by("pk"))
    assert s3_storage.keys("clips/") == {clip.audio.name for clip in clips}
    for clip in clips:
        assert clip.audio.name.startswith(f"clips/{clip.dataset_id}/")
        assert s3_storage.read(clip.audio.name)[:4] == b"RIFF"
    assert media_files(settings) == []


def test_a_zip_import_stores_its_clips_in_the_bucket(api, s3_storage, settings):
    api.post("/api/datasets", {"name": "imported"}, content_type="application/json")
    archive = zip_bytes({"yes/a.wav": distinct_wav(3), "no/b.wav": distinct_wav(4)})
    report = api.post("/api/datasets/imported/import", {"file": SimpleUploadedFile("set.zip", archive)}).json()
    assert report["accepted"] == 2, report
    assert s3_storage.keys("clips/") == set(Clip.objects.values_list("audio", flat=True))
    assert sorted(Clip.objects.values_list("label", flat=True)) == ["no", "yes"]
    assert media_files(settings) == []


def test_an_upload_that_fails_after_writing_leaves_no_object(api, s3_storage, monkeypatch):
    """Files are written before their rows; when the rows cannot be written, the objects go too."""
    api.post("/api/datasets", {"name": "broken"}, content_type="application/json")

    def refuse(*args, **kwargs):
        raise RuntimeError("the database refused the rows")

    monkeypatch.setattr(Clip.objects, "bulk_create", refuse)
    monkeypatch.setattr(Clip, "save", refuse)
    files = [SimpleUploadedFile(f"{n}.wav", distinct_wav(n), content_type="audio/wav") for n in (5, 6)]
    response = api.post("/api/datasets/broken/clips", {"files": files, "label": "yes"})
    assert response.status_code == 422
    assert [f["status"] for f in response.json()["files"]] == ["rejected", "rejected"]
    assert Clip.objects.count() == 0
    assert s3_storage.keys("clips/") == set()


def test_the_sweeper_lists_the_bucket_and_removes_only_objects_without_rows(s3_storage):
    dataset = DatasetFactory(name="kept")
    kept = ClipFactory(dataset=dataset)
    bucket = s3_storage.client()
    orphans = {f"clips/{dataset.pk}/ab/{'ab' * 32}.wav", "models/gone/v1/model.pt2", ".ready-probe/probe.txt"}
    for key in orphans:
        bucket.put_object(Bucket=s3_storage.name, Key=key, Body=b"left by a killed process")
    assert sweep(min_age=3600).removed == []  # everything is younger than an hour: possibly in flight
    report = sweep(min_age=0)
    assert sorted(report.removed) == sorted(f"media:{key}" for key in orphans)
    assert s3_storage.keys() == {kept.audio.name}


def test_playback_redirects_to_a_short_lived_url_that_serves_byte_ranges(staff_client, s3_storage, settings):
    clip = ClipFactory(dataset=DatasetFactory(name="played"))
    stored = s3_storage.read(clip.audio.name)
    response = staff_client.get(f"/datasets/played/clips/{clip.pk}/audio/")
    assert response.status_code == 302
    url = response["Location"]
    assert url.startswith(s3_storage.endpoint) and "X-Amz-Signature=" in url
    assert f"X-Amz-Expires={settings.STORAGE_URL_EXPIRE_SECONDS}" in url
    status, headers, body = fetch(url, {"Range": "bytes=100-199"})
    assert status == 206
    assert body == stored[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(stored)}"
    assert headers["Content-Type"] == "audio/wav"
    download = staff_client.get(f"/api/datasets/played/clips/{clip.pk}/audio?download=true")
    status, headers, body = fetch(download["Location"])
    assert status == 200 and body == stored
    assert headers["Content-Disposition"] == f'attachment; filename="played-{clip.pk}.wav"'


def test_an_export_reads_the_clips_from_the_bucket(api, s3_storage):
    dataset = DatasetFactory(name="exported")
    clips = [ClipFactory(dataset=dataset, label="yes"), ClipFactory(dataset=dataset, label="no")]
    response = api.get("/api/datasets/exported/export")
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    wavs = {name: archive.read(name) for name in archive.namelist() if name.endswith(".wav")}
    assert sorted(wavs.values()) == sorted(s3_storage.read(clip.audio.name) for clip in clips)


def test_registration_copies_artifacts_into_the_bucket_with_their_sha256(register, s3_storage, settings):
    version = register()
    assert s3_storage.keys("models/") == {entry["path"] for entry in version.artifacts}
    for entry in version.artifacts:
        data = s3_storage.read(entry["path"])
        assert len(data) == entry["size"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        # The bucket checked the upload against its SHA-256 and reports it: registration needs no read-back.
        assert size_and_checksum(entry["path"]) == (entry["size"], entry["sha256"])
    assert media_files(settings) == []


def test_an_artifact_download_is_checked_then_redirected_to_the_bucket(api, register, s3_storage):
    version = register()
    entry = version.artifact("model.onnx")
    response = api.get("/api/models/keywords/versions/1/artifacts/model.onnx")
    assert response.status_code == 302
    assert response["X-Content-SHA256"] == entry["sha256"]
    status, headers, body = fetch(response["Location"])
    assert status == 200 and hashlib.sha256(body).hexdigest() == entry["sha256"]
    assert headers["Content-Disposition"] == 'attachment; filename="keywords-v1-model.onnx"'
    # The object changed behind the registry's back: refused, not redirected.
    s3_storage.client().put_object(Bucket=s3_storage.name, Key=entry["path"], Body=b"tampered")
    assert api.get("/api/models/keywords/versions/1/artifacts/model.onnx").status_code == 409


def test_predictions_load_the_model_from_the_bucket_once(api, register, s3_storage):
    register()
    loads, hits = inference.cache.loads, inference.cache.hits  # the process-wide counters of earlier tests
    for _ in range(2):
        response = api.post("/api/models/keywords/predict", {"files": [wav_upload("beep.wav", 2400.0)]})
        assert response.status_code == 200, response.content
        assert response.json()["results"][0]["label"] == "high"
    assert (inference.cache.loads - loads, inference.cache.hits - hits) == (1, 1)


def test_health_and_readiness_check_the_bucket(client, s3_storage, settings):
    assert client.get("/api/health").json()["media"] == "ok"
    assert client.get("/api/ready").json()["storage"] == "ok"
    assert s3_storage.keys(".ready-probe/") == set()  # the readiness probe cleans up after itself
    from audioml.settings import s3_storage_options

    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": s3_storage_options("no-such-bucket")},
    }
    health = client.get("/api/health")
    assert health.status_code == 200  # liveness: restarting the web process would not fix the bucket
    assert health.json()["status"] == "degraded"
    assert health.json()["media"].startswith("error:")
    ready = client.get("/api/ready")
    assert ready.status_code == 503 and ready.json()["storage"].startswith("error:")


def test_a_worker_fetches_clips_once_into_its_own_work_dir(s3_storage, settings, submit):
    """A worker copies a snapshot's clips into its AUDIOML_WORK_DIR's clip cache; a second job on the same clips
    downloads nothing; a clip whose object is gone fails the job clearly (training itself on S3: the journey)."""
    dataset = DatasetFactory(name="tones")
    add_clips(dataset, "low", 5, 300.0)
    add_clips(dataset, "high", 5, 1500.0)
    first, second = (tasks.JobRun(submit(dataset, name)) for name in ("first", "second"))
    records = first.snapshot_records()
    assert second.snapshot_records() == records
    cache = settings.WORK_DIR / "clip-cache"
    assert {Path(record.path) for record in records} == set(cache.rglob("*.wav"))
    assert {Path(record.path).relative_to(cache).as_posix() for record in records} == set(
        Clip.objects.values_list("audio", flat=True)
    )
    for record in records:
        clip = Clip.objects.get(pk=record.id)
        assert Path(record.path).read_bytes() == s3_storage.read(clip.audio.name)
    logs = [JobLog.objects.get(job=run.job, message__startswith="Clips: ").message for run in (first, second)]
    assert logs[0].startswith("Clips: 0 already in this machine's clip cache, 10 fetched from the object storage")
    assert logs[1].startswith("Clips: 10 already in this machine's clip cache, 0 fetched from the object storage")
    assert media_files(settings) == []

    gone = Clip.objects.get(pk=records[0].id)
    s3_storage.client().delete_object(Bucket=s3_storage.name, Key=gone.audio.name)
    third = tasks.JobRun(submit(dataset, "third"))
    # Deleted for good: the copy in this machine's cache must not keep it alive.
    with pytest.raises(tasks.SnapshotFilesMissing, match=rf"1 of the 10 clips .* clip {gone.pk} \("):
        third.snapshot_records()
    assert not (cache / gone.audio.name).exists()


@pytest.fixture
def submit(admin_user):
    from tests.training.conftest import TINY
    from training_app.models import TrainingJob

    def submit(dataset, model_name):
        return TrainingJob.objects.create_job(dataset, model_name, "quick", TINY, admin_user)

    return submit
def test_a_dataset_removed_takes_its_objects_with_it(api, s3_storage, django_capture_on_commit_callbacks):
    dataset = DatasetFactory(name="doomed")
    ClipFactory(dataset=dataset)
    assert s3_storage.keys("clips/") != set()
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete("/api/datasets/doomed").status_code == 204
    assert not Dataset.objects.filter(name="doomed").exists()
    assert s3_storage.keys("clips/") == set()
