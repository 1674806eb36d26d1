"""The datasets panel: pages, htmx fragments, inline editing, trash, uploads, settings and audio access."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from audioml.models import AuditEvent
from datasets_app.importing import skipped_file_rule
from datasets_app.models import Clip, Dataset
from tests.audio import distinct_wav, zip_bytes
from tests.factories import ClipFactory, DatasetFactory

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


@pytest.fixture
def dataset():
    return DatasetFactory(name="kws", description="Keyword spotting")


# ---------------------------------------------------------------------------------------- dataset list


def test_list_shows_clip_counts_per_label_duration_and_date(staff_client, dataset):
    for _ in range(3):
        ClipFactory(dataset=dataset, label="yes", seconds=1.5)
    ClipFactory(dataset=dataset, label="no", seconds=1.0)
    ClipFactory(dataset=dataset, label="no").trash()
    html = staff_client.get("/datasets/").content.decode()
    assert 'href="/datasets/kws/"' in html
    assert "yes <b>3</b>" in html and "no <b>1</b>" in html
    assert "5.5\u00a0s" in html  # 3 x 1.5 s + 1 s, trashed clip left out
    assert dataset.created_at.strftime("%Y-%m-%d") in html
    # The chips wrap inside a flex box in a plain cell: a flex <td> drew its row's border at its own height.
    assert '<td data-label="Labels"><div class="label-chips">' in html and '<td class="label-chips">' not in html


def test_list_marks_labels_too_small_to_train_as_the_dataset_page_does(staff_client, dataset):
    for _ in range(5):
        ClipFactory(dataset=dataset, label="yes")
    ClipFactory(dataset=dataset, label="no")
    warn = 'title="Fewer than 5 clips: too few to train"'
    for url in ("/datasets/", "/datasets/kws/"):
        html = staff_client.get(url).content.decode()
        chips = {m.group(2): m.group(1) for m in re.finditer(r'<a (class="chip[^"]*"[^>]*)>(\w+) <b>', html)}
        assert "chip-warn" in chips["no"] and warn in chips["no"], url
        assert "chip-warn" not in chips["yes"] and "title=" not in chips["yes"], url


def test_create_dataset_from_the_list(staff_client, staff_user):
    response = staff_client.post("/datasets/", {"name": "emotions", "description": "Angry or happy", "sample_rate": 22050})
    assert response.status_code == 302
    assert response["Location"] == "/datasets/emotions/"
    dataset = Dataset.objects.get(name="emotions")
    assert (dataset.sample_rate, dataset.created_by) == (22050, staff_user)
    assert AuditEvent.objects.filter(action="dataset.create", object_repr="emotions").exists()


@pytest.mark.parametrize(("name", "message"), [
    ("../x", "no spaces, dots or slashes"),
    ("Emotions", "lower-case letters"),
    ("kws", "already exists"),
])
def test_bad_or_taken_names_are_form_errors(staff_client, dataset, name, message):
    response = staff_client.post("/datasets/", {"name": name, "sample_rate": 16000})
    assert response.status_code == 200
    html = response.content.decode()
    assert message in html
    assert 'class="field has-error"' in html
    assert Dataset.objects.count() == 1


# ---------------------------------------------------------------------------------------- dataset page


def test_dataset_page_lists_clips_with_players_and_editors(staff_client, dataset):
    clip = ClipFactory(dataset=dataset, label="yes", transcript="turn left", original_name="take-1.wav")
    html = staff_client.get("/datasets/kws/").content.decode()
    assert f'src="/datasets/kws/clips/{clip.pk}/audio/"' in html
    assert f'hx-post="/datasets/kws/clips/{clip.pk}/edit/label/"' in html
    assert "turn left" in html and "take-1.wav" in html
    assert 'data-upload-url="/api/datasets/kws/clips"' in html
    assert "/media/" not in html
    # The batch fields say what a zip takes from them (its own manifest carries the rest).
    assert "A zip's files take only the label and source from here" in html


def test_filters_search_and_status(staff_client, dataset):
    ClipFactory(dataset=dataset, label="yes", speaker="ann", transcript="lights on", original_name="one.wav")
    ClipFactory(dataset=dataset, label="no", speaker="bob", transcript="lights off", original_name="two.wav")
    ClipFactory(dataset=dataset, label="", original_name="three.wav")
    gone = ClipFactory(dataset=dataset, label="yes", original_name="four.wav")
    gone.trash()

    def shown(**query):
        html = staff_client.get("/datasets/kws/", query).content.decode()
        return {name for name in ("one.wav", "two.wav", "three.wav", "four.wav") if name in html}

    assert shown() == {"one.wav", "two.wav", "three.wav"}
    assert shown(label="yes") == {"one.wav"}
    assert shown(label="__unlabelled__") == {"three.wav"}
    assert shown(speaker="bob") == {"two.wav"}
    assert shown(q="LIGHTS") == {"one.wav", "two.wav"}
    assert shown(status="trashed") == {"four.wav"}
    assert shown(status="all") == {"one.wav", "two.wav", "three.wav", "four.wav"}
    assert shown(label="no-such-label") == {"one.wav", "two.wav", "three.wav"}  # invalid filter falls back


def test_htmx_table_fragment_and_pagination(staff_client, dataset):
    for n in range(55):
        ClipFactory(dataset=dataset, original_name=f"clip-{n:02d}.wav", frequency=200 + n * 11)
    response = staff_client.get("/datasets/kws/", {"sort": "name", "page": 2}, headers={**HTMX, "HX-Target": "clip-table"})
    html = response.content.decode()
    assert "<html" not in html and html.lstrip().startswith('<div id="clip-table">')
    assert "clip-50.wav" in html and "clip-54.wav" in html and "clip-49.wav" not in html
    assert "51–55 of 55 clips" in html
    assert "Page 2 of 2" in html


def test_inline_edit_saves_without_reload(staff_client, staff_user, dataset):
    clip = ClipFactory(dataset=dataset, label="yes")
    response = staff_client.post(f"/datasets/kws/clips/{clip.pk}/edit/label/", {"value": " maybe "}, headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<form class="inline-edit is-saved"')
    assert 'value="maybe"' in html and "Saved" in html
    clip.refresh_from_db()
    assert (clip.label, clip.updated_by) == ("maybe", staff_user)
    event = AuditEvent.objects.get(action="clip.edit")
    assert event.changes == {"label": ["yes", "maybe"]}


def test_inline_edit_shows_the_error_next_to_the_field(staff_client, dataset):
    clip = ClipFactory(dataset=dataset, label="yes", score=0.5)
    response = staff_client.post(f"/datasets/kws/clips/{clip.pk}/edit/score/", {"value": "7"}, headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "inline-edit has-error" in html
    assert "The score must be between 0 and 1 (got 7)." in html
    assert 'value="7"' in html
    clip.refresh_from_db()
    assert clip.score == 0.5 and clip.updated_at is None


def test_a_long_inline_value_is_whole_in_the_fields_title_where_the_column_cuts_it(staff_client, dataset):
    """A speaker such as espeak-ng's "en-gb-scotland+m4" is wider than its column: the input ends in an ellipsis
    (CSS) and its title holds the whole value; an empty field has no title."""
    clip = ClipFactory(dataset=dataset, label="yes", speaker="en-gb-scotland+m4")
    html = staff_client.get("/datasets/kws/").content.decode()
    assert f'aria-label="Speaker of clip {clip.pk}"' in html
    assert 'title="en-gb-scotland+m4" value="en-gb-scotland+m4"' in html and 'title="yes" value="yes"' in html
    assert 'title="" value=""' not in html
    edited = staff_client.post(f"/datasets/kws/clips/{clip.pk}/edit/speaker/", {"value": "en-us-nyc+m3"}, headers=HTMX)
    assert 'title="en-us-nyc+m3" value="en-us-nyc+m3"' in edited.content.decode()


@pytest.mark.parametrize(("field", "value", "stored"), [
    ("transcript", "Hello there\nline two", "Hello there\nline two"),
    ("speaker", "alice", "alice"),
    ("notes", "noisy room", "noisy room"),
    ("score", "", None),
    ("score", "0.25", 0.25),
])
def test_every_editable_field_saves_inline(staff_client, dataset, field, value, stored):
    clip = ClipFactory(dataset=dataset, score=0.5)
    response = staff_client.post(f"/datasets/kws/clips/{clip.pk}/edit/{field}/", {"value": value}, headers=HTMX)
    assert "is-saved" in response.content.decode()
    clip.refresh_from_db()
    assert getattr(clip, field) == stored


def test_inline_edit_without_htmx_redirects_back(staff_client, dataset):
    clip = ClipFactory(dataset=dataset, label="yes")
    response = staff_client.post(f"/datasets/kws/clips/{clip.pk}/edit/label/", {"value": "a/b", "next": "/datasets/kws/?page=1"})
    assert response.status_code == 302 and response["Location"] == "/datasets/kws/?page=1"
    follow = staff_client.get(response["Location"]).content.decode()
    assert "cannot contain" in follow
    response = staff_client.post(f"/datasets/kws/clips/{clip.pk}/edit/label/", {"value": "no", "next": "https://evil.example/"})
    assert response["Location"] == "/datasets/kws/"
    clip.refresh_from_db()
    assert clip.label == "no"


def test_only_annotation_fields_are_editable_inline(staff_client, dataset):
    clip = ClipFactory(dataset=dataset)
    assert staff_client.post(f"/datasets/kws/clips/{clip.pk}/edit/content_hash/", {"value": "x"}).status_code == 404


def test_trash_and_restore_a_row_with_htmx(staff_client, dataset):
    clip = ClipFactory(dataset=dataset)
    html = staff_client.post(f"/datasets/kws/clips/{clip.pk}/trash/", headers=HTMX).content.decode()
    assert html.lstrip().startswith(f'<tr id="clip-{clip.pk}" class="is-trashed">')
    assert "Restore" in html
    clip.refresh_from_db()
    assert clip.status == "trashed"
    html = staff_client.post(f"/datasets/kws/clips/{clip.pk}/restore/", headers=HTMX).content.decode()
    assert "is-trashed" not in html.split(">")[0]
    clip.refresh_from_db()
    assert clip.status == "active"
    events = AuditEvent.objects.filter(object_type="datasets_app.clip", object_id=str(clip.pk)).order_by("id")
    assert list(events.values_list("action", flat=True)) == ["clip.trash", "clip.restore"]


def test_bulk_trash_and_restore(staff_client, dataset):
    clips = [ClipFactory(dataset=dataset) for _ in range(3)]
    stranger = ClipFactory()
    response = staff_client.post(
        "/datasets/kws/clips/bulk/", {"action": "trash", "ids": [clips[0].pk, clips[1].pk, stranger.pk]}, headers=HTMX,
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="clip-table">')
    assert "2 clips moved to the trash." in html
    assert set(Clip.objects.trashed().values_list("pk", flat=True)) == {clips[0].pk, clips[1].pk}
    response = staff_client.post("/datasets/kws/clips/bulk/", {"action": "restore", "ids": [clips[0].pk], "next": "/datasets/kws/?status=trashed"})
    assert response["Location"] == "/datasets/kws/?status=trashed"
    assert set(Clip.objects.trashed().values_list("pk", flat=True)) == {clips[1].pk}


def test_bulk_without_selection_says_so(staff_client, dataset):
    response = staff_client.post("/datasets/kws/clips/bulk/", {"action": "trash"}, headers=HTMX)
    assert "Select at least one clip." in response.content.decode()


def test_bulk_export_of_selected_clips(staff_client, dataset):
    chosen = ClipFactory(dataset=dataset, label="yes")
    ClipFactory(dataset=dataset, label="no")
    response = staff_client.post("/datasets/kws/clips/bulk/", {"action": "export-labels", "ids": [chosen.pk]})
    assert response["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).namelist()
    assert len(names) == 2 and names[0].startswith(f"yes/{chosen.pk}-")


def test_empty_trash(admin_client, dataset, django_capture_on_commit_callbacks):
    keep = ClipFactory(dataset=dataset)
    gone = ClipFactory(dataset=dataset)
    gone.trash()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/datasets/kws/trash/empty/")
    assert response.status_code == 302
    assert list(Clip.objects.values_list("pk", flat=True)) == [keep.pk]


# ----------------------------------------------------------------------------------------------- upload


def test_upload_without_javascript_shows_each_result(staff_client, staff_user, dataset):
    files = [
        SimpleUploadedFile("good.wav", distinct_wav(1)),
        SimpleUploadedFile("bad.wav", b"nope" * 100),
        SimpleUploadedFile("bundle.zip", zip_bytes({"no/x.wav": distinct_wav(2)})),
        SimpleUploadedFile("evil.zip", zip_bytes({"/abs/x.wav": distinct_wav(3)})),
    ]
    response = staff_client.post("/datasets/kws/upload/", {"files": files, "label": "yes", "speaker": "ann"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "2 files added, 1 rejected." in html
    assert "not a decodable audio file" in html
    assert "Archive refused: entry &#x27;/abs/x.wav&#x27; has an absolute path" in html
    assert dict(Clip.objects.values_list("original_name", "label")) == {"good.wav": "yes", "no/x.wav": "no"}
    assert set(Clip.objects.values_list("uploaded_by", flat=True)) == {staff_user.pk}
    assert AuditEvent.objects.filter(action="clip.upload").exists()


def test_upload_with_invalid_metadata_is_a_form_error(staff_client, dataset):
    response = staff_client.post("/datasets/kws/upload/", {"files": [SimpleUploadedFile("a.wav", distinct_wav(1))], "score": "9"})
    assert response.status_code == 400
    assert "between 0 and 1" in response.content.decode()
    assert not Clip.objects.exists()


def test_upload_needs_a_file(staff_client, dataset):
    response = staff_client.post("/datasets/kws/upload/", {"label": "yes"})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()


def test_the_page_gives_its_script_the_files_an_import_skips(staff_client, dataset):
    """The script leaves out of dropped folders exactly what an import of the same folder skips."""
    for response in (staff_client.get("/datasets/kws/"), staff_client.post("/datasets/kws/upload/", {"label": "yes"})):
        match = re.search(r'<script id="skipped-file-rule" type="application/json">(.*?)</script>', response.content.decode())
        assert match, "the rule is missing from the page"
        rule = json.loads(match.group(1))
        assert rule == skipped_file_rule()
        assert {".txt", ".csv", ".png"} <= set(rule["suffixes"])
        assert {"README", "LICENSE", "NOTICE", "AUTHORS"} <= set(rule["stems"])
        assert "thumbs.db" in rule["hidden_names"]


# ------------------------------------------------------------------------------ clip page and settings


def test_clip_page_edits_all_fields(staff_client, dataset):
    clip = ClipFactory(dataset=dataset, label="yes")
    page = staff_client.get(f"/datasets/kws/clips/{clip.pk}/").content.decode()
    assert f'src="/datasets/kws/clips/{clip.pk}/audio/"' in page
    response = staff_client.post(f"/datasets/kws/clips/{clip.pk}/", {
        "label": "no", "transcript": "nope", "score": "0.3", "speaker": "bo", "notes": "retake",
    })
    assert response.status_code == 302
    clip.refresh_from_db()
    assert (clip.label, clip.transcript, clip.score, clip.speaker, clip.notes) == ("no", "nope", 0.3, "bo", "retake")
    bad = staff_client.post(f"/datasets/kws/clips/{clip.pk}/", {"label": "..", "score": "x"})
    assert bad.status_code == 200
    assert "cannot be &#x27;.&#x27; or &#x27;..&#x27;" in bad.content.decode()


def test_previous_and_next_on_the_clip_page_follow_the_list_it_was_opened_from(staff_client, dataset):
    """The dataset page lists the newest clip first: opening that first row, "Next" is the row below it (it
    was "Previous" before, pk order), and a sorted or filtered list's order and filters travel with the links."""
    oldest, middle, other, newest = (ClipFactory(dataset=dataset, label=label, original_name=name)
                                     for label, name in (("yes", "c.wav"), ("yes", "a.wav"), ("no", "d.wav"),
                                                         ("yes", "b.wav")))

    def neighbours(html: str) -> tuple[str | None, str | None]:
        found = {rel: re.search(rf'href="([^"]+)" rel="{rel}"', html) for rel in ("prev", "next")}
        return tuple(match.group(1).replace("&amp;", "&") if match else None for match in found.values())

    listing = staff_client.get("/datasets/kws/").content.decode()
    assert f'href="/datasets/kws/clips/{newest.pk}/" title=' in listing  # the default list: no query string
    first = staff_client.get(f"/datasets/kws/clips/{newest.pk}/").content.decode()
    assert neighbours(first) == (None, f"/datasets/kws/clips/{other.pk}/")
    assert f'name="next" value="/datasets/kws/clips/{other.pk}/"' in first
    last = staff_client.get(f"/datasets/kws/clips/{oldest.pk}/").content.decode()
    assert neighbours(last) == (f"/datasets/kws/clips/{middle.pk}/", None)

    query = "label=yes&sort=name"
    listing = staff_client.get(f"/datasets/kws/?{query}").content.decode()
    assert f'href="/datasets/kws/clips/{middle.pk}/?{query.replace("&", "&amp;")}" title=' in listing
    sorted_page = staff_client.get(f"/datasets/kws/clips/{newest.pk}/?{query}").content.decode()
    assert neighbours(sorted_page) == (f"/datasets/kws/clips/{middle.pk}/?{query}",
                                       f"/datasets/kws/clips/{oldest.pk}/?{query}")  # a.wav, b.wav, c.wav; no "no"
    assert f'href="/datasets/kws/?{query.replace("&", "&amp;")}">kws</a>' in sorted_page
    saved = staff_client.post(f"/datasets/kws/clips/{newest.pk}/?{query}", {"label": "yes", "notes": "checked"})
    assert saved["Location"] == f"/datasets/kws/clips/{newest.pk}/?{query}"
    # Edited out of the list's filter: the default list's neighbours instead.
    moved = staff_client.get(f"/datasets/kws/clips/{other.pk}/?{query}").content.decode()
    assert neighbours(moved) == (f"/datasets/kws/clips/{newest.pk}/", f"/datasets/kws/clips/{middle.pk}/")


