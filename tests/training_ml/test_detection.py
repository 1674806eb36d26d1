"""Detection: checks, weighted training, streaming evaluation on held-out background audio, calibrated threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training_app.ml.config import ConfigError, TrainConfig
from training_app.ml.data import check_trainable, split_backgrounds
from training_app.ml.tasks import detection
from training_app.ml.train import Runtime, train

from .conftest import TINY, write_background, write_wake_clips

DETECTION = {**TINY, "task": "detection", "positive_label": "wake", "epochs": 8}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("detection")
    clips = write_wake_clips(tmp_path / "clips")
    backgrounds = [write_background(tmp_path / "bg-a.wav", 30.0), write_background(tmp_path / "bg-b.wav", 45.0)]
    logs: list[str] = []
    config = TrainConfig.from_dict("quick", DETECTION)
    result = train(config, [*clips, *backgrounds], tmp_path / "job", lambda update: None, lambda: False,
                   Runtime(tmp_path / "cache", threads=2, on_log=lambda level, message: logs.append(message)))
    return {"result": result, "logs": logs, "out_dir": tmp_path / "job"}


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


def test_background_recordings_split_into_training_noise_and_held_out_streams(trained):
    metrics, logs = trained["result"].metrics, trained["logs"]

    assert metrics["stream"]["source"] == "background recordings" and metrics["stream"]["recordings"] == 1
    assert metrics["calibration"]["hours"] == pytest.approx(45.0 / 3600)  # bg-b is held out, bg-a trains
    assert any("32 random segments of 1 background recording" in line for line in logs)
    assert metrics["split"]["train"] + metrics["split"]["val"] + metrics["split"]["test"] == 30  # no backgrounds
    assert [clip.id for clip in split_backgrounds([_record("b"), _record("a")])[1]] == ["b"]


def _record(name: str):
    from training_app.ml.data import ClipRecord

    return ClipRecord(id=name, path=name, label="", content_hash="", kind="background")


def test_detection_calibrates_a_threshold_within_the_false_accept_budget(trained):
    metrics = trained["result"].metrics
    calibration = metrics["calibration"]

    assert calibration["met_budget"] and calibration["false_accepts_per_hour"] <= 0.5
    assert 0.0 <= calibration["threshold"] <= 1.0 and 0.0 <= calibration["false_reject_rate"] <= 1.0
    assert metrics["false_reject_rate"] == calibration["false_reject_rate"]
    evaluation = metrics[metrics["evaluated_on"]]
    assert evaluation["positives"] + evaluation["negatives"] == evaluation["n"]
    assert 0.0 <= evaluation["false_reject_rate"] <= 1.0 and 0.0 <= evaluation["false_accept_rate"] <= 1.0
    det = np.array([point[:2] for point in metrics["det"]])
    assert (det[:, 0] >= 0).all() and ((det[:, 1] >= 0) & (det[:, 1] <= 1)).all()
    assert metrics["prediction"]["threshold"] == calibration["threshold"]
    assert set(metrics["history"][0]) == {"epoch", "train_loss", "val_loss", "val_auc", "lr", "seconds"}


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
