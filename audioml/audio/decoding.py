"""Decoding any audio file to mono float32 at a chosen sample rate: what ingestion and prediction both need.

soundfile decodes the formats libsndfile reads natively (WAV, FLAC, OGG, AIFF, ...); ffmpeg, run as a
subprocess through ffmpeg-python, decodes MP3, M4A/AAC, WebM/Opus and anything else it reads, and streams
float32 WAV back, which a small parser reads. Multi-channel audio is mixed down to mono and resampled with
torchaudio when the rate differs (audioml.audio.resample imports torch only then).

No Django here: the datasets app (ingestion) and the registry app (prediction) both import this module.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import soundfile as sf

from audioml.audio.canonical import FULL_SCALE
from audioml.audio.resample import resample

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


class AudioDecodeError(Exception):
    """A file that cannot be decoded or is too long; `reason` is a sentence for the user, `code` a stable identifier."""

    def __init__(self, reason: str, code: str = "undecodable"):
        super().__init__(reason)
        self.reason = reason
        self.code = code


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
        raise too_long_error(source_duration, max_seconds)
    mono = samples.mean(axis=1, dtype=np.float32) if channels > 1 else np.array(samples[:, 0], dtype=np.float32)
    if source_rate != target_sample_rate:
        mono = resample(mono, source_rate, target_sample_rate)
    return DecodedAudio(mono, target_sample_rate, source_rate, channels, source_duration, fmt)


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


def too_long_error(seconds: float, max_seconds: float) -> AudioDecodeError:
    return AudioDecodeError(f"too long: {seconds:.1f} s (the longest clip accepted is {max_seconds:g} s)", code="too-long")


def _decode_with_soundfile(path: Path | None, data: bytes | None, max_seconds: float | None):
    """(frames x channels float32, rate, format) or None when libsndfile does not handle this file."""
    try:
        with sf.SoundFile(str(path) if path is not None else io.BytesIO(data)) as audio:
            if audio.format not in SOUNDFILE_FORMATS:
                return None
            if max_seconds is not None and audio.frames > 0 and audio.frames / audio.samplerate > max_seconds:
                raise too_long_error(audio.frames / audio.samplerate, max_seconds)
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
