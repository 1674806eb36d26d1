"""The dataset page, the datasets list and Statistics in headless Chromium agree on a dataset's size: 60 clips,
1 min 30 s, and the long background recording named apart ('+ 1 background recording, 1 min'). Screenshots:
test-artifacts/e2e/dataset-summary.png, dataset-list-summary.png and dataset-stats-summary.png."""

from __future__ import annotations

import pytest
from django.db import connections
from playwright.sync_api import expect

from datasets_app.models import Clip
from tests.e2e.test_user_journey import browser_page, log_in, shot  # noqa: F401 - the browser fixture
from tests.factories import AdminFactory, ClipFactory, DatasetFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_every_summary_of_a_dataset_names_the_background_recording_apart(browser_page):  # noqa: F811
    page = browser_page
    AdminFactory(username="h4-admin")
    dataset = DatasetFactory(name="room", sample_rate=16000)
    for index in range(60):
        ClipFactory(dataset=dataset, label=("yes", "no")[index % 2], speaker=f"s{index % 6}", seconds=0.1, duration=1.5)
    ClipFactory(dataset=dataset, label="", kind=Clip.Kind.BACKGROUND, seconds=0.1, duration=60.0,
                original_name="kitchen-evening.wav")
    connections.close_all()
    log_in(page, "h4-admin")
    note = "+ 1\u00a0background recording, 1\u00a0min"

    page.goto("/datasets/room/")
    summary = page.locator("#dataset-summary .stats")
    expect(summary).to_contain_text("60")
    expect(summary).to_contain_text("1\u00a0min 30\u00a0s")
    expect(summary.get_by_role("link", name=note)).to_be_visible()
    assert "2\u00a0min 30\u00a0s" not in summary.inner_text() and "61" not in summary.inner_text()
    shot(page, "dataset-summary")

    page.goto("/datasets/")
    row = page.locator("tr", has_text="room")
    expect(row.locator("[data-label=Clips]")).to_have_text("60")
    expect(row.locator("[data-label=Duration]")).to_contain_text("1\u00a0min 30\u00a0s")
    expect(row.locator("[data-label=Duration]")).to_contain_text(note)
    shot(page, "dataset-list-summary")

    page.goto("/datasets/room/stats/")
    stats = page.locator(".stats").first
    expect(stats).to_contain_text("1\u00a0min 30\u00a0s")
    expect(stats).to_contain_text(note)
    shot(page, "dataset-stats-summary")
