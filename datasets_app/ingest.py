"""Turning uploaded audio into canonical clips.

Every accepted file is decoded once (soundfile for the formats libsndfile reads natively, such as WAV, FLAC and
OGG; ffmpeg through ffmpeg-python for MP3, M4A/AAC, WebM/Opus and anything else ffmpeg reads), mixed down to
mono, resampled with torchaudio when the rate differs, and stored as 16-bit PCM WAV at the dataset's sample rate.
Each file is accepted (with its clip id) or rejected with a reason; nothing is stored for a rejected file, and a
file is never stored without its database row or a row without its file.

torch is imported only when a file needs resampling, so the web process does not pay for it otherwise.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
import os
import posixpath
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import soundfile as sf
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import IntegrityError, transaction

from datasets_app.models import Clip, Dataset, clean_clip_metadata, clip_storage_name

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

# Demuxers ffmpeg may use on uploaded files: audio and media containers only. Playlist and concatenation
# demuxers (hls, concat, dash, ...) would let a crafted file make ffmpeg open other files, so they are left out.
FFMPEG_FORMATS = (
    "aac,ac3,aiff,amr,amrnb,amrwb,ape,asf,au,avi,caf,dsf,dts,dtshd,eac3,flac,flv,g722,g723_1,g726,g726le,g729,"
    "gsm,ilbc,ircam,loas,matroska,webm,mlp,mov,mp4,m4a,3gp,3g2,mj2,mp3,mpc,mpc8,mpeg,mpegts,mxf,nistsphere,nut,"
    "ogg,oma,qcp,rm,sbc,shn,sln,sox,spdif,tak,truehd,tta,voc,w64,wav,wsaud,wv,xwma"
)
FFMPEG_TIMEOUT_SECONDS = 300
FFMPEG_BATCH = 8  # files decoded by one ffmpeg process
# libsndfile formats decoded with soundfile; its MP3 support is not used (MP3 goes through ffmpeg).
SOUNDFILE_FORMATS = {"WAV", "WAVEX", "RF64", "W64", "FLAC", "OGG", "AIFF", "AU", "CAF", "SD2", "IRCAM", "VOC", "NIST"}
# Files that are never audio: skipped (and listed as skipped) when importing folders and archives.
NON_AUDIO_SUFFIXES = {
    ".txt", ".md", ".rst", ".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml", ".xml", ".html", ".htm", ".pdf",
    ".py", ".sh", ".ini", ".cfg", ".toml", ".jpg", ".jpeg", ".png", ".gif", ".svg", ".lab", ".textgrid", ".db",
}
DOCUMENT_STEMS = {"README", "LICENSE", "LICENCE", "COPYING", "CHANGELOG", "NOTICE", "AUTHORS"}
FULL_SCALE = 32767
CHUNK_SIZE = 64  # accepted clips stored per database transaction


class AudioDecodeError(Exception):
    """A file that cannot become a clip; `reason` is a sentence for the user, `code` a stable identifier."""

    def __init__(self, reason: str, code: str = "undecodable"):
        super().__init__(reason)
        self.reason = reason
        self.code = code


class ImportRejected(Exception):
    """A whole archive or folder refused before any file was stored (unsafe entries, zip bomb, bad manifest)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class DecodedAudio:
    samples: np.ndarray  # mono float32 at sample_rate
    sample_rate: int
    source_sample_rate: int
    source_channels: int
    source_duration: float  # seconds, as decoded at the source rate
    format: str  # e.g. "wav", "flac", "ogg/vorbis", "mp3", "m4a/aac", "webm/opus"

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


# --------------------------------------------------------------------------------------------------- decoding


