"""Regression: a 0-1 score per clip (a rating of quality, urgency...), judged by error and rank correlation.

The network's one output goes through a sigmoid, so predictions stay in [0, 1] like the ratings; the loss is the
mean squared error of that score, so the validation loss that picks the best epoch is the validation MSE.
A file longer than the model's clip is scored in windows half a clip apart and the window scores are averaged:
a rating describes the whole recording, and the mean weighs every part of it equally.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..config import TrainConfig
from ..data import ClipRecord
from ..metrics import regression_metrics
from .common import Fitted, headline_of, sigmoid, thin

TRAINS_ON = "score"
# Mixing in noise changes what a listener hears, and with it the rating (a quality score falls with noise),
# so noise augmentation is off unless the user turns it on.
DEFAULTS: dict[str, Any] = {"noise": False}
EPOCH_METRIC = ("val_mae", "Validation mean absolute error", False)
OUTPUT_NAME = "score"
MIN_SCORED_CLIPS = 20
WINDOW_HOP_FRACTION = 0.5
# Scores are split into these bins so every split sees low, middle and high ratings.
SCORE_BINS = (0.25, 0.5, 0.75)
HISTOGRAM_BINS = 20


def check_config(cfg: TrainConfig) -> None:
    return None


def check_data(clips: Sequence[ClipRecord], cfg: TrainConfig) -> list[str]:
    scored = [clip for clip in clips if clip.score is not None]
    if len(scored) < MIN_SCORED_CLIPS:
        have = "has one" if len(scored) == 1 else "have one"
        return [f"regression needs at least {MIN_SCORED_CLIPS} clips with a score; {len(scored)} {have}"]
    problems = []
    if len({clip.score for clip in scored}) < 2:
        problems.append(f"all {len(scored)} scores are {scored[0].score:g}; regression needs different scores")
    if cfg.holdout_speakers:
        speakers = {clip.speaker for clip in scored}
        missing = [speaker for speaker in cfg.holdout_speakers if speaker not in speakers]
        if missing:
            problems.append(f"held-out speakers not found in the data: {', '.join(repr(s) for s in missing)}")
        outside = sum(1 for clip in scored if clip.speaker not in set(cfg.holdout_speakers))
        if outside < MIN_SCORED_CLIPS // 2:
            problems.append(f"{outside} scored clips are left outside the held-out speakers; "
                            f"at least {MIN_SCORED_CLIPS // 2} are needed for training and validation")
    return problems


def usable(clip: ClipRecord) -> bool:
    """Clips without a score are left out (and counted in the job's data summary)."""
    return clip.score is not None


def labels(clips: Sequence[ClipRecord], cfg: TrainConfig) -> list[str]:
    return []


def stratum(clip: ClipRecord, cfg: TrainConfig) -> str:
    low = max([0.0, *(edge for edge in SCORE_BINS if clip.score >= edge)])
    high = min([1.0, *(edge for edge in SCORE_BINS if clip.score < edge)])
    return f"score {low:g}-{high:g}"


def targets(clips: Sequence[ClipRecord], names: list[str], cfg: TrainConfig):
    import torch

    return torch.tensor([float(clip.score) for clip in clips], dtype=torch.float32)


def n_outputs(names: list[str]) -> int:
    return 1


def loss_function(train_targets, names: list[str], cfg: TrainConfig, device):
    import torch

    def squared_error(outputs, truth):
        return torch.nn.functional.mse_loss(torch.sigmoid(outputs[:, 0]), truth)

    return squared_error


def epoch_metrics(outputs, truth) -> dict[str, float]:
    import torch

    return {"val_mae": float((torch.sigmoid(outputs[:, 0]) - truth).abs().mean())}


def output_layer():
    from ..model import ScoreOutput

    return ScoreOutput()


def export_config(metrics: dict[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    return {"aggregation": "mean", "window_hop_fraction": WINDOW_HOP_FRACTION}


def evaluate(fitted: Fitted) -> dict[str, Any]:
    evaluated_on = fitted.evaluated_on
    predictions = {name: sigmoid(fitted.outputs(name)[:, 0]) for name in ("val", "test") if fitted.split.indices(name)}
    truths = {name: fitted.truth(name).astype(np.float64) for name in predictions}
    results: dict[str, Any] = {
        "task": fitted.cfg.task,
        "labels": [],
        "evaluated_on": evaluated_on,
        "val": regression_metrics(truths["val"], predictions["val"]),
        "test": regression_metrics(truths["test"], predictions["test"]) if "test" in predictions else None,
        "seed": fitted.cfg.seed,
    }
    headline = results[evaluated_on]
    results.update(mae=headline["mae"], rmse=headline["rmse"], pearson=headline["pearson"],
                   spearman=headline["spearman"])
    results["baseline"] = _ridge_baseline(fitted)
    results["mean_reference"] = _mean_reference(fitted, truths[evaluated_on])
    results["points"] = thin([[round(float(t), 4), round(float(p), 4)]
                              for t, p in zip(truths[evaluated_on], predictions[evaluated_on], strict=True)])
    results["residual_histogram"] = residual_histogram(predictions[evaluated_on] - truths[evaluated_on])
    spearman = "n/a" if headline["spearman"] is None else f"{headline['spearman']:.3f}"
    fitted.log("info", f"{evaluated_on} RMSE {headline['rmse']:.3f} (ridge baseline {results['baseline']['rmse']:.3f}, "
                       f"predict-the-mean {results['mean_reference']['rmse']:.3f}), Spearman {spearman}")
    return results


def _ridge_baseline(fitted: Fitted) -> dict[str, Any]:
    from ..baseline import RIDGE_DESCRIPTION, RidgeBaseline, clip_statistics

    evaluated_on = fitted.evaluated_on
    model = RidgeBaseline().fit(clip_statistics(fitted.log_mels["train"]), fitted.targets[fitted.split.train])
    predicted = model.predict(clip_statistics(fitted.log_mels[evaluated_on])).numpy()
    return {
        "description": RIDGE_DESCRIPTION,
        "evaluated_on": evaluated_on,
        **regression_metrics(fitted.truth(evaluated_on), predicted),
    }


def _mean_reference(fitted: Fitted, truth: np.ndarray) -> dict[str, Any]:
    mean = float(fitted.targets[fitted.split.train].double().mean())
    return {
        "description": f"every clip predicted as the training mean ({mean:.3f})",
        "value": mean,
        **regression_metrics(truth, np.full(len(truth), mean)),
    }


def residual_histogram(residuals: np.ndarray) -> dict[str, Any]:
    """Counts of (predicted - true) in equal bins over [-1, 1]."""
    counts, edges = np.histogram(np.clip(residuals, -1, 1), bins=HISTOGRAM_BINS, range=(-1.0, 1.0))
    return {"edges": [round(float(edge), 4) for edge in edges], "counts": counts.tolist()}


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return headline_of("spearman", "Spearman", metrics.get("spearman"), (metrics.get("baseline") or {}).get("spearman"))


# Predictions -------------------------------------------------------------------------------------------------

def window_hop_seconds(clip_seconds: float) -> float:
    return clip_seconds * WINDOW_HOP_FRACTION


def shape_prediction(outputs: np.ndarray, starts: list[float], context: dict[str, Any]) -> dict[str, Any]:
    scores = np.asarray(outputs, dtype=np.float64).reshape(-1)
    shaped: dict[str, Any] = {
        "score": round(float(scores.mean()), 6),
        "aggregation": "mean" if len(scores) > 1 else None,
    }
    if len(scores) > 1:
        shaped["window_scores"] = [
            {"start": round(start, 3), "score": round(float(score), 6)} for start, score in zip(starts, scores, strict=True)
        ]
    return shaped


AGREEMENT_TOLERANCE = 0.1  # two scores within this of each other count as the same answer


def prediction_answer(result: dict[str, Any]) -> tuple[str, float | None]:
    """What the prediction log counts and compares (registry live traffic): the score's tenth ("0.7-0.8"),
    and the score."""
    score = float(result["score"])
    low = min(int(score * 10), 9) / 10
    return f"{low:.1f}–{low + 0.1:.1f}", score


def answers_agree(first: tuple[str, float | None], second: tuple[str, float | None]) -> bool:
    """Scores agree when they are within AGREEMENT_TOLERANCE (bins alone would split 0.69 and 0.71)."""
    if first[1] is None or second[1] is None:
        return first[0] == second[0]
    return abs(first[1] - second[1]) <= AGREEMENT_TOLERANCE
