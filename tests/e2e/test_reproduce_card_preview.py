"""In headless Chromium: hear the augmentation preview on the training form, train again from a version's snapshot
and see that the metrics match, and read the model card (screenshots under test-artifacts/registry/)."""

from __future__ import annotations

import re

import pytest
from django.db import connections
from playwright.sync_api import expect

from registry_app.models import Alias, ModelVersion
from tests.e2e.test_user_journey import browser_page, log_in  # noqa: F401 - the fixture
from tests.e2e.test_user_journey import shot as journey_shot
from tests.factories import AdminFactory, ClipFactory, DatasetFactory
from tests.ops.servers import ROOT
from training_app import tasks
from training_app.models import TrainingJob

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = ROOT / "test-artifacts" / "registry"
TINY = {"epochs": 2, "clip_seconds": 0.5, "batch_size": 2, "channels": 8, "early_stopping_patience": 0, "seed": 5}


def shot(page, name: str) -> None:
    journey_shot(page, name, SHOTS)


def test_preview_reproduce_and_model_card_in_the_browser(browser_page):  # noqa: F811
    page = browser_page
    admin = AdminFactory(username="h4-admin")
    dataset = DatasetFactory(name="tones", licence="CC-BY-4.0", source="https://example.org/tones",
                             consent_note="Synthetic tones: no people were recorded.")
    for index in range(6):
        ClipFactory(dataset=dataset, label="low", frequency=300.0 + 23 * index, seconds=0.5)
        ClipFactory(dataset=dataset, label="high", frequency=1500.0 + 23 * index, seconds=0.5)
    for index in range(5):
        ClipFactory(dataset=dataset, label="noise", frequency=5000.0 + 97 * index, seconds=0.5,
                    source="https://freesound.org/people/example/")
    job = TrainingJob.objects.create_job(dataset, "tones", "quick", TINY, by=admin, enqueue=False)
    assert tasks.run_job_now(job.pk) == "succeeded"
    v1 = ModelVersion.objects.get(job=job)
    Alias.point(v1.model, "production", v1, by=admin, note="first release")
    connections.close_all()

    log_in(page, "h4-admin")

    # The training form: listen to what training hears.
    page.goto("/training/new/?dataset=tones")
    page.click("details.advanced summary")
    page.fill("input[name=clip_seconds]", "0.5")
    page.click("text=Listen to what training hears")
    expect(page.locator("#augment-preview figure")).to_have_count(5, timeout=90000)
    expect(page.locator("#augment-preview")).to_contain_text("Noise comes from 5 clips of the noise label")
    page.locator("#augment-preview").scroll_into_view_if_needed()
    shot(page, "augmentation-preview")
    first_clip = page.locator("#augment-preview p.small a").first.inner_text()
    page.click("#augment-preview >> text=Another clip")
    expect(page.locator("#augment-preview p.small a").first).not_to_have_text(first_clip, timeout=90000)

    # Train again from v1's snapshot, from the version page.
    page.goto("/models/tones/v1/")
    page.click("text=Train again from this snapshot")
    expect(page).to_have_url(re.compile(r"/training/jobs/\d+/$"))
    again = TrainingJob.objects.get(reproduces=job)
    assert tasks.run_job_now(again.pk) == "succeeded"
    connections.close_all()
    page.goto(f"/training/jobs/{again.pk}/")
    expect(page.locator("#reproduction")).to_contain_text("Reproduced: the metrics match.")
    shot(page, "reproduction-job")
    page.goto("/models/tones/v1/")
    expect(page.locator(".reproductions")).to_contain_text("match")
    shot(page, "version-with-reproduction")

    # The model card, and its Markdown download.
    page.click(".page-head >> text=Model card")
    expect(page).to_have_url(re.compile(r"/models/tones/v1/card/$"))
    expect(page.locator("body")).to_contain_text("CC-BY-4.0")
    expect(page.locator("body")).to_contain_text("first release")
    shot(page, "model-card")
    with page.expect_download() as download:
        page.click("text=Download Markdown")
    assert download.value.suggested_filename == "tones-v1-model-card.md"
    text = open(download.value.path()).read()
    assert "- **Licence**: CC-BY-4.0" in text and "| https://freesound.org/people/example/ | 5 |" in text