@lru_cache(maxsize=1)
def ffmpeg_binary() -> str:
    """The system ffmpeg when one is on PATH, otherwise the binary shipped by the imageio-ffmpeg package."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def decode_audio(
    source: str | os.PathLike | bytes | IO[bytes],
    target_sample_rate: int,
    *,
    max_seconds: float | None = None,
    name_hint: str = "",
) -> DecodedAudio:
    """Decode a file path, bytes or binary file object to mono float32 at `target_sample_rate`.

    Raises AudioDecodeError for empty or undecodable input, and (code "too-long") for audio longer than
    `max_seconds` when that is given, without decoding all of it."""
    opened = _open_source(source, name_hint)
    raw = _decode_with_soundfile(opened.path, opened.data, max_seconds)
    if raw is None:
        raw = _decode_with_ffmpeg(opened.path, opened.data, max_seconds, opened.hint)
    return _finish(raw, target_sample_rate, max_seconds)


def decode_audio_many(
    sources: list[tuple[str | os.PathLike | bytes | IO[bytes], str]],
    target_sample_rate: int,
    *,
    max_seconds: float | None = None,
) -> list[DecodedAudio | AudioDecodeError]:
    """decode_audio for many (source, name hint) pairs, returning each result or its error in order.

    Files that need ffmpeg share one ffmpeg process per FFMPEG_BATCH files: starting ffmpeg costs far more
    than decoding a short clip. A batch that ffmpeg refuses is decoded again file by file, so every file
    gets its own result."""
    results: list[DecodedAudio | AudioDecodeError | None] = [None] * len(sources)
    waiting: list[tuple[int, _Source]] = []
    for index, (source, hint) in enumerate(sources):
        try:
            opened = _open_source(source, hint)
            raw = _decode_with_soundfile(opened.path, opened.data, max_seconds)
            if raw is None:
                waiting.append((index, opened))
                continue
            results[index] = _finish(raw, target_sample_rate, max_seconds)
        except AudioDecodeError as exc:
            results[index] = exc
    for start in range(0, len(waiting), FFMPEG_BATCH):
        group = waiting[start : start + FFMPEG_BATCH]
        for (index, _), raw in zip(group, _decode_batch_with_ffmpeg([opened for _, opened in group], max_seconds), strict=True):
            try:
                results[index] = raw if isinstance(raw, AudioDecodeError) else _finish(raw, target_sample_rate, max_seconds)
            except AudioDecodeError as exc:
                results[index] = exc
    return results  # type: ignore[return-value]


@dataclass
class _Source:
    path: Path | None
    data: bytes | None
    hint: str


def _open_source(source, name_hint: str) -> _Source:
    path, data = _materialise(source)
    if path is not None:
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            raise AudioDecodeError(f"cannot be read ({exc.strerror or exc})", code="unreadable") from None
        if size == 0:
            raise AudioDecodeError("the file is empty (0 bytes)", code="empty")
    elif not data:
        raise AudioDecodeError("the file is empty (0 bytes)", code="empty")
    return _Source(path, data, name_hint or (str(path) if path is not None else ""))


def _finish(raw: tuple[np.ndarray, int, str], target_sample_rate: int, max_seconds: float | None) -> DecodedAudio:
    """Decoded frames x channels at the source rate -> mono at the target rate, with the length checks."""
    samples, source_rate, fmt = raw
    if samples.shape[0] == 0:
        raise AudioDecodeError("the file contains no audio samples", code="empty")
    channels = samples.shape[1]
    source_duration = samples.shape[0] / source_rate
    if max_seconds is not None and source_duration > max_seconds:
        raise _too_long(source_duration, max_seconds)
    mono = samples.mean(axis=1, dtype=np.float32) if channels > 1 else np.array(samples[:, 0], dtype=np.float32)
    if source_rate != target_sample_rate:
        mono = resample(mono, source_rate, target_sample_rate)
    return DecodedAudio(mono, target_sample_rate, source_rate, channels, source_duration, fmt)


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling with torchaudio (imported here, so only callers that resample load torch).

    Same result as torchaudio.functional.resample; the transform keeps the sinc kernel of each rate pair, so
    it is computed once instead of for every clip."""
    import torch

    with torch.inference_mode():
        waveform = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
        return _resampler(source_rate, target_rate)(waveform).numpy()


