"""The whole user journey in a real browser (headless Chromium) against a live server and a real worker.

Log in, create a dataset, drag in files and drop in a zip, fix a mislabelled clip inline, train on it (a
`manage.py qcluster` training worker on the test database does the work), follow the job until it
succeeds, open the model, promote its version to `production` with a note, and try a clip in "Try it".

Each step leaves a screenshot under test-artifacts/e2e/ (the paths are printed, so the CI log names them).
"""

from __future__ import annotations

import base64
import io
import re
import zipfile
from pathlib import Path

import pytest
from django.db import connections
from playwright.sync_api import Page, expect, sync_playwright

from datasets_app.models import Clip, Dataset
from registry_app.models import Alias, ModelVersion
from tests.audio import tone, wav_bytes
from tests.factories import AdminFactory
from tests.ops.servers import ROOT, start_qcluster, stop
from training_app.models import TrainingJob

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SHOTS = ROOT / "test-artifacts" / "e2e"
PASSWORD = "correct horse battery staple"
LOW, HIGH = 300.0, 2400.0
HTMX_ABORT = re.compile(r"^htmx:(sendAbort|afterRequest), \[object HTML\w*Element\]$")


def shot(page, name: str, folder: Path = SHOTS) -> Path:
    """A full-page screenshot ``folder/name.png``, taken from the top (a full-page shot of a scrolled page would
    paint the sticky top bar mid-page)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page, username: str) -> None:
    """Log in through the panel's login page as ``username`` (password PASSWORD) and land on the datasets."""
    page.goto("/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/datasets/$"))


def clip_wav(frequency: float, index: int) -> bytes:
    """Half a second of a tone, slightly different per index (identical audio would be a duplicate)."""
    return wav_bytes(tone(frequency * (1 + 0.03 * index), 0.5, seed=index))


@pytest.fixture
def training_worker(subprocess_env, tmp_path):
    log_path = tmp_path / "qcluster.log"
    process = start_qcluster(subprocess_env, log_path)
    yield log_path
    stop(process)


@pytest.fixture
def browser_page(live_server):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does this)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=live_server.url)
        page = context.new_page()
        page.set_default_timeout(20000)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        # htmx logs a request it aborted on purpose (hx-sync replace, leaving a polling page) as a console
        # error; anything else logged as an error fails the test.
        page.on("console", lambda message: errors.append(message.text)
                if message.type == "error" and not HTMX_ABORT.match(message.text) else None)
        yield page
        browser.close()
        # Playwright's sync API runs an event loop in this thread, so the ORM connection opened in the test
        # body belongs to that context: close it here, or it outlives the test and blocks the test database.
        connections.close_all()
        assert errors == [], f"JavaScript errors in the browser: {errors}"


class Screenshots:
    def __init__(self, page: Page, capsys) -> None:
        self.page = page
        self.capsys = capsys
        self.count = 0
        SHOTS.mkdir(parents=True, exist_ok=True)
        for old in SHOTS.glob("*.png"):
            old.unlink()

    def take(self, name: str) -> Path:
        self.count += 1
        path = shot(self.page, f"{self.count:02d}-{name}")
        with self.capsys.disabled():  # straight to the terminal, so the CI log names every file
            print(f"\nscreenshot: {path.relative_to(ROOT)}", end="")
        return path


def drop_files(page: Page, selector: str, files: dict[str, bytes]) -> None:
    """A real drag-and-drop: dragenter, dragover and drop events carrying a DataTransfer with the files."""
    encoded = {name: base64.b64encode(data).decode() for name, data in files.items()}
    transfer = page.evaluate_handle(
        """(files) => {
          const transfer = new DataTransfer();
          for (const [name, b64] of Object.entries(files)) {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            transfer.items.add(new File([bytes], name, { type: "audio/wav" }));
          }
          return transfer;
        }""",
        encoded,
    )
    for event in ("dragenter", "dragover", "drop"):
        page.dispatch_event(selector, event, {"dataTransfer": transfer})


