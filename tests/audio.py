"""Real audio for tests (and benchmarks, through bench/common.py): numpy waveforms written with soundfile, the
real ffmpeg for compressed formats, and zip archives of them.

No Django and no torch here: the trainer tests and the fresh-interpreter checks import it too.
"""

from __future__ import annotations

import hashlib
import io
import stat
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf

from audioml.audio.decoding import ffmpeg_binary

# ffmpeg arguments per target format.
FFMPEG_CODECS = {
    ".mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
    ".m4a": ["-c:a", "aac", "-b:a", "128k"],
    ".webm": ["-c:a", "libopus", "-b:a", "64k"],
    ".opus": ["-c:a", "libopus", "-b:a", "64k"],
    ".aac": ["-c:a", "aac", "-b:a", "128k"],
}


def tone(
    frequency: float = 440.0,
    seconds: float = 1.0,
    sample_rate: int = 16000,
    amplitude: float = 0.5,
    channels: int = 1,
    noise: float = 0.01,
    seed: int = 0,
    phase: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """A sine tone with a little noise, shape (frames,) or (frames, channels); the noise comes from `rng` when
    given (a caller drawing several random values per clip), else from `seed`."""
    rng = rng if rng is not None else np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    signal = amplitude * np.sin(2 * np.pi * frequency * t + phase) + noise * rng.standard_normal(t.shape)
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


def distinct_wav(n: int, seconds: float = 0.5, sample_rate: int = 16000) -> bytes:
    """WAV bytes whose audio differs for every n (so no two are duplicates)."""
    return wav_bytes(tone(300.0 + 23.0 * n, seconds, sample_rate, seed=n), sample_rate)


def canonical_wav(samples: np.ndarray, sample_rate: int) -> tuple[bytes, str]:
    """Mono 16-bit PCM WAV bytes and the SHA-256 of the 16-bit samples, as ingestion stores them.

    Written out here rather than taken from audioml.audio.canonical: the tests check that code against it."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).round().astype("<i2")
    buffer = io.BytesIO()
    sf.write(buffer, pcm, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue(), hashlib.sha256(pcm.tobytes()).hexdigest()


def encode(tmp_path: Path, suffix: str, samples: np.ndarray | None = None, sample_rate: int = 44100, name: str = "clip") -> Path:
    """Encode samples (default: a 1 s stereo tone) to `suffix` with the real ffmpeg binary."""
    if samples is None:
        samples = tone(440.0, 1.0, sample_rate, channels=2)
    source = tmp_path / f"{name}-source.wav"
    sf.write(source, samples, sample_rate, subtype="PCM_16")
    target = tmp_path / f"{name}{suffix}"
    subprocess.run(
        [ffmpeg_binary(), "-nostdin", "-loglevel", "error", "-y", "-i", str(source), *FFMPEG_CODECS[suffix], str(target)],
        check=True,
    )
    source.unlink()
    return target


def zip_bytes(entries: dict[str, bytes], symlinks: dict[str, str] | None = None, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buffer.getvalue()


def dominant_frequency(samples: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / sample_rate)[int(np.argmax(spectrum))])
