"""Long background recordings: converted to the canonical WAV a block at a time and stored like clips.

A clip is decoded into memory (``ingest.py``); a background recording lasts minutes to hours, so ffmpeg
decodes it to mono 16-bit PCM at the dataset's rate into a pipe, and each block read from the pipe is hashed,
measured and appended to the canonical WAV on disk: memory stays flat whatever the length. The file then moves
into the storage under the same content-addressed name as a clip, and one ``Clip`` row with ``kind=background``
covers it (so deduplication, the trash, export and the orphan sweeper treat it like any clip). Its length is
limited by ``BACKGROUND_MAX_SECONDS`` instead of ``CLIP_MAX_SECONDS``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import IntegrityError, transaction

from audioml.audio.canonical import FULL_SCALE, _dbfs
# The clip decoder's own reading of ffmpeg's messages, so a background file is refused in the same words.
from audioml.audio.decoding import (
    FFMPEG_FORMATS,
    AudioDecodeError,
    _ffmpeg_code,
    _ffmpeg_format,
    _ffmpeg_reason,
    ffmpeg_binary,
)
from datasets_app.ingest import FileResult, IngestItem, _delete_files, _MovableFile
from datasets_app.models import Clip, Dataset, clean_clip_metadata, clip_storage_name

logger = logging.getLogger(__name__)

BLOCK_BYTES = 1 << 18  # 131 072 16-bit samples per read (8 s at 16 kHz)
SECONDS_PER_DECODED_SECOND = 0.05  # ffmpeg timeout: 3 minutes per hour of audio ...
MIN_TIMEOUT_SECONDS = 300  # ... and never less than for a clip
_CHANNEL_LAYOUTS = {"mono": 1, "stereo": 2, "2.1": 3, "3.0": 3, "quad": 4, "4.0": 4, "5.0": 5, "5.1": 6, "6.1": 7,
                    "7.1": 8}
_STREAM = re.compile(r"Stream #0:\d+.*?: Audio: [^,]+(?:\([^)]*\))?, (\d+) Hz, ([^,]+)")


@dataclass
class CanonicalFile:
    """A canonical WAV written to ``path`` and what was measured while writing it."""

    path: Path
    content_hash: str
    duration: float
    peak_dbfs: float
    rms_dbfs: float
    clipped_fraction: float
    source_format: str
    source_sample_rate: int
    source_channels: int


def convert_in_blocks(
    source: Path, sample_rate: int, out_path: Path, max_seconds: float, name_hint: str = ""
) -> CanonicalFile:
    """Decode ``source`` with ffmpeg to mono 16-bit PCM at ``sample_rate`` and write it to ``out_path``.

    The content hash is SHA-256 of the 16-bit samples, as for clips. 16-bit mono audio already at the rate
    passes through unchanged, so an exported background imported again is found as a duplicate. Raises
    AudioDecodeError (codes as for clips: undecodable, no-audio, empty, too-long, silent, too-short).
    """
    known = _soundfile_duration(source)
    if known is not None and known > max_seconds:
        raise _too_long(known, max_seconds)
    limit_samples = int(max_seconds * sample_rate)
    command = [
        ffmpeg_binary(), "-nostdin", "-hide_banner", "-nostats",
        "-format_whitelist", FFMPEG_FORMATS, "-protocol_whitelist", "file", "-i", str(source),
        "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(sample_rate), "-c:a", "pcm_s16le", "-f", "s16le",
        "-t", f"{max_seconds + 1:.3f}", "pipe:1",
    ]
    timeout = max(MIN_TIMEOUT_SECONDS, max_seconds * SECONDS_PER_DECODED_SECOND)
    digest = hashlib.sha256()
    samples = peak = clipped = 0
    sum_squares = 0.0
    with tempfile.TemporaryFile() as stderr_file:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr_file)
        timed_out = threading.Event()
        timer = threading.Timer(timeout, lambda: (timed_out.set(), process.kill()))
        timer.start()
        try:
            with soundfile.SoundFile(out_path, "w", samplerate=sample_rate, channels=1, format="WAV",
                                     subtype="PCM_16") as wav:
                carry = b""
                while chunk := process.stdout.read(BLOCK_BYTES):
                    data = carry + chunk
                    usable = len(data) - len(data) % 2
                    carry = data[usable:]
                    pcm = np.frombuffer(data[:usable], dtype="<i2")
                    samples += len(pcm)
                    if samples > limit_samples:
                        break
                    digest.update(pcm)
                    magnitude = np.abs(pcm.astype(np.float64))
                    if len(pcm):
                        peak = max(peak, int(magnitude.max()))
                    clipped += int(np.count_nonzero(magnitude >= FULL_SCALE))
                    sum_squares += float(np.dot(magnitude, magnitude))
                    wav.write(pcm)
        finally:
            process.stdout.close()
            if samples > limit_samples:
                process.kill()
            returncode = process.wait()
            timer.cancel()
        stderr_file.seek(0)
        stderr = stderr_file.read().decode("utf-8", "replace")
    if samples > limit_samples:
        raise _too_long(samples / sample_rate, max_seconds)
    if timed_out.is_set():
        raise AudioDecodeError("decoding took too long and was stopped", code="undecodable")
    if returncode != 0:
        raise AudioDecodeError(_ffmpeg_reason(stderr), code=_ffmpeg_code(stderr))
    if samples == 0:
        raise AudioDecodeError("the file contains no audio samples", code="empty")
    if peak == 0:
        raise AudioDecodeError("digitally silent: every sample is zero", code="silent")
    duration = samples / sample_rate
    if duration < settings.CLIP_MIN_SECONDS:
        raise AudioDecodeError(f"too short: {duration:.2f} s (the shortest accepted is "
                               f"{settings.CLIP_MIN_SECONDS:g} s)", code="too-short")
    source_rate, source_channels = _source_stream(stderr)
    return CanonicalFile(
        path=out_path,
        content_hash=digest.hexdigest(),
        duration=duration,
        peak_dbfs=_dbfs(peak / FULL_SCALE),
        rms_dbfs=_dbfs(float(np.sqrt(sum_squares / samples)) / FULL_SCALE),
        clipped_fraction=clipped / samples,
        source_format=_ffmpeg_format(stderr, name_hint),
        source_sample_rate=source_rate or sample_rate,
        source_channels=source_channels,
    )


def _soundfile_duration(path: Path) -> float | None:
    try:
        info = soundfile.info(str(path))
    except Exception:  # noqa: BLE001 - not a format libsndfile reads: ffmpeg will tell
        return None
    return info.frames / info.samplerate if info.frames > 0 and info.samplerate else None


def _too_long(seconds: float, max_seconds: float) -> AudioDecodeError:
    return AudioDecodeError(
        f"too long: {seconds / 3600:.2f} h (the longest background recording accepted is "
        f"{max_seconds / 3600:g} h, BACKGROUND_MAX_SECONDS={max_seconds:g})",
        code="too-long",
    )


def _source_stream(stderr: str) -> tuple[int, int]:
    """The first audio stream's sample rate and channel count as ffmpeg described it (0 when unknown)."""
    match = _STREAM.search(stderr)
    if not match:
        return 0, 0
    layout = match.group(2).strip()
    counted = re.match(r"(\d+) channels", layout)
    channels = int(counted.group(1)) if counted else _CHANNEL_LAYOUTS.get(layout.split("(")[0], 0)
    return int(match.group(1)), channels


