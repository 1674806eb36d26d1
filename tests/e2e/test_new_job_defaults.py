"""The new-job form in headless Chromium: the advanced numbers' placeholders and the augmentation switches follow
the chosen task and preset, and a switch the user set stays as set."""

from __future__ import annotations

import pytest

from tests.e2e.test_user_journey import browser_page, log_in  # noqa: F401 - the fixture
from tests.factories import AdminFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_advanced_settings_follow_the_chosen_task_and_preset(browser_page):  # noqa: F811
    page = browser_page
    AdminFactory(username="h3-admin")
    log_in(page, "h3-admin")
    page.goto("/training/new/")
    page.click("details.advanced summary")

    def shown() -> tuple:
        return (page.get_attribute("#id_epochs", "placeholder"), page.get_attribute("#id_learning_rate", "placeholder"),
                page.is_checked("#id_time_shift"), page.is_checked("#id_noise"))

    assert shown() == ("60", "0.005", True, True)
    page.check("input[name=task][value=transcription]")
    page.check("input[name=preset][value=quick]")
    assert shown() == ("40", "0.005", False, False)  # transcription trains without shifts or noise
    # ...nor reads them, nor a clip length (config.SETTING_TASKS): those fields are hidden; SpecAugment stays.
    assert [page.is_visible(f"#id_{name}") for name in ("time_shift", "noise", "clip_seconds", "spec_augment")] == [
        False, False, False, True]
    page.check("input[name=task][value=synthesis]")
    assert page.get_attribute("#id_epochs", "placeholder") == "200"

    page.check("input[name=task][value=regression]")
    assert shown() == ("40", "0.008", True, False)
    assert page.is_visible("#id_noise") and page.is_visible("#id_clip_seconds")
    page.check("#id_noise")  # the user's choice outlives another change of task
    page.check("input[name=task][value=classification]")
    page.uncheck("#id_time_shift")
    page.check("input[name=task][value=transcription]")
    assert shown()[2:] == (False, True)
