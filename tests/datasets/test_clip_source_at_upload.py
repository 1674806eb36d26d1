"""A clip's source (where it comes from, when not the dataset's source) set when it is added: the panel's upload
form, the API's upload and zip import, manifests' `source` column and `import_dataset --source`."""

from __future__ import annotations

import csv
import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from audioml.models import AuditEvent
from datasets_app.models import Clip
from tests.audio import distinct_wav, zip_bytes
from tests.factories import DatasetFactory

pytestmark = pytest.mark.django_db

FREESOUND = "https://freesound.org/s/12345/"
MANIFEST = "file,label,source\na.wav,yes,https://example.org/session-7\nb.wav,no,\n"


@pytest.fixture
def dataset():
    return DatasetFactory(name="kws", source="recorded in the office, 2026")


def sources() -> dict[str, str]:
    return dict(Clip.objects.values_list("original_name", "source"))


def audited_sources() -> list:
    """The `source` each clip.upload event recorded (None where it recorded none), oldest first."""
    return [event.changes.get("source", [None, None])[1]
            for event in AuditEvent.objects.filter(action="clip.upload").order_by("id")]


# ------------------------------------------------------------------------------------------------- panel


def test_the_upload_form_sets_the_source_of_every_file_and_a_zip_manifest_row_wins(trainer_client, dataset):
    page = trainer_client.get("/datasets/kws/").content.decode()
    assert 'name="source"' in page and "recorded in the office, 2026 (the dataset's)" in page
    files = [SimpleUploadedFile("one.wav", distinct_wav(1)),
             SimpleUploadedFile("bundle.zip", zip_bytes({"manifest.csv": MANIFEST.encode(), "a.wav": distinct_wav(2),
                                                         "b.wav": distinct_wav(3)}))]
    response = trainer_client.post("/datasets/kws/upload/", {"files": files, "label": "yes", "source": f" {FREESOUND} "})
    assert response.status_code == 200 and "3 files added" in response.content.decode()
    assert sources() == {"one.wav": FREESOUND, "a.wav": "https://example.org/session-7", "b.wav": FREESOUND}
    clip = Clip.objects.get(original_name="one.wav")
    assert FREESOUND in trainer_client.get(f"/datasets/kws/clips/{clip.pk}/").content.decode()
    # The audit trail records the batch's source: the zip's (its manifest row first), then the loose file's.
    assert audited_sources() == [["https://example.org/session-7", FREESOUND], FREESOUND]


def test_an_invalid_source_is_an_error_next_to_the_field_and_nothing_is_stored(trainer_client, dataset):
    response = trainer_client.post("/datasets/kws/upload/", {
        "files": [SimpleUploadedFile("one.wav", distinct_wav(1))], "source": "line one\nline two"})
    html = response.content.decode()
    assert response.status_code == 400
    field = html[html.index('data-field="source"'):]
    field = field[:field.index("</div>\n")]
    assert "Use a single line without control characters." in field and 'value="line one' in field
    too_long = trainer_client.post("/datasets/kws/upload/", {
        "files": [SimpleUploadedFile("one.wav", distinct_wav(1))], "source": "x" * 256})
    assert too_long.status_code == 400 and "at most 255 characters" in too_long.content.decode()
    assert not Clip.objects.exists()


def test_a_viewer_cannot_upload_with_a_source(viewer_client, dataset):
    response = viewer_client.post("/datasets/kws/upload/", {
        "files": [SimpleUploadedFile("one.wav", distinct_wav(1))], "source": FREESOUND})
    assert response.status_code == 403
    assert 'name="source"' not in viewer_client.get("/datasets/kws/").content.decode()
    assert not Clip.objects.exists()


# --------------------------------------------------------------------------------------------------- API


def test_api_upload_takes_one_source_for_all_files_or_one_per_file(api, dataset):
    once = api.post("/api/datasets/kws/clips", {
        "files": [SimpleUploadedFile("a.wav", distinct_wav(1)), SimpleUploadedFile("b.wav", distinct_wav(2))],
        "source": FREESOUND})
    assert once.status_code == 200, once.content
    each = api.post("/api/datasets/kws/clips", {
        "files": [SimpleUploadedFile("c.wav", distinct_wav(3)), SimpleUploadedFile("d.wav", distinct_wav(4))],
        "source": ["phone: Pixel 8", ""]})
    assert each.status_code == 200, each.content
    assert sources() == {"a.wav": FREESOUND, "b.wav": FREESOUND, "c.wav": "phone: Pixel 8", "d.wav": ""}
    assert audited_sources() == [FREESOUND, "phone: Pixel 8"]
    clip_id = once.json()["files"][0]["clip_id"]
    assert api.get(f"/api/datasets/kws/clips/{clip_id}").json()["source"] == FREESOUND


