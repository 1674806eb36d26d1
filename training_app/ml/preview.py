"""Augmentation preview: what training hears of one clip, with the job's augmentation settings, as audio.

Training augments mel power spectrograms (augment.py; transcription its own way in ctc.py), so the preview runs
the very same code on the clip's spectrogram, then turns each augmented spectrogram back into sound with the mel
filter bank's pseudo-inverse and Griffin-Lim (the voice task's vocoder). The reference player goes through the
same inversion without augmentation, so what differs between the players is the augmentation alone.

Runs in its own process (``python -m training_app.ml.preview`` reads a JSON request on stdin and writes a JSON
answer on stdout), because the web process never imports torch.
"""

from __future__ import annotations

import base64
import io
import json
import math
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch

from .audio import fit_length, load_waveform
from .augment import Augmenter, background_segments, gaussian_noise_powers, stack_frames
from .config import TrainConfig
from .data import ClipRecord
from .features import LogMelFrontend
from .tts.model import GriffinLimVocoder

MAX_VARIANTS = 8
GRIFFIN_LIM_ITERATIONS = 48
# Background segments mixed in as noise, as training draws them (train._BACKGROUND_SEGMENTS draws 32).
NOISE_SEGMENTS = 8
# A viridis-like ramp for the spectrogram images (dark = quiet).
_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


@dataclass
class PreviewRequest:
    config: dict[str, Any]
    preset: str
    clip: str
    noise_clips: list[str]
    background_recordings: list[str]
    variants: int = 4
    seed: int | None = None


def describe(cfg: TrainConfig) -> list[str]:
    """The augmentations training applies with this configuration, in plain words."""
    if cfg.task == "synthesis":
        return []
    steps = []
    if cfg.task == "transcription":
        from . import ctc

        if cfg.warp:
            steps.append(f"speaking rate changed by up to ±{ctc.MAX_SPEED_CHANGE:.0%} and formants shifted by up to "
                         f"±{ctc.MAX_FREQ_WARP:.0%}")
        if cfg.spec_augment:
            steps.append(f"SpecAugment: {ctc.FREQ_MASKS} bands of up to {ctc.FREQ_MASK_WIDTH} mel channels and one "
                         f"stretch of up to {ctc.TIME_MASK_WIDTH} frames per {ctc.TIME_MASK_EVERY} silenced")
        return steps
    augmenter = Augmenter(time_shift=cfg.time_shift, noise=cfg.noise, spec_augment=cfg.spec_augment, warp=cfg.warp,
                          noise_powers=[], generator=torch.Generator())
    if cfg.warp:
        steps.append(f"time stretched by up to ±{augmenter.max_stretch:.0%} and formants shifted by up to "
                     f"±{augmenter.max_freq_warp:.0%}")
    if cfg.time_shift:
        steps.append(f"shifted in time by up to ±{augmenter.max_shift_fraction:.0%} of the clip")
    if cfg.noise:
        low, high = augmenter.snr_db_range
        steps.append(f"noise mixed in at {low:g}–{high:g} dB SNR in {augmenter.noise_probability:.0%} of the draws")
    if cfg.spec_augment:
        steps.append(f"SpecAugment: {augmenter.freq_masks} bands of mel channels and {augmenter.time_masks} stretches "
                     "of time silenced")
    return steps


def preview(request: PreviewRequest) -> dict[str, Any]:
    cfg = TrainConfig.from_dict(request.preset, request.config)
    features = cfg.features()
    frontend = LogMelFrontend(features)
    seed = cfg.seed if request.seed is None else request.seed
    generator = torch.Generator().manual_seed(seed + 1)  # the generator training's augmenter starts from
    wave = load_waveform(request.clip, features.sample_rate)
    length = max(wave.shape[-1], features.clip_samples)  # as load_features pads short clips around the centre
    with torch.no_grad():
        power = frontend.mel_power(fit_length(wave, length, "center").unsqueeze(0))[0]
        noise_source, noise_powers = _noise(cfg, request, frontend, features, generator)
        vocoder = GriffinLimVocoder(features.sample_rate, features.n_fft, features.hop, features.n_mels,
                                    features.f_min, features.f_max, mel_mean=0.0, mel_std=1.0,
                                    n_iter=GRIFFIN_LIM_ITERATIONS, sharpen=1.0)
        if cfg.task == "transcription":
            plain, variants = _transcription(cfg, frontend, power, generator, request.variants)
        else:
            plain, variants = _fixed_window(cfg, frontend, power, noise_powers, generator, request.variants, features)
        return {
            "sample_rate": features.sample_rate,
            "seed": seed,
            "augmentations": describe(cfg),
            "noise_source": noise_source if cfg.noise and cfg.task != "transcription" else "",
            "reference": _rendered(vocoder, features.sample_rate, *plain),
            "variants": [_rendered(vocoder, features.sample_rate, *variant) for variant in variants],
        }


