"""Transcription: speech to text with a CTC model trained from scratch on the clips' transcripts.

Clips are whole utterances of any length (no fixed clip length); the task owns its training loop (``fit``, in
``ml/ctc.py``): length-bucketed batches, a convolutional CTC model, CTC loss, early stopping on validation
character error rate (CER). Predictions decode the exported model's CTC log-probabilities greedily, or by beam
search over the training transcripts' words when that lowered the validation WER at training time; a long
file is cut into segments of at most ``SEGMENT_SECONDS`` at the quietest 20 ms inside the last
``SEGMENT_SEARCH_SECONDS`` of each segment, so a cut falls between words where there is a pause.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..config import TrainConfig
from ..data import ClipRecord, holdout_problems
from ..text import (
    TextNormalization, beam_search, ctc_frames, decode, emissions_text, emissions_words, text_steps, words_with_times,
)
from .common import headline_of

TRAINS_ON = "transcript"
# Noise mixing and time shifts are for fixed windows; speech is augmented by SpecAugment and the speed and
# vocal-tract warp (``warp``) instead.
DEFAULTS: dict[str, Any] = {"noise": False, "time_shift": False, "learning_rate": 0.005}
EPOCH_METRIC = ("val_cer", "Validation error rates", True)
# Every series of the task's epoch chart: (epoch key, name).
EPOCH_SERIES = (("val_cer", "validation CER"), ("val_wer", "validation WER"))
OUTPUT_NAME = "log_probs"
MIN_TRANSCRIBED_CLIPS = 20
SAMPLE_RATE = 16000
HOP = 160
MIN_SAMPLES = 4000  # 0.25 s: shorter audio is zero-padded to this
SEGMENT_SECONDS = 20.0
SEGMENT_SEARCH_SECONDS = 5.0
# Per-clip problems listed before "and N more".
MAX_LISTED = 20


def normalization(cfg: TrainConfig) -> TextNormalization:
    return TextNormalization(case=cfg.text_case, punctuation=cfg.punctuation, numbers=cfg.numbers)


def check_config(cfg: TrainConfig) -> None:
    return None


def usable(clip: ClipRecord) -> bool:
    """Clips without a transcript are left out (and counted); whitespace-only ones are reported by check_data."""
    return clip.transcript != ""


def available_frames(duration: float) -> int:
    return ctc_frames(max(MIN_SAMPLES, int(round(duration * SAMPLE_RATE))), HOP)


def check_data(clips: Sequence[ClipRecord], cfg: TrainConfig) -> list[str]:
    """Too few transcripts; per clip: a transcript empty after normalisation, or longer than its audio can
    hold (CTC emits at most one character per output frame, and needs a blank between doubled letters)."""
    problems: list[str] = []
    if len(clips) < MIN_TRANSCRIBED_CLIPS:
        have = "has one" if len(clips) == 1 else "have one"
        problems.append(f"transcription needs at least {MIN_TRANSCRIBED_CLIPS} clips with a transcript; "
                        f"{len(clips)} {have}")
    norm = normalization(cfg)
    per_clip: list[str] = []
    for clip in clips:
        text = norm.apply(clip.transcript)
        if not text:
            kind = "is only whitespace" if not clip.transcript.strip() else f"({clip.transcript!r}) is empty after normalisation ({norm.describe()})"
            per_clip.append(f"clip {clip.id}: its transcript {kind}")
        elif clip.duration and text_steps(text) > available_frames(clip.duration):
            per_clip.append(
                f"clip {clip.id}: its transcript has {len(text)} characters (needing {text_steps(text)} CTC "
                f"frames) but its {clip.duration:.2f} s of audio give only {available_frames(clip.duration)}; "
                "is the transcript for this clip?"
            )
    problems.extend(per_clip[:MAX_LISTED])
    if len(per_clip) > MAX_LISTED:
        problems.append(f"… and {len(per_clip) - MAX_LISTED} more clips with the same kinds of problem")
    if cfg.holdout_speakers:
        problems.extend(holdout_problems(clips, cfg.holdout_speakers, group=lambda clip: "transcribed"))
    return problems


def labels(clips: Sequence[ClipRecord], cfg: TrainConfig) -> list[str]:
    return []


def stratum(clip: ClipRecord, cfg: TrainConfig) -> str:
    return "transcribed"


def fit(run):
    from ..ctc import fit as fit_ctc

    return fit_ctc(run)


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return headline_of("cer", "CER", metrics.get("cer"), (metrics.get("reference") or {}).get("cer"))


# Predictions -------------------------------------------------------------------------------------------------

def window_hop_seconds(clip_seconds: float) -> float:
    return SEGMENT_SECONDS


def segment_bounds(waveform: np.ndarray, sample_rate: int, max_seconds: float = SEGMENT_SECONDS,
                   search_seconds: float = SEGMENT_SEARCH_SECONDS) -> list[tuple[int, int]]:
    """(start, end) samples of segments of at most ``max_seconds``, each cut at the quietest 20 ms frame
    within the last ``search_seconds`` before the limit."""
    n = len(waveform)
    limit = int(max_seconds * sample_rate)
    frame = max(1, int(0.02 * sample_rate))
    bounds: list[tuple[int, int]] = []
    start = 0
    while n - start > limit:
        search_from = start + limit - int(search_seconds * sample_rate)
        window = np.asarray(waveform[search_from : start + limit], dtype=np.float64)
        usable_length = len(window) // frame * frame
        energy = (window[:usable_length].reshape(-1, frame) ** 2).mean(axis=1)
        cut = search_from + int(np.argmin(energy)) * frame + frame // 2
        bounds.append((start, cut))
        start = cut
    bounds.append((start, n))
    return bounds


def model_input(piece: np.ndarray, min_samples: int, hop: int) -> np.ndarray:
    """Zero-pad the end to at least ``min_samples`` and to a whole number of hops (what the export takes)."""
    length = max(min_samples, -(-len(piece) // hop) * hop)
    padded = np.zeros(length, dtype=np.float32)
    padded[: len(piece)] = piece
    return padded


def transcribe(log_probs: np.ndarray, prediction: dict[str, Any], offset: float = 0.0) -> dict[str, Any]:
    """One segment's (frames, tokens) CTC log-probabilities decoded as the version was evaluated: greedily, or by
    beam search over the training transcripts' words when that lowered the validation WER."""
    vocabulary = prediction["vocabulary"]
    if prediction.get("decoding") == "lexicon_beam":
        emissions = beam_search(log_probs, vocabulary, prediction["lexicon"], prediction.get("beam", 8))
        return {"text": emissions_text(emissions, vocabulary),
                "words": emissions_words(emissions, vocabulary, prediction["frame_seconds"], offset)}
    frame_ids = np.asarray(log_probs).argmax(axis=-1).tolist()
    return {"text": decode(frame_ids, vocabulary),
            "words": words_with_times(frame_ids, vocabulary, prediction["frame_seconds"], offset)}


def predict_waveform(module, waveform: np.ndarray, context: dict[str, Any]) -> dict[str, Any]:
    import torch

    prediction = context["prediction"]
    rate = context["sample_rate"]
    wave = np.asarray(waveform, dtype=np.float32).reshape(-1)
    segments, words = [], []
    for start, end in segment_bounds(wave, rate, prediction.get("segment_seconds", SEGMENT_SECONDS)):
        piece = model_input(wave[start:end], prediction["min_samples"], prediction["hop"])
        log_probs = module(torch.from_numpy(piece).unsqueeze(0))[0].numpy()
        decoded = transcribe(log_probs, prediction, start / rate)
        segments.append({"start": round(start / rate, 3), "end": round(end / rate, 3), "text": decoded["text"]})
        words.extend(decoded["words"])
    return {
        "text": " ".join(segment["text"] for segment in segments if segment["text"]),
        "words": words,
        "segments": segments,
        "decoding": prediction.get("decoding", "greedy"),
        "normalization": prediction.get("normalization"),
        "windows": len(segments),
    }


def prediction_answer(result: dict[str, Any]) -> tuple[str, float | None]:
    """What the prediction log counts and compares (registry live traffic): the transcript."""
    return str(result.get("text") or ""), None
