"""The mel power of every window of a long stream, computed once: the fast path of streaming evaluation.

``streaming.score_stream`` hands every 1 s window (every 100 ms) to the exported model, whose front end computes
the window's mel spectrogram from scratch: each stretch of audio is transformed ten times. Here the stream's
short-time Fourier frames are computed once and shared by the windows that overlap them. A window's spectrogram is
centred (each frame reaches ``n_fft / 2`` samples to either side of its centre, and the window pads its own ends
by reflection), so only its first and last frames, which reach past its ends, differ from the stream's frames at
the same place: those few are computed from the window's own first and last ``n_fft`` samples. The result is the
spectrogram the exported front end computes for the window, to float rounding; the log-mel, its per-window
normalisation and the network then run on it unchanged (``score_windows``).

``StreamWindows`` keeps the frames (a few tens of MB per hour), so training can take random or hard-mined
background windows from it every epoch and score a validation stream after every epoch without decoding or
transforming audio again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .config import FeatureConfig
from .features import LogMelFrontend

# Windows whose spectrograms are computed in one go (300 windows 100 ms apart: 31 s of audio).
CHUNK_WINDOWS = 300
SCORE_BATCH = 256


@dataclass(frozen=True)
class _Chunk:
    first: int  # index of the chunk's first window
    frames: torch.Tensor  # (n_mels, frames): the stream's frames from the first window's start on
    heads: torch.Tensor  # (windows, n_mels, head): each window's own first frames
    tails: torch.Tensor  # (windows, n_mels, tail): and last frames

    def __len__(self) -> int:
        return len(self.heads)


class StreamWindows:
    """Mel power spectrograms (n_mels, n_frames) of the windows starting every ``hop_samples`` of a stream, the
    last one reaching its end (zero-padded past it, as ``streaming.score_stream`` does)."""

    def __init__(self, features: FeatureConfig, hop_samples: int, chunks: list[_Chunk], total_samples: int) -> None:
        self.features = features
        self.hop_samples = hop_samples
        self.chunks = chunks
        self.total_samples = total_samples
        self.frames_per_hop = hop_samples // features.hop
        self._starts = np.cumsum([0] + [len(chunk) for chunk in chunks])

    @staticmethod
    def supports(features: FeatureConfig, hop_samples: int) -> bool:
        """Whether windows and hops fall on frame boundaries (they do for the trainer's settings)."""
        return (features.clip_samples % features.hop == 0 and hop_samples % features.hop == 0
                and features.n_fft >= features.hop)

    @classmethod
    def compute(
        cls, blocks: Iterable[np.ndarray], frontend: LogMelFrontend, features: FeatureConfig, hop_samples: int,
        chunk_windows: int = CHUNK_WINDOWS,
    ) -> StreamWindows:
        if not cls.supports(features, hop_samples):
            raise ValueError("windows and hops must be whole numbers of feature frames")
        window = features.clip_samples
        buffer = np.zeros(0, dtype=np.float32)
        buffer_start = 0  # stream position of buffer[0]
        total = 0
        chunks: list[_Chunk] = []
        next_window = 0

        def take(count: int) -> None:
            nonlocal buffer, buffer_start, next_window
            offset = next_window * hop_samples - buffer_start
            span = buffer[offset : offset + (count - 1) * hop_samples + window]
            chunks.append(_chunk(torch.from_numpy(np.ascontiguousarray(span)), next_window, count, frontend, features,
                                 hop_samples))
            next_window += count
            drop = next_window * hop_samples - buffer_start
            buffer, buffer_start = buffer[drop:].copy(), buffer_start + drop

        for block in blocks:
            block = np.asarray(block, dtype=np.float32).reshape(-1)
            total += len(block)
            buffer = np.concatenate([buffer, block])
            while buffer_start + len(buffer) >= (next_window + chunk_windows - 1) * hop_samples + window:
                take(chunk_windows)
        n_windows = 1 + math.ceil(max(total - window, 0) / hop_samples) if total else 0
        if n_windows > next_window:
            needed = (n_windows - 1) * hop_samples + window - buffer_start
            buffer = np.concatenate([buffer, np.zeros(max(0, needed - len(buffer)), dtype=np.float32)])
            while next_window < n_windows:
                take(min(chunk_windows, n_windows - next_window))
        return cls(features, hop_samples, chunks, total)

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def duration_seconds(self) -> float:
        return self.total_samples / self.features.sample_rate

    def powers(self, indices: Sequence[int]) -> torch.Tensor:
        """The windows' mel power, (len(indices), n_mels, n_frames)."""
        if not len(indices):
            return torch.zeros(0, self.features.n_mels, self.features.n_frames)
        picked = []
        for index in indices:
            chunk = self.chunks[int(np.searchsorted(self._starts, index, side="right")) - 1]
            picked.append(self._window(chunk, index - chunk.first))
        return torch.stack(picked)

    def chunk_powers(self, chunk: _Chunk) -> torch.Tensor:
        """Every window of a chunk, (windows, n_mels, n_frames)."""
        head, tail = chunk.heads.shape[-1], chunk.tails.shape[-1]
        middle = self.features.n_frames - head - tail
        inner = chunk.frames.unfold(-1, middle, self.frames_per_hop)[:, : len(chunk)]  # (n_mels, windows, middle)
        return torch.cat([chunk.heads, inner.permute(1, 0, 2), chunk.tails], dim=-1)

    def _window(self, chunk: _Chunk, position: int) -> torch.Tensor:
        head, tail = chunk.heads.shape[-1], chunk.tails.shape[-1]
        start = position * self.frames_per_hop
        middle = chunk.frames[:, start : start + self.features.n_frames - head - tail]
        return torch.cat([chunk.heads[position], middle, chunk.tails[position]], dim=-1)


def edge_frames(features: FeatureConfig) -> tuple[int, int]:
    """(head, tail): how many of a window's first and last frames reach past its ends."""
    half = features.n_fft // 2
    head = math.ceil(half / features.hop)
    tail = features.n_frames - (features.clip_samples - half) // features.hop - 1
    return head, tail


def _chunk(span: torch.Tensor, first: int, count: int, frontend: LogMelFrontend, features: FeatureConfig,
           hop_samples: int) -> _Chunk:
    """The spectrogram parts of ``count`` windows ``hop_samples`` apart; ``span`` runs from the first window's start
    to the last window's end."""
    window, fh = features.clip_samples, features.hop
    head, tail = edge_frames(features)
    edge = math.ceil(features.n_fft / fh) * fh  # a multiple of the frame hop covering every edge frame's reach
    starts = torch.arange(count) * hop_samples
    with torch.no_grad():
        # Frame i of the span is the stream's frame wherever it does not reach past the span: from ``head`` on.
        frames = frontend.mel_power(span.unsqueeze(0))[0, :, head:]
        firsts = span[starts.unsqueeze(1) + torch.arange(edge)]
        lasts = span[starts.unsqueeze(1) + window - edge + torch.arange(edge)]
        heads = frontend.mel_power(firsts)[..., :head]
        tails = frontend.mel_power(lasts)[..., -tail:] if tail else frontend.mel_power(lasts)[..., :0]
    return _Chunk(first, frames.contiguous(), heads.contiguous(), tails.contiguous())


def score_windows(model: torch.nn.Module, windows: StreamWindows, indices: Sequence[int] | None = None,
                  batch_size: int = SCORE_BATCH) -> np.ndarray:
    """The exported model's score (its ``output`` of its ``network`` of the normalised log-mel) of every window,
    or of the windows at ``indices``; the model's front end does only the normalisation here."""
    model.eval()
    scores: list[torch.Tensor] = []
    with torch.inference_mode():
        if indices is None:
            for chunk in windows.chunks:
                powers = windows.chunk_powers(chunk)
                for start in range(0, len(powers), batch_size):
                    scores.append(_score(model, powers[start : start + batch_size]))
        else:
            for start in range(0, len(indices), batch_size):
                scores.append(_score(model, windows.powers(indices[start : start + batch_size])))
    return torch.cat(scores).double().numpy() if scores else np.zeros(0)


def _score(model: torch.nn.Module, powers: torch.Tensor) -> torch.Tensor:
    return model.output(model.network(model.frontend.normalize(powers))).float()


def stream_scores(model: torch.nn.Module, windows: StreamWindows):
    """``streaming.StreamScores`` of every window: what ``streaming.score_stream`` gives for the same stream."""
    from .streaming import StreamScores

    features = windows.features
    return StreamScores(score_windows(model, windows), windows.hop_samples / features.sample_rate,
                        features.clip_samples / features.sample_rate, windows.duration_seconds)
