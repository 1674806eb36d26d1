"""What a job trains on: the frozen snapshot of a dataset's clips, its hash, its summary, and the ClipRecords the
trainer reads. Which clips a task takes (labelled ones; scored ones for regression) is the task module's TRAINS_ON."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import models

from datasets_app.models import Clip, Dataset

SNAPSHOT_VERSION = 1
SNAPSHOT_COLUMNS = ("id", "content_hash", "label", "speaker", "audio", "duration")

# The clips a task can learn from, by the clip field it trains on (the task module's TRAINS_ON).
TRAINED_FIELD_FILTERS = {
    "label": ~models.Q(label=""),
    "score": models.Q(score__isnull=False),
    "transcript": ~models.Q(transcript=""),
}


def trained_field(task: str) -> str:
    from training_app.ml.tasks import task_module

    return task_module(task).TRAINS_ON


def uses_background(task: str) -> bool:
    from training_app.ml.tasks import task_module

    return getattr(task_module(task), "USES_BACKGROUND", False)


def snapshot_clips(dataset: Dataset, task: str = "classification") -> list[dict[str, Any]]:
    """The active clips a task can learn from (labelled ones; scored ones for regression) as frozen snapshot
    entries, ordered by clip id, then, for a task that streams them (detection), the background recordings
    (``"kind": "background"``). Entries carry the trained field too when it is not the label, so later edits
    of a score never change an old job."""
    field = trained_field(task)
    active = Clip.objects.active().filter(dataset=dataset)
    columns = dict.fromkeys((*SNAPSHOT_COLUMNS, field))
    entries = [dict(row) for row in active.ordinary().filter(TRAINED_FIELD_FILTERS[field]).order_by("id").values(*columns)]
    if uses_background(task):
        backgrounds = active.backgrounds().order_by("id").values(*SNAPSHOT_COLUMNS)
        entries += [{**row, "kind": Clip.Kind.BACKGROUND.value} for row in backgrounds]
    return entries


def ignored_clip_count(dataset: Dataset, task: str) -> int:
    """Active clips the task leaves out because they lack what it trains on (scores, say)."""
    clips = Clip.objects.active().ordinary().filter(dataset=dataset)
    return clips.exclude(TRAINED_FIELD_FILTERS[trained_field(task)]).count()


def snapshot_hash(entries: list[dict[str, Any]]) -> str:
    """SHA-256 of what the data *is* (clip ids, audio content, labels, speakers and any score or transcript
    trained on), not where files are stored."""
    identity = [[e["id"], e["content_hash"], e["label"], e["speaker"]]
                + [e[key] for key in ("score", "transcript", "kind") if key in e] for e in entries]
    payload = json.dumps({"version": SNAPSHOT_VERSION, "clips": identity}, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def missing_snapshot_clips(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Snapshot entries whose audio no clip row names any more (purged for good; trashed clips keep theirs).
    Every clip row has its file, so one query answers for every storage, local or remote."""
    names = {entry["audio"] for entry in entries}
    kept = set(Clip.objects.filter(audio__in=names).values_list("audio", flat=True))
    return [entry for entry in entries if entry["audio"] not in kept]


def clip_records(entries: list[dict[str, Any]], resolve_path=None):
    """ClipRecords for the ML checks and the trainer; ``resolve_path(audio_name)`` gives the file to read."""
    from training_app.ml.data import ClipRecord

    return [
        ClipRecord(
            id=e["id"],
            path=resolve_path(e["audio"]) if resolve_path else e["audio"],
            label=e["label"],
            content_hash=e["content_hash"],
            speaker=e["speaker"],
            duration=e.get("duration") or 0.0,
            score=e.get("score"),
            transcript=e.get("transcript") or "",
            kind=e.get("kind") or "clip",
        )
        for e in entries
    ]


def data_summary(entries: list[dict[str, Any]], ignored: int = 0) -> dict[str, Any]:
    """Clip count per label, speakers and total duration of snapshot entries (for the panel and the API);
    ``ignored``: active clips the task left out (without a score, say). Background recordings are counted apart."""
    backgrounds = [entry for entry in entries if entry.get("kind") == "background"]
    entries = [entry for entry in entries if entry.get("kind") != "background"]
    per_label: dict[str, dict[str, Any]] = {}
    for entry in entries:
        row = per_label.setdefault(entry["label"], {"clips": 0, "seconds": 0.0, "speakers": set()})
        row["clips"] += 1
        row["seconds"] += entry.get("duration") or 0.0
        if entry["speaker"]:
            row["speakers"].add(entry["speaker"])
    speakers = {entry["speaker"] for entry in entries if entry["speaker"]}
    return {
        "clips": len(entries),
        "seconds": sum(entry.get("duration") or 0.0 for entry in entries),
        "labels": [
            {"label": label, "clips": row["clips"], "seconds": row["seconds"], "speakers": len(row["speakers"])}
            for label, row in sorted(per_label.items())
        ],
        "speakers": sorted(speakers),
        "unspeakered_clips": sum(1 for entry in entries if not entry["speaker"]),
        "ignored_clips": ignored,
        "background_recordings": len(backgrounds),
        "background_seconds": sum(entry.get("duration") or 0.0 for entry in backgrounds),
        **({"scores": _score_summary(entries)} if entries and "score" in entries[0] else {}),
    }


def _score_summary(entries: list[dict[str, Any]]) -> dict[str, Any]:
    scores = [entry["score"] for entry in entries]
    bins = [0] * 10
    for score in scores:
        bins[min(int(score * 10), 9)] += 1
    return {"min": min(scores), "max": max(scores), "mean": sum(scores) / len(scores), "histogram": bins}