def test_settings_rename_and_rate_lock(staff_client, dataset):
    ClipFactory(dataset=dataset)
    page = staff_client.get("/datasets/kws/settings/").content.decode()
    assert "Fixed: the clips are stored at 16000 Hz" in page
    response = staff_client.post("/datasets/kws/settings/", {"name": "kws-v2", "description": "new", "sample_rate": 22050})
    assert response["Location"] == "/datasets/kws-v2/"
    dataset.refresh_from_db()
    assert (dataset.name, dataset.description, dataset.sample_rate) == ("kws-v2", "new", 16000)


def test_delete_dataset_needs_the_name_typed(admin_client, dataset):
    response = admin_client.post("/datasets/kws/delete/", {"confirm_name": "wrong"})
    assert response["Location"] == "/datasets/kws/settings/"
    assert Dataset.objects.exists()
    response = admin_client.post("/datasets/kws/delete/", {"confirm_name": "kws"})
    assert response["Location"] == "/datasets/"
    assert not Dataset.objects.exists()


def test_delete_protected_dataset_shows_a_clear_message(admin_client, dataset):
    from registry_app.models import ModelVersion, RegisteredModel
    from training_app.models import TrainingJob

    job = TrainingJob.objects.create(dataset=dataset, model_name="kws", status=TrainingJob.Status.SUCCEEDED)
    ModelVersion.objects.create(model=RegisteredModel.objects.create(name="kws"), job=job, version=1, snapshot_hash="0" * 64)
    response = admin_client.post("/datasets/kws/delete/", {"confirm_name": "kws"}, follow=True)
    assert "cannot be deleted: it trained registered model versions" in response.content.decode()
    assert Dataset.objects.filter(name="kws").exists()