def _noise(cfg: TrainConfig, request: PreviewRequest, frontend: LogMelFrontend, features, generator):
    """The noise training would mix in: background recordings kept for training, else clips of the noise label,
    else gaussian noise (train._noise_sources)."""
    if not cfg.noise or cfg.task == "transcription":
        return "", []
    if request.background_recordings:
        records = [ClipRecord(id=index, path=Path(path), label="", content_hash="") for index, path in
                   enumerate(request.background_recordings)]
        segments = background_segments(records, features, NOISE_SEGMENTS, generator)
        return (f"segments of {len(records)} background recording{'s' if len(records) != 1 else ''}",
                list(frontend.mel_power(segments)))
    if request.noise_clips:
        powers = [frontend.mel_power(fit_length(load_waveform(path, features.sample_rate),
                                                features.clip_samples).unsqueeze(0))[0] for path in request.noise_clips]
        return f"{len(powers)} clip{'s' if len(powers) != 1 else ''} of the noise label", powers
    return "gaussian noise (the dataset has no noise label)", gaussian_noise_powers(frontend, features, 8, generator)


def _fixed_window(cfg, frontend, power, noise_powers, generator, count, features):
    augmenter = Augmenter(time_shift=cfg.time_shift, noise=cfg.noise, spec_augment=cfg.spec_augment, warp=cfg.warp,
                          noise_powers=noise_powers, generator=generator)
    plain_power = stack_frames([power], features.n_frames, "center")
    plain_db = frontend.log_mel(plain_power)
    variants = []
    for _ in range(max(1, min(count, MAX_VARIANTS))):
        batch = stack_frames([power], features.n_frames, "random", generator)
        db = frontend.log_mel(augmenter.power(batch))
        mean, std = db.mean(dim=(-2, -1), keepdim=True), db.std(dim=(-2, -1), keepdim=True, correction=0)
        seen = augmenter.log_mel((db - mean) / (std + 1e-5))  # what the network is given
        variants.append((seen * (std + 1e-5) + mean, seen))
    return (plain_db, LogMelFrontend.standardize(plain_db)), variants


def _transcription(cfg, frontend, power, generator, count):
    from .ctc import _augmented

    plain_db = frontend.log_mel(power.unsqueeze(0))
    variants = []
    for _ in range(max(1, min(count, MAX_VARIANTS))):
        seen = _augmented(frontend, power, 0, cfg, generator)[None, None]
        # ctc standardises after its warp: undo with the unaugmented clip's level, which the warp keeps.
        mean, std = plain_db.mean(), plain_db.std(correction=0)
        variants.append((seen * (std + 1e-5) + mean, seen))
    return (plain_db, LogMelFrontend.standardize(plain_db)), variants


def _rendered(vocoder: GriffinLimVocoder, sample_rate: int, db: torch.Tensor, seen: torch.Tensor) -> dict[str, str]:
    """A spectrogram (batch, 1, n_mels, frames) in dB as a WAV and the network's view of it as a PNG."""
    log_magnitude = db[0, 0] * (math.log(10.0) / 20.0)
    wave = vocoder(log_magnitude.unsqueeze(0))[0]
    peak = float(wave.abs().max())
    if peak > 0:
        wave = wave * (0.89 / peak)  # -1 dBFS: every player at the same loudness
    buffer = io.BytesIO()
    soundfile.write(buffer, wave.numpy(), sample_rate, format="WAV", subtype="PCM_16")
    return {"wav": base64.b64encode(buffer.getvalue()).decode(),
            "png": base64.b64encode(spectrogram_png(seen[0, 0].numpy())).decode()}


def spectrogram_png(values: np.ndarray, scale: int = 3) -> bytes:
    """A (n_mels, frames) array as a PNG, low frequencies at the bottom, each cell scale x scale pixels."""
    low, high = np.percentile(values, 2), np.percentile(values, 99.5)
    unit = np.clip((values - low) / max(high - low, 1e-6), 0.0, 1.0)[::-1]
    position = unit * (len(_RAMP) - 1)
    index = np.minimum(position.astype(int), len(_RAMP) - 2)
    fraction = (position - index)[..., None]
    rgb = (_RAMP[index] * (1 - fraction) + _RAMP[index + 1] * fraction).astype(np.uint8)
    rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def main() -> int:
    request = PreviewRequest(**json.load(sys.stdin))
    torch.set_num_threads(1)
    json.dump(preview(request), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
