"""Real audio for the trainer tests: short sine tones per label with noise, written with soundfile."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from tests.audio import tone, write_wav
from training_app.ml.config import TrainConfig
from training_app.ml.data import ClipRecord
from training_app.ml.train import Runtime, train

SAMPLE_RATE = 16000
TONES = {"high": 2400.0, "low": 300.0, "mid": 900.0}


def train_logged(config: TrainConfig, records: list[ClipRecord], tmp_path: Path) -> dict:
    """A tiny real training run into tmp_path/job: its result, its log messages, its progress reports and its
    output folder."""
    logs: list[str] = []
    progress: list = []
    result = train(config, records, tmp_path / "job", progress.append, lambda: False,
                   Runtime(tmp_path / "cache", threads=2, on_log=lambda level, message: logs.append(message)))
    return {"result": result, "logs": logs, "progress": progress, "out_dir": tmp_path / "job"}


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
        write_wav(path, wave.astype(np.float32), SAMPLE_RATE)
        clips.append(ClipRecord(id=f"scored-{index}", path=path, label="", score=score,
                                content_hash=hashlib.sha256(path.read_bytes()).hexdigest(),
                                speaker=f"speaker-{index % speakers}" if speakers else "", duration=seconds))
    return clips


def wake_sound(seconds: float = 0.4, seed: int = 0) -> np.ndarray:
    """The 'wake word' of the detection tests: a rising sweep from 500 Hz to 2.5 kHz."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * (500.0 * time + 0.5 * (2000.0 / seconds) * time**2)
    return (0.5 * np.sin(phase + rng.uniform(0, np.pi))).astype(np.float32)


def other_sound(index: int, seconds: float = 0.4, seed: int = 0) -> np.ndarray:
    """Negatives: steady tones (some in the sweep's range, like confusable words) and noise bursts."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    if index % 3 == 2:
        return (0.3 * rng.standard_normal(n)).astype(np.float32)
    frequency = (600.0, 1500.0, 2400.0, 350.0)[index % 4]
    return (0.5 * np.sin(2 * np.pi * frequency * np.arange(n) / SAMPLE_RATE)).astype(np.float32)


def write_wake_clips(root: Path, per_label: int = 10, seconds: float = 0.5, speakers: int = 4) -> list[ClipRecord]:
    """'wake' clips (the sweep) and two negative labels, 'tone' and 'noise', each sound centred in its clip."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    n = int(seconds * SAMPLE_RATE)
    clips = []
    for label in ("wake", "tone", "noise"):
        for index in range(per_label):
            sound = wake_sound(seed=index) if label == "wake" else other_sound(index * 3 + (label == "noise") * 2,
                                                                               seed=index)
            wave = 0.02 * rng.standard_normal(n)
            offset = (n - len(sound)) // 2
            wave[offset : offset + len(sound)] += sound
            path = root / f"{label}_{index}.wav"
            write_wav(path, wave.astype(np.float32), SAMPLE_RATE)
            clips.append(ClipRecord(id=f"{label}-{index}", path=path, label=label,
                                    content_hash=hashlib.sha256(path.read_bytes()).hexdigest(),
                                    speaker=f"speaker-{index % speakers}", duration=seconds))
    return clips


def write_background(path: Path, seconds: float = 60.0, wakes_at: tuple[float, ...] = ()) -> ClipRecord:
    """A long ordinary recording: quiet noise with a steady tone every few seconds, and a wake sweep at each
    time in ``wakes_at``."""
    rng = np.random.default_rng(2)
    wave = 0.02 * rng.standard_normal(int(seconds * SAMPLE_RATE))
    for index, start in enumerate(np.arange(1.0, seconds - 1.0, 3.0)):
        sound = other_sound(index)
        begin = int(start * SAMPLE_RATE)
        wave[begin : begin + len(sound)] += sound
    for start in wakes_at:
        begin = int(start * SAMPLE_RATE)
        sound = wake_sound()
        wave[begin : begin + len(sound)] += sound
    write_wav(path, np.clip(wave, -1, 1).astype(np.float32), SAMPLE_RATE)
    return ClipRecord(id=path.stem, path=path, label="", kind="background", duration=seconds,
                      content_hash=hashlib.sha256(path.read_bytes()).hexdigest())


# Transcription: each letter is a 0.12 s tone of its own pitch, a space is 0.12 s of quiet, so a CTC model can
# learn to spell these "sentences" in a few seconds of training.
LETTER_TONES = {"a": 400.0, "b": 900.0, "c": 1800.0}
TONE_SENTENCES = ("ab", "ba", "abc", "cab", "a c", "bc a", "cc", "b a c", "aab", "ca")


def tone_sentence(sentence: str, detune: float = 1.0, seed: int = 0, letter_seconds: float = 0.12) -> np.ndarray:
    """A float32 waveform spelling ``sentence`` in letter tones, with quiet before and after."""
    rng = np.random.default_rng(seed)
    pieces = [np.zeros(int(rng.uniform(0.05, 0.15) * SAMPLE_RATE))]
    for letter in sentence:
        n = int(letter_seconds * rng.uniform(0.9, 1.1) * SAMPLE_RATE)
        if letter == " ":
            pieces.append(np.zeros(n))
        else:
            time = np.arange(n) / SAMPLE_RATE
            pieces.append(0.5 * np.sin(2 * np.pi * LETTER_TONES[letter] * detune * time) * np.hanning(n))
        pieces.append(np.zeros(int(0.03 * SAMPLE_RATE)))
    pieces.append(np.zeros(int(rng.uniform(0.05, 0.15) * SAMPLE_RATE)))
    wave = np.concatenate(pieces)
    return (wave + 0.01 * rng.standard_normal(len(wave))).astype(np.float32)


def sentence_transcript(sentence: str) -> str:
    """As a person would type it (capital, full stop), so normalisation has work to do."""
    return sentence[:1].upper() + sentence[1:] + "."
