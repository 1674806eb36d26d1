"""Dataset statistics: what the statistics page draws and `GET /api/datasets/{name}/stats` returns."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from django.db.models import Count, Sum

from datasets_app.models import CLIPPED_FRACTION, NEAR_SILENT_RMS_DBFS, Dataset


@dataclass
class TrainingNeeds:
    """What training needs from a dataset, for the dataset pages' warnings.

    Datasets know nothing about training: the training app, downstream, fills this in when it starts
    (training_app/apps.py). Left at 0 (no app trains on datasets), no label is flagged as too small.
    """

    min_clips_per_label: int = 0


training_needs = TrainingNeeds()
IMBALANCE_RATIO = 2.0  # warn about each label with at most 1/this of the clips of the largest (24 vs 12 is 2×)
LISTED_CLIPS = 50  # clipped / near-silent clips listed by id
LOUDNESS_FLOOR_DBFS = -80.0
LOUDNESS_STEP_DB = 5.0


def _nice_width(span: float, bins: int = 12) -> float:
    raw = max(span / bins, 1e-9)
    magnitude = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 2.5, 5, 10):
        if raw <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def histogram(values: list[float], start: float, width: float, bins: int) -> list[dict]:
    counts = [0] * bins
    for value in values:
        index = int((value - start) // width)
        counts[min(max(index, 0), bins - 1)] += 1
    return [
        {"start": round(start + i * width, 6), "end": round(start + (i + 1) * width, 6), "count": count}
        for i, count in enumerate(counts)
    ]


def duration_histogram(durations: list[float]) -> list[dict]:
    if not durations:
        return []
    width = _nice_width(max(durations))
    bins = max(1, math.ceil(max(durations) / width + 1e-9))
    return histogram(durations, 0.0, width, bins)


def loudness_histogram(levels: list[float]) -> list[dict]:
    """RMS level in 5 dB steps from -80 dBFS to 0; quieter clips fall in the first bin."""
    bins = int(-LOUDNESS_FLOOR_DBFS / LOUDNESS_STEP_DB)
    return histogram(levels, LOUDNESS_FLOOR_DBFS, LOUDNESS_STEP_DB, bins) if levels else []


def dataset_stats(dataset: Dataset) -> dict:
    backgrounds = dataset.clips.active().backgrounds().aggregate(count=Count("id"), seconds=Sum("duration"))
    rows = list(
        dataset.clips.active().ordinary()
        .order_by("id")
        .values_list("id", "original_name", "label", "speaker", "duration", "rms_dbfs", "peak_dbfs", "clipped_fraction", "score", "transcript")
    )
    minimum = training_needs.min_clips_per_label
    labels = Counter(row[2] for row in rows)
    unlabelled = labels.pop("", 0)
    speakers = Counter(row[3] for row in rows)
    no_speaker = speakers.pop("", 0)
    durations = [row[4] for row in rows]
    clip_count = len(rows)
    label_list = [
        {"label": label, "count": count, "share": count / clip_count, "too_few": count < minimum}
        for label, count in sorted(labels.items(), key=lambda item: (-item[1], item[0]))
    ]
    clipped = [row for row in rows if row[7] >= CLIPPED_FRACTION]
    near_silent = [row for row in rows if row[5] < NEAR_SILENT_RMS_DBFS]
    scores = [row[8] for row in rows if row[8] is not None]
    return {
        "clip_count": clip_count,
        "total_seconds": round(sum(durations), 3),
        "background_count": backgrounds["count"],
        "background_seconds": round(backgrounds["seconds"] or 0.0, 3),
        "mean_seconds": round(sum(durations) / clip_count, 3) if clip_count else None,
        "min_seconds": round(min(durations), 3) if durations else None,
        "max_seconds": round(max(durations), 3) if durations else None,
        "labels": label_list,
        "unlabelled": unlabelled,
        "speakers": [{"speaker": speaker, "count": count} for speaker, count in sorted(speakers.items(), key=lambda item: (-item[1], item[0]))],
        "no_speaker": no_speaker,
        "transcribed": sum(1 for row in rows if row[9].strip()),
        "scored": len(scores),
        "duration_histogram": duration_histogram(durations),
        "loudness_histogram": loudness_histogram([row[5] for row in rows]),
        "score_histogram": histogram(scores, 0.0, 0.1, 10) if scores else [],
        "clipped_count": len(clipped),
        "clipped": [_listed(row) for row in clipped[:LISTED_CLIPS]],
        "near_silent_count": len(near_silent),
        "near_silent": [_listed(row) for row in near_silent[:LISTED_CLIPS]],
        "min_clips_per_label": minimum,
        "near_silent_rms_dbfs": NEAR_SILENT_RMS_DBFS,
        "clipped_fraction": CLIPPED_FRACTION,
        "warnings": _warnings(label_list, unlabelled, len(clipped), len(near_silent), clip_count),
    }


def _listed(row) -> dict:
    return {
        "id": row[0], "original_name": row[1], "label": row[2], "duration": row[4],
        "rms_dbfs": row[5], "peak_dbfs": row[6], "clipped_fraction": row[7],
    }


def _warnings(labels: list[dict], unlabelled: int, clipped: int, near_silent: int, clip_count: int) -> list[dict]:
    warnings = []
    if clip_count == 0:
        return [{"code": "empty", "message": "The dataset has no clips yet."}]
    if len(labels) == 1:
        warnings.append({
            "code": "one-label",
            "message": f"Only one label ('{labels[0]['label']}'): classification needs at least two.",
        })
    for entry in labels:
        if entry["too_few"]:
            noun = "clip" if entry["count"] == 1 else "clips"
            warnings.append({
                "code": "too-few",
                "message": f"Label '{entry['label']}' has {entry['count']} {noun}; "
                f"at least {training_needs.min_clips_per_label} are needed to train.",
            })
    if len(labels) >= 2:
        largest = max(labels, key=lambda entry: entry["count"])
        small = [entry for entry in labels if largest["count"] >= IMBALANCE_RATIO * entry["count"]]
        if small:
            named = [f"'{entry['label']}' ({entry['count']})" for entry in small]
            listed = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
            verb = "has" if len(small) == 1 else "have"
            warnings.append({
                "code": "imbalance",
                "message": f"Classes are imbalanced: {listed} {verb} at most half the clips of "
                f"'{largest['label']}' ({largest['count']}). Add clips to the small classes or expect the model to "
                "favour the large ones.",
            })
    if unlabelled and labels:
        warnings.append({
            "code": "unlabelled",
            "message": f"{unlabelled} clip{'s have' if unlabelled != 1 else ' has'} no label and will be left out "
            "of classification training.",
        })
    if clipped:
        warnings.append({
            "code": "clipped",
            "message": f"{clipped} clip{'s are' if clipped != 1 else ' is'} clipped "
            f"(at least {CLIPPED_FRACTION:.1%} of the samples at full scale).",
        })
    if near_silent:
        warnings.append({
            "code": "near-silent",
            "message": f"{near_silent} clip{'s are' if near_silent != 1 else ' is'} nearly silent "
            f"(RMS below {NEAR_SILENT_RMS_DBFS:g} dBFS): check that they contain what their label says.",
        })
    return warnings
