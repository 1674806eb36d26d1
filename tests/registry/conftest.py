"""One tiny real model per test session, registered as many versions as a test needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.audio import tone, write_wav
from tests.factories import TrainingJobFactory

TONES = {"high": 2400.0, "low": 300.0}
CLIP_SECONDS = 0.5


@pytest.fixture(scope="session")
def trained_artifacts(tmp_path_factory) -> Path:
    """Artifacts of a real two-label tone classifier (high vs low tones) trained in seconds by training_app.ml."""
    from training_app.ml.config import TrainConfig
    from training_app.ml.data import ClipRecord
    from training_app.ml.train import Runtime, train

    root = tmp_path_factory.mktemp("tiny-model")
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


@pytest.fixture
def register(trained_artifacts, db):
    """register(model_name="keywords", **job_fields) -> ModelVersion of a succeeded job, through the registry's
    side of the worker's hand-off (training_app.tasks.hand_off)."""
    from registry_app.models import ModelVersion

    def _register(model_name: str = "keywords", **job_fields):
        job = TrainingJobFactory(model_name=model_name, **job_fields)
        return ModelVersion.objects.register_from_job(job, trained_artifacts)

    return _register


@pytest.fixture(autouse=True)
def empty_model_cache():
    """Each test starts with no loaded models, so load counts are its own."""
    from registry_app import inference

    inference.cache.clear()
    inference.cache.loads = inference.cache.hits = 0
    yield
    inference.cache.clear()


def wav_upload(name: str = "clip.wav", frequency: float = 2400.0, seconds: float = 0.5, **kwargs):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.audio import wav_bytes

    return SimpleUploadedFile(name, wav_bytes(tone(frequency, seconds, **kwargs)), content_type="audio/wav")
