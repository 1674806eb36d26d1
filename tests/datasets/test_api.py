"""The datasets JSON API: datasets, clips, uploads, imports, trash, stats, export and audio."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
import soundfile as sf
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from audioml.models import ApiToken
from audioml.roles import TRAINER, grant
from datasets_app.models import Clip, Dataset
from tests.audio import distinct_wav, encode, zip_bytes
from tests.factories import ClipFactory, DatasetFactory, StaffFactory

pytestmark = pytest.mark.django_db


def wav_upload(name: str, n: int) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, distinct_wav(n), content_type="audio/wav")


def patch(client: Client, url: str, body: dict):
    return client.patch(url, json.dumps(body), content_type="application/json")


# ---------------------------------------------------------------------------------------------- datasets


def test_create_get_list_dataset(api, admin_user):
    response = api.post("/api/datasets", {"name": "wake-word", "description": "Hey Audio", "sample_rate": 16000}, content_type="application/json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["sample_rate"], body["clip_count"], body["created_by"]) == ("wake-word", 16000, 0, admin_user.username)
    assert body["url"] == "/datasets/wake-word/"
    assert api.get("/api/datasets/wake-word").json()["description"] == "Hey Audio"
    listing = api.get("/api/datasets").json()
    assert listing["count"] == 1 and listing["items"][0]["name"] == "wake-word"


def test_duplicate_dataset_name_is_409(api):
    DatasetFactory(name="taken")
    response = api.post("/api/datasets", {"name": "taken"}, content_type="application/json")
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert "already exists" in response.json()["detail"]
    assert Dataset.objects.filter(name="taken").count() == 1


@pytest.mark.parametrize("name", ["../x", "My Data", "UPPER", "a/b", "x" * 64, "", "-leading", "dots.here"])
def test_unsafe_dataset_names_are_422_and_never_sanitised(api, name):
    response = api.post("/api/datasets", {"name": name}, content_type="application/json")
    assert response.status_code == 422
    assert list(response.json()["errors"]) == ["name"]
    assert not Dataset.objects.exists()


def test_path_trick_name_gets_a_clear_message(api):
    response = api.post("/api/datasets", {"name": "../x"}, content_type="application/json")
    assert "lower-case letters, digits, '-' or '_'" in response.json()["detail"]
    assert "no spaces, dots or slashes" in response.json()["detail"]


def test_unknown_sample_rate_is_422(api):
    response = api.post("/api/datasets", {"name": "odd-rate", "sample_rate": 12345}, content_type="application/json")
    assert response.status_code == 422
    assert "sample_rate" in response.json()["detail"]


def test_update_dataset_and_rate_is_fixed_once_clips_exist(api):
    dataset = DatasetFactory(name="before")
    response = patch(api, "/api/datasets/before", {"name": "after", "description": "renamed"})
    assert response.status_code == 200
    assert response.json()["name"] == "after"
    ClipFactory(dataset=Dataset.objects.get(pk=dataset.pk))
    response = patch(api, "/api/datasets/after", {"sample_rate": 22050})
    assert response.status_code == 409
    assert "cannot change" in response.json()["detail"]
    DatasetFactory(name="other")
    assert patch(api, "/api/datasets/after", {"name": "other"}).status_code == 409
    assert patch(api, "/api/datasets/after", {"name": "../other"}).status_code == 422


def test_delete_dataset_removes_clips_and_files(api, isolated_storage, django_capture_on_commit_callbacks):
    dataset = DatasetFactory(name="doomed")
    clip = ClipFactory(dataset=dataset)
    path = isolated_storage / clip.audio.name
    assert path.exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete("/api/datasets/doomed")
    assert response.status_code == 204
    assert not Dataset.objects.exists() and not Clip.objects.exists()
    assert not path.exists()


def test_deleting_a_dataset_that_trained_a_registered_version_is_409(api, admin_user):
    from registry_app.models import ModelVersion, RegisteredModel
    from training_app.models import TrainingJob

    dataset = DatasetFactory(name="precious")
    ClipFactory(dataset=dataset)
    job = TrainingJob.objects.create(dataset=dataset, model_name="kws", status=TrainingJob.Status.SUCCEEDED)
    model = RegisteredModel.objects.create(name="kws")
    ModelVersion.objects.create(model=model, job=job, version=1, snapshot_hash="0" * 64)
    response = api.delete("/api/datasets/precious")
    assert response.status_code == 409
    assert "registered model versions" in response.json()["detail"]
    assert Dataset.objects.filter(name="precious").exists()
    assert Clip.objects.count() == 1


def test_unknown_dataset_is_404(api):
    response = api.get("/api/datasets/nope/clips")
    assert response.status_code == 404
    assert response.json()["detail"] == "No dataset named 'nope'."


# ----------------------------------------------------------------------------------------------- uploads


def test_upload_many_files_with_per_file_metadata(api, admin_user):
    DatasetFactory(name="emotions")
    response = api.post("/api/datasets/emotions/clips", {
        "files": [wav_upload("a.wav", 1), wav_upload("b.wav", 2), SimpleUploadedFile("c.wav", b"garbage" * 100)],
        "label": ["happy", "angry", "happy"],
        "score": ["0.9", "0.2", ""],
        "transcript": ["hello", "go away", ""],
    })
    assert response.status_code == 200, response.content
    report = response.json()
    assert (report["accepted"], report["rejected"]) == (2, 1)
    assert [f["status"] for f in report["files"]] == ["accepted", "accepted", "rejected"]
    assert report["files"][2]["code"] == "undecodable"
    a = Clip.objects.get(pk=report["files"][0]["clip_id"])
    assert (a.label, a.score, a.transcript, a.uploaded_by) == ("happy", 0.9, "hello", admin_user)
    b = Clip.objects.get(pk=report["files"][1]["clip_id"])
    assert (b.label, b.score) == ("angry", 0.2)


def test_upload_with_one_label_for_all_files(api):
    DatasetFactory(name="kws")
    report = api.post("/api/datasets/kws/clips", {"files": [wav_upload("1.wav", 1), wav_upload("2.wav", 2)], "label": "yes"}).json()
    assert report["accepted"] == 2
    assert set(Clip.objects.values_list("label", flat=True)) == {"yes"}


def test_upload_with_mismatched_metadata_count_is_422(api):
    DatasetFactory(name="kws")
    response = api.post("/api/datasets/kws/clips", {"files": [wav_upload("1.wav", 1), wav_upload("2.wav", 2), wav_upload("3.wav", 3)], "label": ["a", "b"]})
    assert response.status_code == 422
    assert "one value for all files or one per file" in response.json()["detail"]
    assert not Clip.objects.exists()


def test_upload_rejects_bad_score_per_file(api):
    DatasetFactory(name="ratings")
    report = api.post("/api/datasets/ratings/clips", {"files": [wav_upload("1.wav", 1)], "score": "1.5"}).json()
    assert report["files"][0]["code"] == "invalid-score"
    assert not Clip.objects.exists()


def test_browser_recording_upload(api, tmp_path):
    DatasetFactory(name="recordings")
    webm = encode(tmp_path, ".webm")
    upload = SimpleUploadedFile("recording-2026.webm", webm.read_bytes(), content_type="audio/webm")
    report = api.post("/api/datasets/recordings/clips", {"files": [upload], "label": "hello", "transcript": "hello there"}).json()
    assert report["accepted"] == 1, report
    clip = Clip.objects.get()
    assert (clip.original_format, clip.transcript) == ("webm/opus", "hello there")


def test_request_over_the_upload_limit_is_413(api, settings):
    settings.MAX_UPLOAD_BYTES = 4096
    DatasetFactory(name="kws")
    response = api.post("/api/datasets/kws/clips", {"files": [wav_upload("big.wav", 1)]})
    assert response.status_code == 413
    assert response.json()["status"] == 413
    assert not Clip.objects.exists()


def test_too_many_files_in_one_request_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    DatasetFactory(name="kws")
    response = api.post("/api/datasets/kws/clips", {"files": [wav_upload(f"{n}.wav", n) for n in range(3)]})
    assert response.status_code == 413
    assert not Clip.objects.exists()


def test_zip_import(api):
    DatasetFactory(name="kws")
    archive = SimpleUploadedFile("data.zip", zip_bytes({"yes/1.wav": distinct_wav(1), "no/2.wav": distinct_wav(2), "no/bad.wav": b"x" * 50}))
    report = api.post("/api/datasets/kws/import", {"file": archive}).json()
    assert (report["accepted"], report["rejected"], report["layout"]) == (2, 1, "folders")
    assert Dataset.objects.get(name="kws").label_counts() == {"yes": 1, "no": 1}


def test_malicious_zip_import_is_422_and_stores_nothing(api):
    DatasetFactory(name="kws")
    archive = SimpleUploadedFile("evil.zip", zip_bytes({"yes/ok.wav": distinct_wav(1), "../../evil.wav": distinct_wav(2)}))
    response = api.post("/api/datasets/kws/import", {"file": archive})
    assert response.status_code == 422
    assert "contains '..'" in response.json()["detail"]
    assert not Clip.objects.exists()


# ------------------------------------------------------------------------------------------------- clips


def test_list_clips_with_filters_sorting_and_pagination(api):
    dataset = DatasetFactory(name="kws")
    ClipFactory(dataset=dataset, label="yes", speaker="ann", transcript="turn on the light", seconds=0.5)
    ClipFactory(dataset=dataset, label="no", speaker="bob", transcript="turn it off", seconds=1.5)
    ClipFactory(dataset=dataset, label="", speaker="ann", transcript="", seconds=1.0)
    trashed = ClipFactory(dataset=dataset, label="yes")
    trashed.trash()
    ClipFactory(label="yes")  # another dataset

    def names(**query):
        body = api.get("/api/datasets/kws/clips", query).json()
        return body["count"], [item["label"] for item in body["items"]]

    assert names()[0] == 3
    assert names(label="yes") == (1, ["yes"])
    assert names(unlabelled="true") == (1, [""])
    assert names(speaker="ann")[0] == 2
    assert names(q="turn")[0] == 2
    assert names(q="LIGHT") == (1, ["yes"])
    assert names(status="trashed") == (1, ["yes"])
    assert names(status="all")[0] == 4
    assert names(sort="longest")[1] == ["no", "", "yes"]
    assert names(sort="shortest", limit=1)[1] == ["yes"]
    assert api.get("/api/datasets/kws/clips", {"sort": "bogus"}).status_code == 422
    item = api.get("/api/datasets/kws/clips", {"label": "no"}).json()["items"][0]
    assert item["dataset"] == "kws" and item["audio_url"] == f"/api/datasets/kws/clips/{item['id']}/audio"


def test_get_and_patch_clip(api, admin_user):
    clip = ClipFactory(dataset=DatasetFactory(name="kws"), label="yes", score=0.5)
    url = f"/api/datasets/kws/clips/{clip.pk}"
    assert api.get(url).json()["label"] == "yes"
    response = patch(api, url, {"label": "no", "transcript": " no thanks ", "score": None, "speaker": "eve"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["label"], body["transcript"], body["score"], body["speaker"], body["updated_by"]) == ("no", "no thanks", None, "eve", admin_user.username)
    clip.refresh_from_db()
    assert clip.updated_at is not None and clip.updated_by == admin_user


@pytest.mark.parametrize(("body", "field"), [({"score": 2}, "score"), ({"label": "a/b"}, "label"), ({"speaker": "x\ny"}, "speaker")])
def test_invalid_clip_patch_is_422_naming_the_field(api, body, field):
    clip = ClipFactory(dataset=DatasetFactory(name="kws"), label="yes")
    response = patch(api, f"/api/datasets/kws/clips/{clip.pk}", body)
    assert response.status_code == 422
    assert field in response.json()["errors"]
    clip.refresh_from_db()
    assert clip.label == "yes" and clip.updated_at is None


def test_clip_of_another_dataset_is_404(api):
    DatasetFactory(name="kws")
    other = ClipFactory()
    assert api.get(f"/api/datasets/kws/clips/{other.pk}").status_code == 404


def test_trash_restore_single_and_bulk_and_empty_trash(api, isolated_storage, django_capture_on_commit_callbacks):
    dataset = DatasetFactory(name="kws")
    clips = [ClipFactory(dataset=dataset) for _ in range(3)]
    stranger = ClipFactory()
    assert api.post(f"/api/datasets/kws/clips/{clips[0].pk}/trash").json()["status"] == "trashed"
    assert api.post(f"/api/datasets/kws/clips/{clips[0].pk}/restore").json()["status"] == "active"
    response = api.post("/api/datasets/kws/clips/trash", {"ids": [clips[1].pk, clips[2].pk, stranger.pk]}, content_type="application/json")
    assert response.json() == {"changed": 2, "ids": sorted([clips[1].pk, clips[2].pk])}
    stranger.refresh_from_db()
    assert stranger.status == "active"
    assert api.post("/api/datasets/kws/clips/restore", {"ids": [clips[1].pk]}, content_type="application/json").json()["changed"] == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete("/api/datasets/kws/trash").json() == {"deleted": 1}
    assert not Clip.objects.filter(pk=clips[2].pk).exists()
    assert not (isolated_storage / clips[2].audio.name).exists()
    assert (isolated_storage / clips[1].audio.name).exists()


def test_clip_audio_download_and_ranges(api):
    clip = ClipFactory(dataset=DatasetFactory(name="kws"))
    url = f"/api/datasets/kws/clips/{clip.pk}/audio"
    response = api.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/wav"
    data = b"".join(response.streaming_content)
    assert sf.info(io.BytesIO(data)).samplerate == 16000
    partial = api.get(url, headers={"Range": "bytes=0-43"})
    assert partial.status_code == 206
    assert partial.content == data[:44]
    assert partial["Content-Range"] == f"bytes 0-43/{len(data)}"
    assert api.get(url, headers={"Range": f"bytes={len(data) + 10}-"}).status_code == 416
    assert 'attachment; filename="kws-' in api.get(url, {"download": "true"})["Content-Disposition"]


def test_stats(api):
    dataset = DatasetFactory(name="kws")
    for _ in range(6):
        ClipFactory(dataset=dataset, label="yes", speaker="ann")
    ClipFactory(dataset=dataset, label="no", speaker="bob")
    body = api.get("/api/datasets/kws/stats").json()
    assert body["clip_count"] == 7
    assert [(entry["label"], entry["count"], entry["too_few"]) for entry in body["labels"]] == [("yes", 6, False), ("no", 1, True)]
    codes = {warning["code"] for warning in body["warnings"]}
    assert {"too-few", "imbalance"} <= codes
    assert body["speakers"] == [{"speaker": "ann", "count": 6}, {"speaker": "bob", "count": 1}]
    assert sum(b["count"] for b in body["duration_histogram"]) == 7


def test_export_filtered_selection(api):
    dataset = DatasetFactory(name="kws")
    yes = ClipFactory(dataset=dataset, label="yes")
    ClipFactory(dataset=dataset, label="no")
    response = api.get("/api/datasets/kws/export", {"layout": "labels", "label": "yes"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    names = archive.namelist()
    assert names == [f"yes/{yes.pk}-{yes.original_name.split('.')[0]}.wav", "manifest.csv"]


def test_export_with_an_unknown_layout_is_422(api):
    DatasetFactory(name="kws")
    assert api.get("/api/datasets/kws/export", {"layout": "tarball"}).status_code == 422


# ------------------------------------------------------------------------------------------- permissions


def test_anonymous_gets_401(client):
    DatasetFactory(name="kws")
    for method, url in [("get", "/api/datasets"), ("get", "/api/datasets/kws/clips"), ("post", "/api/datasets")]:
        response = getattr(client, method)(url)
        assert response.status_code == 401
        assert response["Content-Type"] == "application/problem+json"


def test_non_staff_token_and_session_get_403(outsider, outsider_client):
    DatasetFactory(name="kws")
    _, raw = ApiToken.issue(outsider, "nope")
    token_client = Client(headers={"Authorization": f"Bearer {raw}"})
    assert token_client.get("/api/datasets").status_code == 403
    assert outsider_client.get("/api/datasets/kws").status_code == 403
    assert token_client.post("/api/datasets/kws/clips", {"files": [wav_upload("a.wav", 1)]}).status_code == 403
    assert not Clip.objects.exists()


def test_staff_session_needs_csrf_for_writes():
    DatasetFactory(name="kws")
    staff = StaffFactory()
    grant(staff, TRAINER)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff)
    assert browser.get("/api/datasets/kws").status_code == 200
    refused = browser.post("/api/datasets/kws/clips", {"files": [wav_upload("a.wav", 1)]})
    assert refused.status_code == 403
    assert not Clip.objects.exists()
    browser.get("/datasets/kws/")
    token = browser.cookies["csrftoken"].value
    accepted = browser.post("/api/datasets/kws/clips", {"files": [wav_upload("a.wav", 1)]}, headers={"X-CSRFToken": token})
    assert accepted.status_code == 200
    assert Clip.objects.get().uploaded_by == staff
