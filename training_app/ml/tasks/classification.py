"""Classification: one label per clip, softmax over the labels, accuracy and F1 beside a logistic baseline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..config import TrainConfig
from ..data import ClipRecord, check_label_counts, is_noise_label, is_unknown_label
from ..metrics import classification_metrics, positive_label_index, rates_at_threshold, roc_auc, threshold_for_far
from .common import Fitted, headline_of

TRAINS_ON = "label"
DEFAULTS: dict[str, Any] = {}
# The balanced preset averages a 2-D CNN, a temporal CNN and a head on the frozen pretrained speech embedding
# (docs/benchmarks.md, "Keyword recipe quality": on the hard keyword corpus the 2-D + temporal average, with the open-set
# rule, beat either kind alone and two of one kind; adding the speech embedding head beat that pair on both hard corpora
# and on the easy one).
TASK_PRESETS: dict[str, dict[str, Any]] = {"balanced": {"architecture": "conv2d+temporal+embedding"}}
EPOCH_METRIC = ("val_accuracy", "Validation accuracy", True)
OUTPUT_NAME = "probabilities"
# A file longer than the model's clip is scored in windows this share of a clip apart; probabilities averaged.
WINDOW_HOP_FRACTION = 0.5
# Open set: the unsure threshold keeps this share of the validation keyword clips the model gets right.
OPEN_SET_KEEP = 0.99


def check_config(cfg: TrainConfig) -> None:
    return None


def check_data(clips: Sequence[ClipRecord], cfg: TrainConfig) -> list[str]:
    return check_label_counts(clips, cfg)


def usable(clip: ClipRecord) -> bool:
    return True


def labels(clips: Sequence[ClipRecord], cfg: TrainConfig) -> list[str]:
    return sorted({clip.label for clip in clips})


def stratum(clip: ClipRecord, cfg: TrainConfig) -> str:
    return clip.label


def targets(clips: Sequence[ClipRecord], names: list[str], cfg: TrainConfig):
    import torch

    return torch.tensor([names.index(clip.label) for clip in clips])


def n_outputs(names: list[str]) -> int:
    return len(names)


def class_weights(train_targets, n_labels: int):
    """Inverse label frequency in the training split, so rare labels weigh as much as common ones."""
    import torch

    counts = torch.bincount(train_targets, minlength=n_labels).float()
    return torch.where(counts > 0, counts.sum() / (n_labels * counts.clamp_min(1)), 1.0)


def loss_function(train_targets, names: list[str], cfg: TrainConfig, device):
    from torch import nn

    return nn.CrossEntropyLoss(weight=class_weights(train_targets, len(names)).to(device),
                               label_smoothing=cfg.label_smoothing)


def epoch_metrics(outputs, truth) -> dict[str, float]:
    return {"val_accuracy": float((outputs.argmax(dim=1) == truth).float().mean())}


def output_layer():
    from torch import nn

    return nn.Softmax(dim=-1)


def export_config(metrics: dict[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    """The open-set threshold predictions mark unsure answers with (none when it could not be calibrated), and the
    label an unsure answer becomes when the open-set rule is on."""
    found = metrics.get("open_set")
    if not found:
        return {}
    return {"unsure_below": found["threshold"], **({"unsure_label": found["unknown_label"]} if found.get("rule")
                                                    else {})}


def evaluate(fitted: Fitted) -> dict[str, Any]:
    evaluated_on = fitted.evaluated_on
    probabilities = {name: _softmax(fitted.outputs(name)) for name in ("val", "test") if fitted.split.indices(name)}
    truths = {name: fitted.truth(name) for name in probabilities}
    found = open_set(fitted.labels, probabilities, truths, evaluated_on, fitted.calibration.get("open_set"),
                     fitted.cfg.unsure_as_unknown)
    # The answers a prediction gives (the open-set rule applied when it is on), so the figures are what users get.
    answers = {name: answer_indices(scores, fitted.labels, found) for name, scores in probabilities.items()}
    results: dict[str, Any] = {
        "task": fitted.cfg.task,
        "labels": fitted.labels,
        "evaluated_on": evaluated_on,
        "val": classification_metrics(truths["val"], probabilities["val"], fitted.labels, answers["val"]),
        "test": classification_metrics(truths["test"], probabilities["test"], fitted.labels, answers["test"])
        if "test" in probabilities else None,
        "seed": fitted.cfg.seed,
    }
    results["accuracy"] = results[evaluated_on]["accuracy"]
    results["macro_f1"] = results[evaluated_on]["macro_f1"]
    results["binary"] = _binary(fitted, probabilities, truths) if len(fitted.labels) == 2 else None
    results["open_set"] = found
    results["baseline"] = _baseline(fitted)
    fitted.log("info", f"{evaluated_on} accuracy {results['accuracy']:.3f} "
                       f"(baseline {results['baseline']['accuracy']:.3f}), macro F1 {results['macro_f1']:.3f}")
    return results


def keyword_indices(labels: Sequence[str]) -> list[int]:
    """The labels a model is asked to spot: every label but noise and unknown (the open-set classes)."""
    return [index for index, label in enumerate(labels) if not (is_noise_label(label) or is_unknown_label(label))]


def open_set(labels: list[str], probabilities: dict[str, np.ndarray], truths: dict[str, np.ndarray],
             evaluated_on: str, threshold: float | None = None, rule: bool = True) -> dict[str, Any] | None:
    """The unsure threshold, calibrated on validation: the top score below which a keyword answer is unsure. It
    keeps ``OPEN_SET_KEEP`` of the validation keyword clips the model gets right, so it costs about 2% of keyword
    recall; what it does on the evaluation clips is reported beside it (answers under it, unknown words it
    catches, keyword clips it loses). None without keywords or with too few right validation keyword clips.
    ``threshold``: one calibrated already (on the validation outputs of the run a refit took its epochs from).
    ``rule``: with an unknown label, unsure answers *are* that label (``rule`` in the result says whether it is
    applied; ``top_label_accuracy`` is the accuracy of the top scores alone)."""
    keywords = keyword_indices(labels)
    val = probabilities.get("val")
    if not keywords or val is None or not len(val):
        return None
    right = np.isin(truths["val"], keywords) & (val.argmax(axis=1) == truths["val"])
    if threshold is None:
        if right.sum() < 5:
            return None
        threshold = float(np.quantile(val[right].max(axis=1), 1 - OPEN_SET_KEEP))
    unknown = next((label for label in labels if is_unknown_label(label)), None)
    scores, truth = probabilities[evaluated_on], truths[evaluated_on]
    predicted = scores.argmax(axis=1)
    unsure = np.isin(predicted, keywords) & (scores.max(axis=1) < threshold)
    is_keyword = np.isin(truth, keywords)
    result: dict[str, Any] = {
        "threshold": round(threshold, 4),
        "keep": OPEN_SET_KEEP,
        "unknown_label": unknown,
        "evaluated_on": evaluated_on,
        "unsure": int(unsure.sum()),
        "n": int(len(truth)),
        "keyword_clips_lost": int((unsure & is_keyword & (predicted == truth)).sum()),
        "wrong_answers_caught": int((unsure & (predicted != truth)).sum()),
    }
    result["rule"] = bool(rule and unknown is not None)
    if unknown is not None:
        with_rule = np.where(unsure, labels.index(unknown), predicted)
        result["accuracy_with_rule"] = float((with_rule == truth).mean()) if len(truth) else 0.0
        result["top_label_accuracy"] = float((predicted == truth).mean()) if len(truth) else 0.0
    return result


def answer_indices(probabilities: np.ndarray, labels: list[str], found: dict[str, Any] | None) -> np.ndarray:
    """The label index each row of ``probabilities`` is answered with: the top score, or the unknown label for an
    unsure keyword answer when the open-set rule is on (``found``: ``open_set``'s result)."""
    predicted = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, dtype=np.int64)
    if not found or not found.get("rule"):
        return predicted
    unsure = np.isin(predicted, keyword_indices(labels)) & (probabilities.max(axis=1) < found["threshold"])
    return np.where(unsure, labels.index(found["unknown_label"]), predicted)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _binary(fitted: Fitted, probabilities: dict[str, np.ndarray], truths: dict[str, np.ndarray]) -> dict[str, Any]:
    positive = positive_label_index(fitted.labels)
    val_scores = probabilities["val"][:, positive]
    operating = threshold_for_far(val_scores, truths["val"] == positive, fitted.cfg.target_far)
    if "binary" in fitted.calibration:
        operating = {"threshold": fitted.calibration["binary"]}
    result: dict[str, Any] = {
        "positive_label": fitted.labels[positive],
        "target_far": fitted.cfg.target_far,
        "threshold": operating["threshold"] if operating else None,
    }
    for name, scores in probabilities.items():
        is_positive = truths[name] == positive
        entry: dict[str, Any] = {"roc_auc": roc_auc(scores[:, positive], is_positive)}
        if operating:
            entry.update(rates_at_threshold(scores[:, positive], is_positive, operating["threshold"]))
        result[name] = entry
    return result


