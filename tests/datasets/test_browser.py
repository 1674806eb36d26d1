"""The dataset page in headless Chromium: uploads with per-file results, folder drops, inline edits, recording."""

from __future__ import annotations

import base64

import pytest
from django.db import connections
from playwright.sync_api import sync_playwright

from audioml.roles import TRAINER, grant
from datasets_app.models import Clip
from tests.audio import distinct_wav, zip_bytes
from tests.factories import ClipFactory, DatasetFactory, StaffFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]


@pytest.fixture
def page(live_server):
    grant(StaffFactory(username="browser-staff"), TRAINER)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900}, permissions=["microphone"])
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.goto(live_server.url + "/login/")
        tab.fill("input[name=username]", "browser-staff")
        tab.fill("input[name=password]", "correct horse battery staple")
        tab.click("button[type=submit]")
        tab.wait_for_url(live_server.url + "/datasets/")
        tab.base_url = live_server.url
        yield tab
        browser.close()
        # The test body ran inside Playwright's greenlet, where Django opened a connection of its own.
        connections.close_all()
        assert errors == []


def test_dropped_files_and_zip_show_per_file_results(page, tmp_path):
    DatasetFactory(name="kws")
    (tmp_path / "good.wav").write_bytes(distinct_wav(1))
    (tmp_path / "broken.wav").write_bytes(b"not audio" * 100)
    (tmp_path / "bundle.zip").write_bytes(zip_bytes({"no/a.wav": distinct_wav(2), "no/b.wav": distinct_wav(3)}))
    page.goto(page.base_url + "/datasets/kws/")
    page.fill("#upload-label", "yes")
    page.set_input_files("#id_files", [str(tmp_path / name) for name in ("good.wav", "broken.wav", "bundle.zip")])
    summary = page.locator("[data-upload-summary]")
    summary.filter(has_text="3 added · 1 rejected").wait_for(timeout=30000)
    items = page.locator("[data-upload-list] > li")
    texts = {items.nth(i).locator(".upload-name").first.inner_text(): items.nth(i).inner_text() for i in range(items.count())}
    assert "Added as clip #" in texts["good.wav"]
    assert "Rejected: not a decodable audio file" in texts["broken.wav"]
    assert "Archive: 2 added, 0 rejected" in texts["bundle.zip"]
    assert dict(Clip.objects.values_list("original_name", "label")) == {"good.wav": "yes", "no/a.wav": "no", "no/b.wav": "no"}
    page.locator("#clip-table tbody tr").nth(2).wait_for()
    page.locator("#dataset-summary .stat .value").first.filter(has_text="3").wait_for()


def test_a_dropped_folder_labels_files_by_their_folder(page):
    DatasetFactory(name="kws")
    page.goto(page.base_url + "/datasets/kws/")
    files = {"up": base64.b64encode(distinct_wav(4)).decode(), "down": base64.b64encode(distinct_wav(5)).decode()}
    page.evaluate("""(files) => {
      const toFile = (name, b64) => new File([Uint8Array.from(atob(b64), c => c.charCodeAt(0))], name, {type: "audio/wav"});
      const fileEntry = (name, b64) => ({isFile: true, isDirectory: false, name, file: (ok) => ok(toFile(name, b64))});
      const dirEntry = (name, children) => ({isFile: false, isDirectory: true, name, createReader: () => {
        let done = false; return {readEntries: (ok) => { ok(done ? [] : children); done = true; }}; }});
      const root = dirEntry("commands", [dirEntry("up", [fileEntry("1.wav", files.up), fileEntry("README.txt", btoa("notes"))]),
                                         dirEntry("down", [fileEntry("2.wav", files.down)])]);
      const drop = new Event("drop", {bubbles: true, cancelable: true});
      Object.defineProperty(drop, "dataTransfer", {value: {items: [{webkitGetAsEntry: () => root}], files: []}});
      document.querySelector("[data-dropzone]").dispatchEvent(drop);
    }""", files)
    page.locator("[data-upload-summary]").filter(has_text="2 added · 0 rejected").wait_for(timeout=30000)
    assert sorted(Clip.objects.values_list("label", flat=True)) == ["down", "up"]


def test_a_dropped_folder_leaves_out_what_an_import_skips(page):
    """The server's rule, not a copy in the script: NOTICE, AUTHORS, a README and Thumbs.db are not sent."""
    DatasetFactory(name="kws")
    page.goto(page.base_url + "/datasets/kws/")
    audio = base64.b64encode(distinct_wav(6)).decode()
    page.evaluate("""(audio) => {
      const toFile = (name, b64) => new File([Uint8Array.from(atob(b64), c => c.charCodeAt(0))], name);
      const fileEntry = (name, b64) => ({isFile: true, isDirectory: false, name, file: (ok) => ok(toFile(name, b64))});
      const text = btoa("not audio");
      const folder = {isFile: false, isDirectory: true, name: "yes", createReader: () => {
        let done = false;
        return {readEntries: (ok) => { ok(done ? [] : [fileEntry("1.wav", audio), fileEntry("NOTICE", text),
          fileEntry("AUTHORS", text), fileEntry("README.md", text), fileEntry("Thumbs.db", text)]); done = true; }};
      }};
      const drop = new Event("drop", {bubbles: true, cancelable: true});
      Object.defineProperty(drop, "dataTransfer", {value: {items: [{webkitGetAsEntry: () => folder}], files: []}});
      document.querySelector("[data-dropzone]").dispatchEvent(drop);
    }""", audio)
    page.locator("[data-upload-summary]").filter(has_text="1 added · 0 rejected").wait_for(timeout=30000)
    assert page.locator("[data-upload-list] > li").count() == 1
    assert list(Clip.objects.values_list("label", flat=True)) == ["yes"]


