from __future__ import annotations

import pytest

from tests.factories import ClipFactory, DatasetFactory
from training_app.models import TrainingJob

# Small enough to train in a few seconds on two shared cores (mostly the export).
TINY = {"epochs": 2, "clip_seconds": 0.5, "batch_size": 2, "channels": 8, "early_stopping_patience": 0}


def add_clips(dataset, label: str, count: int, base_frequency: float, speaker: str = "", seconds: float = 0.5):
    return [
        ClipFactory(dataset=dataset, label=label, frequency=base_frequency + 23.0 * i, seconds=seconds,
                    speaker=speaker)
        for i in range(count)
    ]


@pytest.fixture
def tones(db):
    """Two labels of six half-second tones each: low tones and high tones."""
    dataset = DatasetFactory(name="tones")
    add_clips(dataset, "low", 6, 300.0)
    add_clips(dataset, "high", 6, 1500.0)
    return dataset


@pytest.fixture
def submit(django_capture_on_commit_callbacks, admin_user):
    """create_job with the tiny configuration, running the enqueue that waits for the commit."""

    def submit(dataset, model_name: str = "tones-model", preset: str = "quick", user=None, **overrides):
        with django_capture_on_commit_callbacks(execute=True):
            return TrainingJob.objects.create_job(
                dataset, model_name, preset, {**TINY, **overrides}, user or admin_user
            )

    return submit
