"""Train/validation/test split, stratified by label and grouped by speaker (torch-free).

Clips that carry a speaker move between splits as a whole speaker, so no voice is both learnt and
tested; clips without a speaker are grouped one by one. Groups are placed greedily where they best fill
each split's per-label quota, largest groups first, in an order fixed by the seed.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from .data import ClipRecord

SPLITS = ("train", "val", "test")
SPLIT_NAMES = {"train": "Training", "val": "Validation", "test": "Test"}
# Report a deviation from the requested fractions above this many percentage points.
DEVIATION_POINTS = 2.0


@dataclass(frozen=True)
class Split:
    train: list[int]
    val: list[int]
    test: list[int]
    grouped_by_speaker: bool
    notes: list[str] = field(default_factory=list)

    def indices(self, name: str) -> list[int]:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def summary(self, clips: Sequence[ClipRecord]) -> dict:
        per_label: dict[str, dict[str, int]] = {}
        for name in SPLITS:
            for index in self.indices(name):
                counts = per_label.setdefault(clips[index].label, dict.fromkeys(SPLITS, 0))
                counts[name] += 1
        return {
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
            "per_label": dict(sorted(per_label.items())),
            "grouped_by_speaker": self.grouped_by_speaker,
            "speakers": {name: sorted({clips[i].speaker for i in self.indices(name) if clips[i].speaker})
                         for name in SPLITS},
            "notes": list(self.notes),
        }


def split_clips(
    clips: Sequence[ClipRecord],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    holdout_speakers: Sequence[str] = (),
) -> Split:
    held = set(holdout_speakers)
    assigned: dict[str, list[int]] = {name: [] for name in SPLITS}
    assigned["test"] = [i for i, clip in enumerate(clips) if clip.speaker and clip.speaker in held]
    remaining = [i for i, clip in enumerate(clips) if not (clip.speaker and clip.speaker in held)]

    notes: list[str] = []
    speakers = {clips[i].speaker for i in remaining if clips[i].speaker}
    if len(speakers) == 1:
        scope = " outside the held-out speakers" if held else ""
        scored = "validation" if held else "validation and test"
        notes.append(
            f"All clips{scope} come from one speaker ({next(iter(speakers))!r}), so they are split clip by clip: "
            f"{scored} score new recordings of a voice the model has heard"
        )
    groups = _groups(clips, remaining, by_speaker=len(speakers) > 1)
    grouped = any(len(members) > 1 for members in groups)
    rng = random.Random(seed)
    rng.shuffle(groups)
    groups.sort(key=len, reverse=True)  # stable: equal sizes keep the seeded order

    label_totals = Counter(clips[i].label for i in remaining)
    targets = {
        "val": {label: _quota(n, val_fraction, minimum_total=2) for label, n in label_totals.items()},
        "test": {label: _quota(n, test_fraction, minimum_total=3) for label, n in label_totals.items()},
    }
    placed: dict[str, Counter[str]] = {name: Counter() for name in SPLITS}
    group_of: list[tuple[list[int], str]] = []
    for members in groups:
        counts = Counter(clips[i].label for i in members)
        name = _best_split(counts, targets, placed)
        placed[name].update(counts)
        group_of.append((members, name))

    group_of = _ensure_coverage(clips, group_of, placed, notes)
    for members, name in group_of:
        assigned[name].extend(members)

    notes.extend(_deviation_notes(assigned, len(clips), len(remaining), val_fraction, test_fraction,
                                  grouped, bool(held)))
    return Split(
        train=sorted(assigned["train"]),
        val=sorted(assigned["val"]),
        test=sorted(assigned["test"]),
        grouped_by_speaker=grouped,
        notes=notes,
    )


def _groups(clips: Sequence[ClipRecord], indices: list[int], by_speaker: bool) -> list[list[int]]:
    speaker_groups: dict[str, list[int]] = defaultdict(list)
    singles: list[list[int]] = []
    for i in indices:
        if by_speaker and clips[i].speaker:
            speaker_groups[clips[i].speaker].append(i)
        else:
            singles.append([i])
    return [speaker_groups[name] for name in sorted(speaker_groups)] + singles


def _quota(count: int, fraction: float, minimum_total: int) -> float:
    """Clips of one label a split should get: at least one when the label has enough clips to spare."""
    if fraction <= 0:
        return 0.0
    wanted = count * fraction
    if count >= minimum_total:
        wanted = max(1.0, wanted)
    return wanted


def _best_split(
    counts: Counter[str], targets: dict[str, dict[str, float]], placed: dict[str, Counter[str]]
) -> str:
    best, best_score = "train", None
    for name in ("test", "val"):
        gain = overshoot = 0.0
        for label, n in counts.items():
            deficit = max(0.0, targets[name][label] - placed[name][label])
            gain += min(n, deficit)
            overshoot += max(0.0, n - deficit)
        # A group may overshoot a quota as long as it fills at least as much as it overshoots.
        if gain > 0 and gain >= overshoot and (best_score is None or gain - overshoot > best_score):
            best, best_score = name, gain - overshoot
    return best


def _ensure_coverage(
    clips: Sequence[ClipRecord],
    group_of: list[tuple[list[int], str]],
    placed: dict[str, Counter[str]],
    notes: list[str],
) -> list[tuple[list[int], str]]:
    """Move whole groups so each label has a training clip and, where possible, a validation clip."""
    labels = sorted({clips[i].label for members, _ in group_of for i in members})
    group_of = list(group_of)

    def move(position: int, to: str) -> None:
        members, source = group_of[position]
        counts = Counter(clips[i].label for i in members)
        placed[source].subtract(counts)
        placed[to].update(counts)
        group_of[position] = (members, to)

    def keeps_coverage(position: int, source: str) -> bool:
        counts = Counter(clips[i].label for i in group_of[position][0])
        return all(placed[source][label] - n > 0 for label, n in counts.items() if placed[source][label] > 0)

    for label in labels:
        if placed["train"][label] == 0:
            candidates = [p for p, (members, name) in enumerate(group_of)
                          if name != "train" and any(clips[i].label == label for i in members)]
            candidates.sort(key=lambda p: (group_of[p][1] == "val", len(group_of[p][0])))
            if candidates:
                move(candidates[0], "train")
    for label in labels:
        if placed["val"][label] > 0:
            continue
        candidates = [p for p, (members, name) in enumerate(group_of)
                      if name in ("train", "test") and any(clips[i].label == label for i in members)
                      and keeps_coverage(p, name)]
        candidates.sort(key=lambda p: (group_of[p][1] == "train", len(group_of[p][0])))
        if candidates:
            move(candidates[0], "val")
        else:
            notes.append(f"Label {label!r} has no validation clips: its clips come from too few speakers")
    return group_of


def _deviation_notes(
    assigned: dict[str, list[int]],
    total: int,
    remaining: int,
    val_fraction: float,
    test_fraction: float,
    grouped: bool,
    has_holdout: bool,
) -> list[str]:
    notes = []
    if not remaining:
        return notes
    held_out = total - remaining
    requested = {"val": val_fraction, "test": test_fraction}
    for name, wanted in requested.items():
        got = len(assigned[name]) - (held_out if name == "test" else 0)
        share = got / remaining
        if abs(share - wanted) * 100 > DEVIATION_POINTS:
            reason = "grouping clips by speaker" if grouped else "the small number of clips per label"
            scope = " of the clips outside the held-out speakers" if has_holdout else ""
            notes.append(
                f"{SPLIT_NAMES[name]} split holds {share:.1%}{scope} instead of the requested {wanted:.0%} because of {reason}"
            )
    return notes


def split_for_task(clips: Sequence[ClipRecord], cfg) -> tuple[Split, list[ClipRecord]]:
    """The split a job of ``cfg.task`` trains with, stratified by the task's strata (labels, or score bins for
    regression); returns it with the clips relabelled by stratum, which its ``summary`` counts."""
    from dataclasses import replace

    from .data import trainable_clips
    from .tasks import task_module

    task = task_module(cfg.task)
    strata = [replace(clip, label=task.stratum(clip, cfg)) for clip in trainable_clips(clips, cfg)]
    split = split_clips(strata, cfg.val_fraction, cfg.test_fraction, cfg.seed, cfg.holdout_speakers)
    return split, strata
