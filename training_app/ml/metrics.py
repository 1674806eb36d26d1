"""Classification metrics with numpy only: accuracy, F1, confusion matrix, ROC AUC, operating threshold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .data import is_noise_label


def classification_metrics(y_true: Sequence[int], probabilities: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Metrics of predicted class probabilities (n, n_labels) against true label indices."""
    truth = np.asarray(y_true, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
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
