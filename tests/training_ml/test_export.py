from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training_app.ml.config import FeatureConfig
from training_app.ml.export import ARTIFACT_FILES, code_version, write_artifacts
from training_app.ml.features import LogMelFrontend
from training_app.ml.model import ExportedClassifier, KeywordCNN
from training_app.ml.train import Runtime, train


def test_failure_in_the_middle_of_the_export_leaves_no_folder(tone_clips, tiny_config, tmp_path):
    # The snapshot is written after the weights and metrics, so this fails with files already in the temp folder.
    with pytest.raises(TypeError, match="not JSON serializable"):
        train(tiny_config, tone_clips, tmp_path / "job", lambda update: None, lambda: False,
              Runtime(tmp_path / "cache", snapshot={"clips": object()}, threads=2))

    assert not list(tmp_path.glob("job*"))


def test_failed_export_into_an_empty_folder_leaves_it_empty(tmp_path):
    features = FeatureConfig(clip_samples=4000)
    model = ExportedClassifier(LogMelFrontend(features), KeywordCNN(2, channels=8)).eval()
    (tmp_path / "job").mkdir()

    with pytest.raises(TypeError, match="not JSON serializable"):
        write_artifacts(tmp_path / "job", model, {"labels": ["a", "b"]}, {"accuracy": 1.0}, {"clips": {1, 2}},
                        torch.zeros(2, 4000))

    assert list(tmp_path.glob("job*")) == [tmp_path / "job"]
    assert not any((tmp_path / "job").iterdir())


def test_artifact_names_and_code_version_are_stable():
    assert ARTIFACT_FILES == ("weights.pt", "model.pt2", "model.onnx", "config.json", "metrics.json",
                              "snapshot.json")
    assert code_version() == code_version()
    assert code_version().startswith("1.0+")


def test_code_version_names_the_git_commit_of_a_checkout_else_the_package_version(monkeypatch):
    import subprocess

    from training_app.ml import export

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(export.__file__).parent, capture_output=True,
                          text=True).stdout.strip()
    assert code_version().endswith(f" git {head[:12]}")
    export.code_origin.cache_clear()
    monkeypatch.setattr(export, "_git_commit", lambda folder: "")
    try:
        assert code_version().endswith(" audioml 0.1.0")
        monkeypatch.setenv("AUDIOML_GIT_COMMIT", "0123456789abcdef0123")
        export.code_origin.cache_clear()
        assert code_version().endswith(" git 0123456789ab")
    finally:
        export.code_origin.cache_clear()
