"""Zip exports of a dataset or a filtered selection of its clips.

- "labels": one folder per label (`_unlabelled/` for clips without one, `_background/` for background
  recordings) plus `manifest.csv` with file,label,transcript,score,speaker,notes,duration,original_name,clip_id,
  kind. Importing the zip again (here or elsewhere) reads the manifest, background recordings included.
- "ljspeech": `wavs/<id>.wav` at 22.05 kHz mono 16-bit plus `metadata.csv` (`id|transcript|transcript`), the
  layout TTS toolkits expect. Clips without a transcript and background recordings are left out.

Audio is copied into the archive in blocks, so hours of background recordings never sit in memory.
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import soundfile as sf
from django.db.models import QuerySet
from django.http import FileResponse
from django.utils import timezone
from django.utils.text import slugify

from audioml.audio.canonical import FULL_SCALE, pcm16_wav, to_pcm16
from audioml.audio.resample import resample
from datasets_app.importing import MANIFEST_COLUMNS
from datasets_app.models import Clip, Dataset

LAYOUTS = {
    "labels": "Folder per label + manifest.csv",
    "ljspeech": "LJSpeech (wavs/ + metadata.csv, 22.05 kHz)",
}
LJSPEECH_SAMPLE_RATE = 22050
COPY_BLOCK_BYTES = 1 << 20
# The columns an import reads, then three it ignores (so the export imports again as is).
MANIFEST_FIELDS = [*MANIFEST_COLUMNS, "duration", "original_name", "clip_id"]
UNLABELLED_FOLDER = "_unlabelled"
BACKGROUND_FOLDER = "_background"


@dataclass
class ExportSummary:
    layout: str
    exported: int
    left_out: int  # clips the layout cannot hold (LJSpeech: no transcript)


def export_filename(dataset: Dataset, layout: str) -> str:
    return f"{dataset.name}-{layout}-{timezone.now():%Y%m%d-%H%M%S}.zip"


def write_export(dataset: Dataset, clips: QuerySet, layout: str, destination) -> ExportSummary:
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown export layout {layout!r}; choose one of {', '.join(LAYOUTS)}.")
    clips = clips.filter(dataset=dataset).order_by("label", "id")
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_STORED) as archive:
        if layout == "labels":
            return _write_labels(clips, archive)
        return _write_ljspeech(dataset, clips, archive)


def export_response(dataset: Dataset, clips: QuerySet, layout: str) -> FileResponse:
    """The export as a download; built in a temporary file that is removed when the response is closed."""
    spool = tempfile.TemporaryFile()
    summary = write_export(dataset, clips, layout, spool)
    spool.seek(0)
    response = FileResponse(spool, as_attachment=True, filename=export_filename(dataset, layout), content_type="application/zip")
    response["X-Exported-Clips"] = str(summary.exported)
    response["X-Left-Out-Clips"] = str(summary.left_out)
    return response


def _clip_file_name(clip: Clip) -> str:
    stem = slugify(PurePosixPath(clip.original_name.replace("\\", "/")).stem)[:40]
    return f"{clip.pk}-{stem}.wav" if stem else f"{clip.pk}.wav"


def _write_labels(clips: QuerySet, archive: zipfile.ZipFile) -> ExportSummary:
    manifest = io.StringIO()
    writer = csv.DictWriter(manifest, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for clip in clips.iterator(chunk_size=500):
        folder = BACKGROUND_FOLDER if clip.is_background else clip.label or UNLABELLED_FOLDER
        name = f"{folder}/{_clip_file_name(clip)}"
        with clip.audio.open("rb") as audio, archive.open(name, "w", force_zip64=clip.is_background) as member:
            shutil.copyfileobj(audio, member, COPY_BLOCK_BYTES)
        writer.writerow({
            "file": name,
            "label": clip.label,
            "transcript": clip.transcript,
            "score": "" if clip.score is None else clip.score,
            "speaker": clip.speaker,
            "notes": clip.notes,
            "source": clip.source,
            "duration": f"{clip.duration:.3f}",
            "original_name": clip.original_name,
            "clip_id": clip.pk,
            "kind": clip.kind,
        })
        count += 1
    archive.writestr("manifest.csv", manifest.getvalue().encode("utf-8"), compress_type=zipfile.ZIP_DEFLATED)
    return ExportSummary("labels", count, 0)


def _ljspeech_text(text: str) -> str:
    # One line per clip and '|' separates columns, so both are replaced by spaces in the exported text.
    return " ".join(text.replace("|", " ").split())


def _write_ljspeech(dataset: Dataset, clips: QuerySet, archive: zipfile.ZipFile) -> ExportSummary:
    lines = []
    exported = clips.ordinary().exclude(transcript__regex=r"^\s*$")
    left_out = clips.count() - exported.count()
    for clip in exported.iterator(chunk_size=500):
        clip_id = f"{dataset.name}-{clip.pk:06d}"
        with clip.audio.open("rb") as audio:
            data = audio.read()
        if dataset.sample_rate != LJSPEECH_SAMPLE_RATE:
            data = _resampled_wav(data, dataset.sample_rate)
        archive.writestr(f"wavs/{clip_id}.wav", data)
        text = _ljspeech_text(clip.transcript)
        lines.append(f"{clip_id}|{text}|{text}\n")
    archive.writestr("metadata.csv", "".join(lines).encode("utf-8"), compress_type=zipfile.ZIP_DEFLATED)
    return ExportSummary("ljspeech", len(lines), left_out)


def _resampled_wav(data: bytes, source_rate: int) -> bytes:
    pcm, _ = sf.read(io.BytesIO(data), dtype="int16")
    samples = resample(pcm.astype(np.float32) / FULL_SCALE, source_rate, LJSPEECH_SAMPLE_RATE)
    return pcm16_wav(to_pcm16(samples), LJSPEECH_SAMPLE_RATE)