def _baseline(fitted: Fitted) -> dict[str, Any]:
    from ..baseline import BASELINE_DESCRIPTION, LogisticBaseline, clip_statistics

    evaluated_on = fitted.evaluated_on
    train_targets = fitted.targets[fitted.split.train]
    model = LogisticBaseline(len(fitted.labels)).fit(
        clip_statistics(fitted.log_mels["train"]), train_targets, class_weights(train_targets, len(fitted.labels))
    )
    probabilities = model.predict_proba(clip_statistics(fitted.log_mels[evaluated_on])).numpy()
    return {
        "description": BASELINE_DESCRIPTION,
        "evaluated_on": evaluated_on,
        **classification_metrics(fitted.truth(evaluated_on), probabilities, fitted.labels),
    }


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return headline_of("accuracy", "accuracy", metrics.get("accuracy"), (metrics.get("baseline") or {}).get("accuracy"))


# Predictions -------------------------------------------------------------------------------------------------

def window_hop_seconds(clip_seconds: float) -> float:
    return clip_seconds * WINDOW_HOP_FRACTION


def shape_prediction(outputs: np.ndarray, starts: list[float], context: dict[str, Any]) -> dict[str, Any]:
    """Window probabilities (n_windows, n_labels) are averaged, so the scores still sum to 1."""
    names = context["labels"]
    scores = np.asarray(outputs, dtype=np.float64).reshape(len(starts), len(names)).mean(axis=0)
    best = int(np.argmax(scores))
    answer = {
        "label": names[best],
        "scores": {label: round(float(score), 6) for label, score in zip(names, scores, strict=True)},
        "aggregation": "mean" if len(starts) > 1 else None,
    }
    prediction = context.get("prediction") or {}
    unsure_below = prediction.get("unsure_below")
    if unsure_below is not None:
        # A keyword answer under the open-set threshold: maybe a word the model never heard. With the open-set rule
        # (a dataset with an unknown label) it is answered as unknown; top_label keeps the top score's label.
        answer["unsure"] = best in keyword_indices(names) and float(scores[best]) < unsure_below
        answer["top_label"] = names[best]
        if answer["unsure"] and prediction.get("unsure_label") in names:
            answer["label"] = prediction["unsure_label"]
    return answer


def prediction_answer(result: dict[str, Any]) -> tuple[str, float | None]:
    """What the prediction log counts and compares (registry live traffic): the label and its probability."""
    return str(result["label"]), (result.get("scores") or {}).get(result["label"])
