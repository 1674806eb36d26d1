"""Detection: checks, weighted training, streaming evaluation on held-out background audio, calibrated threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.audio import tone
from training_app.ml.config import ConfigError, TrainConfig
from training_app.ml.data import background_roles, check_trainable, split_backgrounds
from training_app.ml.tasks import detection

from .conftest import TINY, train_logged, write_background, write_wake_clips

DETECTION = {**TINY, "task": "detection", "positive_label": "wake", "epochs": 8}
# The module's training run also trains on background windows, random and hard-mined.
WITH_BACKGROUND_NEGATIVES = {**DETECTION, "background_negatives": 8, "hard_negatives": 4}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("detection")
    clips = write_wake_clips(tmp_path / "clips")
    backgrounds = [write_background(tmp_path / "bg-a.wav", 30.0), write_background(tmp_path / "bg-b.wav", 45.0)]
    return train_logged(TrainConfig.from_dict("quick", WITH_BACKGROUND_NEGATIVES), [*clips, *backgrounds], tmp_path)


def test_detection_needs_a_positive_label_naming_the_field():
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict("quick", {"task": "detection"})
    assert caught.value.field == "positive_label"
    assert TrainConfig.from_dict("quick", {"task": "detection", "positive_label": "a, b"}).positive_label == ("a", "b")


def test_detection_data_needs_positives_and_other_clips(tmp_path):
    clips = write_wake_clips(tmp_path / "clips", per_label=5)
    config = TrainConfig.from_dict("quick", DETECTION)
    assert check_trainable(clips, config) == []
    only_wake = [clip for clip in clips if clip.label == "wake"]
    assert check_trainable(only_wake, config) == [
        "detection needs clips of the positive label 'wake' and of at least one other label"
    ]
    other = TrainConfig.from_dict("quick", {**DETECTION, "positive_label": "hey_marlo"})
    assert check_trainable(clips, other) == [
        "detection needs clips of the positive label 'hey_marlo' and of at least one other label; "
        "none are labelled 'hey_marlo'"
    ]
    assert check_trainable(clips[:3] + clips[5:], config) == ["detection has 3 positive clips, at least 5 are needed"]


def test_background_recordings_split_into_training_validation_and_held_out_audio(trained):
    metrics, logs = trained["result"].metrics, trained["logs"]

    # bg-b is held out and reported on; bg-a trains on its first three quarters and validates on its last quarter
    # (the checkpoint choice and the calibrated threshold).
    assert metrics["stream"]["recordings"] == 1 and metrics["stream"]["from_backgrounds"]
    assert metrics["calibration"]["source"] == "the last quarter of 1 training background recording"
    assert metrics["held_out"]["source"] == "1 held-out background recording"
    assert metrics["calibration"]["hours"] == pytest.approx(7.5 / 3600)
    assert metrics["held_out"]["hours"] == pytest.approx(45.0 / 3600)
    # The report names each held-out recording with its own false accepts; they add up to the total.
    [recording] = metrics["held_out"]["per_recording"]
    assert recording["name"] == "bg-b.wav" and recording["hours"] == pytest.approx(45.0 / 3600)
    assert recording["false_accepts"] == metrics["held_out"]["false_accepts"]
    # Each false accept with its times in the recording and its score, one per false accept counted.
    assert len(recording["events"]) == recording["false_accepts"]
    assert all(0.0 <= start <= peak <= end <= 45.0 and score >= metrics["calibration"]["threshold"]
               for start, end, peak, score in recording["events"])
    assert any("random windows of the first three quarters of 1 training background recording" in line
               for line in logs)
    assert any("0.4 min of the first three quarters of 1 training background recording give negatives: 8 random "
               "windows and 4 of the highest-scoring" in line for line in logs)
    assert all(0.0 <= epoch["val_frr"] <= 1.0 for epoch in metrics["history"])
    # The checkpoint is chosen by those validation false rejects, and the best five are averaged when that is no
    # worse on the validation audio.
    assert any(line.startswith(f"best epoch {metrics['best_epoch']} of") and "false rejects" in line for line in logs)
    averaged = metrics["averaged_epochs"]
    assert set(averaged) <= {epoch["epoch"] for epoch in metrics["history"]} and len(averaged) in (0, 5)
    assert any(line.startswith("kept the average of the weights of epochs") for line in logs) == bool(averaged)
    assert metrics["split"]["train"] + metrics["split"]["val"] + metrics["split"]["test"] == 30  # no backgrounds
    assert [clip.id for clip in split_backgrounds([_record("b"), _record("a")])[1]] == ["b"]


def test_background_roles_never_share_audio():
    one = background_roles([_record("a", 60.0)])
    assert [(part.start, part.end) for part in one.validation + one.held_out] == [(0.0, 30.0), (30.0, None)]
    assert not one.train and one.sources["held_out"] == "the second half of 1 held-out background recording"
    two = background_roles([_record("b", 40.0), _record("a", 80.0)])
    assert [(part.clip.id, part.start, part.end) for part in two.train + two.validation + two.held_out] == [
        ("a", 0.0, 60.0), ("a", 60.0, None), ("b", 0.0, None)]
    five = background_roles([_record(name) for name in "edcba"])
    assert [[part.clip.id for part in parts] for parts in (five.train, five.validation, five.held_out)] == [
        ["a", "c"], ["e"], ["b", "d"]]
    assert five.sources == {"train": "2 training background recordings", "validation": "1 validation background "
                            "recording", "held_out": "2 held-out background recordings"}
    assert background_roles([]).held_out == []


def _record(name: str, seconds: float = 60.0):
    from training_app.ml.data import ClipRecord

    return ClipRecord(id=name, path=name, label="", content_hash="", kind="background", duration=seconds)


def test_detection_calibrates_a_threshold_within_the_false_accept_budget(trained):
    metrics = trained["result"].metrics
    calibration = metrics["calibration"]

    assert calibration["met_budget"] and calibration["false_accepts_per_hour"] <= 0.5
    assert 0.0 <= calibration["threshold"] <= 1.0 and 0.0 <= calibration["false_reject_rate"] <= 1.0
    # Calibrated on validation audio, reported on the untouched test audio at that threshold.
    held_out = metrics["held_out"]
    assert calibration["split"] == "val" and held_out["split"] == "test" and not held_out["same_as_calibration"]
    assert calibration["positives"] == metrics["split"]["per_label"]["wake"]["val"]
    assert held_out["positives"] == metrics["split"]["per_label"]["wake"]["test"]
    assert metrics["false_reject_rate"] == held_out["false_reject_rate"]
    assert metrics["false_accepts_per_hour"] == held_out["false_accepts_per_hour"]
    assert held_out["false_accepts_per_hour"] == held_out["false_accepts"] / held_out["hours"]
    assert detection.headline(metrics)["value"] == held_out["false_reject_rate"]
    evaluation = metrics[metrics["evaluated_on"]]
    assert evaluation["positives"] + evaluation["negatives"] == evaluation["n"]
    assert 0.0 <= evaluation["false_reject_rate"] <= 1.0 and 0.0 <= evaluation["false_accept_rate"] <= 1.0
    det = np.array([point[:2] for point in metrics["det"]])
    assert (det[:, 0] >= 0).all() and ((det[:, 1] >= 0) & (det[:, 1] <= 1)).all()
    assert metrics["prediction"]["threshold"] == calibration["threshold"]
    assert set(metrics["history"][0]) == {"epoch", "train_loss", "val_loss", "val_auc", "val_frr", "lr", "seconds"}


def test_exported_detector_scores_waveforms_and_carries_its_threshold(trained):
    out_dir = trained["out_dir"]
    config = json.loads((out_dir / "config.json").read_text())
    assert config["task"] == "detection" and config["labels"] == ["wake"]
    assert config["prediction"]["threshold"] == trained["result"].metrics["calibration"]["threshold"]
    assert config["prediction"]["hop_seconds"] == 0.1

    with torch.no_grad():
        scores = torch.export.load(out_dir / "model.pt2").module()(torch.zeros(3, 8000))

    assert scores.shape == (3,) and bool(((scores >= 0) & (scores <= 1)).all())


def test_prediction_shape_finds_events_at_their_times_and_uses_the_override():
    scores = np.zeros(60)
    scores[10:14] = 0.9  # windows starting 1.0-1.3 s
    scores[40:42] = 0.7
    starts = [i * 0.1 for i in range(60)]
    context = {"prediction": {"threshold": 0.8, "threshold_source": "calibrated"}, "threshold": None,
               "clip_seconds": 0.5, "duration": 6.4, "labels": ["wake"]}

    shaped = detection.shape_prediction(scores, starts, context)

    assert shaped["detected"] and shaped["threshold"] == 0.8 and shaped["threshold_source"] == "calibrated"
    assert shaped["events"] == [{"start": 1.0, "end": 1.8, "score": 0.9}]
    lowered = detection.shape_prediction(scores, starts, {**context, "threshold": 0.5})
    assert [event["start"] for event in lowered["events"]] == [1.0, 4.0]
    assert lowered["threshold_source"] == "request"
    assert detection.shape_prediction(np.zeros(60), starts, context)["detected"] is False
    # A version trained with smoothing_hops=3 averages three hops before the threshold: the two-hop run at 4.0 s
    # (0.7) no longer reaches 0.5, the phrase at 1.0 s still does.
    smoothed = detection.shape_prediction(scores, starts, {**context, "threshold": 0.5, "prediction": {
        "threshold": 0.8, "smoothing_hops": 3}})
    assert [event["start"] for event in smoothed["events"]] == [1.1] and smoothed["score"] == pytest.approx(0.9)


def test_hard_negative_mining_revisits_the_windows_the_model_scores_highest():
    from training_app.ml.background import NegativePool, PowerList
    from training_app.ml.features import LogMelFrontend

    class HighPitch(torch.nn.Module):
        """A detector that scores a window by the level of its top mel bands: the highest tones are its hardest."""

        def forward(self, log_mel):
            return log_mel[:, :, -12:, :].mean(dim=(1, 2, 3)).unsqueeze(1)

    config = TrainConfig.from_dict("quick", DETECTION)
    frontend = LogMelFrontend(config.features())
    pitches = [300.0, 2500.0, 400.0, 3500.0, 500.0, 600.0, 1800.0, 700.0]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        powers = list(frontend.mel_power(torch.stack([torch.from_numpy(tone(pitch, 0.5, seed=index))
                                                      for index, pitch in enumerate(pitches)])))
    pool = NegativePool(PowerList(powers), random_count=2, hard_count=3, device=torch.device("cpu"))

    first = pool.for_epoch(generator)
    pool.mine(HighPitch(), frontend, lambda: None, generator)  # a pool this small is scored whole
    second = pool.for_epoch(generator)

    assert len(first) == len(second) == 5  # the same number of windows every epoch
    assert pool.hardest == [3, 1, 6]  # the three highest tones, highest first
    assert all(torch.equal(second[i], powers[index]) for i, index in enumerate([3, 1, 6]))
    assert not any(torch.equal(window, powers[index]) for window in second[3:] for index in (3, 1, 6))


def test_headline_says_when_the_false_accepts_at_its_threshold_are_over_budget():
    within = {"held_out": {"false_reject_rate": 0.0, "within_budget": True}, "calibration": {"met_budget": True}}
    over = {"held_out": {"false_reject_rate": 0.0, "within_budget": False}, "calibration": {"met_budget": True}}
    older = {"calibration": {"false_reject_rate": 0.1, "met_budget": False}}
    assert detection.headline(within)["name"] == "false rejects at the calibrated threshold"
    assert detection.headline(over)["name"].endswith("(false accepts over budget)")
    assert detection.headline(over)["value"] == 0.0
    assert detection.headline(older) == {**detection.headline(older), "name": detection.headline(over)["name"],
                                         "value": 0.1}
