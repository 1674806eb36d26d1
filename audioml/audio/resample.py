"""Resampling: the only part of audio handling that needs torch, so it is imported only when a file needs it."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling with torchaudio (imported here, so only callers that resample load torch).

    Same result as torchaudio.functional.resample; the transform keeps the sinc kernel of each rate pair, so
    it is computed once instead of for every clip."""
    import torch

    with torch.inference_mode():
        waveform = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
        return _resampler(source_rate, target_rate)(waveform).numpy()


@lru_cache(maxsize=32)
def _resampler(source_rate: int, target_rate: int):
    import torch
    import torchaudio.transforms

    return torchaudio.transforms.Resample(source_rate, target_rate, dtype=torch.float32)