@lru_cache(maxsize=32)
def _resampler(source_rate: int, target_rate: int):
    import torch
    import torchaudio.transforms

    return torchaudio.transforms.Resample(source_rate, target_rate, dtype=torch.float32)


def _materialise(source) -> tuple[Path | None, bytes | None]:
    if isinstance(source, (str, os.PathLike)):
        return Path(source), None
    if isinstance(source, (bytes, bytearray, memoryview)):
        return None, bytes(source)
    temporary_path = getattr(source, "temporary_file_path", None)
    if callable(temporary_path):
        return Path(temporary_path()), None
    if hasattr(source, "seek"):
        source.seek(0)
    return None, source.read()


def _too_long(seconds: float, max_seconds: float) -> AudioDecodeError:
    return AudioDecodeError(f"too long: {seconds:.1f} s (the longest clip accepted is {max_seconds:g} s)", code="too-long")


def _decode_with_soundfile(path: Path | None, data: bytes | None, max_seconds: float | None):
    """(frames x channels float32, rate, format) or None when libsndfile does not handle this file."""
    try:
        with sf.SoundFile(str(path) if path is not None else io.BytesIO(data)) as audio:
            if audio.format not in SOUNDFILE_FORMATS:
                return None
            if max_seconds is not None and audio.frames > 0 and audio.frames / audio.samplerate > max_seconds:
                raise _too_long(audio.frames / audio.samplerate, max_seconds)
            if audio.subtype == "PCM_16":
                # Scaled by 1/32767, the inverse of the canonical quantisation, so 16-bit audio at the dataset's
                # rate is stored bit for bit (and an exported clip imported again is found as a duplicate).
                samples = audio.read(dtype="int16", always_2d=True).astype(np.float32) / np.float32(FULL_SCALE)
            else:
                samples = audio.read(dtype="float32", always_2d=True)
            fmt = audio.format.lower().replace("wavex", "wav")
            if fmt == "ogg":
                fmt = f"ogg/{audio.subtype.lower()}"
            return samples, audio.samplerate, fmt
    except (sf.LibsndfileError, RuntimeError, ValueError):
        return None


_STREAM_CODEC = r"Stream #{index}:\d+.*?: Audio: ([A-Za-z0-9_]+)"
_INPUT_FORMAT = r"Input #{index}, (.+?), from "
_CONTAINERS = {"mov": "mp4", "matroska": "webm", "mpeg": "mpeg", "asf": "wma"}


def _ffmpeg_input(path: Path):
    import ffmpeg

    return ffmpeg.input(str(path), format_whitelist=FFMPEG_FORMATS, protocol_whitelist="file")


def _ffmpeg_output_options(max_seconds: float | None) -> dict[str, Any]:
    options: dict[str, Any] = {"format": "wav", "acodec": "pcm_f32le", "bitexact": None, "map_metadata": "-1"}
    if max_seconds is not None:
        options["t"] = f"{max_seconds + 1:.3f}"
    return options


