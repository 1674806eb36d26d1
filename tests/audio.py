"""Real audio for tests: numpy waveforms written with soundfile (and ffmpeg for compressed formats)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf


def tone(
    frequency: float = 440.0,
    seconds: float = 1.0,
    sample_rate: int = 16000,
    amplitude: float = 0.5,
    channels: int = 1,
    noise: float = 0.01,
    seed: int = 0,
) -> np.ndarray:
    """A sine tone with a little noise, shape (frames,) or (frames, channels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    signal = amplitude * np.sin(2 * np.pi * frequency * t) + noise * rng.standard_normal(t.shape)
    signal = np.clip(signal, -1.0, 1.0).astype(np.float32)
    if channels > 1:
        signal = np.stack([signal] * channels, axis=1)
    return signal


def wav_bytes(samples: np.ndarray | None = None, sample_rate: int = 16000, subtype: str = "PCM_16", **tone_kwargs) -> bytes:
    if samples is None:
        samples = tone(sample_rate=sample_rate, **tone_kwargs)
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def write_wav(path: Path, samples: np.ndarray | None = None, sample_rate: int = 16000, **tone_kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav_bytes(samples, sample_rate, **tone_kwargs))
    return path
