"""Regression trains a 0-1 score head end to end: checks, metrics beside two references, export."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from training_app.ml.audio import fit_length, load_waveform
from training_app.ml.config import ConfigError, TrainConfig
from training_app.ml.data import check_trainable
from training_app.ml.metrics import regression_metrics
from training_app.ml.split import split_for_task
from training_app.ml.train import Runtime, train

from .conftest import TINY, write_scored_clips

REGRESSION = {**TINY, "task": "regression", "epochs": 3}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("regression")
    clips = write_scored_clips(tmp_path / "clips")
    unscored = replace(clips[0], id="unscored", score=None)
    config = TrainConfig.from_dict("quick", REGRESSION)
    result = train(config, [*clips, unscored], tmp_path / "job", lambda update: None, lambda: False,
                   Runtime(tmp_path / "cache", threads=2))
    return {"result": result, "clips": clips, "config": config, "out_dir": tmp_path / "job"}


def test_regression_turns_noise_augmentation_off_unless_asked():
    assert TrainConfig.from_dict("quick", {"task": "regression"}).noise is False
    assert TrainConfig.from_dict("quick", {"task": "regression", "noise": True}).noise is True
    assert TrainConfig.from_dict("quick", {}).noise is True


def test_regression_metrics_sit_beside_a_ridge_baseline_and_the_mean(trained):
    metrics = trained["result"].metrics

    assert metrics["task"] == "regression" and metrics["labels"] == []
    assert metrics["split"]["train"] + metrics["split"]["val"] + metrics["split"]["test"] == 24  # unscored left out
    for source in (metrics, metrics[metrics["evaluated_on"]], metrics["baseline"], metrics["mean_reference"]):
        assert 0.0 <= source["mae"] <= source["rmse"] <= 1.0
    assert -1.0 <= metrics["spearman"] <= 1.0 and -1.0 <= metrics["pearson"] <= 1.0
    assert "ridge regression" in metrics["baseline"]["description"]
    assert metrics["mean_reference"]["pearson"] is None  # a constant prediction has no correlation
    assert len(metrics["points"]) == metrics[metrics["evaluated_on"]]["n"]
    assert sum(metrics["residual_histogram"]["counts"]) == metrics[metrics["evaluated_on"]]["n"]
    assert set(metrics["history"][0]) == {"epoch", "train_loss", "val_loss", "val_mae", "lr", "seconds"}
    assert metrics["prediction"] == {"aggregation": "mean", "window_hop_fraction": 0.5}


def test_exported_regression_model_returns_one_score_per_waveform(trained):
    out_dir, clips = trained["out_dir"], trained["clips"]
    config = json.loads((out_dir / "config.json").read_text())
    assert config["task"] == "regression"
    assert config["output"] == {"name": "score", "dtype": "float32", "shape": ["batch"]}
    waves = torch.stack([fit_length(load_waveform(clip.path, 16000), 8000) for clip in clips[:5]])

    scores = torch.export.load(out_dir / "model.pt2").module()(waves)

    assert scores.shape == (5,)
    assert bool(((scores >= 0) & (scores <= 1)).all())
    # The points on the chart are the exported model's own predictions on the evaluation clips.
    split, _ = split_for_task(clips, trained["config"])
    evaluated = [clips[i] for i in split.indices(trained["result"].metrics["evaluated_on"])]
    waves = torch.stack([fit_length(load_waveform(clip.path, 16000), 8000) for clip in evaluated])
    with torch.no_grad():
        predicted = torch.export.load(out_dir / "model.pt2").module()(waves).numpy()
    points = np.array(trained["result"].metrics["points"])
    assert np.allclose(points[:, 0], [clip.score for clip in evaluated], atol=1e-4)
    assert np.allclose(points[:, 1], predicted, atol=1e-3)


def test_regression_needs_twenty_scored_clips_with_different_scores(tmp_path):
    config = TrainConfig.from_dict("quick", REGRESSION)
    clips = write_scored_clips(tmp_path / "clips", count=20)
    assert check_trainable(clips, config) == []
    few = clips[:12] + [replace(clip, score=None) for clip in clips[12:]]
    assert check_trainable(few, config) == ["regression needs at least 20 clips with a score; 12 have one"]
    flat = [replace(clip, score=0.5) for clip in clips]
    assert check_trainable(flat, config) == ["all 20 scores are 0.5; regression needs different scores"]


def test_regression_split_keeps_low_and_high_scores_in_every_split(tmp_path):
    clips = write_scored_clips(tmp_path / "clips", count=40, speakers=0)
    split, strata = split_for_task(clips, TrainConfig.from_dict("quick", REGRESSION))
    for name in ("train", "val", "test"):
        assert {strata[i].label for i in split.indices(name)} == {"score 0-0.25", "score 0.25-0.5",
                                                                  "score 0.5-0.75", "score 0.75-1"}


def test_regression_metrics_by_hand():
    metrics = regression_metrics([0.0, 0.5, 1.0], [0.1, 0.5, 0.7])
    assert metrics["mae"] == pytest.approx(0.4 / 3)
    assert metrics["rmse"] == pytest.approx(np.sqrt((0.01 + 0 + 0.09) / 3))
    assert metrics["spearman"] == pytest.approx(1.0)
    assert 0.9 < metrics["pearson"] < 1.0


def test_unknown_task_names_the_field():
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict("quick", {"task": "telepathy"})
    assert caught.value.field == "task"