# ----------------------------------------------------------------------------------------------- storing


def ingest_background(dataset: Dataset, item: IngestItem, user=None) -> FileResult:
    """Convert, check and store one background recording; accepted (clip id) or rejected (reason), never half."""
    try:
        metadata = clean_clip_metadata(
            label=item.label, transcript=item.transcript, score=item.score, speaker=item.speaker, notes=item.notes,
            source=item.source,
        )
    except ValidationError as exc:
        field_name, messages = next(iter(exc.message_dict.items()))
        return FileResult(item.name, False, code=f"invalid-{field_name}", reason=f"invalid {field_name}: {messages[0]}")
    folder = _incoming_folder()
    handle, name = tempfile.mkstemp(prefix="background-", suffix=".wav", dir=folder)
    os.close(handle)
    out_path = Path(name)
    source, temporary_source = _source_path(item, folder)
    try:
        try:
            canonical = convert_in_blocks(source, dataset.sample_rate, out_path, settings.BACKGROUND_MAX_SECONDS,
                                          name_hint=item.name)
        except AudioDecodeError as exc:
            return FileResult(item.name, False, code=exc.code, reason=exc.reason, label=metadata["label"])
        return _store(dataset, user, item, metadata, canonical)
    finally:
        out_path.unlink(missing_ok=True)
        if temporary_source is not None:
            temporary_source.unlink(missing_ok=True)


