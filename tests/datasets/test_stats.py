"""Dataset statistics from real ingested audio: counts, warnings, histograms, clipped and quiet clips."""

from __future__ import annotations

import re

import numpy as np
import pytest

from datasets_app.charts import hbar_chart, histogram_chart
from datasets_app.ingest import IngestItem, ingest_files
from datasets_app.stats import dataset_stats, duration_histogram
from tests.audio import tone, wav_bytes
from tests.factories import ClipFactory, DatasetFactory

pytestmark = pytest.mark.django_db


def test_clipped_and_near_silent_clips_are_found_from_the_audio():
    dataset = DatasetFactory()
    loud = np.clip(tone(440.0, 1.0, 16000, amplitude=3.0), -1, 1)
    quiet = tone(440.0, 1.0, 16000, amplitude=0.002, noise=0.0005)
    normal = tone(660.0, 1.0, 16000)
    report = ingest_files(dataset, [
        IngestItem(name="loud.wav", data=wav_bytes(loud, 16000, subtype="FLOAT"), label="a"),
        IngestItem(name="quiet.wav", data=wav_bytes(quiet, 16000), label="a"),
        IngestItem(name="normal.wav", data=wav_bytes(normal, 16000), label="b"),
    ])
    assert len(report.accepted) == 3
    stats = dataset_stats(dataset)
    assert [clip["original_name"] for clip in stats["clipped"]] == ["loud.wav"]
    assert [clip["original_name"] for clip in stats["near_silent"]] == ["quiet.wav"]
    assert stats["clipped"][0]["clipped_fraction"] > 0.5
    codes = [warning["code"] for warning in stats["warnings"]]
    assert "clipped" in codes and "near-silent" in codes and "too-few" in codes


def test_counts_speakers_and_balanced_data_have_no_label_warnings():
    dataset = DatasetFactory()
    for label in ("yes", "no"):
        for n in range(5):
            ClipFactory(dataset=dataset, label=label, speaker=f"s{n % 2}", seconds=0.5 + n * 0.25)
    ClipFactory(dataset=dataset, label="yes").trash()
    stats = dataset_stats(dataset)
    assert stats["clip_count"] == 10
    assert [(entry["label"], entry["count"]) for entry in stats["labels"]] == [("no", 5), ("yes", 5)]
    assert stats["speakers"] == [{"speaker": "s0", "count": 6}, {"speaker": "s1", "count": 4}]
    assert not {"too-few", "imbalance", "one-label"} & {warning["code"] for warning in stats["warnings"]}
    assert stats["total_seconds"] == pytest.approx(2 * (0.5 + 0.75 + 1.0 + 1.25 + 1.5))
    assert sum(entry["count"] for entry in stats["duration_histogram"]) == 10


def test_single_label_and_unlabelled_warnings():
    dataset = DatasetFactory()
    for _ in range(5):
        ClipFactory(dataset=dataset, label="yes")
    ClipFactory(dataset=dataset, label="")
    messages = {warning["code"]: warning["message"] for warning in dataset_stats(dataset)["warnings"]}
    assert "classification needs at least two" in messages["one-label"]
    assert messages["unlabelled"].startswith("1 clip has no label")


def test_empty_dataset():
    stats = dataset_stats(DatasetFactory())
    assert stats["clip_count"] == 0 and stats["mean_seconds"] is None
    assert stats["warnings"] == [{"code": "empty", "message": "The dataset has no clips yet."}]


def test_duration_histogram_uses_round_bins():
    bins = duration_histogram([0.4, 1.0, 1.1, 2.9])
    assert bins[0]["start"] == 0 and bins[1]["start"] == 0.25
    assert bins[-1]["end"] >= 2.9
    assert sum(entry["count"] for entry in bins) == 4


def test_charts_escape_labels_and_mark_the_threshold():
    svg = hbar_chart([("<script>", 3), ("ok", 9)], threshold=5, threshold_label="minimum 5", highlight=lambda name, count: count < 5)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "minimum 5" in svg and "#d97706" in svg
    histogram = histogram_chart([{"start": 0, "end": 1, "count": 2}, {"start": 1, "end": 2, "count": 0}], x_label="Seconds", unit=" s")
    assert histogram.startswith("<svg") and "0–1 s: 2 clips" in histogram


def test_stats_charts_are_drawn_wide_and_narrow_for_a_phone():
    """Two drawings per chart; the page shows the narrow one in a phone's card (static/app.css), where the wide one's
    text shrank to 6 px. A long name is shortened more there; its tooltip keeps all of it."""
    name = "a-very-long-speaker-name-indeed"
    svg = hbar_chart([(name, 3), ("ok", 9)], title="Clips per speaker")
    wide, narrow = svg.split("</svg>")[:2]
    assert 'viewBox="0 0 640 ' in wide and 'class="chart-wide"' in wide
    assert 'viewBox="0 0 340 ' in narrow and 'class="chart-narrow"' in narrow
    assert ">a-very-long-speaker-nam…</text>" in wide and ">a-very-long-sp…</text>" in narrow
    assert f"<title>{name}: 3</title>" in narrow
    bins = [{"start": i, "end": i + 1, "count": i % 3} for i in range(24)]
    wide, narrow = histogram_chart(bins, x_label="Seconds").split("</svg>")[:2]
    labels = [re.findall(r'text-anchor="middle" fill="#475467">([^<]*)</text>', part) for part in (wide, narrow)]
    assert labels[0] == ["0", "3", "6", "9", "12", "15", "18", "21", "24"] and labels[1] == ["0", "6", "12", "18", "24"]


@pytest.mark.parametrize(("largest", "ticks"), [
    (1, ["0", "1"]), (5, ["0", "1", "2", "3", "4", "5"]), (7, ["0", "2", "4", "6", "8"]),
    (23, ["0", "5", "10", "15", "20", "25"]), (101, ["0", "25", "50", "75", "100", "125"]),
    (1234, ["0", "250", "500", "750", "1,000", "1,250"]),
])
def test_a_histogram_counts_clips_in_whole_numbers_on_its_axis(largest, ticks):
    """The y axis counts clips: whole-number ticks of a round step (it read 0, 1.2, 2.5, 3.8, 5 for five clips),
    reaching at least the tallest bar."""
    bins = [{"start": 0, "end": 1, "count": largest}, {"start": 1, "end": 2, "count": 0}]
    wide = histogram_chart(bins, x_label="Seconds").split("</svg>")[0]
    assert re.findall(r'text-anchor="end" fill="#475467">([^<]*)</text>', wide) == ticks


def test_a_label_with_half_the_clips_of_the_largest_is_named_as_imbalanced():
    dataset = DatasetFactory()
    for label, count in (("yes", 24), ("no", 12), ("up", 12), ("down", 13)):
        for _ in range(count):
            ClipFactory(dataset=dataset, label=label)
    messages = {warning["code"]: warning["message"] for warning in dataset_stats(dataset)["warnings"]}
    assert messages["imbalance"].startswith(
        "Classes are imbalanced: 'no' (12) and 'up' (12) have at most half the clips of 'yes' (24).")
    assert "'down'" not in messages["imbalance"]


def test_labels_within_twice_of_each_other_are_not_imbalanced():
    dataset = DatasetFactory()
    for label, count in (("yes", 9), ("no", 5)):
        for _ in range(count):
            ClipFactory(dataset=dataset, label=label)
    assert "imbalance" not in {warning["code"] for warning in dataset_stats(dataset)["warnings"]}
