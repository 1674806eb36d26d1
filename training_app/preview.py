"""The training form's augmentation preview: one clip of the dataset as training will hear it, a few variants.

The work (training_app/ml/preview.py) needs torch, which the web process never imports, so it runs in a child
process of the same Python, given the clip and the noise it may mix in as local files (copied out of the media
storage through its API, so S3 works) and the job's validated configuration. Nothing is stored: the answer holds
the audio and spectrogram images inline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.urls import reverse

from audioml.errors import NotFound, Unprocessable
from datasets_app.models import Clip, Dataset
from training_app.models import validate_config
from training_app.snapshot import snapshot_clips

PREVIEW_TIMEOUT_SECONDS = 120
DEFAULT_VARIANTS = 4
MAX_VARIANTS = 8
MAX_NOISE_CLIPS = 8
MAX_BACKGROUNDS = 2


class PreviewFailed(Unprocessable):
    code = "preview-failed"
    title = "The augmentation preview failed"


def augmentation_preview(dataset: Dataset, preset: str, overrides: dict[str, Any] | None, task: str,
                         clip_id: int | None = None, variants: int = DEFAULT_VARIANTS) -> dict[str, Any]:
    """What training hears of one clip of ``dataset`` with this configuration: {clip, next_clip_id, sample_rate,
    seed, augmentations, noise_source, reference, variants}, each audio a base64 WAV beside a base64 PNG of the
    spectrogram the network is given. ``clip_id`` picks the clip (default: one chosen by the seed)."""
    from training_app.ml.data import is_noise_label, split_backgrounds

    cfg = validate_config(preset, overrides, task)
    if task == "synthesis":
        raise Unprocessable("task: a voice trains on its recordings as they are; there is no augmentation to "
                            "preview", field="task")
    entries = snapshot_clips(dataset, task)
    clips = [entry for entry in entries if entry.get("kind") != Clip.Kind.BACKGROUND]
    speech = [entry for entry in clips if not is_noise_label(entry["label"])] or clips
    if not speech:
        raise Unprocessable(f"dataset: '{dataset.name}' has no clip this task trains on to preview", field="dataset")
    if clip_id is None:
        index = cfg.seed % len(speech)
    else:
        index = next((i for i, entry in enumerate(speech) if entry["id"] == clip_id), None)
        if index is None:
            raise NotFound(f"clip: clip {clip_id} is not one this job would train on", field="clip")
    clip = speech[index]
    noise = [entry for entry in clips if is_noise_label(entry["label"])][:MAX_NOISE_CLIPS]
    backgrounds, _ = split_backgrounds([_Named(entry) for entry in entries if entry.get("kind") == Clip.Kind.BACKGROUND])
    with tempfile.TemporaryDirectory(prefix="audioml-preview-") as folder:
        local = _Copier(Path(folder))
        request = {
            "config": cfg.to_dict(),
            "preset": preset,
            "clip": local(clip["audio"]),
            "noise_clips": [local(entry["audio"]) for entry in noise],
            "background_recordings": [local(named.entry["audio"]) for named in backgrounds[:MAX_BACKGROUNDS]],
            "variants": max(1, min(int(variants), MAX_VARIANTS)),
        }
        answer = _run(request)
    return {
        "clip": {"id": clip["id"], "label": clip["label"], "duration": clip.get("duration") or 0.0,
                 "url": reverse("clip-detail", args=[dataset.name, clip["id"]]),
                 "audio_url": reverse("clip-audio", args=[dataset.name, clip["id"]])},
        "next_clip_id": speech[(index + 1) % len(speech)]["id"],
        "clips": len(speech),
        **answer,
    }


class _Named:
    """A background entry as split_backgrounds wants it (an ``id``), keeping the entry."""

    def __init__(self, entry: dict[str, Any]) -> None:
        self.entry, self.id = entry, entry["id"]


class _Copier:
    """Local copies of stored audio (the storage may be remote), one file per storage name."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, name: str) -> str:
        target = self.folder / name.replace("/", "_")
        if not target.exists():
            with default_storage.open(name, "rb") as source, open(target, "wb") as copy:
                while block := source.read(1 << 20):
                    copy.write(block)
        return str(target)


def _run(request: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "training_app.ml.preview"], input=json.dumps(request), capture_output=True,
            text=True, cwd=settings.BASE_DIR, env=env, timeout=PREVIEW_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise PreviewFailed(f"The preview took longer than {PREVIEW_TIMEOUT_SECONDS} s; try a shorter clip.") from None
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise PreviewFailed(f"The preview process failed: {lines[-1] if lines else f'exit status {result.returncode}'}")
    return json.loads(result.stdout)
