"""Clip records and the checks that decide whether a set of clips can train a model.

Torch-free on purpose: the web process calls :func:`check_trainable` before it enqueues a job.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import TrainConfig

MIN_CLIPS_PER_LABEL = 5
BACKGROUND = "background"
NOISE_LABELS = ("noise", "background", "_background_noise_", "background_noise", "silence")
UNKNOWN_LABELS = ("unknown", "_unknown_", "other", "others")


@dataclass(frozen=True)
class ClipRecord:
    id: str | int
    path: Path | str
    label: str
    content_hash: str
    speaker: str = ""
    duration: float = 0.0
    score: float | None = None
    transcript: str = ""
    kind: str = "clip"  # "background": a long recording of ordinary audio, streamed rather than trained on


class NotTrainable(ValueError):
    """The clips cannot train a model; ``problems`` lists every reason in plain words."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def is_noise_label(label: str) -> bool:
    return label.strip().lower() in NOISE_LABELS


def is_unknown_label(label: str) -> bool:
    """The open-set class: other words than the keywords (Speech Commands' ``_unknown_``)."""
    return label.strip().lower() in UNKNOWN_LABELS


def check_trainable(clips: Sequence[ClipRecord], cfg: TrainConfig) -> list[str]:
    """Every problem that prevents training, in plain words; an empty list means the data can train."""
    from .tasks import task_module  # the task modules import this one

    return task_module(cfg.task).check_data(trainable_clips(clips, cfg), cfg)


def trainable_clips(clips: Sequence[ClipRecord], cfg: TrainConfig) -> list[ClipRecord]:
    """The clips a task trains on: never background recordings, and only those the task can use (regression
    skips clips without a score)."""
    from .tasks import task_module

    task = task_module(cfg.task)
    return [clip for clip in clips if clip.kind != BACKGROUND and task.usable(clip)]


def split_backgrounds(backgrounds: Sequence[ClipRecord]) -> tuple[list[ClipRecord], list[ClipRecord]]:
    """(for training, held out for evaluation): every other background recording (by id) is held out, so the
    false accepts per hour are measured on recordings training never heard; a single one is held out whole.

    The training side also gives the validation audio (``background_roles``)."""
    ordered = sorted(backgrounds, key=lambda clip: str(clip.id))
    if len(ordered) < 2:
        return [], ordered
    return ordered[0::2], ordered[1::2]


@dataclass(frozen=True)
class BackgroundPart:
    """A stretch of one background recording: ``start`` to ``end`` seconds (``end`` None: to the end)."""

    clip: ClipRecord
    start: float = 0.0
    end: float | None = None

    @property
    def seconds(self) -> float:
        return (self.clip.duration if self.end is None else self.end) - self.start


@dataclass(frozen=True)
class BackgroundRoles:
    """What the background recordings are for, never sharing audio: training negatives, validation audio (the
    checkpoint choice and the threshold calibration) and the held-out report; ``sources`` says each in words."""

    train: list[BackgroundPart]
    validation: list[BackgroundPart]
    held_out: list[BackgroundPart]
    sources: dict[str, str]


# The validation share of the one training recording when a dataset has two background recordings.
VALIDATION_TAIL = 0.25


def background_roles(backgrounds: Sequence[ClipRecord]) -> BackgroundRoles:
    """Background recordings by role (``split_backgrounds`` decides training or held out):

    - three or more: the held-out ones are reported on; of the training ones the last (by id) is validation
      audio, so the threshold is calibrated on voices and rooms training never heard, and the rest train;
    - two: one is held out; the other trains on its first three quarters and validates on its last quarter;
    - one: its first half validates, its second half is reported on; nothing trains on it.
    """
    training, held = split_backgrounds(backgrounds)
    if not held:
        return BackgroundRoles([], [], [], {})
    if not training:
        middle = held[0].duration / 2
        return BackgroundRoles([], [BackgroundPart(held[0], 0.0, middle)], [BackgroundPart(held[0], middle)], {
            "validation": "the first half of 1 held-out background recording",
            "held_out": "the second half of 1 held-out background recording",
        })
    held_parts = [BackgroundPart(clip) for clip in held]
    held_source = f"{_count(len(held), 'held-out background recording')}"
    if len(training) >= 2:
        return BackgroundRoles([BackgroundPart(clip) for clip in training[:-1]], [BackgroundPart(training[-1])],
                               held_parts, {"train": _count(len(training) - 1, "training background recording"),
                                            "validation": "1 validation background recording",
                                            "held_out": held_source})
    cut = training[0].duration * (1 - VALIDATION_TAIL)
    return BackgroundRoles([BackgroundPart(training[0], 0.0, cut)], [BackgroundPart(training[0], cut)], held_parts, {
        "train": "the first three quarters of 1 training background recording",
        "validation": "the last quarter of 1 training background recording",
        "held_out": held_source,
    })


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def check_label_counts(clips: Sequence[ClipRecord], cfg: TrainConfig) -> list[str]:
    """Classification's rules: at least two labels, each with MIN_CLIPS_PER_LABEL clips, none empty."""
    if not clips:
        return ["the dataset has no clips"]
    problems: list[str] = []
    counts = Counter(clip.label for clip in clips)
    if len(counts) < 2:
        only = next(iter(counts))
        problems.append(f"only one label ({only!r}): classification needs at least two")
    for label, count in sorted(counts.items()):
        if count < MIN_CLIPS_PER_LABEL:
            noun = "clip" if count == 1 else "clips"
            problems.append(f"label {label!r} has {count} {noun}, at least {MIN_CLIPS_PER_LABEL} are needed")
    if any(not clip.label.strip() for clip in clips):
        problems.append("some clips have an empty label")
    if cfg.holdout_speakers:
        problems.extend(holdout_problems(clips, cfg.holdout_speakers))
    return problems


def holdout_problems(clips: Sequence[ClipRecord], holdout: Sequence[str], group=lambda clip: clip.label) -> list[str]:
    problems = []
    speakers = {clip.speaker for clip in clips if clip.speaker}
    missing = [speaker for speaker in holdout if speaker not in speakers]
    if missing:
        problems.append(f"held-out speakers not found in the data: {', '.join(repr(s) for s in missing)}")
    held = set(holdout)
    remaining = Counter(group(clip) for clip in clips if clip.speaker not in held)
    for label in sorted({group(clip) for clip in clips}):
        if remaining[label] < 2:
            problems.append(
                f"label {label!r} has {remaining[label]} clips outside the held-out speakers; "
                "at least 2 are needed for training and validation"
            )
    return problems