def test_stats_page_draws_svg_charts_and_warnings(staff_client, dataset):
    for _ in range(6):
        ClipFactory(dataset=dataset, label="yes", speaker="ann")
    ClipFactory(dataset=dataset, label="no", speaker="bob")
    html = staff_client.get("/datasets/kws/stats/").content.decode()
    assert html.count("<svg") >= 4
    assert "Label &#x27;no&#x27; has 1 clip; at least 5 are needed to train." in html
    assert "Classes are imbalanced" in html
    assert "<title>ann: 6</title>" in html


def test_export_download_with_filters(staff_client, dataset):
    ClipFactory(dataset=dataset, label="yes", transcript="hello")
    ClipFactory(dataset=dataset, label="no", transcript="")
    response = staff_client.get("/datasets/kws/export/", {"layout": "ljspeech"})
    assert response["Content-Type"] == "application/zip"
    assert response["X-Left-Out-Clips"] == "1"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert sorted(archive.namelist())[0] == "metadata.csv"
    assert staff_client.get("/datasets/kws/export/", {"layout": "rar"}).status_code == 404


# ------------------------------------------------------------------------------------------ permissions


def test_audio_is_served_to_staff_only(staff_client, outsider_client, client, dataset):
    clip = ClipFactory(dataset=dataset)
    url = f"/datasets/kws/clips/{clip.pk}/audio/"
    response = staff_client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "audio/wav"
    assert outsider_client.get(url).status_code == 403
    assert client.get(url).status_code == 302
    assert Client().get(f"/media/{clip.audio.name}").status_code == 404


