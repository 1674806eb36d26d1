"""Real audio for the trainer tests: short sine tones per label with noise, written with soundfile."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from tests.audio import tone, write_wav
from training_app.ml.config import TrainConfig
from training_app.ml.data import ClipRecord

SAMPLE_RATE = 16000
TONES = {"high": 2400.0, "low": 300.0, "mid": 900.0}


def write_tone_clips(
    root: Path,
    tones: dict[str, float] = TONES,
    per_label: int = 6,
    seconds: float = 0.5,
    speakers: int = 3,
    seed: int = 0,
) -> list[ClipRecord]:
    """``per_label`` clips of each tone, spread over ``speakers`` speakers (none when 0)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    clips = []
    for label, frequency in tones.items():
        for index in range(per_label):
            detuned = frequency * (1 + 0.03 * rng.standard_normal())
            amplitude, phase = rng.uniform(0.2, 0.6), rng.uniform(0, np.pi)
            wave = tone(detuned, seconds, SAMPLE_RATE, amplitude=amplitude, phase=phase, noise=0.03, rng=rng)
            path = write_wav(root / f"{label}_{index}.wav", wave, SAMPLE_RATE)
            clips.append(
                ClipRecord(
                    id=f"{label}-{index}",
                    path=path,
                    label=label,
                    content_hash=hashlib.sha256(path.read_bytes()).hexdigest(),
                    speaker=f"speaker-{index % speakers}" if speakers else "",
                    duration=seconds,
                )
            )
    return clips


@pytest.fixture
def tone_clips(tmp_path: Path) -> list[ClipRecord]:
    return write_tone_clips(tmp_path / "clips")


# A few seconds of training on a couple of dozen half-second clips.
TINY = {"epochs": 2, "batch_size": 8, "clip_seconds": 0.5, "channels": 8, "val_fraction": 0.2, "test_fraction": 0.2}


@pytest.fixture
def tiny_config() -> TrainConfig:
    return TrainConfig.from_dict("quick", TINY)


def write_scored_clips(root: Path, count: int = 24, seconds: float = 0.5, speakers: int = 4,
                       seed: int = 0) -> list[ClipRecord]:
    """Tones whose pitch rises with their 0-1 score, so a listener (and a network) can hear the score."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    n_samples = int(seconds * SAMPLE_RATE)
    time = np.arange(n_samples) / SAMPLE_RATE
    clips = []
    for index in range(count):
        score = round(index / (count - 1), 4)
        wave = 0.4 * np.sin(2 * np.pi * (300.0 + 2000.0 * score) * time) + 0.03 * rng.standard_normal(n_samples)
        path = root / f"scored_{index}.wav"
        soundfile.write(path, wave.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        clips.append(ClipRecord(id=f"scored-{index}", path=path, label="", score=score,
                                content_hash=hashlib.sha256(path.read_bytes()).hexdigest(),
                                speaker=f"speaker-{index % speakers}" if speakers else "", duration=seconds))
    return clips