def test_log_in_upload_fix_train_promote_and_try_a_clip(browser_page, training_worker, tmp_path, capsys):
    page = browser_page
    shots = Screenshots(page, capsys)
    AdminFactory(username="e2e-admin")

    # Log in.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/"))
    page.fill("input[name=username]", "e2e-admin")
    page.fill("input[name=password]", PASSWORD)
    shots.take("login")
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/datasets/$"))

    # Create a dataset.
    form = page.locator("#new-dataset")
    if form.get_attribute("open") is None:
        page.click("#new-dataset summary")
    page.fill("#new-dataset input[name=name]", "tones")
    page.fill("#new-dataset [name=description]", "Low and high tones for the end-to-end test")
    shots.take("create-dataset")
    page.click("#new-dataset button[type=submit]")
    expect(page).to_have_url(re.compile(r"/datasets/tones/$"))
    expect(page.locator(".messages")).to_contain_text("Dataset “tones” created")

    # Drag six low tones onto the upload area, labelled "low".
    page.fill("#upload-label", "low")
    drop_files(page, "[data-dropzone]", {f"low-{i}.wav": clip_wav(LOW, i) for i in range(6)})
    summary = page.locator("[data-upload-summary]")
    expect(summary).to_contain_text("6 added · 0 rejected", timeout=30000)
    shots.take("dropped-files")

    # A zip with a folder per label; one folder name has a typo, so one clip is mislabelled "hgih".
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(5):
            zf.writestr(f"tones/high/high-{i}.wav", clip_wav(HIGH, i))
        zf.writestr("tones/hgih/high-5.wav", clip_wav(HIGH, 5))
    (tmp_path / "high-tones.zip").write_bytes(archive.getvalue())
    page.fill("#upload-label", "")
    page.set_input_files("#id_files", str(tmp_path / "high-tones.zip"))
    expect(summary).to_contain_text("12 added · 0 rejected", timeout=30000)
    expect(page.locator("[data-upload-list]")).to_contain_text("Archive: 6 added, 0 rejected")
    expect(page.locator("#clip-table tbody tr")).to_have_count(12, timeout=15000)
    shots.take("zip-imported")
    assert Clip.objects.filter(label="hgih").count() == 1

    # Fix the label inline.
    wrong = Clip.objects.get(label="hgih")
    cell = page.locator(f"#clip-{wrong.pk} .cell-label")
    cell.locator("input[name=value]").fill("high")
    cell.locator("input[name=value]").press("Enter")
    expect(cell.locator(".saved-mark")).to_be_visible()
    shots.take("label-fixed")
    wrong.refresh_from_db()
    assert wrong.label == "high"
    assert sorted(Clip.objects.active().values_list("label", flat=True)) == ["high"] * 6 + ["low"] * 6

    # Start training with the quick preset, shrunk in the advanced settings.
    page.goto("/training/new/")
    page.select_option("#id_dataset", "tones")
    page.fill("#id_model_name", "tone-detector")
    page.check("input[name=preset][value=quick]")
    page.click("details.advanced summary")
    page.fill("#id_epochs", "3")
    page.fill("#id_batch_size", "4")
    page.fill("#id_clip_seconds", "0.5")
    expect(page.locator("#summary")).to_contain_text("12")
    expect(page.locator("#summary .split-line")).to_be_visible()
    shots.take("new-training-job")
    page.click("#summary button[type=submit]")
    expect(page).to_have_url(re.compile(r"/training/jobs/\d+/$"))
    job = TrainingJob.objects.get()
    assert job.config["epochs"] == 3 and job.snapshot_size == 12

    # Watch the progress bar until the job has succeeded (the page polls every 2 s). The badge and the bar are
    # read in one snapshot of the page: a poll can replace or remove the bar between two separate reads.
    progress_seen: list[int] = []
    badge = page.locator("h1 .badge")
    for _ in range(600):
        status, value = page.evaluate(
            """() => {
              const badge = document.querySelector("h1 .badge");
              const bar = document.querySelector(".progress-large");
              return [badge ? badge.innerText.trim() : "", bar ? bar.getAttribute("aria-valuenow") : null];
            }"""
        )
        if status in ("succeeded", "failed", "cancelled"):
            break
        if value is not None:
            if not progress_seen or int(value) != progress_seen[-1]:
                progress_seen.append(int(value))
                if int(value) > 0 and not any(0 < seen for seen in progress_seen[:-1]):
                    shots.take("training-progress")
        page.wait_for_timeout(250)
    job.refresh_from_db()
    assert job.status == "succeeded", f"{job.status}: {job.error}\n{training_worker.read_text()[-3000:]}"
    expect(badge).to_have_text("succeeded")
    assert job.progress == 100.0
    assert progress_seen, "the job page never showed the running job's progress bar"
    assert progress_seen == sorted(progress_seen), f"the progress bar went backwards: {progress_seen}"
    expect(page.locator(".stat-main .label")).to_contain_text("accuracy")
    shots.take("training-succeeded")

    # Open the model and promote its version to production, confirming with a note.
    page.click("text=Open model tone-detector")
    expect(page).to_have_url(re.compile(r"/models/tone-detector/$"))
    version = ModelVersion.objects.get(model__name="tone-detector")
    expect(page.locator("#versions")).to_contain_text(f"v{version.version}")
    shots.take("model")
    page.locator("#versions a", has_text="Promote…").click()
    expect(page.locator("h1")).to_contain_text("production")
    page.fill("#id_note", "first model, checked in the browser")
    shots.take("promote-confirm")
    page.click(f"button:has-text('Point production at v{version.version}')")
    expect(page).to_have_url(re.compile(r"/models/tone-detector/$"))
    expect(page.locator("#versions .badge-ok", has_text="production")).to_be_visible()
    expect(page.locator("#history")).to_contain_text("first model, checked in the browser")
    shots.take("promoted")
    alias = Alias.objects.get(model__name="tone-detector", name="production")
    assert alias.version_id == version.pk

    # Try a high tone it has never heard and see the score bars.
    (tmp_path / "try.wav").write_bytes(wav_bytes(tone(HIGH * 1.05, 0.5, seed=99)))
    page.set_input_files("#try [data-try-file]", str(tmp_path / "try.wav"))
    page.click("#try button:has-text('Score')")
    bars = page.locator("#try-result .score-bars .bar-row")
    expect(bars).to_have_count(2, timeout=30000)
    expect(page.locator("#try-result")).to_contain_text(f"v{version.version} via production")
    shots.take("try-it")
    labels = sorted(bars.nth(i).locator(".score-label").inner_text() for i in range(2))
    assert labels == ["high", "low"]
    assert Dataset.objects.get().clips.count() == 12