def _run_ffmpeg(stream) -> tuple[int, bytes, str]:
    import ffmpeg

    command = ffmpeg.compile(stream.global_args("-nostdin", "-hide_banner"), cmd=ffmpeg_binary())
    try:
        result = subprocess.run(command, capture_output=True, timeout=FFMPEG_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise AudioDecodeError("decoding took too long and was stopped", code="undecodable") from None
    return result.returncode, result.stdout, result.stderr.decode("utf-8", "replace")


def _write_temporary(data: bytes, hint: str, folder: str | None = None) -> Path:
    suffix = PurePosixPath(hint).suffix[:10] if hint else ""
    handle, name = tempfile.mkstemp(prefix="audioml-decode-", suffix=suffix if suffix.isascii() else "", dir=folder)
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    return Path(name)


def _decode_with_ffmpeg(path: Path | None, data: bytes | None, max_seconds: float | None, hint: str):
    """One file through one ffmpeg process (ffmpeg reads a file, not a pipe: MP4s need to seek)."""
    temporary = _write_temporary(data, hint) if path is None else None
    try:
        source = _ffmpeg_input(temporary or path)["a:0"]
        returncode, stdout, stderr = _run_ffmpeg(source.output("pipe:", **_ffmpeg_output_options(max_seconds)))
        if returncode != 0:
            raise AudioDecodeError(_ffmpeg_reason(stderr), code=_ffmpeg_code(stderr))
        samples, rate = _parse_ffmpeg_wav(stdout)
        return samples, rate, _ffmpeg_format(stderr, hint)
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def _decode_batch_with_ffmpeg(sources: list[_Source], max_seconds: float | None) -> list:
    """Several files through one ffmpeg process (one input and one output file each)."""
    import ffmpeg

    if len(sources) == 1:
        try:
            return [_decode_with_ffmpeg(sources[0].path, sources[0].data, max_seconds, sources[0].hint)]
        except AudioDecodeError as exc:
            return [exc]
    with tempfile.TemporaryDirectory(prefix="audioml-decode-") as folder:
        inputs = [source.path or _write_temporary(source.data, source.hint, folder) for source in sources]
        outputs = [Path(folder) / f"out-{index}.wav" for index in range(len(sources))]
        stream = ffmpeg.merge_outputs(*(
            _ffmpeg_input(path)["a:0"].output(str(output), **_ffmpeg_output_options(max_seconds))
            for path, output in zip(inputs, outputs, strict=True)
        )).overwrite_output()
        try:
            returncode, _, stderr = _run_ffmpeg(stream)
        except AudioDecodeError:
            returncode, stderr = 1, ""
        if returncode == 0 and all(output.exists() for output in outputs):
            results = []
            for index, (source, output) in enumerate(zip(sources, outputs, strict=True)):
                try:
                    samples, rate = _parse_ffmpeg_wav(output.read_bytes())
                    results.append((samples, rate, _ffmpeg_format(stderr, source.hint, index)))
                except AudioDecodeError as exc:
                    results.append(exc)
            return results
    results = []
    for source in sources:  # ffmpeg stops at the first input it cannot open: find which, file by file
        try:
            results.append(_decode_with_ffmpeg(source.path, source.data, max_seconds, source.hint))
        except AudioDecodeError as exc:
            results.append(exc)
    return results


def _ffmpeg_code(stderr: str) -> str:
    return "no-audio" if "matches no streams" in stderr else "undecodable"


def _ffmpeg_reason(stderr: str) -> str:
    if "matches no streams" in stderr:
        return "the file has no audio stream"
    if "Invalid data found" in stderr or "not on whitelist" in stderr or "could not find codec" in stderr.lower():
        return "not a decodable audio file (no audio format recognised)"
    if "moov atom not found" in stderr or "End of file" in stderr or "Truncat" in stderr:
        return "the file is corrupt or truncated"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = lines[-1] if lines else "unknown error"
    return f"could not be decoded ({detail[:160]})"


def _ffmpeg_format(stderr: str, hint: str, index: int = 0) -> str:
    codec_match = re.search(_STREAM_CODEC.format(index=index), stderr)
    codec = codec_match.group(1) if codec_match else ""
    suffix = PurePosixPath(hint).suffix.lower().lstrip(".")
    if suffix and suffix.isalnum() and len(suffix) <= 5:
        container = suffix
    else:
        input_match = re.search(_INPUT_FORMAT.format(index=index), stderr)
        demuxer = input_match.group(1).split(",")[0] if input_match else ""
        container = _CONTAINERS.get(demuxer, demuxer)
    if not codec or codec == container or codec.startswith(container):
        return (container or codec or "unknown")[:32]
    return f"{container}/{codec}"[:32] if container else codec[:32]


def _parse_ffmpeg_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Read the float32 WAV that ffmpeg streamed to a pipe (its size fields are unset, so they are ignored)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioDecodeError("the file contains no audio samples", code="empty")
    offset, channels, rate = 12, 0, 0
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (chunk_size,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        body = offset + 8
        if chunk_id == b"fmt ":
            channels, rate = struct.unpack("<HI", data[body + 2 : body + 8])
        elif chunk_id == b"data":
            if not channels or not rate:
                break
            payload = data[body:]
            usable = len(payload) - len(payload) % (4 * channels)
            samples = np.frombuffer(payload[:usable], dtype="<f4").reshape(-1, channels)
            return samples, rate
        offset = body + chunk_size + (chunk_size & 1)
    raise AudioDecodeError("the file contains no audio samples", code="empty")


# ------------------------------------------------------------------------------------------ canonical form


@dataclass
class CanonicalAudio:
    wav: bytes
    content_hash: str
    duration: float
    peak_dbfs: float
    rms_dbfs: float
    clipped_fraction: float


def canonicalise(decoded: DecodedAudio) -> CanonicalAudio:
    """16-bit PCM samples (as tests/factories.py `canonical_wav` computes them), their hash and levels."""
    pcm = (np.clip(decoded.samples, -1.0, 1.0) * FULL_SCALE).round().astype("<i2")
    content_hash = hashlib.sha256(pcm.tobytes()).hexdigest()
    magnitude = np.abs(pcm.astype(np.int32))
    peak = int(magnitude.max()) if pcm.size else 0
    rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))) if pcm.size else 0.0
    clipped = float(np.count_nonzero(magnitude >= FULL_SCALE)) / pcm.size if pcm.size else 0.0
    return CanonicalAudio(
        wav=_wav_bytes(pcm, decoded.sample_rate),
        content_hash=content_hash,
        duration=pcm.size / decoded.sample_rate,
        peak_dbfs=_dbfs(peak / FULL_SCALE),
        rms_dbfs=_dbfs(rms / FULL_SCALE),
        clipped_fraction=clipped,
    )


