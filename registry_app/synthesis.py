"""Speech from registered voices: load a voice's exported model and text tables (checksums first), speak text.

A voice's ``model.pt2`` takes the symbol ids of one sentence (int64, shape (1, symbols)) and returns a mono
float32 waveform at the voice's sample rate; ``config.json`` holds its text front end (mode, espeak-ng voice,
symbol table). A text is checked whole before anything is synthesised (length, symbols outside the voice's
vocabulary: 422), split into sentences, each spoken separately and joined with a short pause. torch is
imported lazily, as for predictions.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile
from django.core.files.storage import default_storage

from audioml.errors import Unprocessable
from registry_app.models import MODEL_FILE, ModelVersion, RegisteredModel
from training_app.ml.tts.frontend import MAX_TEXT_CHARACTERS, TextError, TextFrontend, check_text

VOICE_CACHE_SIZE = 4
PAUSE_SECONDS = 0.25


@dataclass
class LoadedVoice:
    version_pk: int
    sha256: str
    module: Any
    frontend: TextFrontend
    sample_rate: int
    max_characters: int


@dataclass
class Speech:
    wav: bytes
    seconds: float
    sample_rate: int
    sentences: int
    model: str
    version: int
    ref: str
    time_ms: float  # speaking, without loading the voice (as a prediction's time_ms)
    prediction_id: int | None = None
    load_ms: float = 0.0  # loading the voice into the cache; 0 when it was there

    def headers(self) -> dict[str, str]:
        headers = {"X-Audio-Duration": f"{self.seconds:.3f}", "X-Model": self.model,
                   "X-Model-Version": str(self.version), "X-Model-Ref": self.ref, "X-Sentences": str(self.sentences)}
        if self.prediction_id is not None:
            headers["X-Prediction-Id"] = str(self.prediction_id)
        return headers


class _VoiceCache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.voices: OrderedDict[tuple[int, str], LoadedVoice] = OrderedDict()

    def clear(self) -> None:
        with self.lock:
            self.voices.clear()

    def get(self, version: ModelVersion) -> LoadedVoice:
        return self.get_timed(version)[0]

    def get_timed(self, version: ModelVersion) -> tuple[LoadedVoice, float]:
        """The voice, and how long loading it took in ms (0 when it was cached)."""
        key = (version.pk, version.artifact(MODEL_FILE)["sha256"] + version.artifact("config.json")["sha256"])
        with self.lock:
            if key in self.voices:
                self.voices.move_to_end(key)
                return self.voices[key], 0.0
        started = time.perf_counter()
        voice = load_voice(version)
        load_ms = round((time.perf_counter() - started) * 1000, 2)
        with self.lock:
            self.voices[key] = voice
            while len(self.voices) > VOICE_CACHE_SIZE:
                self.voices.popitem(last=False)
        return voice, load_ms


cache = _VoiceCache()


def load_voice(version: ModelVersion) -> LoadedVoice:
    import torch

    from registry_app.inference import _configure_torch, load_exported

    _configure_torch(torch)
    model_entry = version.verify_artifact(MODEL_FILE)
    config_entry = version.verify_artifact("config.json")
    with default_storage.open(config_entry["path"], "rb") as handle:
        config = json.loads(handle.read())
    with default_storage.open(model_entry["path"], "rb") as handle:
        module = load_exported(handle.read())
    return LoadedVoice(version.pk, model_entry["sha256"], module, TextFrontend.from_config(config["text_frontend"]),
                       int(config["sample_rate"]),
                       int((config.get("prediction") or {}).get("max_text_characters") or MAX_TEXT_CHARACTERS))


def check_voice(model: RegisteredModel) -> None:
    if model.task != "synthesis":
        raise Unprocessable(f"“{model.name}” is a {model.task} model; only synthesis models speak text",
                            field="model")


def synthesize(model: RegisteredModel, text: Any, ref: str | None = None, *, key: str | None = None, user=None,
               channel: str = "api") -> Speech:
    """The text spoken by the version ``ref`` names (aliases resolved now, their split applied for the caller's
    ``key``) as a 16-bit mono WAV. Logged without the audio when the model keeps a log."""
    import torch

    from registry_app.prediction_log import record_prediction
    from registry_app.traffic import route

    started = time.perf_counter()
    check_voice(model)
    chosen = route(model, ref, key)
    version, used_ref = chosen.version, chosen.ref
    if not any(entry["name"] == MODEL_FILE for entry in version.artifacts):
        raise Unprocessable(f"Version {version.version} of “{model.name}” was made by an external trainer and has no "
                            f"{MODEL_FILE} AudioML can speak with; download its artifacts instead", field="ref")
    voice, load_ms = cache.get_timed(version)
    try:
        sentences = check_text(voice.frontend, text, voice.max_characters)
        ids = [voice.frontend.ids(sentence) for sentence in sentences]
    except TextError as error:
        raise Unprocessable(f"text: {error}", field="text") from None
    pause = np.zeros(int(PAUSE_SECONDS * voice.sample_rate), dtype=np.float32)
    parts: list[np.ndarray] = []
    with torch.inference_mode():
        for sentence_ids in ids:
            if parts:
                parts.append(pause)
            parts.append(voice.module(torch.tensor([sentence_ids], dtype=torch.int64)).numpy())
    samples = np.concatenate(parts)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, voice.sample_rate, format="WAV", subtype="PCM_16")
    speech = Speech(buffer.getvalue(), len(samples) / voice.sample_rate, voice.sample_rate, len(sentences), model.name,
                    version.version, used_ref, round((time.perf_counter() - started) * 1000 - load_ms, 2),
                    load_ms=load_ms)
    seconds = round(speech.seconds, 3)
    row = record_prediction(model, version, {"answer": f"{seconds:g} s of speech", "seconds": seconds,
                                             "sentences": speech.sentences, "duration": seconds,
                                             "time_ms": speech.time_ms},
                            ref=used_ref, arm=chosen.arm, user=user, key=chosen.key, channel=channel,
                            input_text=str(text))
    speech.prediction_id = row.pk if row is not None else None
    return speech
