"""Real audio files and archives for the dataset tests (ffmpeg is run for real for the compressed formats)."""

from __future__ import annotations

import io
import stat
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf

from audioml.audio.decoding import ffmpeg_binary
from tests.audio import tone, wav_bytes

# ffmpeg arguments per target format.
FFMPEG_CODECS = {
    ".mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
    ".m4a": ["-c:a", "aac", "-b:a", "128k"],
    ".webm": ["-c:a", "libopus", "-b:a", "64k"],
    ".opus": ["-c:a", "libopus", "-b:a", "64k"],
    ".aac": ["-c:a", "aac", "-b:a", "128k"],
}


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


def distinct_wav(n: int, seconds: float = 0.5, sample_rate: int = 16000) -> bytes:
    """WAV bytes whose audio differs for every n (so no two are duplicates)."""
    return wav_bytes(tone(300.0 + 23.0 * n, seconds, sample_rate, seed=n), sample_rate)


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
