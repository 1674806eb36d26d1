"""The canonical form clips are stored in: mono 16-bit PCM WAV, with the hash and levels of its samples.

The 16-bit samples are hashed (not the WAV bytes), so identical audio is found as a duplicate whatever
container it arrived in.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

if TYPE_CHECKING:
    from audioml.audio.decoding import DecodedAudio

FULL_SCALE = 32767


@dataclass
class CanonicalAudio:
    wav: bytes
    content_hash: str
    duration: float
    peak_dbfs: float
    rms_dbfs: float
    clipped_fraction: float


def canonicalise(decoded: DecodedAudio) -> CanonicalAudio:
    """16-bit PCM samples (as tests/audio.py `canonical_wav` computes them), their hash and levels."""
    pcm = to_pcm16(decoded.samples)
    content_hash = hashlib.sha256(pcm.tobytes()).hexdigest()
    magnitude = np.abs(pcm.astype(np.int32))
    peak = int(magnitude.max()) if pcm.size else 0
    rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))) if pcm.size else 0.0
    clipped = float(np.count_nonzero(magnitude >= FULL_SCALE)) / pcm.size if pcm.size else 0.0
    return CanonicalAudio(
        wav=pcm16_wav(pcm, decoded.sample_rate),
        content_hash=content_hash,
        duration=pcm.size / decoded.sample_rate,
        peak_dbfs=_dbfs(peak / FULL_SCALE),
        rms_dbfs=_dbfs(rms / FULL_SCALE),
        clipped_fraction=clipped,
    )


def _dbfs(level: float) -> float:
    return round(max(20.0 * np.log10(level), -120.0), 2) if level > 0 else -120.0


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] -> 16-bit integers (clipped, rounded: decoding's PCM_16 read is the inverse)."""
    return (np.clip(samples, -1.0, 1.0) * FULL_SCALE).round().astype("<i2")


def pcm16_wav(pcm: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, pcm, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
