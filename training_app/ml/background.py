"""Background recordings in training (detection): negatives, noise, and the validation stream that picks the
checkpoint.

openWakeWord and microWakeWord learn what a wake phrase is *not* from hours of ordinary audio, and they keep the
checkpoint that accepts the most validation wake phrases while a validation stream of ordinary audio stays within
the false-accept budget (openWakeWord's ``auto_train`` keeps models under the target false positives per hour and
picks the one with the best recall; microWakeWord saves the best weights by ambient false accepts per hour, then by
recall). AudioML does the same at its scale:

- the training parts of the background recordings (``data.background_roles``) are transformed once
  (``stream_features.StreamWindows``, at most ``TRAIN_SECONDS``); every epoch trains on random windows of them and
  on the windows the model scored highest after the previous epoch (hard-negative mining on a random sample), and
  noise augmentation mixes random windows of them into the clips;
- after every epoch the validation stream (at most ``SELECTION_SECONDS`` of the validation parts, a window every
  ``SELECTION_HOP_SECONDS``) is scored, the threshold that keeps it within the false-accept budget is found as the
  final calibration finds it, and the false-reject rate of the validation wake phrases at that threshold chooses
  the checkpoint (the validation loss breaks ties).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .config import FeatureConfig, TrainConfig
from .data import BackgroundPart, BackgroundRoles
from .features import LogMelFrontend
from .stream_features import StreamWindows

# Training background kept transformed in memory (about 25 MB of frames per 10 minutes).
TRAIN_SECONDS = 2 * 3600.0
TRAIN_HOP_SECONDS = 0.1
# The validation stream scored after every epoch: its length and the spacing of its windows.
SELECTION_SECONDS = 360.0
SELECTION_HOP_SECONDS = 0.1
# Mining scores the current hard negatives and this many times as many other windows (at least MINING_MINIMUM).
MINING_FACTOR = 8
MINING_MINIMUM = 512
SCORE_BATCH = 256


class WindowSource:
    """Windows of one or more streams, indexed as one list."""

    def __init__(self, streams: Sequence[StreamWindows]) -> None:
        self.streams = list(streams)
        self._starts = np.cumsum([0] + [len(stream) for stream in self.streams])

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def seconds(self) -> float:
        return sum(stream.duration_seconds for stream in self.streams)

    def powers(self, indices: Sequence[int]) -> torch.Tensor:
        """Mel power of the windows at ``indices`` (a global index), (len(indices), n_mels, n_frames)."""
        parts = []
        for index in indices:
            stream = int(np.searchsorted(self._starts, index, side="right")) - 1
            parts.append(self.streams[stream].powers([int(index - self._starts[stream])]))
        return torch.cat(parts)


class PowerList:
    """A list of (n_mels, n_frames) mel powers as a window source (tests, small pools)."""

    def __init__(self, powers: Sequence[torch.Tensor]) -> None:
        self.items = list(powers)

    def __len__(self) -> int:
        return len(self.items)

    def powers(self, indices: Sequence[int]) -> torch.Tensor:
        return torch.stack([self.items[i] for i in indices])


class NegativePool:
    """Background windows trained on as negatives: every epoch ``random_count`` random windows of the source plus
    the ``hard_count`` windows the model scored highest at the last mining (random ones before the first)."""

    def __init__(self, source, random_count: int, hard_count: int, device: torch.device) -> None:
        self.source, self.random_count, self.hard_count, self.device = source, random_count, hard_count, device
        self.hardest: list[int] = []

    @property
    def per_epoch(self) -> int:
        return self.random_count + self.hard_count

    def for_epoch(self, generator: torch.Generator) -> list[torch.Tensor]:
        hardest = self.hardest[: self.hard_count]
        wanted = self.per_epoch - len(hardest)
        taken = set(hardest)
        others = [i for i in _sample(len(self.source), wanted + len(taken), generator) if i not in taken][:wanted]
        return list(self.source.powers(hardest + others)) if hardest or others else []

    def mine(self, network: torch.nn.Module, frontend: LogMelFrontend, check_stop: Callable[[], None],
             generator: torch.Generator) -> None:
        """Score the current hardest windows and a random sample of the others (``MINING_FACTOR`` times as many as
        are kept); the highest-scoring are trained on next epoch."""
        if not self.hard_count:
            return
        taken = set(self.hardest)
        sample = max(MINING_FACTOR * self.hard_count, MINING_MINIMUM)
        candidates = self.hardest + [i for i in _sample(len(self.source), sample, generator) if i not in taken]
        scores = _logits(network, frontend, self.source, candidates, self.device, check_stop)
        self.hardest = [candidates[i] for i in np.argsort(-scores, kind="stable")[: self.hard_count]]


@dataclass
class BackgroundTraining:
    """What the default training loop takes from the background recordings (detection)."""

    roles: BackgroundRoles
    train: WindowSource | None
    selection: StreamWindows | None
    negatives: NegativePool | None

    @classmethod
    def build(cls, cfg: TrainConfig, roles: BackgroundRoles, features: FeatureConfig, device: torch.device,
              check_stop: Callable[[], None], log: Callable[[str, str], None]) -> BackgroundTraining:
        from .streaming import read_blocks

        frontend = LogMelFrontend(features)

        def windows(parts: list[BackgroundPart], budget: float, hop_seconds: float) -> list[StreamWindows]:
            streams, share = [], budget / max(len(parts), 1)
            for part in parts:
                check_stop()
                end = part.start + min(part.seconds, max(share, budget - sum(s.duration_seconds for s in streams)))
                blocks = read_blocks(part.clip.path, features.sample_rate, start_seconds=part.start, end_seconds=end)
                streams.append(StreamWindows.compute(blocks, frontend, features,
                                                     int(round(hop_seconds * features.sample_rate))))
            return streams

        train = WindowSource(windows(roles.train, TRAIN_SECONDS, TRAIN_HOP_SECONDS)) if roles.train else None
        selection = None
        if roles.validation:
            streams = windows(roles.validation, SELECTION_SECONDS, SELECTION_HOP_SECONDS)
            selection = streams[0] if len(streams) == 1 else _joined(streams)
        negatives = None
        if train is not None and len(train) and cfg.background_negatives + cfg.hard_negatives:
            negatives = NegativePool(train, cfg.background_negatives, cfg.hard_negatives, device)
            log("info", f"{train.seconds / 60:.1f} min of {roles.sources['train']} give negatives: "
                        f"{cfg.background_negatives} random windows and {cfg.hard_negatives} of the highest-scoring "
                        "(hard-negative mining) join every epoch")
        if selection is not None:
            log("info", f"the checkpoint is chosen by the false rejects at {cfg.target_fa_per_hour:g} false accepts "
                        f"per hour on {selection.duration_seconds / 60:.1f} min of "
                        f"{roles.sources['validation']}")
        return cls(roles, train, selection, negatives)

    def noise_powers(self, count: int, generator: torch.Generator) -> list[torch.Tensor]:
        """Random windows of the training background, for noise augmentation."""
        if self.train is None or not len(self.train):
            return []
        return list(self.train.powers(_sample(len(self.train), count, generator)))

    def select(self, network: torch.nn.Module, frontend: LogMelFrontend, positive_scores: np.ndarray,
               cfg: TrainConfig, check_stop: Callable[[], None], device: torch.device) -> dict[str, float]:
        """The validation figure that chooses the checkpoint: the share of validation positives (their scores, as a
        prediction computes them) below the threshold that keeps the validation stream within the false-accept
        budget."""
        from .streaming import StreamScores, calibrate_threshold, smoothed
        from .tasks.detection import REFRACTORY_SECONDS

        logits = _logits(network, frontend, self.selection, range(len(self.selection)), device, check_stop)
        features = self.selection.features
        stream = StreamScores(smoothed(_sigmoid(logits), cfg.smoothing_hops),
                              self.selection.hop_samples / features.sample_rate,
                              features.clip_samples / features.sample_rate, self.selection.duration_seconds)
        calibration = calibrate_threshold(positive_scores, [stream], cfg.target_fa_per_hour, REFRACTORY_SECONDS)
        return {"val_frr": calibration.false_reject_rate}


def _joined(streams: list[StreamWindows]) -> StreamWindows:
    """Several validation streams as one (their windows one after the other; no window spans two)."""
    first = streams[0]
    chunks, offset = [], 0
    for stream in streams:
        for chunk in stream.chunks:
            chunks.append(type(chunk)(chunk.first + offset, chunk.frames, chunk.heads, chunk.tails))
        offset += len(stream)
    return StreamWindows(first.features, first.hop_samples, chunks, sum(s.total_samples for s in streams))


def _sample(size: int, count: int, generator: torch.Generator) -> list[int]:
    """``count`` distinct random indices below ``size`` (all of them, shuffled, when there are fewer)."""
    if count >= size:
        return torch.randperm(size, generator=generator).tolist()
    return torch.randperm(size, generator=generator)[:count].tolist()


def _logits(network, frontend: LogMelFrontend, source, indices: Sequence[int], device: torch.device,
            check_stop: Callable[[], None]) -> np.ndarray:
    network.eval()
    indices = list(indices)
    scores = []
    with torch.no_grad():
        for start in range(0, len(indices), SCORE_BATCH):
            check_stop()
            batch = source.powers(indices[start : start + SCORE_BATCH]).to(device)
            scores.append(network(frontend.normalize(batch))[:, 0].float().cpu())
    return torch.cat(scores).double().numpy() if scores else np.zeros(0)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))
