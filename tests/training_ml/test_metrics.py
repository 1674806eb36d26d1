from __future__ import annotations

import itertools

import numpy as np
import pytest

from training_app.ml.metrics import (
    METRICS,
    classification_metrics,
    positive_label_index,
    rates_at_threshold,
    roc_auc,
    threshold_for_far,
    trend,
)
from training_app.ml.tasks import TASKS


def one_hot(predicted: list[int], n_labels: int) -> np.ndarray:
    return np.eye(n_labels)[predicted]


def test_classification_metrics_on_a_known_confusion():
    labels = ["cat", "dog", "eel"]
    truth = [0, 0, 0, 1, 1, 2]
    predicted = [0, 0, 1, 1, 1, 0]

    metrics = classification_metrics(truth, one_hot(predicted, 3), labels)

    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["confusion_matrix"] == {"labels": labels, "matrix": [[2, 1, 0], [0, 2, 0], [1, 0, 0]]}
    cat = metrics["per_class"]["cat"]
    assert (cat["precision"], cat["recall"], cat["support"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 3)
    dog = metrics["per_class"]["dog"]
    assert dog["precision"] == pytest.approx(2 / 3) and dog["recall"] == 1.0
    assert dog["f1"] == pytest.approx(0.8)
    assert metrics["per_class"]["eel"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0.0) / 3)


def test_macro_f1_ignores_labels_absent_from_the_split():
    metrics = classification_metrics([0, 0, 1], one_hot([0, 0, 1], 3), ["a", "b", "c"])

    assert metrics["macro_f1"] == 1.0
    assert metrics["per_class"]["c"]["support"] == 0


def brute_force_auc(scores, positives):
    pairs = [(p, n) for p, n in itertools.product(
        [s for s, y in zip(scores, positives, strict=True) if y],
        [s for s, y in zip(scores, positives, strict=True) if not y])]
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


def test_roc_auc_extremes_and_ties():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [False, True, False, True]) == 0.5
    assert roc_auc([0.5, 0.7], [True, True]) is None


def test_roc_auc_matches_pairwise_counting():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(60), 1)  # rounding creates ties
    positives = rng.random(60) < 0.4

    assert roc_auc(scores, positives) == pytest.approx(brute_force_auc(scores, positives))


def test_threshold_for_far_keeps_false_accepts_under_target_and_accepts_most_positives():
    rng = np.random.default_rng(1)
    negatives = rng.normal(0.3, 0.15, 200)
    positives = rng.normal(0.7, 0.15, 100)
    scores = np.r_[negatives, positives]
    is_positive = np.r_[np.zeros(200, bool), np.ones(100, bool)]

    result = threshold_for_far(scores, is_positive, target_far=0.05)

    assert result["false_accept_rate"] <= 0.05
    assert result == {"threshold": result["threshold"], **rates_at_threshold(scores, is_positive, result["threshold"])}
    # Any lower threshold that still meets the target would accept more positives: there is none.
    lower = scores[scores < result["threshold"]].max()
    assert rates_at_threshold(scores, is_positive, lower)["false_accept_rate"] > 0.05


def test_threshold_for_far_above_every_score_when_target_is_unreachable():
    result = threshold_for_far([0.9, 0.9, 0.1], [False, True, False], target_far=0.01)

    assert result["threshold"] > 0.9
    assert result["false_accept_rate"] == 0.0 and result["true_accept_rate"] == 0.0


def test_positive_label_is_the_one_that_is_not_noise():
    assert positive_label_index(["_background_noise_", "hey_computer"]) == 1
    assert positive_label_index(["marvin", "noise"]) == 0
    assert positive_label_index(["no", "yes"]) == 1


@pytest.mark.parametrize(("metric", "value", "reference", "expected"), [
    ("accuracy", 0.95, 0.90, "better"),
    ("spearman", 0.80, 0.90, "worse"),
    ("false_reject_rate", 0.02, 0.05, "better"),
    ("false_accepts_per_hour", 0.8, 0.3, "worse"),
    ("cer", 0.03, 0.05, "better"),
    ("wer", 0.12, 0.10, "worse"),
    ("rmse", 0.10, 0.12, "better"),
    ("mae", 0.09, 0.08, "worse"),
    ("val_loss", 0.40, 0.50, "better"),
    ("val_mel_loss", 0.70, 0.60, "worse"),
    ("false_reject_rate", 0.0502, 0.05, ""),  # within NO_CHANGE: no colour
    ("cer", None, 0.05, ""),
])
def test_a_change_is_better_or_worse_in_the_direction_of_its_metric(metric, value, reference, expected):
    assert trend(metric, value, reference) == expected


def test_every_task_headline_names_a_described_metric_and_its_direction():
    for name, task in TASKS.items():
        headline = task.headline({})
        assert headline["metric"] in METRICS, name
        assert headline["higher_is_better"] is METRICS[headline["metric"]].higher_is_better
    assert {name: TASKS[name].headline({})["higher_is_better"] for name in TASKS} == {
        "classification": True, "regression": True, "detection": False, "transcription": False, "synthesis": False,
    }
    with pytest.raises(KeyError, match="describe it in training_app.ml.metrics.METRICS"):
        trend("loudness", 1.0, 0.0)
