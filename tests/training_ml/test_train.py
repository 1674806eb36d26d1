from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from training_app.ml.audio import fit_length, load_waveform
from training_app.ml.config import TrainConfig
from training_app.ml.data import MIN_CLIPS_PER_LABEL, NotTrainable, check_trainable
from training_app.ml.export import load_eager_model
from training_app.ml.features import ClipReadError
from training_app.ml.split import split_clips
from training_app.ml.train import PHASES, Progress, Runtime, TrainingCancelled, train

from .conftest import TINY, write_tone_clips


def run(config, clips, tmp_path: Path, out_name: str = "job", **kwargs):
    progress: list[Progress] = []
    logs: list[tuple[str, str]] = []
    should_stop = kwargs.pop("should_stop", lambda: False)
    runtime = Runtime(
        cache_dir=tmp_path / "cache", snapshot=kwargs.pop("snapshot", {"clips": len(clips)}),
        on_log=lambda level, message: logs.append((level, message)), threads=kwargs.pop("threads", 2), **kwargs,
    )
    result = train(config, clips, tmp_path / out_name, progress.append, should_stop, runtime)
    return result, progress, logs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training shared by the tests that only inspect its outcome."""
    tmp_path = tmp_path_factory.mktemp("trained")
    clips = write_tone_clips(tmp_path / "clips")
    config = TrainConfig.from_dict("quick", TINY)
    result, progress, logs = run(config, clips, tmp_path, snapshot={"hash": "abc", "clips": 18})
    return {"result": result, "progress": progress, "logs": logs, "clips": clips, "config": config,
            "out_dir": tmp_path / "job"}


def test_training_writes_every_artifact_atomically(trained):
    out_dir, result = trained["out_dir"], trained["result"]

    assert result.out_dir == out_dir
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(result.artifacts) == sorted(
        ["weights.pt", "model.pt2", "model.onnx", "config.json", "metrics.json", "snapshot.json"])
    assert not list(out_dir.parent.glob("job.tmp-*"))
    config = json.loads((out_dir / "config.json").read_text())
    assert config["labels"] == ["high", "low", "mid"]
    assert (config["sample_rate"], config["clip_samples"], config["task"]) == (16000, 8000, "classification")
    assert config["features"]["n_mels"] == 40 and config["train_config"]["epochs"] == 2
    assert config["torch_version"] == torch.__version__ and config["code_version"]
    assert json.loads((out_dir / "snapshot.json").read_text()) == {"hash": "abc", "clips": 18}
    assert json.loads((out_dir / "metrics.json").read_text())["best_epoch"] == result.best_epoch


def test_exported_program_takes_waveforms_and_reproduces_the_evaluation(trained):
    out_dir, result, clips, config = trained["out_dir"], trained["result"], trained["clips"], trained["config"]
    split = split_clips(clips, config.val_fraction, config.test_fraction, config.seed)
    test_clips = [clips[i] for i in split.test]
    waves = torch.stack([fit_length(load_waveform(clip.path, 16000), 8000) for clip in test_clips])

    program = torch.export.load(out_dir / "model.pt2").module()
    probabilities = program(waves)

    eager, _ = load_eager_model(out_dir)
    with torch.no_grad():
        assert torch.allclose(probabilities, eager(waves), atol=1e-4)
    assert probabilities.shape == (len(test_clips), 3)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(len(test_clips)), atol=1e-5)
    assert program(waves[:1]).shape == (1, 3)
    # Raw-waveform inference gives the same predictions the trainer scored from cached features.
    matrix = np.zeros((3, 3), dtype=int)
    for clip, predicted in zip(test_clips, probabilities.argmax(dim=1).tolist(), strict=True):
        matrix[result.labels.index(clip.label), predicted] += 1
    assert matrix.tolist() == result.metrics["test"]["confusion_matrix"]["matrix"]


def test_onnx_export_is_a_single_valid_file_with_dynamic_batch(trained):
    model = onnx.load(str(trained["out_dir"] / "model.onnx"))

    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["waveform"]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert not list(trained["out_dir"].glob("*.data"))


def test_progress_runs_through_every_phase_to_100_percent(trained):
    progress = trained["progress"]

    assert list(dict.fromkeys(update.phase for update in progress)) == list(PHASES)
    percents = [update.percent for update in progress]
    assert percents == sorted(percents) and percents[-1] == 100.0
    epochs = [update.epoch for update in progress if update.epoch]
    assert [epoch["epoch"] for epoch in epochs] == [1, 2]
    assert set(epochs[0]) == {"epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds"}
    assert any("split:" in message for _, message in trained["logs"])


def test_metrics_report_network_baseline_and_split(trained):
    metrics = trained["result"].metrics

    assert trained["result"].labels == ["high", "low", "mid"]
    assert metrics["evaluated_on"] == "test"
    for name in ("test", "val"):
        assert 0.0 <= metrics[name]["accuracy"] <= 1.0
        assert set(metrics[name]["per_class"]) == {"high", "low", "mid"}
    assert metrics["baseline"]["evaluated_on"] == "test"
    assert 0.0 <= metrics["baseline"]["accuracy"] <= 1.0 and "macro_f1" in metrics["baseline"]
    assert metrics["split"]["train"] + metrics["split"]["val"] + metrics["split"]["test"] == 18
    assert len(metrics["history"]) == metrics["epochs_run"] == 2
    # No device was named: train() takes CUDA when the machine has it (the gpu tests check that side).
    assert metrics["device"] == ("cuda" if torch.cuda.is_available() else "cpu") and metrics["threads"] == 2
    assert metrics["training_precision"] in (("fp32",) if metrics["device"] == "cpu" else ("bf16", "fp16"))
    assert metrics["binary"] is None
    assert metrics["feature_cache"] == {"hits": 0, "misses": 18}


def test_same_seed_gives_identical_model_and_the_second_job_reads_no_audio(tone_clips, tiny_config, tmp_path):
    first, _, _ = run(tiny_config, tone_clips, tmp_path, "first")
    for clip in tone_clips:
        clip.path.rename(clip.path.with_suffix(".moved"))

    second, _, logs = run(tiny_config, tone_clips, tmp_path, "second")

    assert second.metrics["feature_cache"] == {"hits": 18, "misses": 0}
    assert any("18 clips from the cache, 0 decoded" in message for _, message in logs)
    first_weights = torch.load(tmp_path / "first" / "weights.pt", weights_only=True)
    second_weights = torch.load(tmp_path / "second" / "weights.pt", weights_only=True)
    assert all(torch.equal(first_weights[name], second_weights[name]) for name in first_weights)
    for key in ("test", "val", "baseline", "best_epoch"):
        assert first.metrics[key] == second.metrics[key]
    strip = [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in first.metrics["history"]]
    assert strip == [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in second.metrics["history"]]


def test_cancelling_stops_within_a_batch_and_writes_nothing(tone_clips, tiny_config, tmp_path):
    phases: list[str] = []

    def on_progress(update: Progress) -> None:
        phases.append(update.phase)

    with pytest.raises(TrainingCancelled):
        train(tiny_config, tone_clips, tmp_path / "job", on_progress,
              should_stop=lambda: "training" in phases, runtime=Runtime(tmp_path / "cache", threads=2))

    assert phases[-1] == "training"
    assert not list(tmp_path.glob("job*"))


def test_two_labels_report_roc_auc_and_an_operating_threshold(tmp_path, tiny_config):
    clips = write_tone_clips(tmp_path / "clips", {"noise": 200.0, "marvin": 2000.0}, per_label=8, speakers=0)

    result, _, _ = run(tiny_config, clips, tmp_path)
    binary = result.metrics["binary"]

    assert binary["positive_label"] == "marvin"
    assert binary["target_far"] == 0.01
    assert 0.0 <= binary["test"]["roc_auc"] <= 1.0
    assert binary["val"]["false_accept_rate"] <= 0.01


def test_untrainable_data_is_refused_before_any_work(tmp_path, tiny_config):
    clips = write_tone_clips(tmp_path / "clips", {"yes": 440.0, "noise": 880.0}, per_label=3)

    with pytest.raises(NotTrainable) as caught:
        run(tiny_config, clips, tmp_path)

    assert caught.value.problems == [
        f"label 'noise' has 3 clips, at least {MIN_CLIPS_PER_LABEL} are needed",
        f"label 'yes' has 3 clips, at least {MIN_CLIPS_PER_LABEL} are needed",
    ]
    assert not (tmp_path / "job").exists() and not (tmp_path / "cache").exists()


def test_check_trainable_explains_every_problem(tmp_path, tiny_config):
    one_label = write_tone_clips(tmp_path / "a", {"yes": 440.0}, per_label=6)
    assert check_trainable(one_label, tiny_config) == [
        "only one label ('yes'): classification needs at least two"
    ]
    assert check_trainable([], tiny_config) == ["the dataset has no clips"]

    clips = write_tone_clips(tmp_path / "b", {"yes": 440.0, "no": 880.0}, per_label=6, speakers=2)
    holdout = tiny_config.from_dict("quick", {"holdout_speakers": ["speaker-0", "speaker-1", "ghost"]})
    problems = check_trainable(clips, holdout)
    assert problems[0] == "held-out speakers not found in the data: 'ghost'"
    assert "label 'no' has 0 clips outside the held-out speakers" in problems[1]
    assert check_trainable(clips, tiny_config) == []


def test_existing_artifacts_are_never_overwritten(tone_clips, tiny_config, tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "weights.pt").write_text("earlier model")

    with pytest.raises(RuntimeError, match="already exists"):
        run(tiny_config, tone_clips, tmp_path)

    assert (tmp_path / "job" / "weights.pt").read_text() == "earlier model"


def test_unreadable_clip_without_cached_features_names_the_clip(tone_clips, tiny_config, tmp_path):
    tone_clips[4].path.write_bytes(b"this is not audio")

    with pytest.raises(ClipReadError, match=f"clip {tone_clips[4].id}: cannot read"):
        run(tiny_config, tone_clips, tmp_path)

    assert not list(tmp_path.glob("job*"))


@pytest.mark.parametrize("total_steps", [1, 2, 3, 4, 5, 8, 40])
def test_learning_rate_schedule_survives_tiny_runs(total_steps):
    from training_app.ml.train import one_cycle

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = one_cycle(optimizer, 0.01, total_steps)
    rates = []
    for _ in range(total_steps):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert all(rate >= 0 for rate in rates)
    assert max(rates) <= 0.01 + 1e-12