def _dbfs(level: float) -> float:
    return round(max(20.0 * np.log10(level), -120.0), 2) if level > 0 else -120.0


def _wav_bytes(pcm: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, pcm, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------- ingestion


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

    def source(self):
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
    the GIL); storing happens on the calling thread in chunks of one transaction each."""
    items = list(items)
    total = len(items)
    results: list[FileResult | None] = [None] * total
    batch_hashes: dict[str, str] = {}
    pending: list[tuple[int, _Prepared]] = []
    done = 0
    workers = workers or settings.INGEST_WORKERS
    for index, outcome in _prepare_all(items, dataset.sample_rate, workers):
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
                label=item.label, transcript=item.transcript, score=item.score, speaker=item.speaker, notes=item.notes
            )
        except ValidationError as exc:
            field_name, messages = next(iter(exc.message_dict.items()))
            outcomes[index] = FileResult(item.name, False, code=f"invalid-{field_name}", reason=f"invalid {field_name}: {messages[0]}")
    valid = sorted(metadata)
    try:
        decoded_list = decode_audio_many(
            [(items[index].source(), items[index].name) for index in valid], sample_rate, max_seconds=settings.CLIP_MAX_SECONDS
        )
    except Exception:  # noqa: BLE001 - retried file by file, so one bad file cannot sink the group
        logger.exception("Decoding a group of %d files failed; decoding them one by one", len(valid))
        decoded_list = []
        for index in valid:
            try:
                decoded_list.append(decode_audio(items[index].source(), sample_rate, max_seconds=settings.CLIP_MAX_SECONDS, name_hint=items[index].name))
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
        return FileResult(item.name, False, code="too-long", reason=_too_long(canonical.duration, settings.CLIP_MAX_SECONDS).reason, **common)
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
        rows = []
        for _, prepared in fresh:
            name = _save_file(clip_storage_name(dataset.pk, prepared.canonical.content_hash), prepared.canonical.wav)
            stored.append(name)
            rows.append(_clip_row(dataset, user, prepared, name))
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
        label=prepared.metadata["label"],
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


# ------------------------------------------------------------------------------- folders and zip archives

MANIFEST_NAMES = ("manifest.csv", "metadata.csv")
MANIFEST_COLUMNS = ("file", "label", "transcript", "score", "speaker", "notes")


@dataclass
class _Entry:
    """A file found in a folder or an archive: its relative POSIX path and how to read it."""

    relative: str
    path: Path | None = None  # on disk (folders, or archive members extracted to a private temp folder)


def import_path(
    dataset: Dataset,
    path: Path,
    user=None,
    progress: Progress | None = None,
    default_label: str = "",
) -> IngestReport:
    """Import a folder or a zip archive on this machine (both layouts: folder-per-label, or a manifest CSV /
    LJSpeech metadata.csv). `default_label` labels files that get no label from the layout."""
    path = Path(path)
    if path.is_dir():
        entries = [
            _Entry(file.relative_to(path).as_posix(), file)
            for file in sorted(path.rglob("*"))
            if file.is_file() and not _is_hidden(file.relative_to(path).as_posix())
        ]
        return _import_entries(dataset, entries, user, progress, default_label)
    if path.is_file():
        with open(path, "rb") as archive:
            return import_archive(dataset, archive, user, progress, default_label)
    raise FileNotFoundError(f"{path} is neither a folder nor a file")


def import_archive(
    dataset: Dataset,
    archive: IO[bytes],
    user=None,
    progress: Progress | None = None,
    default_label: str = "",
) -> IngestReport:
    """Import a zip archive (file object). Raises ImportRejected for unsafe or oversized archives."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ImportRejected("not a valid zip archive") from None
    with zf:
        members = check_archive(zf, _archive_size(archive))
        work = Path(settings.WORK_DIR) / "ingest"
        work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=work, prefix="archive-") as folder:
            entries = []
            for number, info in enumerate(members):
                # Members are extracted under generated names; the member's own name is never a path here.
                target = Path(folder) / f"{number:06d}{_safe_suffix(info.filename)}"
                try:
                    with zf.open(info) as source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out, 1024 * 1024)
                except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                    target.unlink(missing_ok=True)
                    entries.append(_Entry(info.filename, None))
                    logger.info("Archive member %r unreadable: %s", info.filename, exc)
                    continue
                entries.append(_Entry(info.filename, target))
            return _import_entries(dataset, entries, user, progress, default_label)