def _incoming_folder() -> str | None:
    """Next to the media files when they are on disk, so the finished WAV moves into place with a rename."""
    if isinstance(default_storage, FileSystemStorage):
        incoming = Path(default_storage.location) / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        return str(incoming)
    return None


def _source_path(item: IngestItem, folder: str | None) -> tuple[Path, Path | None]:
    """A path ffmpeg can read: the item's own file, an upload's temporary file, or a copy of a small upload."""
    if item.path is not None:
        return Path(item.path), None
    temporary_file_path = getattr(item.file, "temporary_file_path", None)
    if callable(temporary_file_path):
        return Path(temporary_file_path()), None
    handle, name = tempfile.mkstemp(prefix="background-source-", dir=folder)
    with os.fdopen(handle, "wb") as out:
        if item.file is not None:
            item.file.seek(0)
            shutil.copyfileobj(item.file, out)
        else:
            out.write(item.data or b"")
    return Path(name), Path(name)


def _store(dataset: Dataset, user, item: IngestItem, metadata: dict, canonical: CanonicalFile) -> FileResult:
    duration = round(canonical.duration, 3)
    existing = _existing(dataset, canonical.content_hash)
    if existing is not None:
        return _duplicate(item, existing, duration, metadata["label"])
    stored = None
    try:
        stored = _save(clip_storage_name(dataset.pk, canonical.content_hash), canonical.path)
        clip = Clip(
            dataset=dataset, kind=Clip.Kind.BACKGROUND, original_name=item.name[:255],
            original_format=canonical.source_format[:32], duration=round(canonical.duration, 4),
            source_sample_rate=canonical.source_sample_rate, source_channels=canonical.source_channels,
            peak_dbfs=canonical.peak_dbfs, rms_dbfs=canonical.rms_dbfs, clipped_fraction=canonical.clipped_fraction,
            content_hash=canonical.content_hash,
            uploaded_by=user if user is not None and getattr(user, "pk", None) else None, **metadata,
        )
        clip.audio.name = stored
        with transaction.atomic():
            clip.save(force_insert=True)
    except IntegrityError:
        _delete_files([stored] if stored else [])
        existing = _existing(dataset, canonical.content_hash)
        if existing is not None:
            return _duplicate(item, existing, duration, metadata["label"])
        raise
    except BaseException:
        _delete_files([stored] if stored else [])
        raise
    return FileResult(item.name, True, clip_id=clip.pk, duration=duration, label=metadata["label"],
                      source=metadata["source"])


def _existing(dataset: Dataset, content_hash: str) -> Clip | None:
    return Clip.objects.filter(dataset=dataset, content_hash=content_hash).only("pk", "status").first()


def _duplicate(item: IngestItem, existing: Clip, duration: float, label: str) -> FileResult:
    where = " (in the trash)" if existing.status == Clip.Status.TRASHED else ""
    return FileResult(
        item.name, False, code="duplicate", duplicate_of=existing.pk, duration=duration, label=label,
        reason=f"duplicate of clip #{existing.pk}{where} already in this dataset (identical audio)",
    )


def _save(name: str, path: Path) -> str:
    """Move (on disk) or stream (other storages) the finished WAV to its storage name."""
    if isinstance(default_storage, FileSystemStorage):
        movable = _MovableFile(path)
        try:
            return default_storage.save(name, movable)
        finally:
            movable.close()
    with open(path, "rb") as handle:
        return default_storage.save(name, File(handle, name=path.name))
