"""The metrics every task reports, described once (``METRICS``: name, direction, share or not), and how they are
computed with numpy only: accuracy, F1, confusion matrix, ROC AUC, operating threshold, regression errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import is_noise_label

# A change smaller than this is shown as no change (±0): 0.05 percentage points, or 0.0005 of a score.
NO_CHANGE = 0.0005


@dataclass(frozen=True)
class Metric:
    """What a metric is to a reader: its title, which way is better, and whether it is a 0-1 share (shown in
    percent, compared in percentage points) or a plain number (shown and compared with three decimals)."""

    title: str
    higher_is_better: bool
    share: bool


# Every metric a task names as its headline or a page compares between versions. The one place that says whether
# a higher value is better: error rates, false accepts per hour, errors and losses are better lower.
METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", True, True),
    "macro_f1": Metric("macro F1", True, False),
    "roc_auc": Metric("ROC AUC", True, False),
    "spearman": Metric("Spearman", True, False),
    "pearson": Metric("Pearson", True, False),
    "rmse": Metric("RMSE", False, False),
    "mae": Metric("MAE", False, False),
    "false_reject_rate": Metric("false rejects", False, True),
    "false_accept_rate": Metric("false accepts", False, True),
    "false_accepts_per_hour": Metric("false accepts per hour", False, False),
    "cer": Metric("CER", False, True),
    "wer": Metric("WER", False, True),
    "val_loss": Metric("validation loss", False, False),
    "train_loss": Metric("training loss", False, False),
    "val_mel_loss": Metric("validation mel loss", False, False),
}


def metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}: describe it in training_app.ml.metrics.METRICS") from None


def trend(name: str, value: float | None, reference: float | None) -> str:
    """"better", "worse" or "" (no change, or a side missing) for ``value`` against ``reference``."""
    if value is None or reference is None or abs(value - reference) < NO_CHANGE:
        return ""
    return "better" if (value > reference) == metric(name).higher_is_better else "worse"


def classification_metrics(y_true: Sequence[int], probabilities: np.ndarray, labels: Sequence[str],
                           predicted: Sequence[int] | None = None) -> dict[str, Any]:
    """Metrics of predicted class probabilities (n, n_labels) against true label indices; ``predicted``: the answers
    when they are not the top scores (classification's open-set rule)."""
    truth = np.asarray(y_true, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if predicted is not None:
        predicted = np.asarray(predicted, dtype=np.int64)
    else:
        predicted = probabilities.argmax(axis=1) if len(truth) else np.zeros(0, dtype=np.int64)
    n_labels = len(labels)
    matrix = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)

    per_class: dict[str, dict[str, float | int]] = {}
    f1_scores = []
    for index, label in enumerate(labels):
        true_positive = int(matrix[index, index])
        predicted_count = int(matrix[:, index].sum())
        support = int(matrix[index, :].sum())
        precision = true_positive / predicted_count if predicted_count else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
        if support:
            f1_scores.append(f1)
    return {
        "n": int(len(truth)),
        "accuracy": float((predicted == truth).mean()) if len(truth) else 0.0,
        # Macro F1 over the labels present in this split, so a split missing a label is not penalised twice.
        "macro_f1": float(np.mean(f1_scores)) if f1_scores else 0.0,
        "per_class": per_class,
        "confusion_matrix": {"labels": list(labels), "matrix": matrix.tolist()},
    }


def positive_label_index(labels: Sequence[str]) -> int:
    """For two labels: the one that is not noise-like, else the second in order."""
    noise_like = [is_noise_label(label) for label in labels]
    if noise_like.count(True) == 1:
        return noise_like.index(False)
    return 1


def roc_auc(scores: Sequence[float], positives: Sequence[bool]) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with tied scores counted half); None without both classes."""
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    n_positive = int(positives.sum())
    n_negative = len(positives) - n_positive
    if n_positive == 0 or n_negative == 0:
        return None
    ranks = _average_ranks(scores)
    u_statistic = ranks[positives].sum() - n_positive * (n_positive + 1) / 2
    return float(u_statistic / (n_positive * n_negative))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2  # 1-based average rank of the tie group
    return ranks


def threshold_for_far(scores: Sequence[float], positives: Sequence[bool], target_far: float) -> dict[str, float] | None:
    """Lowest threshold (accept when score >= threshold) whose false-accept rate is at most ``target_far``.

    The lowest such threshold accepts the most true positives. Returns the threshold with the false-accept
    and true-accept rates it achieves on these scores, or None without both classes.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    negative_scores = np.sort(scores[~positives])
    positive_scores = np.sort(scores[positives])
    if len(negative_scores) == 0 or len(positive_scores) == 0:
        return None
    candidates = np.r_[np.unique(scores), np.nextafter(scores.max(), np.inf)]
    far = (len(negative_scores) - np.searchsorted(negative_scores, candidates, side="left")) / len(negative_scores)
    feasible = np.flatnonzero(far <= target_far)
    chosen = candidates[feasible[0]]
    return {"threshold": float(chosen), **rates_at_threshold(scores, positives, float(chosen))}


def rates_at_threshold(scores: Sequence[float], positives: Sequence[bool], threshold: float) -> dict[str, float]:
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    accepted = scores >= threshold
    negatives = ~positives
    far = float(accepted[negatives].mean()) if negatives.any() else 0.0
    tar = float(accepted[positives].mean()) if positives.any() else 0.0
    return {"false_accept_rate": far, "true_accept_rate": tar}


def regression_metrics(truth: Sequence[float], predicted: Sequence[float]) -> dict[str, Any]:
    """MAE, RMSE, Pearson and Spearman correlation of predicted scores against true scores.

    A correlation is None when either side is constant (it is undefined there).
    """
    truth = np.asarray(truth, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    errors = predicted - truth
    return {
        "n": int(len(truth)),
        "mae": float(np.abs(errors).mean()) if len(truth) else None,
        "rmse": float(np.sqrt((errors**2).mean())) if len(truth) else None,
        "pearson": _correlation(truth, predicted),
        "spearman": _correlation(_average_ranks(truth), _average_ranks(predicted)) if len(truth) else None,
    }


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])
