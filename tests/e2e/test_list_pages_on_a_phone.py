"""The three list pages (datasets, training jobs, models) on a phone (390 px) in headless Chromium: each row stacks
into a card whose lines name their column, as the audit trail and the versions table do, instead of a table
scrolling sideways with its status and results out of sight; at 1280 px they stay tables. Screenshots go to
test-artifacts/narrow/ (390-list-*.png)."""

from __future__ import annotations

import pytest
from django.db import connections
from playwright.sync_api import expect

from registry_app.models import RegisteredModel
from tests.e2e.test_narrow_screens import DESKTOP, PHONE, column_names, shot, sideways_overflow
from tests.e2e.test_user_journey import browser_page, log_in  # noqa: F401 - the fixture
from tests.factories import AdminFactory, ClipFactory, DatasetFactory, TrainingJobFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAGES = {
    "datasets": ("/datasets/", ".dataset-table", ["", "Labels", "Clips", "Duration", "Rate", "Created"]),
    "jobs": ("/training/", ".jobs-table",
             ["", "", "Dataset", "Status", "Result", "Started by", "Created", "Duration"]),
    "models": ("/models/", ".models-table",
               ["", "Latest version", "Aliases", "Headline metric", "Versions", "Last trained"]),
}


def test_the_list_pages_stack_their_rows_on_a_phone(browser_page):  # noqa: F811
    page = browser_page
    admin = AdminFactory(username="h2-lists")
    dataset = DatasetFactory(name="birdsong-field-recordings", description="Dawn chorus near the river bank")
    for index in range(2):
        ClipFactory(dataset=dataset, label="blackbird" if index else "robin", seconds=0.5)
    TrainingJobFactory(dataset=dataset, model_name="birdsong-detector", status="failed", created_by=admin,
                       error="the dataset has too few clips")
    RegisteredModel.objects.create(name="birdsong-detector", created_by=admin)
    connections.close_all()

    log_in(page, "h2-lists")
    page.set_viewport_size(PHONE)
    for name, (url, table, columns) in PAGES.items():
        page.goto(url)
        shot(page, f"list-{name}")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
        assert sideways_overflow(page) == [], name
        expect(page.locator(f"{table} thead")).to_be_hidden()
        assert column_names(page.locator(f"{table} tbody tr").first) == columns, name
    page.set_viewport_size(DESKTOP)
    for name, (url, table, _) in PAGES.items():
        page.goto(url)
        expect(page.locator(f"{table} thead")).to_be_visible()
