"""Training-time augmentation on cached mel power spectrograms, driven by one seeded generator.

Time shift and noise mixing work in the mel power domain (mel power is additive for independent
signals, so adding a scaled noise spectrogram approximates mixing the waveforms); SpecAugment masks
the normalised log-mel afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import soundfile
import torch
import torchaudio.functional as AF

from .audio import fit_length
from .config import FeatureConfig
from .data import ClipRecord
from .features import LogMelFrontend


def fixed_frames(
    power: torch.Tensor, n_frames: int, mode: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Crop a (n_mels, frames) spectrogram to ``n_frames``: the middle, or a random window for training."""
    excess = power.shape[-1] - n_frames
    if excess <= 0:
        return power if excess == 0 else torch.nn.functional.pad(power, (0, -excess))
    if mode == "center":
        offset = excess // 2
    else:
        offset = int(torch.randint(0, excess + 1, (1,), generator=generator))
    return power[:, offset : offset + n_frames]


def stack_frames(
    powers: Sequence[torch.Tensor], n_frames: int, mode: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    return torch.stack([fixed_frames(power, n_frames, mode, generator) for power in powers])


def gaussian_noise_powers(
    frontend: LogMelFrontend, features: FeatureConfig, count: int, generator: torch.Generator
) -> list[torch.Tensor]:
    waves = torch.randn(count, features.clip_samples, generator=generator) * 0.1
    with torch.no_grad():
        return list(frontend.mel_power(waves))


def background_segments(
    recordings: Sequence[ClipRecord], features: FeatureConfig, count: int, generator: torch.Generator
) -> torch.Tensor:
    """``count`` clip-length waveforms read at random offsets of long recordings (never the whole file)."""
    segments = []
    for index in range(count):
        recording = recordings[index % len(recordings)]
        info = soundfile.info(str(recording.path))
        length = int(features.clip_samples * info.samplerate / features.sample_rate)
        start = int(torch.randint(0, max(1, info.frames - length), (1,), generator=generator))
        data, rate = soundfile.read(str(recording.path), start=start, frames=length, dtype="float32", always_2d=True)
        wave = torch.from_numpy(data.mean(axis=1))
        if rate != features.sample_rate:
            wave = AF.resample(wave, rate, features.sample_rate)
        segments.append(fit_length(wave, features.clip_samples))
    return torch.stack(segments)


@dataclass
class Augmenter:
    time_shift: bool
    noise: bool
    spec_augment: bool
    noise_powers: Sequence[torch.Tensor]
    generator: torch.Generator
    warp: bool = False
    max_stretch: float = 0.15
    max_freq_warp: float = 0.1
    max_shift_fraction: float = 0.1
    noise_probability: float = 0.5
    snr_db_range: tuple[float, float] = (5.0, 25.0)
    freq_masks: int = 2
    max_freq_mask_fraction: float = 0.15
    time_masks: int = 2
    max_time_mask_fraction: float = 0.1

    def power(self, batch: torch.Tensor) -> torch.Tensor:
        """Augment a (batch, n_mels, frames) mel power batch."""
        if self.warp:
            batch = self._warp(batch)
        if self.time_shift:
            batch = self._shift(batch)
        if self.noise and self.noise_powers:
            batch = self._mix_noise(batch)
        return batch

    def log_mel(self, batch: torch.Tensor) -> torch.Tensor:
        """Augment a normalised (batch, 1, n_mels, frames) log-mel batch."""
        if not self.spec_augment:
            return batch
        batch = batch.clone()
        _, _, n_mels, n_frames = batch.shape
        for _ in range(self.freq_masks):
            batch = self._mask(batch, n_mels, int(n_mels * self.max_freq_mask_fraction), axis=2)
        for _ in range(self.time_masks):
            batch = self._mask(batch, n_frames, int(n_frames * self.max_time_mask_fraction), axis=3)
        return batch

    def _uniform(self, size: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(size, generator=self.generator)

    def _shift(self, batch: torch.Tensor) -> torch.Tensor:
        size, _, n_frames = batch.shape
        limit = int(n_frames * self.max_shift_fraction)
        if limit < 1:
            return batch
        shifts = torch.randint(-limit, limit + 1, (size, 1), generator=self.generator).to(batch.device)
        source = torch.arange(n_frames, device=batch.device).unsqueeze(0) - shifts
        valid = ((source >= 0) & (source < n_frames)).unsqueeze(1)
        index = source.clamp(0, n_frames - 1).unsqueeze(1).expand_as(batch)
        return batch.gather(2, index) * valid

    def _warp(self, batch: torch.Tensor) -> torch.Tensor:
        """Stretch time around the centre and scale the mel axis from its low end, per clip.

        A different speaking rate stretches time; a different vocal tract length scales formant
        frequencies, which on the mel axis is roughly a scaling of the bin index.
        """
        size, n_mels, n_frames = batch.shape
        stretch = self._uniform(size, 1 - self.max_stretch, 1 + self.max_stretch).view(size, 1, 1)
        scale = self._uniform(size, 1 - self.max_freq_warp, 1 + self.max_freq_warp).view(size, 1, 1)
        time_axis = torch.linspace(-1, 1, n_frames).view(1, 1, n_frames) * stretch
        # Align corner -1 (the lowest bin) so the scaling keeps the bottom of the spectrum in place.
        freq_axis = (torch.linspace(-1, 1, n_mels).view(1, n_mels, 1) + 1) * scale - 1
        grid = torch.stack(
            [time_axis.expand(size, n_mels, n_frames), freq_axis.expand(size, n_mels, n_frames)], dim=-1
        ).to(batch.device)
        warped = torch.nn.functional.grid_sample(
            batch.unsqueeze(1), grid, mode="bilinear", padding_mode="border", align_corners=True
        )
        return warped.squeeze(1)

    def _mix_noise(self, batch: torch.Tensor) -> torch.Tensor:
        size, _, n_frames = batch.shape
        picks = torch.randint(0, len(self.noise_powers), (size,), generator=self.generator).tolist()
        noise = torch.stack(
            [fixed_frames(self.noise_powers[pick], n_frames, "random", self.generator) for pick in picks]
        ).to(batch.device)
        snr_db = self._uniform(size, *self.snr_db_range).to(batch.device)
        apply = (torch.rand(size, generator=self.generator) < self.noise_probability).to(batch.device)
        signal_energy = batch.sum(dim=(1, 2))
        noise_energy = noise.sum(dim=(1, 2)).clamp_min(1e-12)
        gain = signal_energy / noise_energy / torch.pow(10.0, snr_db / 10.0) * apply
        return batch + gain.view(size, 1, 1) * noise

    def _mask(self, batch: torch.Tensor, extent: int, max_width: int, axis: int) -> torch.Tensor:
        if max_width < 1:
            return batch
        size = batch.shape[0]
        widths = torch.randint(0, max_width + 1, (size,), generator=self.generator)
        starts = (torch.rand(size, generator=self.generator) * (extent - widths + 1)).long()
        positions = torch.arange(extent).unsqueeze(0)
        masked = (positions >= starts.unsqueeze(1)) & (positions < (starts + widths).unsqueeze(1))
        shape = [size, 1, 1, 1]
        shape[axis] = extent
        return batch.masked_fill(masked.view(shape).to(batch.device), 0.0)
