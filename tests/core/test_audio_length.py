"""Every page writes a length of audio one way (the audio_length filter): '0.5 s', '24 s', '1 min 30 s'."""

from __future__ import annotations

import pytest

from audioml.templatetags.audio_format import NBSP, audio_length
from tests.factories import ClipFactory, DatasetFactory


@pytest.mark.parametrize(("seconds", "written"), [
    (0, "0~s"), (0.05, "0.05~s"), (0.5, "0.5~s"), (1.0, "1~s"), (1.5, "1.5~s"), (9.96, "10~s"), (24.0, "24~s"),
    (59.6, "1~min"), (90, "1~min 30~s"), (3600, "1~h"), (3900, "1~h 5~min"), (None, "—"),
])
def test_lengths_of_audio_read_as_people_say_them(seconds, written):
    assert audio_length(seconds) == written.replace("~", NBSP)  # a number and its unit never part


@pytest.mark.django_db
def test_the_dataset_statistics_and_new_job_pages_write_the_same_length_alike(staff_client):
    dataset = DatasetFactory(name="long")
    for _ in range(3):
        ClipFactory(dataset=dataset, label="yes", seconds=30.0)
    pages = [staff_client.get(url).content.decode()
             for url in ("/datasets/long/", "/datasets/long/stats/", "/training/new/summary/?dataset=long")]
    for html in pages:
        assert f"1{NBSP}min 30{NBSP}s" in html
        assert "1:30" not in html and "90.0 s" not in html
    assert f"30{NBSP}s</td>" in pages[0]  # a clip's own length in the clip table
