"""Predictions from registered versions: load exported models (checksum first), cache them, score audio.

The exported `model.pt2` is self-contained: raw mono float32 waveform at the model's sample rate in
(shape (batch, clip_samples)), the task's output out (class probabilities, or a 0-1 score), feature front end
included. Serving needs only torch and an audio decoder, never the training code. torch is imported lazily so
the web process does not load it to render pages.

Clip length: a clip shorter than the model's clip length is zero-padded around its centre (as in training);
a longer one is cut into windows of the clip length, spaced as the model's task says (half a clip for
classification and regression, 100 ms for detection, or the hop a detection version stores; the last window ends at the end of the clip). The task
module then shapes the answer: classification and regression AVERAGE the windows (so class scores still sum to
1 and a long recording is judged as a whole), detection reports the events above its threshold. The response
says how many windows were scored.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage

from audioml.audio.decoding import AudioDecodeError, decode_audio
from audioml.errors import Unprocessable
from registry_app import artifacts as artifact_store
from registry_app.errors import ArtifactDamaged, AudioTooLong, PredictionTooLarge, UndecodableAudio
from registry_app.models import MODEL_FILE, ModelVersion, RegisteredModel
from training_app.ml.tasks import task_module

logger = logging.getLogger("registry_app.inference")

# Loaded models kept per process (least recently used goes first). Each tiny CNN takes a few MB.
MODEL_CACHE_SIZE = 8
# Windows advance by this share of the clip length when a clip is longer than the model's clip length.
WINDOW_HOP_FRACTION = 0.5
# Windows scored in one forward pass.
WINDOW_BATCH = 64
# CPU threads per forward pass. Requests run in parallel on gunicorn's workers and threads; intra-op threads on
# top of that oversubscribe the cores, and on a busy 2-core machine a one-window forward pass took 1.2 ms (p50)
# with 1 thread against 282 ms with 2. Set once, when a process loads its first model.
INFERENCE_THREADS = 1


@dataclass
class LoadedModel:
    version_pk: int
    sha256: str
    module: Any
    task: Any  # the task's module in training_app.ml.tasks: how windows are spaced and answers shaped
    prediction_config: dict[str, Any]  # what the task stored for predictions (a detection threshold, say)
    labels: list[str]
    sample_rate: int
    clip_samples: int
    stamp: tuple[int, float] | None
    path: str
    load_ms: float


class ModelCache:
    """Bounded LRU of loaded models keyed by (version pk, model.pt2 SHA-256); safe across threads.

    A hit re-checks only the stored file's size and modification time (cheap); if either changed, the bytes
    are hashed again before the cached model is used, so a damaged artifact is never served from memory.
    """

    def __init__(self, capacity: int = MODEL_CACHE_SIZE) -> None:
        self.capacity = capacity
        self.loads = 0
        self.hits = 0
        self._entries: OrderedDict[tuple[int, str], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[int, str], threading.Lock] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def keys(self) -> list[tuple[int, str]]:
        with self._lock:
            return list(self._entries)

    def get(self, version: ModelVersion) -> tuple[LoadedModel, bool]:
        """The loaded model for a version and whether it came from the cache."""
        entry = version.artifact(MODEL_FILE)
        key = (version.pk, entry["sha256"])
        cached = self._lookup(key)
        if cached is not None:
            if artifact_store.stored_stamp(entry["path"]) == cached.stamp:
                self.hits += 1
                return cached, True
            self._evict(key)
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            cached = self._lookup(key)
            if cached is not None:
                return cached, True
            try:
                loaded = load_version(version)
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                self.loads += 1
                self._entries[key] = loaded
                self._entries.move_to_end(key)
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
            return loaded, False

    def _lookup(self, key):
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def _evict(self, key) -> None:
        with self._lock:
            self._entries.pop(key, None)


cache = ModelCache()


def load_version(version: ModelVersion) -> LoadedModel:
    """Read model.pt2 from the storage, check its SHA-256, load it with torch.export (no training code) and
    run it once on silence so the first real prediction does not pay for lazy initialisation."""
    import hashlib

    import torch

    started = time.perf_counter()
    _configure_torch(torch)
    entry = version.artifact(MODEL_FILE)
    stamp = artifact_store.stored_stamp(entry["path"])
    try:
        with default_storage.open(entry["path"], "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise _damaged(version, f"{MODEL_FILE} cannot be read from the storage: {error}") from None
    actual = hashlib.sha256(data).hexdigest()
    if len(data) != entry["size"] or actual != entry["sha256"]:
        logger.error("Refusing to load %s: SHA-256 %s, registered %s", entry["path"], actual, entry["sha256"])
        raise _damaged(version, f"{MODEL_FILE} has SHA-256 {actual[:12]}…, but {entry['sha256'][:12]}… was registered")
    module = load_exported(data)
    clip_samples = int(version.feature_config["clip_samples"])
    with torch.inference_mode():
        module(torch.zeros(1, clip_samples))  # the first call is slow; pay it here, not in a user's request
    load_ms = (time.perf_counter() - started) * 1000
    logger.info("Loaded %s v%s in %.0f ms", version.model.name, version.version, load_ms)
    return LoadedModel(
        version_pk=version.pk,
        sha256=actual,
        module=module,
        task=task_module(version.model.task),
        prediction_config=dict((version.metrics or {}).get("prediction") or {}),
        labels=list(version.labels),
        sample_rate=int(version.feature_config["sample_rate"]),
        clip_samples=clip_samples,
        stamp=stamp,
        path=entry["path"],
        load_ms=load_ms,
    )


_torch_configured = False
# torch.export's deserializer sets a module-level "current deserializer" while it runs, so two threads loading
# models at once (a request thread and the shadow pool, or two requests for different versions) fail with
# "_CURRENT_DESERIALIZER is already set". Loads are rare (the cache keeps models), so they take turns.
DESERIALIZE_LOCK = threading.Lock()
_device = None


def inference_device():
    """INFERENCE_DEVICE as a torch.device for this process (``auto``: the first GPU when there is one)."""
    global _device
    if _device is None:
        from training_app.ml.device import resolve_inference_device

        _device = resolve_inference_device(settings.INFERENCE_DEVICE)
        logger.info("Predictions run on %s", _device)
    return _device


class OnDevice:
    """An exported module on a GPU, called like the CPU one: tensors in from the CPU, tensors back on the CPU."""

    def __init__(self, module, device) -> None:
        self.module, self.device = module, device

    def __call__(self, *inputs):
        output = self.module(*(item.to(self.device) for item in inputs))
        if isinstance(output, (tuple, list)):
            return type(output)(item.cpu() for item in output)
        return output.cpu()


def load_exported(data: bytes):
    """An exported program (model.pt2 bytes) ready to call on INFERENCE_DEVICE. On a GPU the whole program is
    moved, constants made while tracing included (torch.export.passes.move_to_device_pass)."""
    import torch

    from torch.export.passes import move_to_device_pass

    device = inference_device()
    with DESERIALIZE_LOCK:  # torch.export.load keeps global state: two threads loading at once fail
        program = torch.export.load(io.BytesIO(data))
        if device.type == "cpu":
            return program.module()
        moved = move_to_device_pass(program, device).module()
    return OnDevice(moved, device)


def _configure_torch(torch) -> None:
    global _torch_configured
    if not _torch_configured:
        torch.set_num_threads(INFERENCE_THREADS)
        _torch_configured = True


def _damaged(version: ModelVersion, problem: str) -> ArtifactDamaged:
    return ArtifactDamaged(
        f"Version {version.version} of “{version.model.name}” is damaged: {problem}. "
        "It is not loaded; register a new version by re-running its training job.",
        artifact=MODEL_FILE,
        version=version.version,
    )


def window_starts(n_samples: int, clip_samples: int, hop: int | None = None) -> list[int]:
    """Start offsets of the windows covering a clip; one window when it fits in the model's clip length.

    Windows advance by ``hop`` samples (default half a clip); the last one ends at the end of the clip."""
    if n_samples <= clip_samples:
        return [0]
    hop = max(1, hop or int(clip_samples * WINDOW_HOP_FRACTION))
    starts = list(range(0, n_samples - clip_samples + 1, hop))
    if starts[-1] + clip_samples < n_samples:
        starts.append(n_samples - clip_samples)
    return starts


def window_outputs(loaded: LoadedModel, waveform: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The model's output for every window of a mono float32 waveform at the model's rate (windows spaced as
    the model's task says), and each window's start in seconds. A clip shorter than a window is zero-padded
    around its centre, as in training."""
    import torch

    wave = np.asarray(waveform, dtype=np.float32).reshape(-1)
    clip = loaded.clip_samples
    if len(wave) <= clip:
        padded = np.zeros(clip, dtype=np.float32)
        offset = (clip - len(wave)) // 2
        padded[offset : offset + len(wave)] = wave
        windows, starts = padded[None, :], [0]
    else:
        # A detection version stores its hop (80 ms on the speech embedding front end).
        hop_seconds = loaded.prediction_config.get("hop_seconds") or loaded.task.window_hop_seconds(
            clip / loaded.sample_rate)
        hop = int(round(float(hop_seconds) * loaded.sample_rate))
        starts = window_starts(len(wave), clip, hop)
        windows = np.stack([wave[start : start + clip] for start in starts])
    batches = []
    with torch.inference_mode():
        for start in range(0, len(windows), WINDOW_BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(windows[start : start + WINDOW_BATCH]))
            batches.append(loaded.module(batch).numpy())
    return np.concatenate(batches).astype(np.float64), [start / loaded.sample_rate for start in starts]


