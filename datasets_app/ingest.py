"""Storing uploaded audio as canonical clips: decode, check, and store each file with its database row.

Every accepted file is decoded once (audioml.audio.decoding), brought to the canonical form (16-bit PCM WAV at
the dataset's sample rate, audioml.audio.canonical) and stored. Each file is accepted (with its clip id) or
rejected with a reason; nothing is stored for a rejected file, and a file is never stored without its database
row or a row without its file. Folders, zip archives and manifests are read in datasets_app.importing, which
hands their files to `ingest_files`.

torch is imported only when a file needs resampling, so the web process does not pay for it otherwise.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import IntegrityError, transaction

from audioml.audio.canonical import CanonicalAudio, canonicalise
from audioml.audio.decoding import FFMPEG_BATCH, AudioDecodeError, decode_audio, decode_audio_many, too_long_error
from audioml.errors import is_out_of_space
from datasets_app.models import Clip, Dataset, clean_clip_metadata, clip_storage_name

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

CHUNK_SIZE = 64  # accepted clips stored per database transaction
STORE_THREADS = 8  # clips uploaded at once to object storage


@dataclass
class IngestItem:
    """One file to ingest: a display name plus exactly one of path, file object or bytes, and its metadata.

    The name is only shown to people and stored as `original_name`; it is never used as a path."""

    name: str
    path: Path | None = None
    file: IO[bytes] | None = None
    data: bytes | None = None
    label: str | None = ""
    transcript: str | None = ""
    score: float | str | None = None
    speaker: str | None = ""
    notes: str | None = ""
    source: str | None = ""  # where the clip comes from, when not the dataset's source (Clip.source)
    background: bool = False  # a long background recording (datasets_app.background), not a clip

    def readable(self):
        """What the decoder reads: the path, the file object or the bytes."""
        if self.path is not None:
            return self.path
        if self.file is not None:
            return self.file
        return self.data if self.data is not None else b""


@dataclass
class FileResult:
    name: str
    accepted: bool
    clip_id: int | None = None
    code: str = ""
    reason: str = ""
    duplicate_of: int | None = None
    duration: float | None = None
    label: str = ""
    source: str = ""  # the stored clip's own source (accepted files only; the audit event records it)

    @property
    def status(self) -> str:
        return "accepted" if self.accepted else "rejected"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "status": self.status,
            "clip_id": self.clip_id,
            "code": self.code,
            "reason": self.reason,
            "duplicate_of": self.duplicate_of,
            "duration": self.duration,
            "label": self.label,
        }


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # non-audio files in a folder or archive, by name
    layout: str = ""  # how a folder or archive was read: "folders", "manifest", "ljspeech" or "files"

    @property
    def accepted(self) -> list[FileResult]:
        return [result for result in self.files if result.accepted]

    @property
    def rejected(self) -> list[FileResult]:
        return [result for result in self.files if not result.accepted]

    @property
    def clip_ids(self) -> list[int]:
        return [result.clip_id for result in self.files if result.accepted and result.clip_id is not None]

    @property
    def sources(self) -> list[str]:
        """The own sources the added clips were given, each once, in the order of the files ([] when none)."""
        return list(dict.fromkeys(result.source for result in self.accepted if result.source))

    def as_dict(self) -> dict:
        return {
            "accepted": len(self.accepted),
            "rejected": len(self.rejected),
            "layout": self.layout,
            "skipped": self.skipped,
            "files": [result.as_dict() for result in self.files],
        }


@dataclass
class _Prepared:
    item: IngestItem
    metadata: dict
    decoded_format: str
    source_sample_rate: int
    source_channels: int
    canonical: CanonicalAudio


def ingest_files(
    dataset: Dataset,
    items: Iterable[IngestItem],
    user=None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> IngestReport:
    """Decode, check and store many files; each is accepted (clip id) or rejected (reason), in input order.

    Decoding runs on INGEST_WORKERS threads (soundfile, ffmpeg subprocesses, hashing and torch all release
    the GIL); storing happens on the calling thread in chunks of one transaction each. Background recordings
    are converted and stored one at a time, a block at a time (datasets_app.background)."""
    from datasets_app.background import ingest_background

    items = list(items)
    total = len(items)
    results: list[FileResult | None] = [None] * total
    batch_hashes: dict[str, str] = {}
    pending: list[tuple[int, _Prepared]] = []
    done = 0
    workers = workers or settings.INGEST_WORKERS
    for index, item in enumerate(items):
        if item.background:
            results[index] = ingest_background(dataset, item, user)
            done += 1
            if progress is not None:
                progress(done, total)
    clip_indexes = [index for index, item in enumerate(items) if not item.background]
    prepared = _prepare_all([items[index] for index in clip_indexes], dataset.sample_rate, workers)
    for index, outcome in ((clip_indexes[position], outcome) for position, outcome in prepared):
        if isinstance(outcome, FileResult):
            results[index] = outcome
        else:
            first = batch_hashes.get(outcome.canonical.content_hash)
            if first is not None:
                results[index] = FileResult(
                    outcome.item.name, False, code="duplicate",
                    reason=f"duplicate of {first!r} in this upload (identical audio)",
                )
            else:
                batch_hashes[outcome.canonical.content_hash] = outcome.item.name
                pending.append((index, outcome))
        if len(pending) >= CHUNK_SIZE:
            _store_chunk(dataset, user, pending, results)
            pending = []
        done += 1
        if progress is not None:
            progress(done, total)
    if pending:
        _store_chunk(dataset, user, pending, results)
    return IngestReport(files=[result for result in results if result is not None], layout="files")


def _prepare_all(items: list[IngestItem], sample_rate: int, workers: int) -> Iterator[tuple[int, _Prepared | FileResult]]:
    """Prepare items in groups of FFMPEG_BATCH on a thread pool, yielding results in input order with a
    bounded number of groups in flight (so memory stays flat however many files there are)."""
    groups = [list(range(start, min(start + FFMPEG_BATCH, len(items)))) for start in range(0, len(items), FFMPEG_BATCH)]
    if workers <= 1 or len(groups) <= 1:
        for group in groups:
            yield from zip(group, _prepare_group([items[i] for i in group], sample_rate))
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")
    try:
        in_flight: deque = deque()
        queue = iter(groups)
        for group in queue:
            in_flight.append((group, pool.submit(_prepare_group, [items[i] for i in group], sample_rate)))
            if len(in_flight) >= workers * 2:
                break
        while in_flight:
            group, future = in_flight.popleft()
            yield from zip(group, future.result())
            following = next(queue, None)
            if following is not None:
                in_flight.append((following, pool.submit(_prepare_group, [items[i] for i in following], sample_rate)))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _prepare_group(items: list[IngestItem], sample_rate: int) -> list[_Prepared | FileResult]:
    """Everything that needs no database: metadata checks, decoding, the canonical form and its checks."""
    outcomes: list[_Prepared | FileResult | None] = [None] * len(items)
    metadata: dict[int, dict] = {}
    for index, item in enumerate(items):
        try:
            metadata[index] = clean_clip_metadata(
                label=item.label, transcript=item.transcript, score=item.score, speaker=item.speaker, notes=item.notes,
                source=item.source,
            )
        except ValidationError as exc:
            field_name, messages = next(iter(exc.message_dict.items()))
            outcomes[index] = FileResult(item.name, False, code=f"invalid-{field_name}", reason=f"invalid {field_name}: {messages[0]}")
    valid = sorted(metadata)
    try:
        decoded_list = decode_audio_many(
            [(items[index].readable(), items[index].name) for index in valid], sample_rate, max_seconds=settings.CLIP_MAX_SECONDS
        )
    except Exception:  # noqa: BLE001 - retried file by file, so one bad file cannot sink the group
        logger.exception("Decoding a group of %d files failed; decoding them one by one", len(valid))
        decoded_list = []
        for index in valid:
            try:
                decoded_list.append(decode_audio(items[index].readable(), sample_rate, max_seconds=settings.CLIP_MAX_SECONDS, name_hint=items[index].name))
            except Exception as exc:  # noqa: BLE001
                decoded_list.append(exc)
    for index, decoded in zip(valid, decoded_list, strict=True):
        outcomes[index] = _check(items[index], metadata[index], decoded)
    return outcomes  # type: ignore[return-value]


def _check(item: IngestItem, metadata: dict, decoded) -> _Prepared | FileResult:
    if isinstance(decoded, AudioDecodeError):
        return FileResult(item.name, False, code=decoded.code, reason=decoded.reason, label=metadata["label"])
    if isinstance(decoded, Exception):
        logger.error("Decoding %r failed: %r", item.name, decoded)
        return FileResult(item.name, False, code="undecodable", reason=f"could not be decoded ({decoded.__class__.__name__})")
    canonical = canonicalise(decoded)
    common = {"label": metadata["label"], "duration": round(canonical.duration, 3)}
    if canonical.duration < settings.CLIP_MIN_SECONDS:
        return FileResult(
            item.name, False, code="too-short",
            reason=f"too short: {canonical.duration:.2f} s (the shortest clip accepted is {settings.CLIP_MIN_SECONDS:g} s)",
            **common,
        )
    if canonical.duration > settings.CLIP_MAX_SECONDS:
        return FileResult(item.name, False, code="too-long", reason=too_long_error(canonical.duration, settings.CLIP_MAX_SECONDS).reason, **common)
    if canonical.peak_dbfs <= -120.0:
        return FileResult(item.name, False, code="silent", reason="digitally silent: every sample is zero", **common)
    return _Prepared(item, metadata, decoded.format, decoded.source_sample_rate, decoded.source_channels, canonical)


def _store_chunk(dataset: Dataset, user, pending: list[tuple[int, _Prepared]], results: list) -> None:
    """Store a chunk of accepted files: files first (each moved into place atomically), then all rows in one
    transaction. On any failure every file of the chunk is removed and the chunk is retried one file at a
    time, so exactly the failing files are rejected and nothing is left behind."""
    existing = dict(
        Clip.objects.filter(dataset=dataset, content_hash__in=[prepared.canonical.content_hash for _, prepared in pending])
        .values_list("content_hash", "pk")
    )
    fresh: list[tuple[int, _Prepared]] = []
    for index, prepared in pending:
        clip_id = existing.get(prepared.canonical.content_hash)
        if clip_id is not None:
            results[index] = _duplicate_result(prepared, clip_id)
        else:
            fresh.append((index, prepared))
    if not fresh:
        return
    stored: list[str] = []
    try:
        files = [(clip_storage_name(dataset.pk, prepared.canonical.content_hash), prepared.canonical.wav)
                 for _, prepared in fresh]
        names = _save_files(files, stored)
        rows = [_clip_row(dataset, user, prepared, name) for (_, prepared), name in zip(fresh, names, strict=True)]
        with transaction.atomic():
            created = Clip.objects.bulk_create(rows)
    except Exception:  # noqa: BLE001 - retried one by one below, which reports the real reason per file
        _delete_files(stored)
        for index, prepared in fresh:
            results[index] = _store_one(dataset, user, prepared)
        return
    except BaseException:
        _delete_files(stored)
        raise
    for (index, prepared), clip in zip(fresh, created, strict=True):
        results[index] = _accepted_result(prepared, clip.pk)


def _store_one(dataset: Dataset, user, prepared: _Prepared) -> FileResult:
    name = None
    try:
        name = _save_file(clip_storage_name(dataset.pk, prepared.canonical.content_hash), prepared.canonical.wav)
        with transaction.atomic():
            clip = _clip_row(dataset, user, prepared, name)
            clip.save(force_insert=True)
    except IntegrityError as exc:
        _delete_files([name] if name else [])
        clip_id = (
            Clip.objects.filter(dataset=dataset, content_hash=prepared.canonical.content_hash).values_list("pk", flat=True).first()
        )
        if clip_id is not None:
            return _duplicate_result(prepared, clip_id)
        return _failed_result(prepared, exc)
    except Exception as exc:  # noqa: BLE001 - reported per file
        _delete_files([name] if name else [])
        logger.exception("Storing %r failed", prepared.item.name)
        return _failed_result(prepared, exc)
    except BaseException:
        _delete_files([name] if name else [])
        raise
    return _accepted_result(prepared, clip.pk)


def _clip_row(dataset: Dataset, user, prepared: _Prepared, storage_name: str) -> Clip:
    canonical = prepared.canonical
    clip = Clip(
        dataset=dataset,
        original_name=prepared.item.name[:255],
        original_format=prepared.decoded_format[:32],
        duration=round(canonical.duration, 4),
        source_sample_rate=prepared.source_sample_rate,
        source_channels=prepared.source_channels,
        peak_dbfs=canonical.peak_dbfs,
        rms_dbfs=canonical.rms_dbfs,
        clipped_fraction=canonical.clipped_fraction,
        content_hash=canonical.content_hash,
        uploaded_by=user if user is not None and getattr(user, "pk", None) else None,
        **prepared.metadata,
    )
    clip.audio.name = storage_name
    return clip


def _accepted_result(prepared: _Prepared, clip_id: int) -> FileResult:
    return FileResult(
        prepared.item.name, True, clip_id=clip_id, duration=round(prepared.canonical.duration, 3),
        label=prepared.metadata["label"], source=prepared.metadata["source"],
    )


def _duplicate_result(prepared: _Prepared, clip_id: int) -> FileResult:
    status = Clip.objects.filter(pk=clip_id).values_list("status", flat=True).first()
    where = " (in the trash)" if status == Clip.Status.TRASHED else ""
    return FileResult(
        prepared.item.name, False, code="duplicate", duplicate_of=clip_id,
        reason=f"duplicate of clip #{clip_id}{where} already in this dataset (identical audio)",
        duration=round(prepared.canonical.duration, 3), label=prepared.metadata["label"],
    )


def _failed_result(prepared: _Prepared, exc: BaseException) -> FileResult:
    if is_out_of_space(exc):
        return FileResult(
            prepared.item.name, False, code="storage-full",
            reason="could not be saved: the server's disk is full (an operator must free space); nothing was stored for it",
            label=prepared.metadata["label"],
        )
    return FileResult(
        prepared.item.name, False, code="storage-error",
        reason=f"could not be saved ({exc.__class__.__name__}: {str(exc)[:160]}); nothing was stored for it",
        label=prepared.metadata["label"],
    )


class _MovableFile(File):
    """A finished temporary file that FileSystemStorage moves into place with one rename."""

    def __init__(self, path: Path):
        super().__init__(open(path, "rb"), name=path.name)
        self._path = path

    def temporary_file_path(self) -> str:
        return str(self._path)


def _save_files(files: list[tuple[str, bytes]], stored: list[str]) -> list[str]:
    """Save each (name, data) and return the names the storage chose, in order; every name saved is appended to
    `stored` (also when another save fails, so the caller can remove them all). On object storage the files go
    STORE_THREADS at a time: each is a round trip to the bucket, while a rename on local disk costs nothing."""
    if isinstance(default_storage, FileSystemStorage) or len(files) < 2:
        names = []
        for name, data in files:
            names.append(_save_file(name, data))
            stored.append(names[-1])
        return names
    with ThreadPoolExecutor(max_workers=STORE_THREADS) as pool:
        futures = [pool.submit(_save_file, name, data) for name, data in files]
    names, failure = [], None
    for future in futures:
        try:
            names.append(future.result())
        except BaseException as error:  # noqa: BLE001 - re-raised below, after every saved name is known
            failure = failure or error
    stored.extend(names)
    if failure is not None:
        raise failure
    return names


def _save_file(name: str, data: bytes) -> str:
    """Save through the default storage without a half-written file ever being visible under its name."""
    storage = default_storage
    if not isinstance(storage, FileSystemStorage):
        return storage.save(name, ContentFile(data))
    incoming = Path(storage.location) / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(dir=incoming, suffix=".part")
    temporary = Path(temporary_name)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        movable = _MovableFile(temporary)
        try:
            return storage.save(name, movable)
        finally:
            movable.close()
    finally:
        temporary.unlink(missing_ok=True)


def _delete_files(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:  # noqa: BLE001 - best effort; logged
            logger.exception("Could not remove %s after a failed ingest", name)