def test_api_upload_with_an_invalid_source_is_422_naming_source_before_anything_is_stored(api, dataset):
    response = api.post("/api/datasets/kws/clips", {
        "files": [SimpleUploadedFile("a.wav", distinct_wav(1))], "source": "tab\there"})
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "source" and "single line" in body["detail"]
    three = api.post("/api/datasets/kws/clips", {
        "files": [SimpleUploadedFile("a.wav", distinct_wav(1))], "source": ["x", "y", "z"]})
    assert three.status_code == 422 and three.json()["field"] == "source"
    assert not Clip.objects.exists()


def test_api_import_sets_the_source_of_rows_without_one_and_rejects_a_bad_cell(api, dataset):
    archive = zip_bytes({
        "manifest.csv": (MANIFEST + "c.wav,no,bad\u0007bell\n").encode(),
        "a.wav": distinct_wav(1), "b.wav": distinct_wav(2), "c.wav": distinct_wav(3),
    })
    response = api.post("/api/datasets/kws/import", {"file": SimpleUploadedFile("set.zip", archive), "source": "corpus X"})
    assert response.status_code == 200, response.content
    rejected = [f for f in response.json()["files"] if f["status"] == "rejected"]
    assert [(f["name"], f["code"]) for f in rejected] == [("c.wav", "invalid-source")]
    assert sources() == {"a.wav": "https://example.org/session-7", "b.wav": "corpus X"}
    assert audited_sources() == [["https://example.org/session-7", "corpus X"]]
    refused = api.post("/api/datasets/kws/import", {"file": SimpleUploadedFile("set.zip", archive), "source": "a\nb"})
    assert refused.status_code == 422 and refused.json()["field"] == "source"


def test_a_viewer_token_cannot_upload_with_a_source(token_client, viewer_user, dataset):
    client = token_client(viewer_user)
    response = client.post("/api/datasets/kws/clips", {
        "files": [SimpleUploadedFile("a.wav", distinct_wav(1))], "source": FREESOUND})
    assert response.status_code == 403
    assert not Clip.objects.exists()


def test_an_exported_manifest_carries_the_source_and_imports_again_as_is(api, dataset):
    api.post("/api/datasets/kws/clips", {"files": [SimpleUploadedFile("a.wav", distinct_wav(1))], "label": "yes",
                                         "source": FREESOUND})
    export = api.get("/api/datasets/kws/export?layout=labels")
    data = b"".join(export.streaming_content) if export.streaming else export.content
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert rows[0]["source"] == FREESOUND
    DatasetFactory(name="copy")
    again = api.post("/api/datasets/copy/import", {"file": SimpleUploadedFile("export.zip", data)})
    assert again.status_code == 200, again.content
    assert Clip.objects.get(dataset__name="copy").source == FREESOUND


# ------------------------------------------------------------------------------------------------- command


def test_import_command_sets_the_source_and_refuses_an_invalid_one(tmp_path, dataset):
    (tmp_path / "yes").mkdir()
    (tmp_path / "yes" / "1.wav").write_bytes(distinct_wav(1))
    with pytest.raises(CommandError, match="--source: Use a single line"):
        call_command("import_dataset", "kws", str(tmp_path), "--source", "a\nb", stdout=io.StringIO(),
                     stderr=io.StringIO())
    assert not Clip.objects.exists()
    call_command("import_dataset", "kws", str(tmp_path), "--source", "field recorder, take 2", stdout=io.StringIO(),
                 stderr=io.StringIO())
    assert sources() == {"yes/1.wav": "field recorder, take 2"}
    assert audited_sources() == ["field recorder, take 2"]


def test_the_audit_trail_shows_the_source_of_an_upload_and_of_a_background_recording(api, admin_client, dataset):
    from tests.audio import tone, wav_bytes

    api.post("/api/datasets/kws/clips", {"files": [SimpleUploadedFile("a.wav", distinct_wav(1))]})
    api.post("/api/datasets/kws/clips", {"files": [SimpleUploadedFile("room.wav", wav_bytes(tone(440.0, 3.0)))],
                                         "background": "true", "source": "kitchen microphone"})
    assert audited_sources() == [None, "kitchen microphone"]  # no own source given: none recorded
    page = admin_client.get("/audit/?action=clip.").content.decode()
    assert "<code>source</code>: ∅ → kitchen microphone" in page