def check_archive(zf: zipfile.ZipFile, archive_size: int) -> list[zipfile.ZipInfo]:
    """The archive's file members, after refusing unsafe archives as a whole (with the first offending entry)."""
    infos = zf.infolist()
    if len(infos) > settings.ZIP_MAX_ENTRIES:
        raise ImportRejected(
            f"the archive has {len(infos)} entries; at most {settings.ZIP_MAX_ENTRIES} are accepted (ZIP_MAX_ENTRIES)"
        )
    total = 0
    members = []
    for info in infos:
        name = info.filename
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
            raise ImportRejected(f"entry {name!r} has an absolute path; archives with such entries are refused")
        parts = re.split(r"[\\/]", name)
        if ".." in parts:
            raise ImportRejected(f"entry {name!r} contains '..'; archives with such entries are refused")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise ImportRejected(f"entry {name!r} is a symbolic link; archives with links are refused")
        if info.is_dir():
            continue
        if info.compress_size and info.file_size / info.compress_size > settings.ZIP_MAX_RATIO and info.file_size > 1024 * 1024:
            raise ImportRejected(
                f"entry {name!r} expands {info.file_size / info.compress_size:.0f}-fold "
                f"(more than ZIP_MAX_RATIO={settings.ZIP_MAX_RATIO}); this looks like a zip bomb and is refused"
            )
        total += info.file_size
        if not _is_hidden(name):
            members.append(info)
    if archive_size and total > max(archive_size, 1) * settings.ZIP_MAX_RATIO:
        raise ImportRejected(
            f"the archive expands to {total / archive_size:.0f} times its size "
            f"(more than ZIP_MAX_RATIO={settings.ZIP_MAX_RATIO}); this looks like a zip bomb and is refused"
        )
    return members