@pytest.mark.parametrize("url", [
    "/datasets/", "/datasets/kws/upload/", "/datasets/kws/clips/bulk/", "/datasets/kws/delete/", "/datasets/kws/trash/empty/",
])
def test_outsiders_and_anonymous_cannot_post(outsider_client, client, dataset, url):
    clip = ClipFactory(dataset=dataset)
    data = {"name": "x", "files": [SimpleUploadedFile("a.wav", distinct_wav(1))], "action": "trash", "ids": [clip.pk], "confirm_name": "kws"}
    assert outsider_client.post(url, data).status_code == 403
    anonymous = client.post(url, data)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")
    assert Dataset.objects.count() == 1 and Clip.objects.count() == 1 and Clip.objects.get().status == "active"


def test_outsider_cannot_edit_inline(outsider_client, dataset):
    clip = ClipFactory(dataset=dataset, label="yes")
    assert outsider_client.post(f"/datasets/kws/clips/{clip.pk}/edit/label/", {"value": "no"}, headers=HTMX).status_code == 403
    clip.refresh_from_db()
    assert clip.label == "yes"


def test_the_clip_pages_source_help_is_a_sentence_like_its_neighbours(trainer_client):
    clip = ClipFactory(dataset=DatasetFactory(name="birds"))
    html = trainer_client.get(f"/datasets/birds/clips/{clip.pk}/").content.decode()
    assert '<div class="help">A number from 0 to 1, or empty.</div>' in html
    assert "(a URL, a device, a logged prediction).</div>" in html