def test_inline_edit_saves_and_shows_errors_beside_the_field(page):
    clip = ClipFactory(dataset=DatasetFactory(name="kws"), label="yes", score=0.5)
    page.goto(page.base_url + "/datasets/kws/")
    score = page.locator(f"#clip-{clip.pk} .cell-score input[name=value]")
    score.fill("1.5")
    score.press("Tab")
    page.locator(f"#clip-{clip.pk} .cell-score .field-error").filter(has_text="between 0 and 1").wait_for()
    label = page.locator(f"#clip-{clip.pk} .cell-label input[name=value]")
    label.fill("no")
    label.press("Enter")
    page.locator(f"#clip-{clip.pk} .cell-label .saved-mark").wait_for()
    clip.refresh_from_db()
    assert (clip.label, clip.score) == ("no", 0.5)


def test_bulk_trash_from_the_table(page):
    dataset = DatasetFactory(name="kws")
    clips = [ClipFactory(dataset=dataset) for _ in range(3)]
    page.goto(page.base_url + "/datasets/kws/")
    page.check(f"#clip-{clips[0].pk} input[name=ids]")
    page.check(f"#clip-{clips[1].pk} input[name=ids]")
    page.locator("[data-selected-count]").filter(has_text="2 selected").wait_for()
    page.click("button[value=trash]")
    page.locator("#clip-table .msg-success").filter(has_text="2 clips moved to the trash.").wait_for()
    assert Clip.objects.trashed().count() == 2


def test_microphone_recording_goes_into_the_dataset(page):
    DatasetFactory(name="kws")
    page.goto(page.base_url + "/datasets/kws/")
    page.fill("#rec-label", "hello")
    page.fill("#rec-transcript", "hello there")
    page.click("[data-rec-toggle]")
    page.wait_for_timeout(1200)
    page.click("[data-rec-toggle]")
    page.locator("[data-rec-preview]:not([hidden])").wait_for()
    page.click("[data-rec-save]")
    page.locator("[data-upload-summary]").filter(has_text="1 added").wait_for(timeout=30000)
    clip = Clip.objects.get()
    assert (clip.label, clip.transcript, clip.original_format) == ("hello", "hello there", "webm/opus")
    assert clip.duration > 0.5


def test_a_recording_takes_a_source_kept_for_the_next_and_an_invalid_one_keeps_the_recording(page):
    """The recorder's Source field goes the upload's way (the API's 422 naming `source`, shown under the recorder's
    own field); the refused recording stays, to be saved again once the source is corrected."""
    DatasetFactory(name="kws", source="office recordings")
    page.goto(page.base_url + "/datasets/kws/")
    source = page.locator("#rec-source")
    assert source.get_attribute("placeholder") == "office recordings (the dataset's)"
    page.fill("#rec-label", "hello")
    page.evaluate("document.querySelector('#rec-source').value = 'phone\\tkitchen'")
    page.click("[data-rec-toggle]")
    page.wait_for_timeout(1200)
    page.click("[data-rec-toggle]")
    page.locator("[data-rec-preview]:not([hidden])").wait_for()
    page.click("[data-rec-save]")
    error = page.locator("[data-recorder] [data-field=source] .field-error")
    error.wait_for(timeout=30000)
    assert error.inner_text() == "Use a single line without control characters."
    assert page.locator("#upload [data-field=source].has-error").count() == 1  # the recorder's, not the form's
    assert page.locator("#upload-form .field-error").count() == 0
    assert not Clip.objects.exists()
    assert page.locator("[data-rec-preview]").is_visible() and page.locator("[data-rec-save]").is_enabled()

    page.fill("#rec-source", "phone in the kitchen")
    page.click("[data-rec-save]")
    page.locator("[data-upload-summary]").filter(has_text="1 added").wait_for(timeout=30000)
    page.locator("[data-rec-preview]").wait_for(state="hidden")
    assert page.locator("[data-recorder] [data-field=source] .field-error").count() == 0
    assert source.input_value() == "phone in the kitchen"  # kept for the next recording
    clip = Clip.objects.get()
    assert (clip.label, clip.source) == ("hello", "phone in the kitchen")


def test_an_invalid_source_shows_under_its_field_and_a_valid_one_is_stored(page, tmp_path):
    """The script uploads through the API; a 422 naming `source` is shown under the Source field (a tab survives
    a text input, a line break does not), and the next upload clears it. Screenshots under test-artifacts/datasets/."""
    from pathlib import Path

    shots = Path(__file__).resolve().parents[2] / "test-artifacts" / "datasets"
    shots.mkdir(parents=True, exist_ok=True)
    DatasetFactory(name="kws", source="office recordings")
    (tmp_path / "one.wav").write_bytes(distinct_wav(1))
    page.goto(page.base_url + "/datasets/kws/")
    page.evaluate("document.querySelector('#upload-source').value = 'pack 7\\tfreesound'")
    page.set_input_files("#id_files", [str(tmp_path / "one.wav")])
    error = page.locator("[data-field=source] .field-error")
    error.wait_for(timeout=30000)
    assert error.inner_text() == "Use a single line without control characters."
    page.locator("#upload").screenshot(path=str(shots / "upload-source-error.png"))
    assert not Clip.objects.exists()
    page.fill("#upload-source", "https://freesound.org/s/12345/")
    page.set_input_files("#id_files", [str(tmp_path / "one.wav")])
    page.locator("[data-upload-summary]").filter(has_text="1 added").wait_for(timeout=30000)
    assert page.locator("[data-field=source] .field-error").count() == 0
    page.locator("#upload").screenshot(path=str(shots / "upload-source-ok.png"))
    assert list(Clip.objects.values_list("source", flat=True)) == ["https://freesound.org/s/12345/"]