def _archive_size(archive: IO[bytes]) -> int:
    size = getattr(archive, "size", None)
    if isinstance(size, int) and size > 0:
        return size
    try:
        position = archive.tell()
        archive.seek(0, os.SEEK_END)
        size = archive.tell()
        archive.seek(position)
        return size
    except (OSError, AttributeError):
        return 0


def _safe_suffix(name: str) -> str:
    suffix = PurePosixPath(name.replace("\\", "/")).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,6}", suffix) else ""


def _is_document(relative: str) -> bool:
    """Text that travels with audio collections (README, LICENSE, CSV files, images): never decoded."""
    name = PurePosixPath(relative)
    return name.suffix.lower() in NON_AUDIO_SUFFIXES or name.stem.upper() in DOCUMENT_STEMS


def _is_hidden(relative: str) -> bool:
    """macOS and Windows clutter that is never data: __MACOSX/, .DS_Store, ._AppleDouble files, Thumbs.db."""
    parts = [part for part in re.split(r"[\\/]", relative) if part]
    if not parts:
        return True
    return (
        any(part.startswith(".") or part == "__MACOSX" for part in parts)
        or parts[-1].lower() in {"thumbs.db", "desktop.ini"}
    )


def _import_entries(
    dataset: Dataset, entries: list[_Entry], user, progress: Progress | None, default_label: str
) -> IngestReport:
    entries = _strip_common_root(entries)
    manifest = _find_manifest(entries)
    unreadable = [entry for entry in entries if entry.path is None]
    readable = [entry for entry in entries if entry.path is not None]
    skipped: list[str] = []
    if manifest is not None:
        layout, items, extra_results = _items_from_manifest(manifest, readable, default_label)
        skipped = [entry.relative for entry in readable if entry is not manifest and _is_document(entry.relative)]
    else:
        layout, extra_results = "folders", []
        items = []
        for entry in readable:
            if _is_document(entry.relative):
                skipped.append(entry.relative)
                continue
            parent = PurePosixPath(entry.relative).parent
            label = parent.name if parent.name else default_label
            items.append(IngestItem(name=entry.relative, path=entry.path, label=label))
    report = ingest_files(dataset, items, user=user, progress=progress)
    report.files.extend(extra_results)
    report.files.extend(
        FileResult(entry.relative, False, code="unreadable", reason="could not be read from the archive (corrupt entry)")
        for entry in unreadable
    )
    report.skipped = skipped
    report.layout = layout
    return report


def _strip_common_root(entries: list[_Entry]) -> list[_Entry]:
    """`data/yes/1.wav`, `data/no/2.wav` (a zipped folder) reads like `yes/1.wav`, `no/2.wav`.

    A lone folder of files (`yes/1.wav`, `yes/2.wav`) keeps its name: there it is the label."""
    while entries:
        heads = {entry.relative.split("/", 1)[0] for entry in entries}
        if len(heads) != 1 or any("/" not in entry.relative for entry in entries):
            break
        stripped = [_Entry(entry.relative.split("/", 1)[1], entry.path) for entry in entries]
        nested = all("/" in entry.relative for entry in stripped if not _is_document(entry.relative))
        has_manifest = any(entry.relative.lower() in MANIFEST_NAMES for entry in stripped)
        if not (nested or has_manifest):
            break
        entries = stripped
    return entries


def _find_manifest(entries: list[_Entry]) -> _Entry | None:
    by_name = {entry.relative.lower(): entry for entry in entries if entry.path is not None}
    for name in MANIFEST_NAMES:
        if name in by_name:
            return by_name[name]
    for name, entry in sorted(by_name.items()):
        if "/" not in name and name.endswith((".csv", ".tsv")) and "file" in _header_columns(_read_text(entry.path)):
            return entry
    return None


def _read_text(path: Path, name: str | None = None) -> str:
    """A CSV's text: UTF-8 (with or without a BOM) or UTF-16 with a BOM (Excel's "Unicode text").

    With `name` (the manifest being imported) anything else is refused rather than guessed at: a wrong guess
    would silently garble every transcript. Without it (only sniffing a header) undecodable bytes are replaced.
    """
    raw = path.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if name is None:
            return raw.decode("utf-8", errors="replace")
        line = raw[: exc.start].count(b"\n") + 1
        raise ImportRejected(
            f"{name} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8 "
            "(in Excel: \"CSV UTF-8\") and import it again"
        ) from None


