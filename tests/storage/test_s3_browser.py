"""The panel's audio player in headless Chromium with the clips in a bucket: the browser follows the redirect to
the presigned URL, reads the WAV's header and seeks with byte ranges served by the bucket, not by Django."""

from __future__ import annotations

import pytest
from django.db import connections
from playwright.sync_api import sync_playwright

from audioml.roles import VIEWER, grant
from tests.factories import ClipFactory, DatasetFactory, StaffFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_clip_player_plays_and_seeks_from_the_bucket(s3_storage, live_server):
    grant(StaffFactory(username="listener"), VIEWER)
    clip = ClipFactory(dataset=DatasetFactory(name="heard"), seconds=4.0)
    responses: list[tuple[str, int]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=["--headless", "--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"])
        tab = browser.new_page(viewport={"width": 1200, "height": 800})
        tab.on("response", lambda response: responses.append((response.url, response.status)))
        tab.goto(live_server.url + "/login/")
        tab.fill("input[name=username]", "listener")
        tab.fill("input[name=password]", "correct horse battery staple")
        tab.click("button[type=submit]")
        tab.wait_for_url(live_server.url + "/datasets/")
        tab.goto(f"{live_server.url}/datasets/heard/clips/{clip.pk}/")
        player = tab.locator("audio.clip-player")
        tab.wait_for_function("document.querySelector('audio.clip-player').readyState >= 1", timeout=20000)
        duration = player.evaluate("audio => audio.duration")
        player.evaluate("audio => { audio.muted = true; audio.currentTime = 3.0; return audio.play(); }")
        tab.wait_for_function("document.querySelector('audio.clip-player').currentTime > 3.0", timeout=20000)
        browser.close()
    connections.close_all()
    assert duration == pytest.approx(4.0, abs=0.01)
    player_url = f"{live_server.url}/datasets/heard/clips/{clip.pk}/audio/"
    assert (player_url, 302) in responses  # Django only redirects ...
    from_bucket = [(url, status) for url, status in responses if url.startswith(s3_storage.endpoint)]
    assert from_bucket, responses
    assert all("X-Amz-Signature=" in url for url, _ in from_bucket)
    assert {status for _, status in from_bucket} == {206}  # ... the bucket answers the player's byte ranges
