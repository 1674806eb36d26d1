"""The default keyword recipe's pieces, each in a tiny real run: the residual blocks, label smoothing and mixup,
the refit on training + validation speakers (and what it reports), and the presets a task tunes for itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training_app.ml.audio import fit_length, load_waveform
from training_app.ml.config import PRESETS, ConfigError, TrainConfig
from training_app.ml.export import load_eager_model
from training_app.ml.model import KeywordCNN
from training_app.ml.split import split_clips
from training_app.ml.tasks import classification

from .conftest import TINY, write_tone_clips
from .test_train import run


def test_two_convolutions_per_block_add_a_residual_convolution_and_reload_from_the_artifacts(tmp_path):
    single, double = KeywordCNN(3, channels=8), KeywordCNN(3, channels=8, convs_per_block=2)
    conv_count = lambda net: sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())  # noqa: E731
    assert (conv_count(single), conv_count(double)) == (4, 8)
    assert double(torch.randn(2, 1, 40, 51)).shape == (2, 3)

    clips = write_tone_clips(tmp_path / "clips")
    config = TrainConfig.from_dict("quick", {**TINY, "convs_per_block": 2})
    result, _, _ = run(config, clips, tmp_path)
    config_json = json.loads((result.out_dir / "config.json").read_text())
    assert config_json["model"]["convs_per_block"] == 2
    model, _ = load_eager_model(result.out_dir)  # rebuilt with the residual blocks, or the weights would not load
    assert conv_count(model.network) == 8


def test_label_smoothing_and_mixup_train_a_classifier(tmp_path):
    clips = write_tone_clips(tmp_path / "clips", per_label=8)
    config = TrainConfig.from_dict("quick", {**TINY, "epochs": 3, "label_smoothing": 0.1, "mixup": 0.4})
    loss = classification.loss_function(torch.tensor([0, 1, 2]), ["a", "b", "c"], config, "cpu")
    assert loss.label_smoothing == pytest.approx(0.1)
    # A perfectly confident right answer still costs something under label smoothing.
    assert float(loss(torch.tensor([[20.0, -20.0, -20.0]]), torch.tensor([0]))) > 0.05

    result, _, _ = run(config, clips, tmp_path)
    losses = [epoch["train_loss"] for epoch in result.metrics["history"]]
    assert all(loss == loss and loss > 0 for loss in losses)  # finite (not NaN) and positive


def test_refit_registers_a_model_trained_on_training_and_validation_clips(tmp_path):
    clips = write_tone_clips(tmp_path / "clips", per_label=8, speakers=4)
    config = TrainConfig.from_dict("quick", {**TINY, "epochs": 3, "refit": True, "early_stopping_patience": 0})
    result, progress, logs = run(config, clips, tmp_path)
    metrics = result.metrics
    split = metrics["split"]

    refit = metrics["refit"]
    assert refit["epochs"] == metrics["best_epoch"]
    assert refit["clips"] == split["train"] + split["val"]
    assert [epoch["epoch"] for epoch in refit["history"]] == list(range(1, metrics["best_epoch"] + 1))
    assert str(split["train"] + split["val"]) in metrics["registered_model"]
    assert 0.0 <= refit["selection_test_accuracy"] <= 1.0
    assert metrics["timings"]["refit_seconds"] > 0
    assert any("refit: training a new model" in message for _, message in logs)
    # The curves are the selection run's; progress rises to 100% across both passes and never goes back.
    assert len(metrics["history"]) == metrics["epochs_run"]
    percents = [p.percent for p in progress]
    assert percents == sorted(percents) and percents[-1] == 100.0

    # The registered model is the one the test metrics describe: its predictions give the test confusion matrix.
    test_clips = [clips[i] for i in split_clips(clips, config.val_fraction, config.test_fraction, config.seed).test]
    waves = torch.stack([fit_length(load_waveform(clip.path, 16000), 8000) for clip in test_clips])
    model, _ = load_eager_model(result.out_dir)
    with torch.no_grad():
        predicted = model(waves).argmax(dim=1).tolist()
    matrix = np.zeros((3, 3), dtype=int)
    for clip, label in zip(test_clips, predicted, strict=True):
        matrix[result.labels.index(clip.label), label] += 1
    assert matrix.tolist() == metrics["test"]["confusion_matrix"]["matrix"]


def test_refit_is_skipped_without_a_test_split_so_every_reported_score_is_on_unseen_clips(tmp_path):
    clips = write_tone_clips(tmp_path / "clips", per_label=8, speakers=4)
    config = TrainConfig.from_dict("quick", {**TINY, "refit": True, "test_fraction": 0.0})
    result, _, logs = run(config, clips, tmp_path)
    assert "refit" not in result.metrics and result.metrics["evaluated_on"] == "val"
    assert any("refit skipped" in message for _, message in logs)


def test_a_task_tunes_presets_for_itself_and_overrides_still_win(monkeypatch):
    monkeypatch.setattr(classification, "TASK_PRESETS", {"quick": {"convs_per_block": 2, "refit": True}}, raising=False)
    tuned = TrainConfig.from_dict("quick")
    assert (tuned.convs_per_block, tuned.refit, tuned.channels) == (2, True, PRESETS["quick"]["channels"])
    assert TrainConfig.from_dict("quick", {"refit": False}).refit is False
    assert TrainConfig.from_dict("quick", {"task": "regression"}).convs_per_block == 1
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict("quick", {"convs_per_block": 3})
    assert caught.value.field == "convs_per_block"


def test_open_set_threshold_is_calibrated_on_validation_keywords_and_marks_unsure_predictions():
    labels = ["bottle", "noise", "table", "unknown"]
    rng = np.random.default_rng(0)
    # Validation: keyword clips answered right with top scores 0.60-0.99; unknown clips do not move the threshold.
    val_top = np.linspace(0.60, 0.99, 40)
    val = np.array([[p, 0.0, 1 - p, 0.0] if i % 2 else [1 - p, 0.0, p, 0.0] for i, p in enumerate(val_top)])
    val_truth = np.array([2 if i % 2 == 0 else 0 for i in range(40)])
    val = np.vstack([val, [[0.05, 0.0, 0.05, 0.9]] * 5])
    val_truth = np.concatenate([val_truth, [3] * 5])
    # Test: an unseen word taken for "bottle" with a low score, a confident right keyword, a right unknown.
    test = np.array([[0.5, 0.0, 0.2, 0.3], [0.95, 0.0, 0.05, 0.0], [0.1, 0.0, 0.1, 0.8]])
    test_truth = np.array([3, 0, 3])
    found = classification.open_set(labels, {"val": val, "test": test}, {"val": val_truth, "test": test_truth}, "test")

    assert found["threshold"] == pytest.approx(np.quantile(val_top, 1 - classification.OPEN_SET_KEEP), abs=1e-4)
    assert (found["unknown_label"], found["unsure"], found["wrong_answers_caught"], found["keyword_clips_lost"]) == (
        "unknown", 1, 1, 0)
    assert found["accuracy_with_rule"] == 1.0  # the unsure answer counted as unknown is right
    assert classification.open_set(["noise", "unknown"], {"val": val[:, [1, 3]]}, {"val": rng.integers(0, 2, 45)},
                                   "val") is None  # no keyword: nothing to be unsure about

    context = {"labels": labels, "prediction": classification.export_config({"open_set": found}, None)}
    unsure = classification.shape_prediction(test[:1], [0.0], context)
    sure = classification.shape_prediction(test[1:2], [0.0], context)
    assert (unsure["label"], unsure["unsure"], sure["unsure"]) == ("bottle", True, False)
    assert "unsure" not in classification.shape_prediction(test[:1], [0.0], {"labels": labels, "prediction": {}})
