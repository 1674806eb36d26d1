"""The session's tiny real model: a two-label tone classifier (high vs low tones) trained in seconds by
training_app.ml (the `trained_artifacts` fixture, tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

from tests.audio import tone, write_wav

TONES = {"high": 2400.0, "low": 300.0}
CLIP_SECONDS = 0.5


def train_tiny_model(root: Path) -> Path:
    """Train it under ``root``; returns its artifacts folder."""
    from training_app.ml.config import TrainConfig
    from training_app.ml.data import ClipRecord
    from training_app.ml.train import Runtime, train

    clips = []
    for label, frequency in TONES.items():
        for index in range(8):
            path = write_wav(root / "clips" / f"{label}-{index}.wav", tone(frequency * (1 + 0.03 * index), CLIP_SECONDS, seed=index))
            clips.append(ClipRecord(id=len(clips) + 1, path=path, label=label, content_hash=f"{label}{index}".ljust(64, "0")))
    cfg = TrainConfig.from_dict(
        "quick",
        {
            "epochs": 6, "channels": 8, "clip_seconds": CLIP_SECONDS, "batch_size": 4, "val_fraction": 0.2,
            "test_fraction": 0.2, "noise": False, "spec_augment": False,
        },
    )
    snapshot = {"job_id": 1, "dataset": {"id": 1, "name": "tones"}, "snapshot_hash": "0" * 64, "clips": []}
    train(cfg, clips, root / "out", on_progress=lambda progress: None, should_stop=lambda: False,
          runtime=Runtime(root / "cache", snapshot=snapshot))
    return root / "out"