def score_waveform(loaded: LoadedModel, waveform: np.ndarray) -> tuple[np.ndarray, int]:
    """Class probabilities of a mono float32 waveform (window probabilities averaged), and the windows scored."""
    outputs, starts = window_outputs(loaded, waveform)
    return outputs.mean(axis=0), len(starts)


@dataclass
class PredictionRequest:
    """Which version answered, resolved once for every file of a request."""

    model: RegisteredModel
    version: ModelVersion
    ref: str
    loaded: LoadedModel
    cached: bool
    threshold: float | None = None
    arm: str = "direct"  # how the version was chosen: "primary" or "split" of an alias, "direct", "latest"
    shadow: ModelVersion | None = None  # scores the same audio in the background (registry_app.traffic)
    key: str = ""  # the caller's key, which keeps a caller on one side of a split

    def base(self) -> dict[str, Any]:
        return {"model": self.model.name, "version": self.version.version, "ref": self.ref}

    def context(self, duration: float) -> dict[str, Any]:
        loaded = self.loaded
        return {
            "labels": loaded.labels,
            "prediction": loaded.prediction_config,
            "threshold": self.threshold,
            "clip_seconds": loaded.clip_samples / loaded.sample_rate,
            "sample_rate": loaded.sample_rate,
            "duration": duration,
        }

    def shape(self, outputs: np.ndarray, starts: list[float], duration: float) -> dict[str, Any]:
        """The task's own answer for one file (label and scores, a score, detection events...)."""
        return self.loaded.task.shape_prediction(outputs, starts, self.context(duration))

    def answer(self, waveform: np.ndarray, duration: float) -> dict[str, Any]:
        """The task's answer for one decoded file and the number of windows (or segments) it scored: through
        the task's own ``predict_waveform`` when it has one (transcription), else windows + shape_prediction."""
        task = self.loaded.task
        if hasattr(task, "predict_waveform"):
            import torch

            with torch.inference_mode():
                return task.predict_waveform(self.loaded.module, waveform, self.context(duration))
        outputs, starts = window_outputs(self.loaded, waveform)
        return {**self.shape(outputs, starts, duration), "windows": len(starts)}


