"""Reading clips into float32 waveforms and fitting them to the model's fixed length."""

from __future__ import annotations

from pathlib import Path

import soundfile
import torch
import torchaudio.functional as AF


def load_waveform(path: Path | str, sample_rate: int) -> torch.Tensor:
    """A 1-D float32 tensor in [-1, 1] at ``sample_rate``; extra channels are averaged to mono."""
    data, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    wave = torch.from_numpy(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])
    if file_rate != sample_rate:
        wave = AF.resample(wave, file_rate, sample_rate)
    return wave.contiguous()


def fit_length(
    wave: torch.Tensor, length: int, mode: str = "center", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero-pad or crop the last dimension to ``length``.

    ``center`` (evaluation and inference) pads both sides equally and keeps the middle of long clips;
    ``random`` (training) places the clip, or the kept window, at a random offset.
    """
    if mode not in ("center", "random"):
        raise ValueError(f"unknown mode {mode!r}")
    excess = wave.shape[-1] - length
    if excess == 0:
        return wave
    if mode == "center":
        offset = abs(excess) // 2
    else:
        offset = int(torch.randint(0, abs(excess) + 1, (1,), generator=generator))
    if excess > 0:
        return wave[..., offset : offset + length]
    return torch.nn.functional.pad(wave, (offset, -excess - offset))
