"""Log-mel front end and the on-disk feature cache.

The cache stores the mel *power* spectrogram of each clip (padded to at least the model's clip length),
so augmentation can shift, crop and mix noise in the power domain before the decibel conversion and
normalisation that :class:`LogMelFrontend` applies identically in training and in the exported model.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torchaudio
from torch import nn

from .audio import fit_length, load_waveform
from .config import FeatureConfig
from .data import ClipRecord


class LogMelFrontend(nn.Module):
    def __init__(self, features: FeatureConfig) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=features.sample_rate,
            n_fft=features.n_fft,
            hop_length=features.hop,
            n_mels=features.n_mels,
            f_min=features.f_min,
            f_max=features.f_max,
            power=2.0,
        )
        # The periodic Hann window is a slice of a longer tensor; torch.export.save warns about such
        # partial storages, so keep a compact copy.
        self.mel.spectrogram.window = self.mel.spectrogram.window.clone()
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=features.top_db)

    def mel_power(self, waveform: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, n_mels, frames)."""
        return self.mel(waveform)

    def log_mel(self, power: torch.Tensor) -> torch.Tensor:
        """(batch, n_mels, frames) -> (batch, 1, n_mels, frames) in dB, floored per clip at top_db below its peak."""
        # A 4-D input makes AmplitudeToDB apply top_db per clip instead of across the whole batch.
        return self.to_db(power.unsqueeze(1))

    @staticmethod
    def standardize(log_mel: torch.Tensor) -> torch.Tensor:
        """Zero mean and unit variance per clip, so recording level and channel gain do not matter."""
        mean = log_mel.mean(dim=(-2, -1), keepdim=True)
        std = log_mel.std(dim=(-2, -1), keepdim=True, correction=0)
        return (log_mel - mean) / (std + 1e-5)

    def normalize(self, power: torch.Tensor) -> torch.Tensor:
        """Per-utterance standardised log-mel, (batch, 1, n_mels, frames)."""
        return self.standardize(self.log_mel(power))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.mel_power(waveform))


class FeatureCache:
    """One ``.npy`` file per (clip content, feature configuration), written atomically."""

    def __init__(self, cache_dir: Path, features: FeatureConfig) -> None:
        self.root = Path(cache_dir) / features.cache_key()
        self.features = features

    def path_for(self, content_hash: str) -> Path:
        return self.root / content_hash[:2] / f"{content_hash}.npy"

    def load(self, content_hash: str) -> torch.Tensor | None:
        path = self.path_for(content_hash)
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if array.ndim != 2 or array.shape[0] != self.features.n_mels or array.shape[1] < self.features.n_frames:
            return None
        try:
            os.utime(path)  # the modification time is the last use: prune_feature_cache drops the oldest first
        except OSError:
            pass
        return torch.from_numpy(array)

    def save(self, content_hash: str, power: torch.Tensor) -> bool:
        """Store an entry; False when the disk refused it (full, read-only): the cache is optional, so a full
        cache only means the next job computes this clip again."""
        path = self.path_for(content_hash)
        tmp_name = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, tmp_name = tempfile.mkstemp(prefix=f".{content_hash[:16]}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(handle, "wb") as tmp:
                np.save(tmp, power.numpy().astype(np.float32, copy=False), allow_pickle=False)
            os.replace(tmp_name, path)
            return True
        except OSError:
            if tmp_name is not None:
                Path(tmp_name).unlink(missing_ok=True)
            return False
        except BaseException:
            if tmp_name is not None:
                Path(tmp_name).unlink(missing_ok=True)
            raise


def prune_feature_cache(cache_dir: Path, max_bytes: int, stale_tmp_seconds: float = 3600.0) -> tuple[int, int]:
    """Keep the cache under ``max_bytes``, least recently used entries out first (by modification time, which
    ``FeatureCache.load`` refreshes), and drop temporary files a crash left behind. Returns (files, bytes) removed."""
    entries: list[tuple[float, int, Path]] = []
    removed = freed = 0
    now = time.time()
    for path in Path(cache_dir).rglob("*"):
        try:
            info = path.stat()
        except OSError:
            continue
        if not path.is_file():
            continue
        if path.suffix == ".tmp":
            if now - info.st_mtime > stale_tmp_seconds:
                path.unlink(missing_ok=True)
                removed, freed = removed + 1, freed + info.st_size
            continue
        entries.append((info.st_mtime, info.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries, key=lambda entry: entry[0]):
        if total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
        removed, freed = removed + 1, freed + size
    return removed, freed


class ClipReadError(RuntimeError):
    pass


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def compute_power(path: Path | str, frontend: LogMelFrontend, features: FeatureConfig) -> torch.Tensor:
    wave = load_waveform(path, features.sample_rate)
    if wave.shape[-1] < features.clip_samples:
        wave = fit_length(wave, features.clip_samples, "center")
    with torch.no_grad():
        return frontend.mel_power(wave.unsqueeze(0))[0].contiguous()


def load_features(
    clips: Sequence[ClipRecord],
    features: FeatureConfig,
    cache: FeatureCache,
    frontend: LogMelFrontend,
    should_stop: Callable[[], bool],
    on_clip: Callable[[int], None],
) -> tuple[list[torch.Tensor], int, int]:
    """Mel power of every clip, from the cache when possible; returns (powers, hits, misses).

    ``should_stop`` is polled after every clip; when it is true this returns early with what it has,
    and the caller raises the cancellation.
    """
    powers: list[torch.Tensor] = []
    hits = misses = 0
    for done, clip in enumerate(clips, start=1):
        try:
            content_hash = clip.content_hash or file_sha256(clip.path)
            power = cache.load(content_hash)
            cached = power is not None
            if power is None:
                power = compute_power(clip.path, frontend, features)
        except (OSError, RuntimeError) as error:
            raise ClipReadError(f"clip {clip.id}: cannot read {clip.path}: {error}") from error
        if cached:
            hits += 1
        else:
            cache.save(content_hash, power)
            misses += 1
        powers.append(power)
        on_clip(done)
        if should_stop():
            break
    return powers, hits, misses
