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
    power: torch.Tensor, n_frames: int, mode: str, generator: torch.Generator | None = None,
    offsets: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Crop a (n_mels, frames) spectrogram to ``n_frames``: the middle, or a random window for training (its start
    drawn from ``offsets``, an inclusive range, when given)."""
    excess = power.shape[-1] - n_frames
    if excess <= 0:
        return power if excess == 0 else torch.nn.functional.pad(power, (0, -excess))
    if mode == "center":
        offset = excess // 2
    else:
        low, high = offsets if offsets is not None else (0, excess)
        low, high = max(0, min(low, excess)), max(0, min(high, excess))
        offset = int(torch.randint(low, max(low, high) + 1, (1,), generator=generator))
    return power[:, offset : offset + n_frames]


def stack_frames(
    powers: Sequence[torch.Tensor], n_frames: int, mode: str, generator: torch.Generator | None = None,
    offsets: Sequence[tuple[int, int] | None] | None = None,
) -> torch.Tensor:
    ranges = offsets if offsets is not None else [None] * len(powers)
    return torch.stack([fixed_frames(power, n_frames, mode, generator, span)
                        for power, span in zip(powers, ranges, strict=True)])


def sound_offsets(power: torch.Tensor, n_frames: int, keep: float = 0.97) -> tuple[int, int]:
    """The crop starts (an inclusive range) whose ``n_frames`` window holds at least ``keep`` of the clip's sound
    energy above its noise floor (the 20th percentile of its frames' energy): crops that hold a whole phrase,
    so that a wake phrase is never taught as positive from a crop holding half of it."""
    excess = power.shape[-1] - n_frames
    if excess <= 0:
        return 0, 0
    energy = power.sum(dim=0).double()
    sound = (energy - torch.quantile(energy, 0.2)).clamp_min(0.0)
    held = sound.unfold(0, n_frames, 1).sum(dim=-1)
    if float(held.max()) <= 0.0:
        return 0, excess
    good = torch.nonzero(held >= keep * held.max()).flatten()
    return int(good.min()), int(good.max())


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


def augment_waveforms(
    waves: torch.Tensor, noise_waves: torch.Tensor | None, generator: torch.Generator, shift: bool = True,
    noise: bool = True, max_shift_fraction: float = 0.1, noise_probability: float = 0.5,
    snr_db_range: tuple[float, float] = (5.0, 25.0), gain_range: tuple[float, float] = (0.3, 1.5),
) -> torch.Tensor:
    """A randomly changed copy of a (batch, samples) waveform batch, for a network that reads the waveform (the
    speech embedding's head): shifted in time (up to ``max_shift_fraction`` of the clip, zeros let in), mixed with
    one of ``noise_waves`` (white noise when None) at ``snr_db_range`` for a ``noise_probability`` share of clips,
    and its level scaled by ``gain_range``; the same ranges as ``Augmenter`` uses on the log-mel."""
    size, samples = waves.shape
    out = waves.clone()
    if shift:
        limit = int(samples * max_shift_fraction)
        offsets = torch.randint(-limit, limit + 1, (size,), generator=generator).tolist()
        for row, offset in enumerate(offsets):
            out[row] = torch.roll(waves[row], offset)
            if offset > 0:
                out[row, :offset] = 0.0
            elif offset < 0:
                out[row, offset:] = 0.0
    if noise:
        if noise_waves is not None and len(noise_waves):
            picks = torch.randint(0, len(noise_waves), (size,), generator=generator)
            mixed = noise_waves[picks]
        else:
            mixed = torch.randn(size, samples, generator=generator)
        snr_db = snr_db_range[0] + (snr_db_range[1] - snr_db_range[0]) * torch.rand(size, generator=generator)
        apply = torch.rand(size, generator=generator) < noise_probability
        signal_power = out.pow(2).mean(dim=1)
        noise_power = mixed.pow(2).mean(dim=1).clamp_min(1e-12)
        gain = torch.sqrt(signal_power / noise_power / torch.pow(10.0, snr_db / 10.0)) * apply
        out = out + gain.unsqueeze(1) * mixed
    level = gain_range[0] + (gain_range[1] - gain_range[0]) * torch.rand(size, generator=generator)
    return (out * level.unsqueeze(1)).clamp(-1.0, 1.0)


def speech_span(power: torch.Tensor, level: float = 0.4, floor_quantile: float = 0.2) -> tuple[int, int]:
    """(first, last + 1) frame of the loud part of a (n_mels, frames) mel power spectrogram: frames whose log energy
    rises ``level`` of the way from the clip's floor (its ``floor_quantile`` frame) to its peak."""
    energy = torch.log10(power.sum(dim=0) + 1e-10)
    floor, peak = torch.quantile(energy, floor_quantile), energy.max()
    loud = (energy > floor + level * (peak - floor)).nonzero().flatten()
    if len(loud) == 0:
        return 0, power.shape[-1]
    return int(loud[0]), int(loud[-1]) + 1


class KeywordSplicer:
    """Open-set negatives made of the training keywords themselves: the start of one keyword joined to the end of
    another, said by the same voice where the data allows ("bot" + "oat", "ni" + "oat"), to be taught as unknown.

    Words a sound apart from a keyword are what a keyword model takes for one (GraphemeAug, Interspeech 2025, makes
    such near misses by editing a keyword's spelling and synthesising them). A splice of two keywords that sound alike
    could be one of them ("f" + "an" of van is fan), so a pair is never spliced when the same voice saying the two
    words differs less than two voices saying the same keyword do (median distances of the words' log-mel images,
    each stretched to ``_PROFILE_FRAMES`` frames).

    ``powers``, ``labels`` and ``speakers`` describe the training clips; only clips of ``keywords`` are spliced.
    """

    _PROFILE_FRAMES = 12
    _MAX_PAIRS = 200

    def __init__(self, powers: Sequence[torch.Tensor], labels: Sequence[str], speakers: Sequence[str],
                 keywords: Sequence[str], generator: torch.Generator, cut: tuple[float, float] = (0.25, 0.75)) -> None:
        self.powers, self.labels, self.speakers, self.cut, self.generator = powers, labels, speakers, cut, generator
        keyword_set = set(keywords)
        self.members = [index for index, label in enumerate(labels) if label in keyword_set]
        self.spans = {index: speech_span(powers[index]) for index in self.members}
        self.by_voice: dict[tuple[str, str], list[int]] = {}
        self.by_label: dict[str, list[int]] = {}
        for index in self.members:
            self.by_label.setdefault(labels[index], []).append(index)
            if speakers[index]:
                self.by_voice.setdefault((speakers[index], labels[index]), []).append(index)
        self.partners = self._partners()

    @property
    def excluded_pairs(self) -> list[tuple[str, str]]:
        """Keyword pairs (alphabetical) too alike to splice."""
        names = sorted(self.by_label)
        return [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if b not in self.partners.get(a, ())]

    def can_splice(self, index: int) -> bool:
        return index in self.spans and bool(self.partners.get(self.labels[index]))

    def splice(self, index: int) -> torch.Tensor:
        """The start of another keyword (a partner's clip, the same voice if there is one) joined to the end of
        clip ``index``'s word, cut at the same random share of both words, the head scaled to the tail's loudness."""
        label, speaker = self.labels[index], self.speakers[index]
        partner_label = self._pick(self.partners[label])
        partner = self._pick(self.by_voice.get((speaker, partner_label)) or self.by_label[partner_label])
        share = float(self.cut[0] + (self.cut[1] - self.cut[0]) * torch.rand(1, generator=self.generator))
        (head_start, head_end), (tail_start, tail_end) = self.spans[partner], self.spans[index]
        head_cut = head_start + max(1, round(share * (head_end - head_start)))
        tail_cut = tail_start + max(1, round(share * (tail_end - tail_start)))
        head, tail = self.powers[partner], self.powers[index]
        gain = tail[:, tail_start:tail_end].mean() / head[:, head_start:head_end].mean().clamp_min(1e-12)
        joined = torch.cat([head[:, :head_cut] * gain, tail[:, tail_cut:]], dim=1)
        # Back to the clip's length, the spliced word inside the window where it fits.
        length, word_end = tail.shape[-1], head_cut + tail_end - tail_cut
        latest, earliest = min(head_start, joined.shape[-1] - length), max(0, word_end - length)
        offset = earliest if latest <= earliest else int(torch.randint(earliest, latest + 1, (1,),
                                                                       generator=self.generator))
        return fixed_frames(joined[:, max(0, offset) : max(0, offset) + length], length, "center")

    def _pick(self, items: Sequence):
        return items[int(torch.randint(0, len(items), (1,), generator=self.generator))]

    def _profile(self, index: int) -> torch.Tensor:
        start, end = self.spans[index]
        log_mel = torch.log(self.powers[index][:, start:end] + 1e-10)
        log_mel = (log_mel - log_mel.mean()) / (log_mel.std() + 1e-5)
        return torch.nn.functional.interpolate(log_mel.unsqueeze(0), size=self._PROFILE_FRAMES, mode="linear",
                                               align_corners=True)[0]

    def _partners(self) -> dict[str, tuple[str, ...]]:
        profiles = {index: self._profile(index) for index in self.members}
        names = sorted(self.by_label)

        def median_distance(pairs: list[tuple[int, int]]) -> float | None:
            if not pairs:
                return None
            if len(pairs) > self._MAX_PAIRS:
                order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(0))[: self._MAX_PAIRS]
                pairs = [pairs[i] for i in order.tolist()]
            return float(torch.tensor([float((profiles[a] - profiles[b]).norm()) for a, b in pairs]).median())

        within = {}
        for name in names:
            items = self.by_label[name]
            cross_voice = [(a, b) for i, a in enumerate(items) for b in items[i + 1:]
                           if self.speakers[a] != self.speakers[b] or not self.speakers[a]]
            within[name] = median_distance(cross_voice)
        partners: dict[str, list[str]] = {name: [] for name in names}
        for i, first in enumerate(names):
            for second in names[i + 1:]:
                same_voice = [(a, self.by_voice[(self.speakers[a], second)][0]) for a in self.by_label[first]
                              if (self.speakers[a], second) in self.by_voice]
                between = median_distance(same_voice or [(a, b) for a in self.by_label[first]
                                                         for b in self.by_label[second]])
                references = [value for value in (within[first], within[second]) if value is not None]
                if between is not None and references and between >= min(references):
                    partners[first].append(second)
                    partners[second].append(first)
        return {name: tuple(found) for name, found in partners.items()}