def check_threshold(model: RegisteredModel, threshold: float | None) -> None:
    """A ``threshold`` override must be a number in [0, 1], and only detection models have one."""
    if threshold is None:
        return
    if not isinstance(threshold, (int, float)) or not 0.0 <= float(threshold) <= 1.0:
        raise Unprocessable(f"threshold: must be a number from 0 to 1, got {threshold!r}", field="threshold")
    if not getattr(task_module(model.task), "USES_THRESHOLD", False):
        raise Unprocessable(
            f"threshold: “{model.name}” is a {model.task} model; only detection models take a threshold",
            field="threshold",
        )


def prepare(model: RegisteredModel, ref: str | None = None, threshold: float | None = None,
            key: str | None = None) -> PredictionRequest:
    """Resolve the reference (aliases on every call, so a promotion applies to the next request), apply the
    alias's traffic split for this caller's ``key`` (registry_app.traffic) and load the version that answers.

    ``threshold`` overrides the version's calibrated detection threshold (422 outside [0, 1])."""
    from registry_app.traffic import route

    check_threshold(model, threshold)
    if not getattr(task_module(model.task), "PREDICTS", True):
        raise Unprocessable(f"“{model.name}” is a {model.task} model: it speaks text "
                            f"(POST /api/models/{model.name}/synthesize) rather than scoring audio", field="model")
    chosen = route(model, ref, key)
    loaded, cached = cache.get(chosen.version)
    return PredictionRequest(model=model, version=chosen.version, ref=chosen.ref, loaded=loaded, cached=cached,
                             threshold=None if threshold is None else float(threshold), arm=chosen.arm,
                             shadow=chosen.shadow, key=chosen.key)


