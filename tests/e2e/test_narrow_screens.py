"""On a phone (390 px wide) in headless Chromium: the audit trail, the model versions table and a version's
artifacts stack their rows instead of scrolling sideways, and chart text stays legible; at 1280 px the tables stay
tables. Screenshots go to test-artifacts/narrow/ (390-*.png, 1280-*.png)."""

from __future__ import annotations

import pytest
from django.db import connections
from playwright.sync_api import expect

from audioml import audit
from registry_app.models import Alias
from tests.e2e.test_user_journey import browser_page, log_in  # noqa: F401 - the fixture
from tests.e2e.test_user_journey import shot as journey_shot
from tests.factories import AdminFactory, ClipFactory, DatasetFactory
from tests.ops.servers import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = ROOT / "test-artifacts" / "narrow"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
# The smallest chart text, in CSS pixels as drawn, that still reads on a phone.
LEGIBLE_PX = 10


def shot(page, name: str) -> None:
    journey_shot(page, f"{page.viewport_size['width']}-{name}", SHOTS)


def sideways_overflow(page) -> list[str]:
    """What is wider than its box: the page itself, or a table inside its scrolling wrapper."""
    return page.evaluate("""() => {
        const wide = [];
        if (document.documentElement.scrollWidth > window.innerWidth) wide.push('page ' + document.documentElement.scrollWidth);
        for (const wrap of document.querySelectorAll('.table-wrap')) {
            if (wrap.scrollWidth > wrap.clientWidth + 1) wide.push(wrap.querySelector('table').className + ' ' + wrap.scrollWidth);
        }
        return wide;
    }""")


def column_names(row) -> list[str]:
    """What each shown cell of a table row says it is (its ::before content), in order."""
    return row.evaluate("""row => [...row.cells].filter(cell => cell.getClientRects().length)
        .map(cell => getComputedStyle(cell, '::before').content.replace(/^"|"$/g, '').replace(/^none$/, ''))""")


def smallest_chart_text(page) -> float:
    """The smallest drawn font size of any visible text in a chart's SVG, in CSS pixels."""
    return page.evaluate("""() => {
        let smallest = Infinity;
        for (const text of document.querySelectorAll('.chart svg text, .stats-charts svg text')) {
            const svg = text.ownerSVGElement;
            if (!svg.getClientRects().length || !text.textContent.trim()) continue;
            const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
            smallest = Math.min(smallest, parseFloat(getComputedStyle(text).fontSize) * scale);
        }
        return smallest;
    }""")


def test_tables_stack_and_charts_stay_legible_on_a_phone(browser_page, register):  # noqa: F811
    page = browser_page
    admin = AdminFactory(username="h5-admin")
    dataset = DatasetFactory(name="birdsong-field-recordings")
    for index in range(4):
        ClipFactory(dataset=dataset, label="blackbird" if index % 2 else "robin", seconds=0.5, frequency=400.0 + 50 * index)
    audit.record("dataset.create", dataset, user=admin)
    audit.record("clip.edit", dataset, user=admin, changes={"label": ["robin", "blackbird"],
                                                             "notes": ["", "recorded at dawn near the river bank"]})
    audit.record("clip.upload", dataset, user=admin, changes={"clip_ids": [None, list(range(1, 26))],
                                                              "source": [None, ["https://example.org/a-long-source-address"]]})
    epochs = [{"epoch": e, "train_loss": 1.2 / e, "val_loss": 1.3 / e + 0.05, "val_accuracy": min(0.97, 0.4 + 0.06 * e)}
              for e in range(1, 13)]
    versions = [register("birdsong", dataset=dataset, epochs=epochs) for _ in range(3)]
    versions[1].tags = ["night", "augmented"]
    versions[1].save()
    Alias.point(versions[1].model, "production", versions[1], by=admin, note="best so far")
    Alias.point(versions[1].model, "staging", versions[2], by=admin, note="try it")
    job_id = versions[2].job_id
    connections.close_all()

    log_in(page, "h5-admin")

    pages = {"audit": "/audit/", "versions": "/models/birdsong/", "version": "/models/birdsong/v3/",
             "job": f"/training/jobs/{job_id}/", "stats": "/datasets/birdsong-field-recordings/stats/"}
    for viewport in (PHONE, DESKTOP):
        page.set_viewport_size(viewport)
        for name, url in pages.items():
            page.goto(url)
            shot(page, name)
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], (viewport, name)
            if name in ("audit", "versions"):
                assert sideways_overflow(page) == [], (viewport, name)
            if name in ("version", "job", "stats") and viewport == PHONE:
                assert smallest_chart_text(page) >= LEGIBLE_PX, name

    # Stacked on a phone: no header row, each cell says what it is.
    page.set_viewport_size(PHONE)
    page.goto("/audit/")
    expect(page.locator("#audit-events thead")).to_be_hidden()
    login, edit = (page.locator("#audit-events tbody tr", has_text=action) for action in ("user.login", "clip.edit"))
    assert column_names(edit) == ["When", "Who", "Action", "Object", "Changes"]  # no address: no "From" line
    assert column_names(login) == ["When", "Who", "Action", "Object", "From"]  # no changes: no "Changes" line
    page.goto("/models/birdsong/")
    expect(page.locator(".versions-table thead")).to_be_hidden()
    # The version (the card's title) and the promote button need no name; an empty cell is not shown.
    assert column_names(page.locator(".versions-table tbody tr").first) == [
        "", "Status", "Accuracy", "vs. production", "Macro F1", "Macro F1 vs. production", "Baseline", "Data",
        "Trained", ""]
    page.goto("/models/birdsong/v3/")
    assert column_names(page.locator(".artifacts-table tbody tr").first) == ["", "Size", "SHA-256", ""]
    # A table on a wide screen.
    page.set_viewport_size(DESKTOP)
    expect(page.locator(".artifacts-table thead")).to_be_visible()
    page.goto("/models/birdsong/")
    expect(page.locator(".versions-table thead")).to_be_visible()
