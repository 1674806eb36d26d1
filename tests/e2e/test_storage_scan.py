"""The Storage clean-up page's scan in headless Chromium: the click only queues it, the page says *Scanning…* (no
second scan can be asked meanwhile) and shows the result by itself once a real `manage.py qcluster` of the default
cluster has listed the storage; then the confirmed clean-up, queued and done the same way. Screenshots:
test-artifacts/e2e/storage-scanning.png, storage-scanned.png and storage-cleaned.png."""

from __future__ import annotations

import os
import time

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connections
from django_q.models import OrmQ, Schedule
from playwright.sync_api import expect

from tests.e2e.test_user_journey import browser_page, log_in, shot  # noqa: F401 - the browser fixture
from tests.factories import AdminFactory
from tests.ops.servers import start_qcluster, stop

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_scan_runs_on_a_worker_while_the_page_says_scanning(browser_page, subprocess_env, tmp_path):
    page = browser_page
    AdminFactory(username="h2-admin")
    for name, size in (("clips/9/ab/orphan.wav", 3072), ("models/tones/v7/model.pt2", 2048)):
        stored = default_storage.save(name, ContentFile(b"x" * size))
        when = time.time() - 2 * 3600
        os.utime(default_storage.path(stored), (when, when))
    Schedule.objects.all().delete()  # no scheduled sweep may clean up before the scan lists the files
    connections.close_all()

    log_in(page, "h2-admin")
    page.goto("/storage/")
    expect(page.get_by_text("Not scanned yet")).to_be_visible()
    page.get_by_role("button", name="Scan the storage").click()
    expect(page.locator("[data-scan-state=running]")).to_contain_text("Scanning… Queued at")
    expect(page.locator("[data-scan-state=running]")).to_contain_text("waiting for a worker (asked by h2-admin)")
    expect(page.get_by_role("button", name="Scanning…")).to_be_disabled()
    assert OrmQ.objects.filter(key="default").count() == 1
    connections.close_all()
    shot(page, "storage-scanning")

    worker = start_qcluster(subprocess_env, tmp_path / "qcluster.log", cluster="default")
    try:
        expect(page.locator("[data-scan-time]")).to_contain_text("scanned by h2-admin", timeout=60_000)
    finally:
        stop(worker)
    expect(page.locator("[data-scan-state]")).to_have_count(0)
    expect(page.get_by_role("button", name="Scan again")).to_be_enabled()
    expect(page.get_by_role("button", name="Remove 2 files (5.0 KB)")).to_be_visible()
    expect(page.locator(".storage-kinds tbody")).to_contain_text("Clip audio")
    shot(page, "storage-scanned")
    # The page stopped polling (htmx got 286): nothing asks the server any more.
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.wait_for_timeout(2500)
    assert requests == []

    # The confirmed clean-up is queued the same way, and done by a worker while the page says so.
    page.check("#id_confirm")
    page.get_by_role("button", name="Remove 2 files (5.0 KB)").click()
    expect(page.locator("[data-scan-state=running]")).to_contain_text("Removing files… Queued at")
    expect(page.get_by_role("button", name="Removing files…")).to_be_disabled()
    assert default_storage.exists("models/tones/v7/model.pt2")
    connections.close_all()
    worker = start_qcluster(subprocess_env, tmp_path / "qcluster-clean-up.log", cluster="default")
    try:
        expect(page.locator("[data-scan-state=cleaned]")).to_contain_text(
            "Removed 2 files without rows (5.0 KB). Asked by h2-admin", timeout=60_000)
    finally:
        stop(worker)
    expect(page.get_by_text("Nothing to remove")).to_be_visible()
    assert not default_storage.exists("models/tones/v7/model.pt2")
    shot(page, "storage-cleaned")
