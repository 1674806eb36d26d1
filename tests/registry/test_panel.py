"""The registry panel: lists, model and version pages, alias controls, downloads and "Try it"."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from registry_app.models import Alias, AliasEvent, ModelVersion
from tests.factories import TrainingJobFactory
from tests.registry.conftest import wav_upload


@pytest.fixture
def three(register):
    versions = [register("keywords") for _ in range(3)]
    Alias.point(versions[0].model, "production", versions[1], note="second is better")
    return versions


def corrupt(entry: dict) -> None:
    path = Path(default_storage.path(entry["path"]))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_models_list_shows_latest_version_aliases_and_accuracy(staff_client, three):
    html = staff_client.get("/models/").content.decode()
    assert 'href="/models/keywords/"' in html
    assert 'href="/models/keywords/v3/"' in html
    assert "production → v2" in html
    assert "%" in html and "test" in html


def test_models_list_without_models_explains_how_to_get_one(staff_client):
    html = staff_client.get("/models/").content.decode()
    assert "No models yet" in html
    assert 'href="/training/new/"' in html


def test_model_page_compares_versions_with_production(staff_client, three):
    response = staff_client.get("/models/keywords/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "vs. production" in html
    assert html.count("±0 pts") == 2  # v1 and v3 against v2 (same tiny model, so no difference)
    assert 'href="/training/jobs/%d/"' % three[0].job_id in html
    assert "10 clips" in html
    assert "second is better" in html  # the alias history note
    assert "Roll back to" not in html  # production has no earlier version yet
    assert 'href="/models/keywords/aliases/promote/?alias=production&amp;version=3"' in html


def test_model_page_with_only_the_production_version_has_no_vs_production_columns(staff_client, register):
    version = register("keywords")
    Alias.point(version.model, "production", version, note="the only one")

    html = staff_client.get("/models/keywords/").content.decode()
    assert "vs. production" not in html
    assert "v1, where <code>production</code> points, is the only version" in html


def test_vs_production_is_coloured_in_the_direction_of_the_metric(staff_client, trained_artifacts, tmp_path):
    """Fewer false rejects than production is better (green), more is worse: not the other way round."""
    versions = []
    for index, rate in enumerate((0.10, 0.05, 0.20)):
        folder = shutil.copytree(trained_artifacts, tmp_path / f"v{index + 1}")
        metrics = json.loads((folder / "metrics.json").read_text())
        (folder / "metrics.json").write_text(json.dumps({**metrics, "task": "detection",
                                                         "held_out": {"false_reject_rate": rate}}))
        job = TrainingJobFactory(model_name="wake", task="detection")
        versions.append(ModelVersion.objects.register_from_job(job, folder))
    Alias.point(versions[0].model, "production", versions[0])

    html = staff_client.get("/models/wake/").content.decode()

    cells = re.findall(r'<td class="num diff ([a-z]*)" data-label="vs. production">(.*?)</td>', html)
    assert cells == [("worse", "+10.0 pts"), ("better", "−5.0 pts"), ("", '<span class="muted">—</span>')]  # v3 v2 v1
    # On a phone each row stacks into a card whose lines name the task's metric (static/app.css, .table-stack).
    assert html.count('<td class="num" data-label="False rejects">') == 3
    assert 'class="table table-stack versions-table"' in html


def test_model_description_is_markdown_with_html_escaped(staff_client, three):
    model = three[0].model
    model.description = "# Kiosk\n**bold** [docs](https://example.com) [bad](javascript:alert(1))\n\n<script>alert('x')</script>"
    model.save()
    html = staff_client.get("/models/keywords/").content.decode()
    assert "<h1>Kiosk</h1>" in html
    assert "<strong>bold</strong>" in html
    assert 'href="https://example.com"' in html
    assert "href=\"javascript:" not in html
    assert "<script>alert('x')</script>" not in html
    assert "&lt;script&gt;" in html


def test_editing_the_description(staff_client, three):
    response = staff_client.post("/models/keywords/edit/", {"description": "Wake words for the lobby"})
    assert response.status_code == 302
    three[0].model.refresh_from_db()
    assert three[0].model.description == "Wake words for the lobby"


def test_version_page_has_metrics_curves_confusion_matrix_and_lineage(staff_client, three):
    version = three[2]
    html = staff_client.get("/models/keywords/v3/").content.decode()
    assert "Test accuracy" in html or "Val accuracy" in html
    assert "<svg" in html and "polyline" in html  # server-rendered training curves
    assert "Confusion matrix" in html and "confusion" in html
    assert version.snapshot_hash[:16] in html
    assert version.code_version in html
    assert 'href="/training/jobs/%d/"' % version.job_id in html
    for entry in version.artifacts:
        assert f'href="/models/keywords/v3/artifacts/{entry["name"]}"' in html
        assert entry["sha256"] in html
    assert "damaged" not in html


def test_damaged_version_is_marked_and_its_download_refused(staff_client, three):
    entry = next(e for e in three[0].artifacts if e["name"] == "weights.pt")
    corrupt(entry)
    assert "damaged" in staff_client.get("/models/keywords/").content.decode()
    html = staff_client.get("/models/keywords/v1/").content.decode()
    assert "This version is damaged" in html
    assert "weights.pt has SHA-256" in html
    response = staff_client.get("/models/keywords/v1/artifacts/weights.pt", follow=True)
    assert response.redirect_chain[-1][0] == "/models/keywords/v1/"
    assert "is damaged" in response.content.decode()


def test_panel_download_streams_the_verified_file(staff_client, three):
    entry = next(e for e in three[0].artifacts if e["name"] == "model.pt2")
    response = staff_client.get("/models/keywords/v1/artifacts/model.pt2")
    assert response.status_code == 200
    assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == entry["sha256"]
    assert staff_client.get("/models/keywords/v1/artifacts/nope.bin").status_code == 404


def test_promote_asks_for_confirmation_then_moves_the_alias_with_a_note(staff_client, staff_user, three):
    confirm = staff_client.get("/models/keywords/aliases/promote/?alias=production&version=3")
    assert confirm.status_code == 200
    html = confirm.content.decode()
    assert "Point production at v3?" in html
    assert "Now: v2" in html and "After: v3" in html
    assert Alias.objects.get(name="production").version == three[1]  # nothing moved yet

    response = staff_client.post("/models/keywords/aliases/promote/", {"alias": "production", "version": 3, "note": "retrained"})
    assert response.status_code == 302
    assert Alias.objects.get(name="production").version == three[2]
    event = AliasEvent.objects.first()
    assert (event.from_number, event.to_number, event.note, event.moved_by) == (2, 3, "retrained", staff_user)


def test_promote_with_a_bad_alias_name_shows_the_form_again(staff_client, three):
    response = staff_client.get("/models/keywords/aliases/promote/?alias=v2&version=3")
    assert response.status_code == 422
    assert "looks like a version number" in response.content.decode()


def test_promote_can_create_a_new_alias(staff_client, three):
    staff_client.post("/models/keywords/aliases/promote/", {"alias": "canary", "version": 1, "note": ""})
    assert Alias.objects.get(name="canary").version == three[0]


def test_promoting_a_version_with_a_damaged_model_file_is_refused(staff_client, three):
    corrupt(next(e for e in three[2].artifacts if e["name"] == "model.pt2"))
    response = staff_client.post("/models/keywords/aliases/promote/", {"alias": "production", "version": 3}, follow=True)
    assert "is damaged" in response.content.decode()
    assert Alias.objects.get(name="production").version == three[1]


def test_rollback_confirmation_and_action(staff_client, three):
    staff_client.post("/models/keywords/aliases/promote/", {"alias": "production", "version": 3})
    page = staff_client.get("/models/keywords/aliases/production/rollback/").content.decode()
    assert "Roll production back to v2" in page
    staff_client.post("/models/keywords/aliases/production/rollback/", {"note": "v3 misfires"})
    assert Alias.objects.get(name="production").version == three[1]
    assert AliasEvent.objects.first().note == "v3 misfires"
    assert "no earlier version" in staff_client.get("/models/keywords/aliases/production/rollback/").content.decode()


def test_deleting_an_alias(staff_client, three):
    assert "Delete production" in staff_client.get("/models/keywords/aliases/production/delete/").content.decode()
    staff_client.post("/models/keywords/aliases/production/delete/", {"note": "retired"})
    assert not Alias.objects.exists()
    assert AliasEvent.objects.first().action == "delete"


def test_deleting_an_aliased_version_is_refused_with_a_clear_message(admin_client, three):
    page = admin_client.get("/models/keywords/v2/delete/").content.decode()
    assert "cannot be deleted: production points at it" in page
    response = admin_client.post("/models/keywords/v2/delete/", follow=True)
    assert "cannot be deleted" in response.content.decode()
    assert ModelVersion.objects.filter(pk=three[1].pk).exists()


def test_deleting_a_version(admin_client, three, django_capture_on_commit_callbacks):
    assert "Delete v3" in admin_client.get("/models/keywords/v3/delete/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/models/keywords/v3/delete/")
    assert response["Location"] == "/models/keywords/"
    assert not ModelVersion.objects.filter(pk=three[2].pk).exists()
    assert not default_storage.exists(three[2].artifacts[0]["path"])


def test_editing_a_versions_notes_tags_and_status(staff_client, three):
    staff_client.post("/models/keywords/v3/edit/", {"description": "Lobby mic", "tags": "lobby, beta", "status": "archived"})
    version = ModelVersion.objects.get(pk=three[2].pk)
    assert (version.description, version.tags, version.status) == ("Lobby mic", ["lobby", "beta"], "archived")


def test_archiving_the_production_version_is_refused(staff_client, three):
    response = staff_client.post("/models/keywords/v2/edit/", {"description": "", "tags": "", "status": "archived"}, follow=True)
    assert "move the alias before archiving" in response.content.decode()
    assert ModelVersion.objects.get(pk=three[1].pk).status == "active"


def test_try_it_shows_scores_as_bars_in_an_htmx_fragment(staff_client, three):
    response = staff_client.post("/models/keywords/try/", {"audio": wav_upload("beep.wav", 2400.0), "ref": ""},
                                 headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    assert 'class="score-bars"' in html
    assert "v2</strong> via <code>production</code>" in html
    assert ">high<" in html


def test_try_it_with_an_explicit_version_and_a_long_clip(staff_client, three):
    html = staff_client.post("/models/keywords/try/", {"audio": wav_upload("hum.wav", 300.0, seconds=1.5), "ref": "v3"},
                             headers={"HX-Request": "true"}).content.decode()
    assert "v3</strong> via <code>v3</code>" in html
    assert "5 windows" in html


def test_try_it_reports_an_undecodable_clip(staff_client, three):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = staff_client.post("/models/keywords/try/", {"audio": SimpleUploadedFile("x.wav", b"junk" * 40)},
                                 headers={"HX-Request": "true"})
    assert "Could not score this clip" in response.content.decode()


def test_try_it_without_htmx_renders_the_model_page(staff_client, three):
    response = staff_client.post("/models/keywords/try/", {"audio": wav_upload()})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" in html and 'class="score-bars"' in html


@pytest.mark.parametrize(
    "url",
    ["/models/keywords/edit/", "/models/keywords/try/", "/models/keywords/aliases/promote/",
     "/models/keywords/aliases/production/rollback/", "/models/keywords/aliases/production/delete/",
     "/models/keywords/v2/delete/", "/models/keywords/v2/edit/"],
)
def test_panel_writes_need_staff(client, outsider_client, three, url):
    assert client.post(url, {"alias": "production", "version": 3})["Location"].startswith("/login/")
    assert outsider_client.post(url, {"alias": "production", "version": 3}).status_code == 403
    assert Alias.objects.get(name="production").version == three[1]
    assert ModelVersion.objects.count() == 3


@pytest.mark.parametrize("url", ["/models/ghost/", "/models/keywords/v9/", "/models/keywords/aliases/ghost/rollback/"])
def test_unknown_things_are_404_pages(staff_client, three, url):
    assert staff_client.get(url).status_code == 404


def test_a_jobs_page_links_to_the_model_its_version_was_registered_in(staff_client, register):
    version = register("keywords")
    html = staff_client.get(f"/training/jobs/{version.job_id}/").content.decode()
    assert '<a class="btn" href="/models/keywords/">Open model keywords</a>' in html
    version.delete()  # the version is gone: nothing to open
    html = staff_client.get(f"/training/jobs/{version.job_id}/").content.decode()
    assert "Open model" not in html


def test_version_choices_put_the_figure_before_its_name(staff_client, three):
    """A narrow select cuts the end of an option: 'v3 · 100.0% test accuracy', not 'v3 · test accuracy 100.0%'."""
    html = staff_client.get("/models/keywords/").content.decode()
    options = re.findall(r'<option value="3"[^>]*>([^<]*)</option>', html)
    assert options and all(re.fullmatch(r"v3 · [\d.]+% test accuracy", text) for text in options), options


def test_version_page_and_model_card_say_what_an_empty_trainer_means(staff_client, register):
    register("keywords")
    for url in ("/models/keywords/v1/", "/models/keywords/v1/card/"):
        html = staff_client.get(url).content.decode()
        assert '<th>trainer</th><td><span class="muted">built-in</span></td>' in html, url


def test_version_page_notes_card_takes_its_own_height_beside_try_it(staff_client, register):
    register("keywords")
    html = staff_client.get("/models/keywords/v1/").content.decode()
    assert '<div class="grid grid-2 grid-top notes-and-try">' in html  # .grid-top: align-items: start