def predict_source(request: PredictionRequest, source, file_name: str, max_seconds: float | None = None) -> dict[str, Any]:
    """One file's prediction; `source` is a path, bytes or an uploaded file (any format ingestion reads).

    Raises UndecodableAudio (422 for that file) when it is not audio or is empty, and AudioTooLong (413) when
    it holds more than `max_seconds` (default PREDICT_MAX_FILE_SECONDS) of audio; decoding stops there.
    """
    return predict_decoded(request, *decode_source(request, source, file_name, max_seconds))[0]


def decode_source(request: PredictionRequest, source, file_name: str, max_seconds: float | None = None):
    """(decoded audio, file name, start time) for predict_decoded; raises the per-file errors."""
    started = time.perf_counter()
    loaded = request.loaded
    limit = settings.PREDICT_MAX_FILE_SECONDS if max_seconds is None else max_seconds
    try:
        decoded = decode_audio(source, loaded.sample_rate, max_seconds=limit, name_hint=file_name)
    except AudioDecodeError as error:
        if error.code == "too-long":
            raise AudioTooLong(
                f"{file_name}: longer than {limit:g} s, the most audio one prediction scores "
                "(PREDICT_MAX_FILE_SECONDS); cut the recording into shorter files.",
                file=file_name, reason="too-long", max_seconds=limit,
            ) from None
        raise UndecodableAudio(f"{file_name}: {error.reason}", file=file_name, reason=error.code) from None
    return decoded, file_name, started


def predict_decoded(request: PredictionRequest, decoded, file_name: str, started: float):
    """(one file's answer, the decoded audio) for audio decode_source decoded at the model's rate."""
    loaded = request.loaded
    answer = request.answer(decoded.samples, decoded.duration)
    windows = answer.pop("windows")
    return {
        "file": file_name,
        **answer,
        **request.base(),
        "windows": windows,
        "clip_seconds": loaded.clip_samples / loaded.sample_rate,
        "duration": round(decoded.duration, 4),
        "time_ms": round((time.perf_counter() - started) * 1000, 2),
    }, decoded


