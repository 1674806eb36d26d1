"""Detection on the frozen speech embedding front end (architecture=speech_embedding): a tiny real run through
training, export, streaming evaluation, calibration and the prediction's shape."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch

from training_app.ml import streaming
from training_app.ml.config import ConfigError, TrainConfig
from training_app.ml.embedding_detector import EmbeddingHead, Geometry, stream_embeddings, stream_scores
from training_app.ml.export import load_eager_model
from training_app.ml.tasks import detection

from .conftest import SAMPLE_RATE, TINY, train_logged, wake_sound, write_background, write_wake_clips

EMBEDDING = {**TINY, "task": "detection", "positive_label": "wake", "architecture": "speech_embedding",
             "clip_seconds": 1.25, "epochs": 4, "channels": 8}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("embedding")
    clips = write_wake_clips(tmp_path / "clips")
    backgrounds = [write_background(tmp_path / "bg-a.wav", 40.0),
                   write_background(tmp_path / "bg-b.wav", 30.0, wakes_at=(10.0,))]
    return train_logged(TrainConfig.from_dict("quick", EMBEDDING), [*clips, *backgrounds], tmp_path)


def test_speech_embedding_is_a_detection_architecture_with_windows_of_several_embeddings():
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict("quick", {"architecture": "speech_embedding"})
    assert caught.value.field == "architecture"
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict("quick", {**EMBEDDING, "clip_seconds": 1.0})
    assert caught.value.field == "clip_seconds"
    assert detection.hop_seconds(TrainConfig.from_dict("quick", EMBEDDING)) == 0.08


def test_head_trains_on_embedded_clips_and_background_and_is_calibrated(trained):
    metrics, logs = trained["result"].metrics, trained["logs"]
    front_end = metrics["front_end"]

    assert front_end["name"] == "speech_embedding" and front_end["hop_seconds"] == 0.08
    assert front_end["training_windows"] > metrics["split"]["train"]  # several augmented windows per clip
    assert front_end["background_windows"] > 0
    assert set(metrics["history"][0]) == {"epoch", "train_loss", "val_loss", "val_auc", "val_frr", "lr", "seconds"}
    assert any(line.startswith(f"best epoch {metrics['best_epoch']} of") for line in logs)
    calibration, held_out = metrics["calibration"], metrics["held_out"]
    assert calibration["source"] == "the last quarter of 1 training background recording"
    assert held_out["source"] == "1 held-out background recording"
    assert held_out["hours"] == pytest.approx(30.0 / 3600)
    assert 0.0 <= calibration["threshold"] <= 1.0 and calibration["met_budget"]
    assert held_out["false_accepts_per_hour"] == held_out["false_accepts"] / held_out["hours"]
    assert metrics["prediction"]["threshold"] == calibration["threshold"]
    assert metrics["prediction"]["hop_seconds"] == 0.08
    # Only the head is trained: the parameters counted are its own.
    assert metrics["n_parameters"] == sum(p.numel() for p in EmbeddingHead(
        front_end["embeddings_per_window"], front_end["embedding_dim"], 32).parameters())


def test_evaluation_is_timed_and_hands_over_to_the_export(trained):
    metrics, progress = trained["result"].metrics, trained["progress"]
    assert metrics["timings"]["evaluating_seconds"] > 0
    assert list(metrics["timings"]) == ["preparing_seconds", "features_seconds", "training_seconds", "evaluating_seconds"]
    phases = [update.phase for update in progress]
    assert "evaluating" in phases and phases.index("evaluating") < len(phases) - 2
    assert [(update.phase, update.percent) for update in progress[-2:]] == [("exporting", 93.0), ("exporting", 100.0)]
    # The log-mel features the evaluation reads are loaded inside its phase: the panel's bar never runs backwards.
    percents = [update.percent for update in progress]
    assert percents == sorted(percents), [(update.phase, update.percent) for update in progress]


def test_exported_files_hold_the_front_end_and_agree(trained):
    out_dir = trained["out_dir"]
    config = json.loads((out_dir / "config.json").read_text())
    assert config["model"]["architecture"] == "speech_embedding" and config["prediction"]["hop_seconds"] == 0.08
    shape = (3, config["clip_samples"])
    waves = torch.from_numpy(np.random.default_rng(0).uniform(-0.3, 0.3, shape).astype(np.float32))

    eager, _ = load_eager_model(out_dir)
    with torch.no_grad():
        expected = eager(waves)
        exported = torch.export.load(out_dir / "model.pt2").module()(waves)
    onnx_scores = onnxruntime.InferenceSession(str(out_dir / "model.onnx")).run(None, {"waveform": waves.numpy()})[0]

    assert expected.shape == (3,) and bool(((expected >= 0) & (expected <= 1)).all())
    assert torch.allclose(exported, expected, atol=1e-5)
    assert np.allclose(onnx_scores, expected.numpy(), atol=1e-4)


def test_stream_is_embedded_once_with_the_scores_of_the_exported_model(trained):
    eager, config = load_eager_model(trained["out_dir"])
    window = config["clip_samples"]
    rng = np.random.default_rng(3)
    stream = (0.05 * rng.standard_normal(int(6.3 * SAMPLE_RATE))).astype(np.float32)
    stream[SAMPLE_RATE * 2 : SAMPLE_RATE * 2 + len(wake_sound())] += wake_sound()
    blocks = [stream[i : i + 7000] for i in range(0, len(stream), 7000)]  # blocks that cut embeddings anywhere

    fast = stream_scores(iter(blocks), eager, SAMPLE_RATE, window)
    slow = streaming.score_stream(iter(blocks), lambda batch: eager(batch), SAMPLE_RATE, window, hop_seconds=0.08)

    assert fast.hop_seconds == slow.hop_seconds == 0.08 and fast.duration_seconds == slow.duration_seconds
    assert len(fast.scores) == len(slow.scores) and np.allclose(fast.scores, slow.scores, atol=1e-5)
    geometry = Geometry(eager.frontend, SAMPLE_RATE)
    embeddings, total = stream_embeddings(iter(blocks), eager.frontend, geometry, window, torch.device("cpu"), chunk=7)
    assert total == len(stream) and len(embeddings) == len(fast.scores) + geometry.count(window) - 1


def test_prediction_of_a_long_file_slides_every_embedding(trained):
    eager, config = load_eager_model(trained["out_dir"])
    window = config["clip_samples"]
    wave = np.zeros(4 * SAMPLE_RATE, dtype=np.float32)
    hop = int(config["prediction"]["hop_seconds"] * SAMPLE_RATE)
    starts = list(range(0, len(wave) - window + 1, hop))
    with torch.no_grad():
        outputs = eager(torch.from_numpy(np.stack([wave[s : s + window] for s in starts]))).numpy()

    shaped = detection.shape_prediction(outputs, [s / SAMPLE_RATE for s in starts], {
        "prediction": config["prediction"], "threshold": None, "clip_seconds": window / SAMPLE_RATE,
        "duration": 4.0, "labels": ["wake"]})

    assert set(shaped) >= {"detected", "score", "threshold", "events", "scores_over_time"}
    assert shaped["threshold"] == pytest.approx(config["prediction"]["threshold"], abs=1e-6)
    assert shaped["scores_over_time"]["hop"] == 0.08 and len(shaped["scores_over_time"]["scores"]) == len(starts)