def _header_columns(text: str) -> list[str]:
    first = text.splitlines()[:1]
    if not first or "|" in first[0]:
        return []
    return [column.strip().strip('"').lower() for column in re.split(r"[,;\t]", first[0])]


def _items_from_manifest(
    manifest: _Entry, entries: list[_Entry], default_label: str
) -> tuple[str, list[IngestItem], list[FileResult]]:
    """Items for the audio files a manifest lists; listed-but-missing and unlisted audio files are reported."""
    manifest_name = PurePosixPath(manifest.relative).name
    text = _read_text(manifest.path, manifest_name)
    base = posixpath.dirname(manifest.relative)
    audio_entries = {
        posixpath.normpath(entry.relative): entry
        for entry in entries
        if entry is not manifest and not _is_document(entry.relative)
    }
    columns = _header_columns(text)
    rows: list[dict] = []
    if "file" in columns:
        layout = "manifest"
        first_line = text.splitlines()[0]
        delimiter = max(",;\t", key=first_line.count)
        reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
        reader.fieldnames = [name.strip().strip('"').lower() for name in reader.fieldnames or []]
        for row in reader:
            reference = (row.get("file") or "").strip()
            if not reference:
                continue
            label = (row.get("label") or "").strip()
            rows.append({
                "reference": reference,
                "candidates": [reference],
                "label": label or default_label,
                "transcript": row.get("transcript") or "",
                "score": row.get("score"),
                "speaker": row.get("speaker") or "",
                "notes": row.get("notes") or "",
            })
    elif manifest_name.lower() == "metadata.csv":
        # LJSpeech: id|transcript|normalized transcript, no header, no quoting; audio in wavs/<id>.wav.
        # The normalized transcript (numbers and abbreviations spelled out) is kept when present.
        layout = "ljspeech"
        for row in csv.reader(io.StringIO(text), delimiter="|", quoting=csv.QUOTE_NONE):
            if not row or not row[0].strip():
                continue
            clip_id = row[0].strip()
            raw = row[1] if len(row) > 1 else ""
            normalised = row[2] if len(row) > 2 else ""
            rows.append({
                "reference": clip_id,
                "candidates": [f"wavs/{clip_id}.wav", f"{clip_id}.wav", f"wavs/{clip_id}", clip_id],
                "label": default_label,
                "transcript": (normalised or raw).strip(),
                "score": None, "speaker": "", "notes": "",
            })
    else:
        raise ImportRejected(
            f"{manifest_name} has no 'file' column: its first line must be a header with 'file' and any of "
            "label, transcript, score, speaker, notes"
        )
    items: list[IngestItem] = []
    extra: list[FileResult] = []
    used: set[str] = set()
    for row in rows:
        found = None
        for candidate in row["candidates"]:
            relative = posixpath.normpath(posixpath.join(base, candidate.replace("\\", "/")))
            if relative in audio_entries:
                found = audio_entries[relative]
                break
        if found is None:
            extra.append(FileResult(
                row["reference"], False, code="missing", reason=f"listed in {manifest_name} but not found next to it"
            ))
            continue
        key = posixpath.normpath(found.relative)
        if key in used:
            extra.append(FileResult(row["reference"], False, code="duplicate", reason=f"listed more than once in {manifest_name}"))
            continue
        used.add(key)
        items.append(IngestItem(
            name=found.relative, path=found.path, label=row["label"], transcript=row["transcript"],
            score=row["score"], speaker=row["speaker"], notes=row["notes"],
        ))
    for relative in sorted(set(audio_entries) - used):
        extra.append(FileResult(
            relative, False, code="not-in-manifest", reason=f"not listed in {manifest_name}, so it was not imported"
        ))
    return layout, items, extra
