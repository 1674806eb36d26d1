"""In a real browser: split an alias's traffic and shadow it, watch the versions compared on live traffic, flag a
wrong answer into a dataset's review queue and accept it as a clip. Screenshots go to test-artifacts/e2e/."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from playwright.sync_api import expect

from audioml.models import ApiToken
from datasets_app.models import Clip
from registry_app import traffic
from registry_app.models import Alias, PredictionLog
from tests.e2e.test_user_journey import PASSWORD, browser_page  # noqa: F401 - the browser fixture
from tests.e2e.test_user_journey import shot as journey_shot
from tests.factories import AdminFactory, DatasetFactory
from tests.registry.conftest import wav_upload

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def shot(page, name: str) -> None:
    print(f"screenshot: {journey_shot(page, f'traffic-{name}')}")


def test_split_shadow_live_comparison_and_review_in_the_browser(browser_page, register):  # noqa: F811
    page = browser_page
    AdminFactory(username="alice", password=PASSWORD)
    v1, v2, v3 = (register("keywords") for _ in range(3))
    model = v1.model
    model.set_log_settings({"log_audio": True})
    Alias.point(model, "production", v1, note="first release")
    DatasetFactory(name="kitchen-words")

    page.goto("/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")

    # Split production 70/30 with v2 and shadow it with v3, in the panel.
    page.goto("/models/keywords/")
    page.get_by_role("link", name="Traffic…").click()
    page.select_option("select[name=split_version]", "2")
    page.fill("input[name=split_percent]", "30")
    page.select_option("select[name=shadow_version]", "3")
    page.fill("textarea[name=note]", "canary for the kitchen devices")
    shot(page, "1-form")
    page.get_by_role("button", name="Apply to production").click()
    expect(page.locator(".messages")).to_contain_text("v2 30%")
    alias = Alias.objects.get(model=model, name="production")
    assert (alias.split_version, alias.split_percent, alias.shadow_version) == (v2, 30, v3)

    # Live traffic from 30 devices, each sending two clips.
    _, token = ApiToken.issue(AdminFactory(username="device-fleet"), "e2e")
    api = Client(headers={"Authorization": f"Bearer {token}"})
    answered = {}
    for device in range(30):
        for frequency in (2400.0, 300.0):
            body = api.post("/api/models/keywords/predict",
                            {"files": [wav_upload(f"d{device}.wav", frequency + device)], "key": f"device-{device}"}).json()
            answered.setdefault(device, set()).add(body["version"])
    assert all(len(versions) == 1 for versions in answered.values())  # sticky per device
    assert {next(iter(v)) for v in answered.values()} == {1, 2}
    traffic.shadow_pool.drain()
    assert PredictionLog.objects.filter(role="shadow").count() == 60

    page.goto("/models/keywords/")
    expect(page.locator("#live")).to_contain_text("Shadow agreement")
    expect(page.locator("#live")).to_contain_text("v3 agreed with v1")
    page.locator("#aliases").scroll_into_view_if_needed()
    shot(page, "2-model-page")

    # Flag one answer wrong from the log and queue it for kitchen-words.
    wrong = PredictionLog.objects.filter(role="primary", answer="high").order_by("id").first()
    page.goto(f"/models/keywords/predictions/{wrong.pk}/flag/")
    page.fill("input[name=label]", "low")
    page.fill("textarea[name=note]", "the kettle whistled")
    page.select_option("select[name=dataset]", "kitchen-words")
    page.get_by_role("button", name="Flag as wrong").click()
    expect(page.locator("body")).to_contain_text(f"Prediction #{wrong.pk} flagged wrong and queued for review")

    page.goto("/review/kitchen-words/")
    expect(page.locator(".review-item")).to_have_count(1)
    shot(page, "3-review-queue")
    page.get_by_role("button", name="Accept into kitchen-words").click()
    expect(page.locator("body")).to_contain_text("added to kitchen-words as clip")
    clip = Clip.objects.get(dataset__name="kitchen-words")
    assert clip.label == "low" and f"prediction #{wrong.pk}" in clip.notes
    shot(page, "4-reviewed")
    print(json.dumps({"clip": clip.pk, "notes": clip.notes}))