def log_and_shadow(request: PredictionRequest, result: dict[str, Any], decoded, *, user=None,
                   channel: str = "api") -> None:
    """Log one answer (registry_app.prediction_log) and hand its audio to the alias's shadow version, which
    scores it on the shadow pool after the log row is committed; adds `prediction_id` to the result."""
    from django.db import transaction

    from registry_app.prediction_log import record_prediction, run_shadow
    from registry_app.traffic import shadow_pool

    row = record_prediction(request.model, request.version, result, ref=request.ref, arm=request.arm, user=user,
                            key=request.key, channel=channel, samples=decoded.samples,
                            sample_rate=request.loaded.sample_rate)
    if row is None:
        return
    result["prediction_id"] = row.pk
    if request.shadow is not None:
        args = (request.shadow.pk, row.pk, decoded.samples, request.loaded.sample_rate, decoded.duration,
                request.threshold)
        transaction.on_commit(lambda: shadow_pool.submit(run_shadow, *args))


def file_error(file_name: str, error: UndecodableAudio | AudioTooLong) -> dict[str, Any]:
    reason = error.extra.get("reason", "undecodable")
    return {
        "file": file_name,
        "error": {"status": error.status, "code": error.code, "reason": reason, "detail": error.detail},
    }


def predict_uploads(
    model: RegisteredModel, ref: str | None, uploads: list, threshold: float | None = None, *,
    key: str | None = None, user=None, channel: str = "api",
) -> dict[str, Any]:
    """Predictions for every uploaded file with one resolved version; bad files get a per-file error.

    The files of one request may hold at most PREDICT_MAX_REQUEST_SECONDS of audio together: each file is
    decoded with what is left of that budget as its limit, so the work stays bounded, and a request that
    goes over it is refused whole (PredictionTooLarge, 413). ``threshold`` overrides a detection model's
    calibrated threshold. ``key`` keeps a caller on one side of an alias's split; each answer is logged for the
    ``user`` (when the model keeps a log) and shadowed (when the alias has a shadow version)."""
    request = prepare(model, ref, threshold, key)
    file_limit = settings.PREDICT_MAX_FILE_SECONDS
    budget = settings.PREDICT_MAX_REQUEST_SECONDS
    results, answered = [], []
    for upload in uploads:
        name = os.path.basename(upload.name or "") or "upload"
        limit = min(file_limit, budget)
        try:
            result, decoded = predict_decoded(request, *decode_source(request, upload, name, max_seconds=limit))
        except AudioTooLong as error:
            if limit < file_limit:
                raise _request_too_large(len(uploads)) from None
            results.append(file_error(name, error))
        except UndecodableAudio as error:
            results.append(file_error(name, error))
        else:
            budget -= result["duration"]
            answered.append((result, decoded))
            results.append(result)
    # Only once the whole request is answered: a request refused part-way (413) logs and shadows nothing.
    for result, decoded in answered:
        log_and_shadow(request, result, decoded, user=user, channel=channel)
    failed = sum(1 for result in results if "error" in result)
    return {
        **request.base(),
        "arm": request.arm,
        "shadow_version": request.shadow.version if request.shadow is not None else None,
        "cached": request.cached,
        "load_ms": 0.0 if request.cached else round(request.loaded.load_ms, 2),
        "succeeded": len(results) - failed,
        "failed": failed,
        "results": results,
    }


def _request_too_large(files: int) -> PredictionTooLarge:
    total = settings.PREDICT_MAX_REQUEST_SECONDS
    return PredictionTooLarge(
        f"The {files} files of this request hold more than {total:g} s of audio together, the most one "
        "prediction request may ask for (PREDICT_MAX_REQUEST_SECONDS); send fewer or shorter files per request.",
        max_seconds=total,
    )
