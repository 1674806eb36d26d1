"""What every task's evaluation receives, and helpers the task modules share (torch imported lazily)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import FeatureConfig, TrainConfig
from ..data import BackgroundRoles, ClipRecord
from ..split import Split

EVAL_BATCH = 256
# Most (truth, prediction) points a chart keeps; the metrics use every clip.
MAX_CHART_POINTS = 2000


@dataclass(frozen=True)
class Fitted:
    """A trained network and the held-out data it is judged on.

    ``log_mels`` holds each split's dB log-mel images (n, 1, n_mels, frames), centred like inference does.
    ``export_model()`` is the eager waveform-in module that is exported (front end, network, task output).
    ``background_roles``: the dataset's long background recordings by role (``data.background_roles``), or None.
    ``calibration``: thresholds to use instead of calibrating on this model's validation outputs.
    """

    cfg: TrainConfig
    labels: list[str]
    clips: list[ClipRecord]
    split: Split
    targets: Any
    log_mels: dict[str, Any]
    network: Any
    device: Any
    features: FeatureConfig
    export_model: Callable[[], Any]
    log: Callable[[str, str], None]
    background_roles: BackgroundRoles | None = None
    # Thresholds calibrated on another model's validation outputs (a refit trained on the validation clips, so it
    # takes those of the run that chose its epoch count): name -> threshold.
    calibration: dict[str, float] = field(default_factory=dict)
    # Each split's waveforms (n, clip_samples), centred like inference does, when the network reads them (the speech
    # embedding's head): val and test only.
    waveforms: dict[str, Any] = field(default_factory=dict)

    @property
    def evaluated_on(self) -> str:
        return "test" if self.split.test else "val"

    def outputs(self, split_name: str) -> np.ndarray:
        """The network's raw outputs (logits) for a split's clips, (n, n_outputs)."""
        import torch

        from ..features import LogMelFrontend
        from ..model import network_inputs

        self.network.eval()
        log_mel = self.log_mels[split_name]
        inputs = network_inputs(self.network)
        waveforms = self.waveforms.get(split_name)

        def batch_outputs(start: int):
            if inputs == "waveform":
                return self.network(waveforms[start : start + EVAL_BATCH].to(self.device))
            features = LogMelFrontend.standardize(log_mel[start : start + EVAL_BATCH].to(self.device))
            if inputs == "both":
                return self.network(features, waveforms[start : start + EVAL_BATCH].to(self.device))
            return self.network(features)

        with torch.no_grad():
            parts = [batch_outputs(i).cpu() for i in range(0, len(log_mel), EVAL_BATCH)]
        return torch.cat(parts).double().numpy() if parts else np.zeros((0, 1))

    def truth(self, split_name: str) -> np.ndarray:
        return self.targets[self.split.indices(split_name)].numpy()


def headline_of(metric: str, name: str, value: float | None, baseline: float | None) -> dict[str, Any]:
    """A task's headline figure: ``metric`` names it in ``metrics.METRICS``, which says which way is better."""
    from ..metrics import METRICS

    return {"name": name, "metric": metric, "value": value, "baseline": baseline,
            "higher_is_better": METRICS[metric].higher_is_better}


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(values, dtype=np.float64)))


def batched_logits(network, inputs, batch: int = EVAL_BATCH):
    import torch

    return torch.cat([network(inputs[i : i + batch]) for i in range(0, len(inputs), batch)])


def thin(points: Sequence[Any], limit: int = MAX_CHART_POINTS) -> list[Any]:
    """At most ``limit`` evenly spaced items, for charts of large splits."""
    if len(points) <= limit:
        return list(points)
    step = len(points) / limit
    return [points[int(i * step)] for i in range(limit)]


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start offsets of windows of ``window`` samples every ``hop`` samples, the last one ending at the end."""
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window + 1, max(1, hop)))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return starts
